"""The branches of one training step, built in one place.

CSI has two branches, ``a`` and ``b``: independent horizontal flips of the
batch, each stacked under every shift. DIA adds ``d``: for each shift k a fresh
flip of the batch, dissolved, then shifted. All rows then get per-sample SimCLR
augmentation in one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from common.shifts import apply_shift, shift_labels, stack_shifts
from common.transforms import random_hflip

Dissolve = Callable[..., torch.Tensor]  # (x, generator=...) -> x, both (B, 3, H, W) in [0, 1]
# A dissolver may instead offer ``flip_and_dissolve(x, index, generator)``, standing for
# ``dissolve(random_hflip(x, generator), generator=generator)`` with the same draws: the dissolve
# cache (diffusion_models/dissolve_cache.py), which looks the result up by dataset index.


@dataclass(frozen=True)
class ViewBatch:
    """images: (n_branches·K·B, 3, H, W) in [0, 1], branch-major then k-major:
    row ``(branch·K + k)·B + i`` is image i under shift k in that branch.
    shift_labels: (n_branches·K·B,) int64, the k of each row."""

    images: torch.Tensor
    shift_labels: torch.Tensor
    n_branches: int
    batch_size: int


def dissolved_branch(x: torch.Tensor, dissolve: Dissolve, shift_kind: str, n_shifts: int,
                     generator: torch.Generator | None, index: torch.Tensor | None = None) -> torch.Tensor:
    """(K·B, 3, H, W): for each k a fresh flip of x, dissolved, then shifted by k.

    Dissolving happens on the upright image, before the shift, as upstream;
    one call per k, so per-call t means one t per (batch, shift) as upstream.
    ``index``: (B,) dataset rows of x, read only by a cached dissolver.
    """
    cached = getattr(dissolve, "flip_and_dissolve", None)
    blocks = [apply_shift(cached(x, index, generator) if cached is not None
                          else dissolve(random_hflip(x, generator), generator=generator), k, shift_kind)
              for k in range(n_shifts)]
    return torch.cat(blocks)


def make_views(x: torch.Tensor, *, shift_kind: str, n_shifts: int, augment: torch.nn.Module,
               dissolve: Dissolve | None, generator: torch.Generator | None = None,
               index: torch.Tensor | None = None) -> ViewBatch:
    """x: (B, 3, H, W) in [0, 1] -> ViewBatch of 2 (CSI) or 3 (DIA, ``dissolve`` given) branches.

    ``index``: (B,) int64 dataset rows of x, needed only by the dissolve cache."""
    a = stack_shifts(random_hflip(x, generator), shift_kind, n_shifts)
    b = stack_shifts(random_hflip(x, generator), shift_kind, n_shifts)
    branches = [a, b]
    if dissolve is not None:
        branches.append(dissolved_branch(x, dissolve, shift_kind, n_shifts, generator, index))
    images = augment(torch.cat(branches), generator=generator)
    labels = shift_labels(x.shape[0], n_shifts, len(branches), device=x.device)
    return ViewBatch(images=images, shift_labels=labels, n_branches=len(branches), batch_size=x.shape[0])
