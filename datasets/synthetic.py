"""Tiny fine-grained one-class data, generated in memory for tests and examples.

A normal image is a smooth texture: a few random low-frequency sinusoids per
image, lightly tinted per channel, plus faint pixel noise. An anomalous image
is a normal one with a single tiny lesion: a 2-4 px square that is brighter or
darker than the texture around it. Everything else is identical, so the
anomaly is a small local detail, the fine-grained case DIA targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from datasets.base import TensorImageDataset
from datasets.specs import DatasetSpec
from datasets.split import LabelledPool, LoadRequest, RawSplits

N_WAVES = 3
LESION_SIDES = (2, 3, 4)
LESION_BRIGHT, LESION_DARK = 0.95, 0.05  # the texture stays in [0.2, 0.8], so a lesion differs by >= 0.15


@dataclass(frozen=True)
class SyntheticSet:
    """images, clean: uint8 (N, 3, S, S); ``clean`` is the image before its lesion (== images if normal).
    is_anomaly: int64 (N,); lesion: bool (N, S, S), the lesion's pixels (all False if normal)."""

    images: torch.Tensor
    clean: torch.Tensor
    is_anomaly: np.ndarray
    lesion: np.ndarray


@dataclass(frozen=True)
class SyntheticData:
    train: SyntheticSet
    val: SyntheticSet
    test: SyntheticSet


def _textures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, 3, S, S) float32 in [0.2, 0.8]: a sum of N_WAVES plane waves of 0.5-2.5 cycles per image.

    A plane wave sin(u(x) + v(y)) is evaluated as sin u cos v + cos u sin v, so only
    (n, S) sines are computed (keeps ``load_one_class_split("synthetic")`` fast).
    """
    coords = (np.arange(size, dtype=np.float32) / size)[None]  # (1, S)
    field = np.zeros((n, size, size), dtype=np.float32)
    for _ in range(N_WAVES):
        freq, theta, phase, amp = (rng.uniform(lo, hi, (n, 1)).astype(np.float32) for lo, hi in
                                   ((0.5, 2.5), (0.0, np.pi), (0.0, 2 * np.pi), (0.3, 1.0)))
        u = 2 * np.pi * freq * np.cos(theta) * coords + phase  # (n, S) along x
        v = 2 * np.pi * freq * np.sin(theta) * coords  # (n, S) along y
        field += amp[:, :, None] * (np.cos(v)[:, :, None] * np.sin(u)[:, None, :]
                                    + np.sin(v)[:, :, None] * np.cos(u)[:, None, :])
    low, high = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    field = 0.3 + 0.4 * (field - low) / np.maximum(high - low, 1e-6)  # [0.3, 0.7]
    tint = rng.uniform(0.9, 1.1, (n, 3, 1, 1)).astype(np.float32)
    noise = rng.standard_normal((n, 3, size, size), dtype=np.float32) * 0.01
    return np.clip(field[:, None] * tint + noise, 0.2, 0.8)


def _lesions(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """bool masks (n, S, S) of one square of side 2-4 px fully inside the image, and their values (n,)."""
    side = rng.choice(LESION_SIDES, size=n)
    x0 = rng.integers(1, size - side)  # keeps a 1 px margin on both sides
    y0 = rng.integers(1, size - side)
    coords = np.arange(size)
    in_x = (coords >= x0[:, None]) & (coords < (x0 + side)[:, None])
    in_y = (coords >= y0[:, None]) & (coords < (y0 + side)[:, None])
    value = np.where(rng.random(n) < 0.5, LESION_BRIGHT, LESION_DARK)
    return in_y[:, :, None] & in_x[:, None, :], value


def _make_set(rng: np.random.Generator, n: int, n_anomalous: int, size: int) -> SyntheticSet:
    clean = _textures(rng, n, size)
    is_anomaly = np.zeros(n, dtype=np.int64)
    is_anomaly[rng.permutation(n)[:n_anomalous]] = 1
    lesion = np.zeros((n, size, size), dtype=bool)
    rows = np.flatnonzero(is_anomaly)
    lesion[rows], value = _lesions(rng, len(rows), size)
    images = clean.copy()
    images[rows] = np.where(lesion[rows][:, None], value[:, None, None, None], clean[rows])

    def to_uint8(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x * 255.0 + 0.5).astype(np.uint8))

    return SyntheticSet(to_uint8(images), to_uint8(clean), is_anomaly, lesion)


def make_synthetic(n_train: int = 256, n_val: int = 64, n_test: int = 128, image_size: int = 32,
                   seed: int = 0) -> SyntheticData:
    """Deterministic by ``seed``: train is all normal; val and test are half anomalous (n // 2)."""
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 for a lesion to fit, got {image_size}")
    rng = np.random.default_rng(seed)
    return SyntheticData(train=_make_set(rng, n_train, 0, image_size),
                         val=_make_set(rng, n_val, n_val // 2, image_size),
                         test=_make_set(rng, n_test, n_test // 2, image_size))


def load_synthetic(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """``make_synthetic`` with its default counts at side ``req.image_size``; labels 0 normal, 1 lesion."""
    data = make_synthetic(image_size=req.image_size, seed=req.seed)

    def pool(part: SyntheticSet) -> LabelledPool:
        return LabelledPool(TensorImageDataset(part.images, part.is_anomaly), part.is_anomaly.copy())

    return RawSplits(class_names=spec.class_names, choices=spec.classes,
                     default_choice=spec.normal_class_default, train=pool(data.train), val=pool(data.val),
                     test=pool(data.test), source="synthetic data", image_size=req.image_size,
                     seeded_data=True)
