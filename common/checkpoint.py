"""Classifier checkpoints that describe themselves.

One file per checkpoint (``last.pt``, ``best.pt``) holding the format version,
the full training config, the model's constructor values and weights, and,
for ``last``, everything a resume needs (optimiser, epoch, step, RNG state).
``eval.py --load_path X`` rebuilds the model from X alone. Saves are atomic.

A checkpoint holds tensors and plain values only (dicts, lists, tuples, str,
numbers, None) and is read with ``torch.load(weights_only=True)``, so a file
shared by someone else cannot run code when it is loaded: anything else in it
is refused with a one-line error naming the file.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core.multiarray import _reconstruct

from common.atomic import torch_save_atomic
from common.errors import UserError

# 2: the RNG state is stored as tensors and plain values (common.seed.rng_state), not numpy objects.
FORMAT_VERSION = 2
CHECKPOINT_NAMES = ("best.pt", "last.pt")

# Format-1 files held numpy's MT19937 state as a uint32 ndarray. These constructors only rebuild
# an array from its bytes, so allowing them lets those files load (for eval and resume) without
# allowing code; ``numpy.core`` is the name numpy 1.x pickled the same function under.
_FORMAT1_NUMPY = [np.ndarray, np.dtype, np.dtypes.UInt32DType, _reconstruct,
                  (_reconstruct, "numpy.core.multiarray._reconstruct")]


_PLAIN = (type(None), bool, int, float, str)


def check_plain(value: Any, where: str = "payload") -> None:
    """Raise TypeError unless ``value`` is tensors and plain values all the way down, i.e. what
    ``torch.load(weights_only=True)`` reads back. Exact types: a numpy float is a float subclass
    that would be pickled as a numpy object."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return
    if type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            check_plain(key, f"{where} key {key!r}")
            check_plain(item, f"{where}[{key!r}]")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    else:
        raise TypeError(f"{where} is a {type(value).__qualname__}: a checkpoint holds only tensors and plain values")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors and plain values only, checked) plus the format version, atomically."""
    check_plain(payload)
    torch_save_atomic({"format_version": FORMAT_VERSION, **payload}, path)


def resolve_checkpoint(path: str | Path, prefer: tuple[str, ...] = CHECKPOINT_NAMES,
                       flag: str = "--load_path") -> Path:
    """A checkpoint file, or a log dir holding one (``best.pt`` first by default).

    ``flag`` is the option the user gave ``path`` with, so that the error names it."""
    path = Path(path)
    if path.is_dir():
        for name in prefer:
            if (path / name).is_file():
                return path / name
        raise UserError(f"{flag} {path}: no {' or '.join(prefer)} in this folder")
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such checkpoint file")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with one-line errors; never runs code."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_FORMAT1_NUMPY):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, foreign, or holding objects that would need code to rebuild
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}; only tensors and plain "
                        "values are loaded)") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise UserError(f"{path}: not a checkpoint written by this project")
    if payload["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: format version {payload['format_version']} is newer than this code")
    return payload
