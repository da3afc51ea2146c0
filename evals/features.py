"""Test-time features for the CSI score.

Every image is seen ``n_samples`` times under each of the K shifts; each view
gets a fresh random horizontal flip and a SimCLR augmentation, and no
dissolving. The encoder's 128-d projection and K shift logits are averaged
over the samples *before* any scoring, because the CSI score takes the max over
the training bank of the averaged feature.

Every image has its own stream of views: all its random parameters are drawn at
once from a generator seeded from (seed, its key) (evals/view_keys.py), never
from the global RNG (upstream instead reset every global RNG per
sample). An image's features therefore do not depend on the other images:
batch size, batch position, order and torchrun shard leave them unchanged (up
to float rounding in the batched forward). The augmentation itself stays one
batched call per sample, fed the pre-drawn parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from common.augment import N_PARAMS
from common.errors import UserError
from common.shifts import apply_shift
from common.transforms import hflip_where
from evals.view_keys import view_generator

Augment = Callable[..., Tensor]  # augment(x (N, 3, H, W), params=(N, N_PARAMS) uniforms) -> (N, 3, H, W)
VIEW_PARAMS = 1 + N_PARAMS  # uniforms per view: the flip coin, then the SimCLR augmentation's


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


def shift_views(x: Tensor, shift_kind: str, K: int, flip: Tensor) -> Tensor:
    """The shifted test-time views of a batch, before augmentation.

    x: (B, 3, H, W) in [0, 1]; flip: (B, K) bool, whether image i is flipped under
    shift k. Returns (K·B, 3, H, W) in [0, 1], k-major: row k·B + i is image i,
    flipped where flip[i, k], under shift k. Each (k, i) has its own flip, as
    upstream draws one hflip per shift; the flip
    comes before the shift, as in training.
    """
    return torch.cat([apply_shift(hflip_where(x, flip[:, k]), k, shift_kind) for k in range(K)])


def draw_view_params(keys: Tensor, seed: int, n_samples: int, K: int) -> Tensor:
    """keys (B,) int64 -> (B, n_samples, K, VIEW_PARAMS) uniforms in [0, 1), float32 on the CPU.

    Row i is drawn in one call from image i's own generator, so it depends on
    (seed, keys[i]) only; [..., 0] is the flip coin, [..., 1:] the SimCLR draw.
    """
    return torch.stack([torch.rand(n_samples, K, VIEW_PARAMS, generator=view_generator(seed, key))
                        for key in keys.tolist()])


def _per_image(rows: Tensor, batch: int, K: int) -> Tensor:
    """(K·B, c) k-major -> (B, K, c) float32 on the CPU."""
    return rows.float().view(K, batch, -1).transpose(0, 1).cpu()


def _batch_features(model: nn.Module, x: Tensor, params: Tensor, *, shift_kind: str, augment: Augment,
                    amp: bool) -> tuple[Tensor, Tensor]:
    """x (B, 3, H, W) in [0, 1], params (B, n_samples, K, VIEW_PARAMS) -> sample means
    (B, K, d) and (B, K, K), float32 on the CPU. One batched forward per sample."""
    batch, n_samples, K, _ = params.shape
    params = params.to(x.device)
    proj_sum: Tensor | float = 0.0
    logit_sum: Tensor | float = 0.0
    for s in range(n_samples):
        simclr = params[:, s, :, 1:].transpose(0, 1).reshape(K * batch, N_PARAMS)  # k-major, as the views
        views = augment(shift_views(x, shift_kind, K, flip=params[:, s, :, 0] < 0.5), params=simclr)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(views)
        proj_sum = proj_sum + out.projection.float()
        logit_sum = logit_sum + out.shift_logits.float()
    return _per_image(proj_sum / n_samples, batch, K), _per_image(logit_sum / n_samples, batch, K)


def extract_features(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    shift_kind: str,
    K: int = 4,
    n_samples: int = 10,
    augment: Augment,
    seed: int,
    device: torch.device | str,
    amp: bool = False,
    progress: bool = True,
) -> Features:
    """Average test-time features of every image of ``loader``, in loader order.

    model: already on ``device``; ``model(x)`` returns an object with
        ``.projection`` (N, d) un-normalised and ``.shift_logits`` (N, K)
        (``models.EncoderOutput``). It runs in eval mode under
        ``torch.inference_mode``; its previous train/eval mode is restored.
    loader: yields ``(x, keys)``: x (B, 3, H, W) in [0, 1] and keys (B,) int64, each
        image's view key (evals/view_keys.py ``KeyedImages``). No labels, so that
        test labels only ever reach the metrics.
    augment: ``augment(views, params=u)`` -> same shape, per-sample SimCLR jitter/
        grayscale/crop from u (N, N_PARAMS) uniforms (``SimCLRAugment``; no flip:
        :func:`shift_views` flips).
    seed: with each key, the only source of randomness (:func:`draw_view_params`).
    amp: bf16 autocast for the forward; the averages are accumulated in float32.
    """
    if n_samples < 1:
        raise UserError(f"--ood_samples must be at least 1, got {n_samples}")
    was_training = model.training
    model.eval()
    projections, logits = [], []
    try:
        with torch.inference_mode():
            for x, keys in tqdm(loader, desc="features", disable=not progress, leave=False):
                params = draw_view_params(torch.as_tensor(keys), seed, n_samples, K)
                proj, logit = _batch_features(model, x.to(device), params, shift_kind=shift_kind,
                                              augment=augment, amp=amp)
                projections.append(proj)
                logits.append(logit)
    finally:
        model.train(was_training)
    if not projections:
        raise UserError("the evaluation loader yielded no images: is the dataset split empty?")
    return Features(projection=torch.cat(projections), shift_logits=torch.cat(logits))
