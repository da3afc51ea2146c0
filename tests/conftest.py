"""Shared pytest fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

# The real data shipped next to the repo (../shared/data); tests that need it skip without it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real BreastMNIST npz, 224 px chest X-rays), or a skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
