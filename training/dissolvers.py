"""DissolveConfig -> the callable that makes DIA's third branch (or None for CSI).

A registry, not a ladder: each method maps to a builder taking plain values.
Every dissolver maps (B, 3, H, W) in [0, 1] to the same shape, accepts a
``generator`` keyword, and runs without gradients on the classifier's device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from common.config import DataConfig, DissolveConfig
from common.errors import UserError
from datasets import OneClassSplit, get_spec
from diffusion_models.blur import BlurDissolver
from diffusion_models.checkpoint import DDPMMeta, load_meta, resolve_checkpoint
from diffusion_models.dissolver import Dissolver
from diffusion_models.noise import NoiseDissolver

BLUR_RESOLUTION = 32  # the blurs' default --diff_resolution (paper Table 9: 32 is best)


def _identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Upstream's simclr_DIA with a plain shift: the third branch is one more flipped view."""
    return x


def _ddpm(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    return Dissolver.from_checkpoint(cfg.checkpoint, image_size=image_size, weights=cfg.weights,
                                     t_range=(cfg.t_min, cfg.t_max), per_sample_t=cfg.per_sample_t,
                                     input_range=cfg.input_range, resolution=cfg.resolution, device=device,
                                     unet_dtype=cfg.unet_dtype, graphs=cfg.graphs)


def _blur(kind: str) -> Callable:
    def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
        return BlurDissolver(kind, kernel_size=cfg.kernel_size, image_size=image_size,
                             resolution=cfg.resolution or BLUR_RESOLUTION).to(device)
    return build


def _resize_only(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    """Paper Table 8 "resize only": down to R and back, no filter (a kernel-1 blur)."""
    return BlurDissolver("gaussian", kernel_size=1, image_size=image_size,
                         resolution=cfg.resolution or BLUR_RESOLUTION).to(device)


def _noise(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    return NoiseDissolver(cfg.noise_std, image_size=image_size,
                          resolution=cfg.resolution or BLUR_RESOLUTION).to(device)


# Keys are exactly common.config.DissolveMethod (tests/test_cli.py checks it).
DISSOLVERS: dict[str, Callable[[DissolveConfig, int, torch.device], Callable | None]] = {
    "none": lambda cfg, image_size, device: None,
    "identity": lambda cfg, image_size, device: _identity,
    "resize": _resize_only,
    "ddpm": _ddpm,
    "gaussian": _blur("gaussian"),
    "median": _blur("median"),
    "noise": _noise,
}


def build_dissolver(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable | None:
    return DISSOLVERS[cfg.method](cfg, image_size, device)


def _same_data(meta: DDPMMeta, data: DataConfig) -> bool:
    """Whether the DDPM trained on this run's dataset; a user folder is only itself (old checkpoints
    without a recorded root count as the same)."""
    if meta.dataset != data.dataset:
        return False
    if get_spec(data.dataset).kind != "user_folder" or not meta.data_root or not data.data_root:
        return True
    return Path(meta.data_root).expanduser().resolve() == Path(data.data_root).expanduser().resolve()


def check_ddpm_data(checkpoint: str, data: DataConfig, split: OneClassSplit) -> str | None:
    """Refuse a DDPM trained on this run's data under another split; a warning when its normal class differs.

    Under another split the DDPM's training images could be this run's validation or test images. A
    different normal class under the same split is no leak (the hold-outs are stratified over all
    classes), and paper Appendix D does it on purpose; a DDPM of another dataset is always allowed.
    """
    meta, folder = load_meta(checkpoint), resolve_checkpoint(checkpoint)
    if not _same_data(meta, data):
        return None
    if split.seed_dependent and meta.split_seed != data.split_seed:
        raise UserError(f"--split_seed {data.split_seed} differs from split seed {meta.split_seed} of the DDPM "
                        f"{folder}, trained on the same {data.dataset} data: its training images could be this "
                        f"run's validation or test images (retrain it with --split_seed {data.split_seed})")
    if set(meta.normal_classes) != set(split.normal_classes):
        return (f"warning: the DDPM {folder} was trained on normal class {'+'.join(meta.normal_classes)}, "
                f"this run's normal class is {'+'.join(split.normal_classes)}")
    return None
