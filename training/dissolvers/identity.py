"""The identity dissolver: upstream's simclr_DIA with a plain shift, where the third branch is one more flipped view."""
from __future__ import annotations

from typing import Callable

import torch

from common.config import DissolveConfig


def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return x


def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> Callable:
    return identity
