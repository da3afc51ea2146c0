"""The CSI score: nearest-neighbour similarity plus shift confidence.

    score(x) = (1/K) Σ_k [ λ_sim,k · max_m ⟨z̄_k(x), dir_k(m)⟩ + λ_shi,k · ḡ_k(x)[k] ]

with dir_k(m) = z̄_k(m) / (‖z̄_k(m)‖ + 1e-8), λ_sim,k = 1 / mean_m ‖z̄_k(m)‖ and
λ_shi,k = 1 / mean_m ḡ_k(m)[k], all from the normal training bank. The inner
product with a unit train direction is cosine × ‖z̄_k(x)‖, CSI's "cosine times
norm"; the λ weights put both terms on the scale of
the training set. Higher means more normal.

Fitting and scoring are kept apart from feature extraction: the scorer only
sees :class:`evals.features.Features`, never images or labels.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from common.errors import UserError

if TYPE_CHECKING:
    from evals.features import Features

ScoreKind = Literal["CSI", "simclr", "shift"]

# Which of the two terms (similarity, shift) each --ood_score keeps. "simclr"
# and "shift" are the ablations; upstream's "simclr" crashes with K = 4.
SCORE_TERMS: dict[str, tuple[bool, bool]] = {
    "CSI": (True, True),
    "simclr": (True, False),
    "shift": (False, True),
}

_NORM_EPS = 1e-8  # as upstream, so that a zero train feature gives a zero direction
_BUFFERS = ("directions", "lambda_sim", "lambda_shift")


class CSIScorer(nn.Module):
    """Fitted CSI scorer; its fitted state lives in buffers, so it saves with a checkpoint.

    Buffers after :meth:`fit` (empty before):
        directions: (K, M, d) unit train directions dir_k(m).
        lambda_sim: (K,) 1 / mean_m ‖z̄_k(m)‖.
        lambda_shift: (K,) 1 / mean_m ḡ_k(m)[k], the raw correct-shift logit
            (not a probability, as upstream). A badly trained shift head can make
            this mean negative, which flips the sign of the shift term; that is
            the method's definition and is kept.
    Scoring runs on the buffers' device (move the scorer with ``.to(device)``),
    ``chunk_size`` test rows against ``chunk_size`` train rows at a time.
    """

    directions: Tensor
    lambda_sim: Tensor
    lambda_shift: Tensor

    def __init__(self, score: ScoreKind = "CSI", chunk_size: int = 1024) -> None:
        super().__init__()
        if score not in SCORE_TERMS:
            raise UserError(f"--ood_score {score!r} is not one of {sorted(SCORE_TERMS)}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.score_kind = score
        self.chunk_size = chunk_size
        self.register_buffer("directions", torch.empty(0, 0, 0))
        self.register_buffer("lambda_sim", torch.empty(0))
        self.register_buffer("lambda_shift", torch.empty(0))

    @classmethod
    def from_state_dict(
        cls, state_dict: dict[str, Tensor], score: ScoreKind = "CSI", chunk_size: int = 1024
    ) -> CSIScorer:
        """A fitted scorer from ``scorer.state_dict()``; the buffers take the stored shapes."""
        missing = [name for name in _BUFFERS if name not in state_dict]
        if missing:
            raise UserError(f"the checkpoint holds no fitted CSI scorer (missing {missing})")
        scorer = cls(score, chunk_size)
        for name in _BUFFERS:
            setattr(scorer, name, torch.empty_like(state_dict[name]))
        scorer.load_state_dict(state_dict)
        return scorer

    @property
    def is_fitted(self) -> bool:
        return self.directions.numel() > 0

    @property
    def n_shifts(self) -> int:
        return self.directions.shape[0]

    @torch.no_grad()
    def fit(self, train: Features) -> CSIScorer:
        """Store the directions and λ weights of the normal training bank (M images)."""
        device = self.directions.device
        z = train.projection.to(device, torch.float32).transpose(0, 1)  # (K, M, d)
        norms = z.norm(dim=-1)  # (K, M)
        correct = torch.diagonal(train.shift_logits.to(device, torch.float32), dim1=1, dim2=2)
        self.directions = z / (norms.unsqueeze(-1) + _NORM_EPS)
        self.lambda_sim = 1.0 / norms.mean(dim=1)
        self.lambda_shift = 1.0 / correct.mean(dim=0)  # correct: (M, K)
        return self

    @torch.no_grad()
    def score_terms(self, test: Features) -> tuple[Tensor, Tensor]:
        """The two weighted, shift-averaged terms of the score, each (n,) float32 on the CPU.

        sim[i] = (1/K) Σ_k λ_sim,k · max_m ⟨z̄_k(x_i), dir_k(m)⟩;
        shift[i] = (1/K) Σ_k λ_shi,k · ḡ_k(x_i)[k]. The CSI score is their sum.
        """
        self._check_compatible(test)
        device = self.directions.device
        sims, shifts = [], []
        for start in range(0, test.n, self.chunk_size):
            rows = slice(start, start + self.chunk_size)
            z = test.projection[rows].to(device, torch.float32).transpose(0, 1)  # (K, c, d)
            logits = test.shift_logits[rows].to(device, torch.float32)
            correct = torch.diagonal(logits, dim1=1, dim2=2)  # (c, K)
            sims.append((self.lambda_sim.unsqueeze(1) * self._max_similarity(z)).mean(dim=0))
            shifts.append((correct * self.lambda_shift).mean(dim=1))
        return torch.cat(sims).cpu(), torch.cat(shifts).cpu()

    def score(self, test: Features) -> Tensor:
        """Anomaly score of every test image, (n,) float32 on the CPU; higher = more normal."""
        terms = zip(self.score_terms(test), SCORE_TERMS[self.score_kind])
        return torch.stack([term for term, used in terms if used]).sum(dim=0)

    def _max_similarity(self, z: Tensor) -> Tensor:
        """z (K, c, d) -> (K, c): max over the train bank of ⟨z_k, dir_k(m)⟩, in train chunks."""
        best = torch.full(z.shape[:2], float("-inf"), device=z.device)
        for start in range(0, self.directions.shape[1], self.chunk_size):
            bank = self.directions[:, start : start + self.chunk_size]  # (K, m, d)
            best = torch.maximum(best, torch.bmm(z, bank.transpose(1, 2)).amax(dim=-1))
        return best

    def _check_compatible(self, test: Features) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                "CSIScorer is not fitted: call fit(train_features) or CSIScorer.from_state_dict first"
            )
        k, _, d = self.directions.shape
        if test.projection.shape[1:] != (k, d):
            raise ValueError(
                f"test features are (n, K, d) = (n, {test.projection.shape[1]}, "
                f"{test.projection.shape[2]}) but the scorer was fitted with K={k}, d={d}"
            )

    def extra_repr(self) -> str:
        return f"score={self.score_kind!r}, chunk_size={self.chunk_size}, fitted={self.is_fitted}"
