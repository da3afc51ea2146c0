"""Seeding and RNG state capture, so that a resumed run continues exactly.

:func:`rng_state` returns tensors and plain values only, so a checkpoint that holds it loads
with ``torch.load(weights_only=True)`` and never needs to unpickle numpy objects.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global python, numpy, torch (and CUDA) generator states as tensors and plain values."""
    version, mt_words, gauss_next = random.getstate()
    _, key, pos, has_gauss, cached_gauss = np.random.get_state(legacy=True)
    state = {
        "python": {"version": version, "state": torch.tensor(mt_words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`; also accepts the raw getstate() tuples that format-1 checkpoints stored."""
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())  # CPU byte tensors, wherever the checkpoint was mapped
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _python_state(stored: dict | tuple) -> tuple:
    if not isinstance(stored, dict):
        return tuple(stored)
    return stored["version"], tuple(stored["state"].tolist()), stored["gauss_next"]


def _numpy_state(stored: dict | tuple) -> tuple:
    """numpy's legacy MT19937 tuple: (name, key (624,) uint32, pos, has_gauss, cached_gaussian)."""
    if not isinstance(stored, dict):
        return tuple(stored)
    key = stored["key"].cpu().numpy().astype(np.uint32)
    return "MT19937", key, stored["pos"], stored["has_gauss"], stored["cached_gaussian"]


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A dedicated generator, so evaluation never touches the global random state."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
