"""Shift transformations and their labels.

CSI/DIA treat each of K = 4 shifted copies of an image as a different sample
(a negative in the contrastive loss) and train a head to recognise the shift.
Views are stacked **k-major**: row k·B + i is image i under shift k, the layout
the loss, the shift labels and the CSI score all rely on.
"""
from __future__ import annotations

from typing import Callable

import torch

from common.errors import UserError

MAX_SHIFTS = 4


def rotate(x: torch.Tensor, k: int) -> torch.Tensor:
    """x: (B, C, H, W) -> rotated by k·90° in the (H, W) plane (rot90 direction, as upstream).

    Odd k swaps H and W, so stacking the K rotations needs square images.
    """
    return torch.rot90(x, k, dims=(2, 3))


def cutperm(x: torch.Tensor, k: int) -> torch.Tensor:
    """x: (B, C, H, W) -> halves permuted: k odd swaps left/right, k ≥ 2 swaps top/bottom.

    The halves meet at ⌊H/2⌋ and ⌊W/2⌋ (rows [⌊H/2⌋:] move to the top), which is
    a roll by −⌊H/2⌋ (−⌊W/2⌋). For even sizes (28, 32, 224) each k is its own inverse.
    """
    rows = -(x.shape[2] // 2) if k >= 2 else 0
    cols = -(x.shape[3] // 2) if k % 2 == 1 else 0
    return torch.roll(x, shifts=(rows, cols), dims=(2, 3))


SHIFTS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"rotation": rotate, "cutperm": cutperm}


def _shift_fn(kind: str) -> Callable[[torch.Tensor, int], torch.Tensor]:
    if kind not in SHIFTS:
        raise UserError(f"--shift_trans_type: unknown shift {kind!r}; valid: {', '.join(sorted(SHIFTS))}")
    return SHIFTS[kind]


def _check_k(k: int, n_shifts: int = MAX_SHIFTS) -> None:
    if not 0 <= k < n_shifts:
        raise ValueError(f"shift index k must be in [0, {n_shifts}), got {k}")


def apply_shift(x: torch.Tensor, k: int, kind: str) -> torch.Tensor:
    """x: (B, C, H, W) -> the same images under shift k ∈ [0, 4) of ``kind``; k = 0 is the identity."""
    _check_k(k)
    return _shift_fn(kind)(x, k)


def stack_shifts(x: torch.Tensor, kind: str, K: int = MAX_SHIFTS) -> torch.Tensor:
    """x: (B, C, H, W) -> (K·B, C, H, W), k-major: row k·B + i is image i under shift k."""
    if not 1 <= K <= MAX_SHIFTS:
        raise ValueError(f"number of shifts K must be in [1, {MAX_SHIFTS}], got {K}")
    shift = _shift_fn(kind)
    shifted = [shift(x, k) for k in range(K)]
    if any(s.shape != x.shape for s in shifted):
        raise ValueError(f"{kind} shifts change the shape of {x.shape[2]}×{x.shape[3]} images; use square images")
    return torch.cat(shifted, dim=0)


def shift_labels(
    batch_size: int, K: int, n_branches: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(n_branches·K·B,) int64 labels matching ``n_branches`` stacked k-major views.

    Within every branch, block k (rows k·B … k·B + B − 1) carries label k.
    """
    per_branch = torch.arange(K, device=device).repeat_interleave(batch_size)
    return per_branch.repeat(n_branches)
