"""DissolveConfig -> the callable that makes DIA's third branch (or None for CSI), and the DDPM's data check.

One module per dissolver in this package, each with a builder that its entry in the table of
``common/dissolvers.py`` names (docs/dissolvers.md). Every dissolver maps (B, 3, H, W) in [0, 1] to the same
shape, accepts a ``generator`` keyword, and runs without gradients on the classifier's device.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch

from common import dissolvers
from common.config import DataConfig, DissolveConfig
from common.errors import UserError
from datasets import OneClassSplit, get_spec
from diffusion_models.checkpoint import DDPMMeta, load_meta, resolve_checkpoint

Builder = Callable[[DissolveConfig, int, torch.device], Callable]


def builder_of(spec: dissolvers.DissolverSpec) -> Builder:
    """Import the ``"module:function"`` an entry of the dissolver table names."""
    module, _, name = spec.builder.partition(":")
    return getattr(importlib.import_module(module), name)


def build_dissolver(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable | None:
    if not cfg.enabled:
        return None
    return builder_of(dissolvers.spec_of(cfg.method))(cfg, image_size, device)


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
