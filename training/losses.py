"""CSI/DIA training losses: NT-Xent over shifted views plus shift classification.

Rows of the projection batch are stacked branch by branch, each branch k-major with N = K·B rows:

    CSI: [a; b]     (2N rows)      DIA: [a; b; d]  (3N rows, d = dissolved)

Anchors are the 2N rows of a and b. The positive of a_i is b_i and of b_i is
a_i (same image, same shift, other view). Every other row is a negative:
other images, other shifts of the same image and all dissolved rows, except
the rows ``contrastive_mask`` excludes from the denominator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError

LossMode = Literal["shifted_removed", "naive"]
LOSS_MODES: tuple[str, ...] = get_args(LossMode)
NORM_EPS = 1e-8  # as upstream: z / (‖z‖ + 1e-8)


def _check_mode(mode: str) -> None:
    if mode not in LOSS_MODES:
        raise UserError(f"--loss_mode: unknown mode {mode!r}; valid: {', '.join(LOSS_MODES)}")


def _check_branches(n_branches: int) -> None:
    if n_branches not in (2, 3):
        raise ValueError(f"n_branches must be 2 (CSI) or 3 (DIA), got {n_branches}")


def contrastive_mask(
    N: int, n_branches: int, mode: LossMode, device: torch.device | str | None = None
) -> torch.Tensor:
    """Bool (n_branches·N, n_branches·N); True = left out of that row's denominator.

    Always the row itself. In ``shifted_removed`` with a dissolved branch, also
    the pairs (a_i, d_i), (b_i, d_i) and their transposes: d_i is the same image
    under the same shift, only dissolved, and upstream's default keeps it from
    being pushed away (paper Table 12). ``naive`` keeps d_i as a negative.
    A pure function of (N, n_branches, mode) so that a distributed loss can
    gather the rows per branch and reuse it unchanged.
    """
    _check_branches(n_branches)
    _check_mode(mode)
    mask = torch.eye(n_branches * N, dtype=torch.bool, device=device)
    if mode == "shifted_removed" and n_branches == 3:
        i = torch.arange(N, device=device)
        for view in (i, N + i):  # rows of a and of b
            mask[view, 2 * N + i] = True
            mask[2 * N + i, view] = True
    return mask


def positive_index(N: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(2N,) int64: column of each anchor's positive, a_i -> b_i = N + i and b_i -> a_i = i."""
    i = torch.arange(N, device=device)
    return torch.cat([N + i, i])


class NTXentLoss(nn.Module):
    """NT-Xent over shifted views; ``forward(z, n_branches)`` -> scalar.

    z: (n_branches·N, d) projections, un-normalised, rows [a; b] or [a; b; d].
    Per anchor: −log( exp(s_pos/τ) / Σ_{c not masked} exp(s_ac/τ) ) with s the
    cosine similarity. The sum over the 2N anchors is divided by n_branches·N:
    2N for CSI, and 3N for DIA, which is upstream's divisor,
    kept so the loss scale matches the paper's runs.
    Upstream adds 1e-8 to the denominator and inside the log; we use the exact
    form, via logsumexp for stability (upstream's terms differ by about 1e-8/p,
    p the positive's softmax probability, so only for near-hopeless anchors).
    """

    def __init__(self, temperature: float = 0.5, mode: LossMode = "shifted_removed") -> None:
        super().__init__()
        if not temperature > 0:
            raise UserError(f"--temperature must be > 0, got {temperature}")
        _check_mode(mode)
        self.temperature = temperature
        self.mode = mode

    def forward(self, z: torch.Tensor, n_branches: int) -> torch.Tensor:
        rows = z.shape[0]
        if rows % n_branches:
            raise ValueError(f"{rows} projection rows do not split into {n_branches} branches")
        N = rows // n_branches
        # fp32 even under autocast: logits s/τ in bf16 would lose the small differences that matter.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            z = z / (z.norm(dim=1, keepdim=True) + NORM_EPS)
            logits = z[: 2 * N] @ z.T / self.temperature  # (2N, n_branches·N), anchors only
            excluded = contrastive_mask(N, n_branches, self.mode, device=z.device)[: 2 * N]
            log_denominator = logits.masked_fill(excluded, float("-inf")).logsumexp(dim=1)
            positive = logits.gather(1, positive_index(N, device=z.device)[:, None]).squeeze(1)
            return (log_denominator - positive).sum() / rows


def shift_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (M, K), labels (M,) int64 in [0, K) -> mean cross-entropy over all M rows.

    In DIA the dissolved rows take part too (M = 3N).
    """
    return F.cross_entropy(logits.float(), labels)


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors of one step; ``total`` is the one to backpropagate."""

    total: torch.Tensor
    contrastive: torch.Tensor
    shift: torch.Tensor

    def to_dict(self) -> dict[str, float]:
        """Detached Python floats for logging (one device sync)."""
        values = torch.stack([self.total, self.contrastive, self.shift]).detach().tolist()
        return dict(zip(("loss", "loss_contrastive", "loss_shift"), values))


def gather_branches(z: torch.Tensor, n_branches: int,
                    gather_rows: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Local (n_branches·N_local, d) rows -> global (n_branches·world·N_local, d), still branch-major.

    Within each branch the global rows are ordered (rank, k, i). The order is the
    same in every branch, so a_j, b_j and d_j keep a common index j and the
    masks of ``contrastive_mask`` apply unchanged: the loss equals one process
    holding the concatenated batch (NT-Xent is invariant to a shared reordering).
    """
    local = z.view(n_branches, -1, z.shape[-1])
    gathered = gather_rows(local.transpose(0, 1)).view(-1, n_branches, z.shape[-1])  # (world·N_local, nb, d)
    return gathered.transpose(0, 1).reshape(-1, z.shape[-1])


class ContrastiveShiftLoss(nn.Module):
    """total = NT-Xent(projection) + CE(shift_logits, labels), weights 1 and 1.

    ``n_branches`` = 2 gives the CSI objective, 3 the DIA objective.
    forward(projection (n_branches·N, d), shift_logits (n_branches·N, K),
    shift_labels (n_branches·N,)) -> LossTerms; raises FloatingPointError when
    the total is not finite, so a diverged run stops at the step that diverged.

    Under DDP pass ``gather_rows`` (a gradient-carrying all-gather): every
    process then computes the NT-Xent of the *global* batch, so its negatives
    span all processes. Each rank's gradient of that shared loss is summed by
    the all-gather's backward (×world) and averaged by DDP (÷world), which
    gives exactly the single-process gradient. The shift term stays local: DDP's
    average of the per-rank means is the global mean.
    """

    def __init__(self, temperature: float = 0.5, mode: LossMode = "shifted_removed", n_branches: int = 3,
                 gather_rows: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        _check_branches(n_branches)
        self.n_branches = n_branches
        self.contrastive = NTXentLoss(temperature, mode)
        self.gather_rows = gather_rows

    def forward(self, projection: torch.Tensor, shift_logits: torch.Tensor, shift_labels: torch.Tensor) -> LossTerms:
        if self.gather_rows is not None:
            projection = gather_branches(projection, self.n_branches, self.gather_rows)
        contrastive = self.contrastive(projection, self.n_branches)
        shift = shift_loss(shift_logits, shift_labels)
        total = contrastive + shift
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"non-finite loss: contrastive={contrastive.item():.4g}, shift={shift.item():.4g}"
            )
        return LossTerms(total=total, contrastive=contrastive, shift=shift)
