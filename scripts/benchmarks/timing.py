"""The timing loop the benchmarks share: warm-up calls, then the mean over timed calls (CUDA synchronised)."""
from __future__ import annotations

import time
from typing import Callable

import torch


def seconds_per_call(fn: Callable[[], object], iters: int, warmup: int, device: torch.device) -> float:
    """Mean seconds of ``fn()`` over ``iters`` calls after ``warmup`` untimed ones (compilation, graph capture)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters
