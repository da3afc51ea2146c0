"""The seeded 7:3 train/test split of datasets without an official test split, kept in a manifest.

The paper's APTOS, Kvasir and COVID numbers use random 7:3 splits.
The first load writes the split (relative paths) to ``dia_split_seed<seed>.json``
in the data root, or under ``~/.cache/dia/<hash of the root>/`` when the root is
read-only; later loads reuse it, so every run on that root sees the same split.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from common.atomic import json_dump_atomic
from common.errors import UserError
from datasets.split import STREAM_TEST, stratified_pick, stream

TEST_FRACTION = 0.3
FORMAT_VERSION = 1


def manifest_name(seed: int) -> str:
    return f"dia_split_seed{seed}.json"


def cache_dir(root: Path) -> Path:
    """Where the manifest of a read-only root goes: ``~/.cache/dia/<sha256(root)[:16]>/``."""
    return Path.home() / ".cache" / "dia" / hashlib.sha256(str(root).encode()).hexdigest()[:16]


def manifest_candidates(root: Path, seed: int) -> tuple[Path, Path]:
    """The manifest locations, in the order they are read and written."""
    return root / manifest_name(seed), cache_dir(root) / manifest_name(seed)


def _read(path: Path, relpaths: Sequence[str], image_root: Path) -> np.ndarray:
    """The bool test mask (N,) a manifest gives ``relpaths``; it must list exactly these files."""
    try:
        data = json.loads(path.read_text())
        train, test = set(data["train"]), set(data["test"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"split manifest {path} is unreadable ({type(err).__name__}: {err}); "
                        "delete it to re-split") from None
    present = set(relpaths)
    gone = sorted((train | test) - present)
    if gone:
        raise UserError(f"split manifest {path} lists {len(gone)} image(s) that are gone, e.g. "
                        f"{image_root / gone[0]}; restore them or delete the manifest to re-split")
    unlisted = sorted(present - train - test)
    if unlisted:
        raise UserError(f"{len(unlisted)} image(s) are not in split manifest {path}, e.g. "
                        f"{image_root / unlisted[0]}; delete the manifest to re-split")
    both = sorted(train & test)
    if both:
        raise UserError(f"split manifest {path} puts {both[0]} in both train and test; delete it to re-split")
    return np.array([p in test for p in relpaths], dtype=bool)


def _write(data: dict, root: Path, seed: int) -> None:
    attempts = []
    for path in manifest_candidates(root, seed):
        try:
            json_dump_atomic(data, path)
            return
        except OSError as err:
            attempts.append(f"{path} ({err.strerror or err})")
    raise UserError(f"cannot write the split manifest to {' or '.join(attempts)}")


def manifest_test_mask(root: Path, relpaths: Sequence[str], labels: np.ndarray, seed: int, dataset: str,
                       image_root: Path | None = None) -> np.ndarray:
    """Which of ``relpaths`` (relative to ``image_root``, default ``root``) are test images.

    An existing manifest is reused; otherwise a split stratified by ``labels``
    (``TEST_FRACTION`` of every class, seeded) is made and written first.
    """
    image_root = root if image_root is None else image_root
    for path in manifest_candidates(root, seed):
        if path.exists():
            return _read(path, relpaths, image_root)
    is_test = stratified_pick(np.asarray(labels), TEST_FRACTION, stream(seed, STREAM_TEST))
    data = {"format": FORMAT_VERSION, "dataset": dataset, "seed": seed, "test_fraction": TEST_FRACTION,
            "train": [p for p, t in zip(relpaths, is_test) if not t],
            "test": [p for p, t in zip(relpaths, is_test) if t]}
    _write(data, root, seed)
    return is_test
