"""DissolveConfig -> the callable that makes DIA's third branch (or None for CSI).

A registry, not a ladder: each method maps to a builder taking plain values.
Every dissolver maps (B, 3, H, W) in [0, 1] to the same shape, accepts a
``generator`` keyword, and runs without gradients on the classifier's device.
"""
from __future__ import annotations

from typing import Callable

import torch

from common.config import DissolveConfig
from diffusion_models.blur import BlurDissolver
from diffusion_models.dissolver import Dissolver


def _identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Upstream's simclr_DIA with a plain shift: the third branch is one more flipped view (Q3)."""
    return x


def _ddpm(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    return Dissolver.from_checkpoint(cfg.checkpoint, image_size=image_size, weights=cfg.weights,
                                     t_range=(cfg.t_min, cfg.t_max), per_sample_t=cfg.per_sample_t,
                                     input_range=cfg.input_range, device=device)


def _blur(kind: str) -> Callable:
    def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
        return BlurDissolver(kind, kernel_size=cfg.kernel_size, image_size=image_size,
                             resolution=cfg.resolution).to(device)
    return build


def _resize_only(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    """Paper Table 8 "resize only": down to R and back, no filter (a kernel-1 blur)."""
    return BlurDissolver("gaussian", kernel_size=1, image_size=image_size, resolution=cfg.resolution).to(device)


DISSOLVERS: dict[str, Callable[[DissolveConfig, int, torch.device], Callable | None]] = {
    "none": lambda cfg, image_size, device: None,
    "identity": lambda cfg, image_size, device: _identity,
    "resize": _resize_only,
    "ddpm": _ddpm,
    "gaussian": _blur("gaussian"),
    "median": _blur("median"),
}


def build_dissolver(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable | None:
    return DISSOLVERS[cfg.method](cfg, image_size, device)
