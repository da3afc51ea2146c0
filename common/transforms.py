"""Tensor image transforms shared by DDPM training, the training views and the test-time views."""
from __future__ import annotations

import torch


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of x (B, C, H, W) left-right with probability 1/2; same shape and range.

    The coin flips are drawn on the generator's device (CPU without one) and
    only from it, so a seeded generator never touches the global random state.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    return hflip_where(x, torch.rand(x.shape[0], generator=generator, device=device) < 0.5)


def hflip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) with image i flipped left-right where flip[i]; flip: (B,) bool, any device.

    For coins drawn beforehand: evaluation draws each image's own (evals/features.py).
    """
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
