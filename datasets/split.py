"""Honest one-class splits: the normal class trains, validation is held aside, test is never touched.

Every loader returns :class:`RawSplits` (images with fine class labels, before
any normal class is chosen); :func:`make_one_class_split` turns it into the
:class:`OneClassSplit` that training and evaluation read:

- train: normal images only, plus ``contamination_ratio`` anomalous ones (paper Table 10);
- val: the official validation split, or ``val_fraction`` of every train class
  held aside (seeded) where there is none; model selection reads only this;
- test: the official (or manifest 7:3) test split, normal + anomalous;
- train_anomalous: anomalous train images not in val and not mixed in; never trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from datasets.base import ImageDataset

# Independent numpy streams per use, so changing one option (say the
# contamination ratio) never reshuffles another (the validation hold-out).
STREAM_VAL, STREAM_TEST, STREAM_CONTAMINATION = 1, 2, 3


def stream(seed: int, which: int) -> np.random.Generator:
    return np.random.default_rng([seed, which])


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked for; validated by ``load_one_class_split`` before any loader runs."""

    root: Path | None  # absolute; None only for `synthetic`
    image_size: int  # side S of the square images every dataset item will have
    seed: int
    download: bool
    normal_classes: tuple[str, ...] | None  # `folder` only


@dataclass(frozen=True)
class LabelledPool:
    """One official split before the one-class choice: ``labels`` (N,) int64 index ``RawSplits.class_names``.

    ``images.is_anomaly`` is a placeholder here; the split relabels rows once the normal class is known.
    """

    images: ImageDataset
    labels: np.ndarray


@dataclass(frozen=True)
class RawSplits:
    """What a loader read. ``choices[i]`` are the class names ``--one_class_idx i`` makes normal."""

    class_names: tuple[str, ...]
    choices: tuple[tuple[str, ...], ...]
    default_choice: int | None
    train: LabelledPool
    val: LabelledPool | None  # None: hold aside val_fraction of train
    test: LabelledPool
    source: str  # the file or folder read, named in errors
    image_size: int
    seeded_data: bool = False  # the images themselves depend on the seed (synthetic)


@dataclass(frozen=True)
class OneClassSplit:
    """The data of one one-class experiment; images are (3, S, S) float in [0, 1], S = ``image_size``."""

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    train_anomalous: ImageDataset | None
    image_size: int
    normal_classes: tuple[str, ...]
    anomaly_classes: tuple[str, ...]
    seed_dependent: bool = False  # train/val/test change with the split seed (no official val or test split)


def n_to_pick(n: int, fraction: float) -> int:
    """Images of an n-image class that go to the smaller side of a split: round(fraction·n),
    at least 1 and at most n − 1 when n >= 2, so both sides see every class that can be split."""
    if n < 2 or fraction <= 0.0:
        return 0
    return min(max(int(fraction * n + 0.5), 1), n - 1)


def stratified_pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A bool mask (N,) selecting :func:`n_to_pick` random images of every class in ``labels``."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        mask[rng.permutation(rows)[:n_to_pick(len(rows), fraction)]] = True
    return mask


def contamination_count(ratio: float, n_normal: int) -> int:
    """Anomalous images to add so they make up ``ratio`` of train: int(r·n/(1−r)), as upstream."""
    return int(ratio * n_normal / (1.0 - ratio))


def _describe(raw: RawSplits) -> str:
    return ", ".join(f"{i} ({' + '.join(names)})" for i, names in enumerate(raw.choices))


def resolve_normal(raw: RawSplits, one_class_idx: int | None, dataset: str) -> tuple[str, ...]:
    """The normal class names for ``--one_class_idx`` (None -> the dataset's default)."""
    idx = raw.default_choice if one_class_idx is None else one_class_idx
    if idx is None:
        raise UserError(f"--one_class_idx is required for {dataset}; valid: {_describe(raw)}")
    if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not 0 <= idx < len(raw.choices):
        raise UserError(f"--one_class_idx {idx} is not a class of {dataset}; valid: {_describe(raw)}")
    return raw.choices[idx]


def _relabel(pool: LabelledPool, normal_ids: np.ndarray, rows: np.ndarray | None = None) -> ImageDataset:
    rows = np.arange(len(pool.labels)) if rows is None else rows
    is_anomaly = (~np.isin(pool.labels[rows], normal_ids)).astype(np.int64)
    return pool.images.subset(rows, is_anomaly=is_anomaly)


def _contaminate(anomalous: np.ndarray, n_normal: int, ratio: float, seed: int) -> np.ndarray:
    """The anomalous train rows mixed into train (sorted); a UserError when there are too few."""
    n = contamination_count(ratio, n_normal)
    if n > len(anomalous):
        raise UserError(f"--contamination_ratio {ratio} needs {n} anomalous training images but only "
                        f"{len(anomalous)} are available outside validation")
    return np.sort(stream(seed, STREAM_CONTAMINATION).choice(anomalous, size=n, replace=False))


def make_one_class_split(raw: RawSplits, dataset: str, one_class_idx: int | None, *,
                         contamination_ratio: float = 0.0, seed: int = 0,
                         val_fraction: float = 0.1) -> OneClassSplit:
    """Choose the normal class, hold aside validation, optionally contaminate train (see module doc)."""
    normal = resolve_normal(raw, one_class_idx, dataset)
    normal_ids = np.array([raw.class_names.index(name) for name in normal])
    labels = raw.train.labels
    if raw.val is None:
        in_val = stratified_pick(labels, val_fraction, stream(seed, STREAM_VAL))
        val = _relabel(raw.train, normal_ids, np.flatnonzero(in_val))
    else:
        in_val = np.zeros(len(labels), dtype=bool)
        val = _relabel(raw.val, normal_ids)
    is_normal = np.isin(labels, normal_ids)
    normal_rows = np.flatnonzero(is_normal & ~in_val)
    anomalous_rows = np.flatnonzero(~is_normal & ~in_val)
    if len(normal_rows) == 0:
        raise UserError(f"no normal training images: class {' + '.join(normal)} of {dataset} is empty "
                        f"in {raw.source}")
    mixed = _contaminate(anomalous_rows, len(normal_rows), contamination_ratio, seed)
    held = np.setdiff1d(anomalous_rows, mixed)
    return OneClassSplit(
        name=dataset,
        train=_relabel(raw.train, normal_ids, np.concatenate([normal_rows, mixed])),
        val=val,
        test=_relabel(raw.test, normal_ids),
        train_anomalous=_relabel(raw.train, normal_ids, held) if len(held) else None,
        image_size=raw.image_size,
        normal_classes=tuple(normal),
        anomaly_classes=tuple(name for name in raw.class_names if name not in normal),
        seed_dependent=raw.val is None or raw.seeded_data,
    )
