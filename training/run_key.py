"""Canonical key of a train.py flag list, so identical runs are shared between tables.

    python -m training.run_key --width 16 --epochs 10 --mode simclr_DIA ...   ->  3f9c2a1b7e

Flags are read as `--name value` pairs (a flag followed by another flag is a switch); a repeated flag keeps its
last value, as argparse does, and the order of flags does not matter.
"""
from __future__ import annotations

import hashlib
import json
import sys


def canonical(argv: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        name = argv[i]
        if not name.startswith("--"):
            raise SystemExit(f"error: run_key: expected a --flag, got {name!r}")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags[name], i = argv[i + 1], i + 2
        else:
            flags[name], i = "true", i + 1
    return dict(sorted(flags.items()))


def run_key(argv: list[str]) -> str:
    return hashlib.sha1(json.dumps(canonical(argv)).encode()).hexdigest()[:10]


if __name__ == "__main__":
    print(run_key(sys.argv[1:]))
