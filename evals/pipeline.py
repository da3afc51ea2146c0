"""Feature bank -> fitted scorer -> scores: the one path shared by in-training
validation, ``eval.py`` and ``predict``.

The bank is the normal training set (METHOD §4). Bank and target use separate
seeded generators, so the target's test-time views do not depend on the size
of the bank, and the global random state is never touched.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.distributed import DistContext, gather_tensor
from common.seed import make_generator
from evals.csi_score import CSIScorer
from evals.features import Features, extract_features
from training.augment import SimCLRAugment


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    # An explicit generator: iterating a DataLoader otherwise draws from the global RNG.
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator())


def features_of(model: torch.nn.Module, dataset: Dataset, *, shift_kind: str, n_shifts: int, n_samples: int,
                crop_scale: tuple[float, float], seed: int, batch_size: int, device: torch.device,
                amp: bool = False, num_workers: int = 0, progress: bool = False,
                ctx: DistContext | None = None) -> Features:
    """Test-time features of every image: ``n_samples`` augmentations × K shifts, averaged per shift.

    Under torchrun (``ctx``) each process extracts a contiguous shard with its
    own generator (seed + rank) and the shards are gathered, in dataset order,
    on every process.
    """
    ctx = ctx or DistContext()
    shard = np.array_split(np.arange(len(dataset)), ctx.world_size)[ctx.rank]
    part = dataset if not ctx.enabled else dataset.subset(shard)
    feats = extract_features(
        model, eval_loader(part, batch_size, num_workers), shift_kind=shift_kind, K=n_shifts,
        n_samples=n_samples, augment=SimCLRAugment(crop_scale=crop_scale).to(device),
        generator=make_generator(seed + ctx.rank), device=device, amp=amp, progress=progress and ctx.is_main)
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
