"""One stream of test-time views per image, so that an image's score never depends on its neighbours.

Every image carries an integer key, and all of its random view parameters come from one
generator seeded from (seed, key) alone (evals/features.py). Its features are then the same
at any batch position, in any batch size, in any order, with any other images, and on any
torchrun shard. The key is:

- for an image with a file (``dataset.paths``), the file's content: the first 8 bytes of its
  SHA-256. So ``eval.py --mode predict`` on a file reproduces the score eval.py gave it in its
  split, alone or in any folder, and a renamed or moved copy scores the same;
- otherwise (in-memory MedMNIST, CIFAR, synthetic), its index in the dataset being evaluated:
  the same in every process, as each shard keeps the global index.

Bank and target use different seeds (evals/run.py), so identical images there draw different views.
"""
from __future__ import annotations

import functools
import hashlib
import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

KEY_BYTES = 8  # a key is a non-negative int63: the digest's first 8 bytes, top bit dropped


@functools.lru_cache(maxsize=None)
def _digest_key(path: str, size: int, mtime_ns: int) -> int:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").digest()
    return int.from_bytes(digest[:KEY_BYTES], "big") >> 1


def file_key(path: str | os.PathLike) -> int:
    """The view key of an image file, in [0, 2^63): a hash of its bytes, not of its name.

    Cached per (path, size, mtime), so repeated validation passes read each file's bytes once.
    """
    stat = os.stat(path)
    return _digest_key(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


def stream_seed(seed: int, key: int) -> int:
    """The 64-bit generator seed of image ``key`` under run seed ``seed``.

    numpy's SeedSequence hashes the pair, so nearby pairs give unrelated streams: with
    seed + key, image 1 of seed s would replay image 0 of seed s + 1.
    """
    return int(np.random.SeedSequence([seed % 2**64, key]).generate_state(1, np.uint64)[0])


def view_generator(seed: int, key: int) -> torch.Generator:
    """A CPU generator whose draws depend on (seed, key) only; never the global random state."""
    return torch.Generator().manual_seed(stream_seed(seed, key))


def view_keys(dataset: Dataset, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """(len(indices),) int64 keys of the rows ``indices`` of ``dataset``: content hashes of its
    ``paths`` where it has them, the row indices themselves otherwise."""
    indices = np.asarray(indices, dtype=np.int64)
    paths = getattr(dataset, "paths", None)
    if paths is None:
        return indices
    return np.array([file_key(paths[i]) for i in indices], dtype=np.int64).reshape(-1)


class KeyedImages(Dataset):
    """Rows ``indices`` of an image dataset with their view keys:
    ``[j] -> (image float32 (3, S, S) in [0, 1], key int)``; the label is dropped, so test
    labels never reach feature extraction."""

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.keys = view_keys(dataset, self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int]:
        image = self.dataset[int(self.indices[j])][0]
        return image, int(self.keys[j])
