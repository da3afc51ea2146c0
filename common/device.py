"""Device choice (CUDA when present, else CPU) and whether bf16 autocast pays on it."""
from __future__ import annotations

import sys

import torch


def default_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively.

    CUDA: compute capability 8.0 or newer. CPU: oneDNN's check for AVX512-BF16 or AMX; without them
    bf16 is emulated and slower than fp32, so ``--amp`` must not be turned on there.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def resolve_amp(amp: bool, device: torch.device, flag: str = "--amp") -> bool:
    """``amp`` if the device has native bf16; otherwise one line on stderr and ``False`` (fp32)."""
    if amp and not native_bf16(device):
        print(f"{flag}: {device.type} has no native bf16 here; running in fp32", file=sys.stderr)
        return False
    return amp
