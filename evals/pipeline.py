"""Feature bank -> fitted scorer -> scores: the one path shared by in-training
validation, ``eval.py`` and ``predict``.

The bank is the normal training set. Bank and target use separate
seeds, and every image its own stream of views (evals/view_keys.py), so a target
image's views depend on neither the bank nor the other targets, and the global
random state is never touched.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.augment import SimCLRAugment
from common.distributed import DistContext, gather_tensor
from evals.csi_score import CSIScorer
from evals.features import Features, extract_features
from evals.view_keys import KeyedImages


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    # An explicit generator: iterating a DataLoader otherwise draws from the global RNG.
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator())


def features_of(model: torch.nn.Module, dataset: Dataset, *, shift_kind: str, n_shifts: int, n_samples: int,
                crop_scale: tuple[float, float], seed: int, batch_size: int, device: torch.device,
                amp: bool = False, num_workers: int = 0, progress: bool = False,
                ctx: DistContext | None = None) -> Features:
    """Test-time features of every image: ``n_samples`` augmentations × K shifts, averaged per shift.

    Each image's views come from (seed, its key) alone (evals/view_keys.py), so ``batch_size``
    and the order of ``dataset`` do not change them. Under torchrun (``ctx``) each process
    extracts a contiguous shard, keyed by global index, and the shards are gathered, in
    dataset order, on every process: the features of one process, however many there are.
    """
    ctx = ctx or DistContext()
    shard = np.array_split(np.arange(len(dataset)), ctx.world_size)[ctx.rank]
    feats = extract_features(
        model, eval_loader(KeyedImages(dataset, shard), batch_size, num_workers), shift_kind=shift_kind,
        K=n_shifts, n_samples=n_samples, augment=SimCLRAugment(crop_scale=crop_scale).to(device), seed=seed,
        device=device, amp=amp, progress=progress and ctx.is_main)
    return _gather_shards(feats, len(dataset), ctx, device) if ctx.enabled else feats


def _gather_shards(feats: Features, total: int, ctx: DistContext, device: torch.device) -> Features:
    """Concatenate every process's shard in rank order (shards are padded to equal length to gather)."""
    sizes = [len(s) for s in np.array_split(np.arange(total), ctx.world_size)]
    longest = max(sizes)

    def gather(x: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=device)
        padded[: x.shape[0]] = x.to(device)
        return torch.cat([p[:n] for p, n in zip(gather_tensor(padded, ctx), sizes)]).cpu()

    return Features(projection=gather(feats.projection), shift_logits=gather(feats.shift_logits))


def fit_scorer(bank: Features, score: str = "CSI") -> CSIScorer:
    return CSIScorer(score=score).fit(bank)


def score_dataset(model: torch.nn.Module, scorer: CSIScorer, dataset: Dataset, **feature_kwargs) -> np.ndarray:
    """CSI scores (n,) of ``dataset``, higher = more normal."""
    feats = features_of(model, dataset, **feature_kwargs)
    return scorer.score(feats).cpu().numpy()


def normal_only(dataset: Dataset) -> Dataset:
    """The bank holds normal images only, also when training was contaminated (paper Table 10)."""
    labels = np.asarray(dataset.is_anomaly)
    return dataset if labels.max(initial=0) == 0 else dataset.subset(np.flatnonzero(labels == 0))
