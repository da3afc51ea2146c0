"""Test-time features for the CSI score (METHOD.md §4, upstream-behaviour.md §4.2).

Every image is seen ``n_samples`` times under each of the K shifts; each view
gets a fresh random horizontal flip and a SimCLR augmentation, and no
dissolving. The encoder's 128-d projection and K shift logits are averaged
over the samples *before* any scoring, because the CSI score takes the max over
the training bank of the averaged feature (METHOD.md §4, "Averaging").

Randomness comes only from the ``generator`` passed in, never the global RNG
(METHOD.md §4; upstream instead reset every global RNG per sample, Q6). The
views of an image therefore depend on the generator's state when its batch is
reached and on the image's position in that batch: the same loader order, batch
size and seed give identical features, but a different batch size gives a
different (equally valid) draw. Batch-size invariance is not promised.

``training.shifts`` is imported when the views are built, not at module import,
so that :class:`Features` (stored in checkpoints and read by the scorer) can be
used without the training package.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from common.errors import UserError
from common.transforms import random_hflip

Augment = Callable[..., Tensor]


@dataclass(frozen=True)
class Features:
    """Per-image test-time averages; the input of ``CSIScorer.fit`` and ``.score``.

    projection: (n, K, d) float, z̄_k(x) = mean over samples of the un-normalised
        projection of image x under shift k.
    shift_logits: (n, K, K) float, ḡ_k(x) = mean over samples of the K shift
        logits of image x under shift k; ``[i, k, k]`` is the correct-shift logit.
    ``extract_features`` returns both float32 on the CPU.
    """

    projection: Tensor
    shift_logits: Tensor

    def __post_init__(self) -> None:
        proj, logits = self.projection, self.shift_logits
        if proj.ndim != 3 or proj.shape[0] == 0:
            raise ValueError(f"Features.projection must be (n >= 1, K, d), got {tuple(proj.shape)}")
        n, k, _ = proj.shape
        if tuple(logits.shape) != (n, k, k):
            raise ValueError(
                f"Features.shift_logits must be (n, K, K) = {(n, k, k)}, got {tuple(logits.shape)}"
            )

    @property
    def n(self) -> int:
        return self.projection.shape[0]

    @property
    def K(self) -> int:
        return self.projection.shape[1]

    def to_dict(self) -> dict[str, Tensor]:
        """Plain tensors, for ``torch.save`` inside a checkpoint."""
        return {"projection": self.projection, "shift_logits": self.shift_logits}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Features:
        """Inverse of :meth:`to_dict`; tensors come back float32 on the CPU."""
        missing = [key for key in ("projection", "shift_logits") if key not in state]
        if missing:
            raise ValueError(f"feature bank is missing {missing}; expected Features.to_dict() output")
        return cls(
            projection=state["projection"].detach().float().cpu(),
            shift_logits=state["shift_logits"].detach().float().cpu(),
        )


def shift_views(x: Tensor, shift_kind: str, K: int, generator: torch.Generator) -> Tensor:
    """The shifted test-time views of a batch, before augmentation.

    x: (B, 3, H, W) in [0, 1]. Returns (K·B, 3, H, W) in [0, 1], k-major:
    row k·B + i is image i, flipped at random, under shift k. The flip is drawn
    afresh for every (k, i), as upstream draws one hflip per shift
    (upstream-behaviour.md §4.2); the flip comes before the shift, as in training.
    """
    from training.shifts import apply_shift  # deferred: see the module docstring

    blocks = [apply_shift(random_hflip(x, generator), k, shift_kind) for k in range(K)]
    return torch.cat(blocks)


def _images(batch: Any) -> Tensor:
    """The image tensor of a loader batch: ``(x, is_anomaly, ...)`` or a bare tensor."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _per_image(rows: Tensor, batch: int, K: int) -> Tensor:
    """(K·B, c) k-major -> (B, K, c) float32 on the CPU."""
    return rows.float().view(K, batch, -1).transpose(0, 1).cpu()


def _batch_features(
    model: nn.Module, x: Tensor, *, shift_kind: str, K: int, n_samples: int,
    augment: Augment, generator: torch.Generator, amp: bool,
) -> tuple[Tensor, Tensor]:
    """x (B, 3, H, W) in [0, 1] -> sample means (B, K, d) and (B, K, K), float32 on the CPU."""
    proj_sum: Tensor | float = 0.0
    logit_sum: Tensor | float = 0.0
    for _ in range(n_samples):
        views = augment(shift_views(x, shift_kind, K, generator), generator=generator)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(views)
        proj_sum = proj_sum + out.projection.float()
        logit_sum = logit_sum + out.shift_logits.float()
    batch = x.shape[0]
    return _per_image(proj_sum / n_samples, batch, K), _per_image(logit_sum / n_samples, batch, K)


def extract_features(
    model: nn.Module,
    loader: Iterable,
    *,
    shift_kind: str,
    K: int = 4,
    n_samples: int = 10,
    augment: Augment,
    generator: torch.Generator,
    device: torch.device | str,
    amp: bool = False,
    progress: bool = True,
) -> Features:
    """Average test-time features of every image of ``loader``, in loader order.

    model: already on ``device``; ``model(x)`` returns an object with
        ``.projection`` (N, d) un-normalised and ``.shift_logits`` (N, K)
        (``models.EncoderOutput``). It runs in eval mode under
        ``torch.inference_mode``; its previous train/eval mode is restored.
    loader: yields ``(x, is_anomaly)`` with x (B, 3, H, W) in [0, 1]; labels are
        ignored, so that test labels only ever reach the metrics.
    augment: ``augment(views, generator=generator)`` -> same shape, per-sample
        SimCLR jitter/grayscale/crop (no flip: :func:`shift_views` flips).
    generator: the only source of randomness; draws happen on its device.
    amp: bf16 autocast for the forward; the averages are accumulated in float32.
    """
    if n_samples < 1:
        raise UserError(f"--ood_samples must be at least 1, got {n_samples}")
    was_training = model.training
    model.eval()
    projections, logits = [], []
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
                proj, logit = _batch_features(
                    model, _images(batch).to(device), shift_kind=shift_kind, K=K,
                    n_samples=n_samples, augment=augment, generator=generator, amp=amp,
                )
                projections.append(proj)
                logits.append(logit)
    finally:
        model.train(was_training)
    if not projections:
        raise UserError("the evaluation loader yielded no images: is the dataset split empty?")
    return Features(projection=torch.cat(projections), shift_logits=torch.cat(logits))
