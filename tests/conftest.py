"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny tensors: one intra-op thread is faster than two, and far faster when the
# other core is busy (thread hand-offs dominate). Subprocesses inherit the env.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# The real data shipped next to the repo (../shared/data); tests that need it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real BreastMNIST npz, 224 px chest X-rays), or a skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
