"""Classifier checkpoints that describe themselves (STYLE habit 11).

One file per checkpoint (``last.pt``, ``best.pt``) holding the format version,
the full training config, the model's constructor values and weights, and,
for ``last``, everything a resume needs (optimiser, epoch, step, RNG state).
``eval.py --load_path X`` rebuilds the model from X alone. Saves are atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from common.atomic import torch_save_atomic
from common.errors import UserError

FORMAT_VERSION = 1
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` plus the format version, atomically."""
    torch_save_atomic({"format_version": FORMAT_VERSION, **payload}, path)


def resolve_checkpoint(path: str | Path, prefer: tuple[str, ...] = CHECKPOINT_NAMES) -> Path:
    """A checkpoint file, or a log dir holding one (``best.pt`` first by default)."""
    path = Path(path)
    if path.is_dir():
        for name in prefer:
            if (path / name).is_file():
                return path / name
        raise UserError(f"--load_path {path}: no {' or '.join(prefer)} in this folder")
    if not path.is_file():
        raise UserError(f"--load_path {path}: no such checkpoint file")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with one-line errors."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise UserError(f"{path}: not a checkpoint written by this project")
    if payload["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: format version {payload['format_version']} is newer than this code")
    return payload
