"""DIA's dissolver: one reverse-diffusion step of the DDPM trained on the normal images.

The step itself is ``diffusion_models/dissolver.py``; this module builds it from a run's DissolveConfig.
"""
from __future__ import annotations

from typing import Callable

import torch

from common.config import DissolveConfig
from diffusion_models.dissolver import Dissolver


def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    return Dissolver.from_checkpoint(cfg.checkpoint, image_size=image_size, weights=cfg.weights,
                                     t_range=(cfg.t_min, cfg.t_max), per_sample_t=cfg.per_sample_t,
                                     input_range=cfg.input_range, resolution=cfg.resolution, device=device,
                                     unet_dtype=cfg.unet_dtype, graphs=cfg.graphs)
