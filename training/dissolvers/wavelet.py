"""Wavelet shrinkage as a dissolver: the classic model-free way to remove fine detail.

At the dissolving resolution R (as the blurs and the DDPM), the image is split into ``--wavelet_levels`` levels of
the orthonormal 2-D Haar transform; every detail coefficient is soft-thresholded by ``--wavelet_threshold``
(sign(w)·max(|w| − λ, 0)) and the image is put back together. An orthonormal transform keeps the scale of pixel
noise, so λ reads in pixel units like ``--noise_std``: detail weaker than λ is wiped out, stronger detail is
shrunk by λ. λ = 0 returns the image; a large λ leaves the 2^L × 2^L block means. Deterministic: ``generator`` is
ignored.
"""
from __future__ import annotations

import torch
from torch import nn

from common.config import DissolveConfig
from common.errors import UserError
from diffusion_models.resample import Resampler
from training.dissolvers.blur import BLUR_RESOLUTION


def haar_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H, W) with even H, W -> the approximation (..., H/2, W/2) and the three details (..., 3, H/2, W/2)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    approx = (a + b + c + d) / 2
    details = torch.stack(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2), dim=-3)
    return approx, details


def haar_merge(approx: torch.Tensor, details: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`haar_split`."""
    h, v, g = details.unbind(dim=-3)
    out = approx.new_empty((*approx.shape[:-2], 2 * approx.shape[-2], 2 * approx.shape[-1]))
    out[..., 0::2, 0::2] = (approx + h + v + g) / 2
    out[..., 0::2, 1::2] = (approx - h + v - g) / 2
    out[..., 1::2, 0::2] = (approx + h - v - g) / 2
    out[..., 1::2, 1::2] = (approx - h - v + g) / 2
    return out


def wavelet_shrink(x: torch.Tensor, threshold: float, levels: int) -> torch.Tensor:
    """Soft-threshold the Haar details of ``levels`` levels; H and W must be divisible by 2**levels."""
    if levels == 0:
        return x
    approx, details = haar_split(x)
    shrunk = details.sign() * (details.abs() - threshold).clamp_min(0)
    return haar_merge(wavelet_shrink(approx, threshold, levels - 1), shrunk)


class WaveletDissolver(nn.Module):
    """(B, C, S, S) in [0, 1] -> same shape in [0, 1]: Haar shrinkage at resolution R, resampled back."""

    def __init__(self, threshold: float, levels: int, image_size: int, resolution: int = BLUR_RESOLUTION):
        super().__init__()
        if resolution % 2 ** levels:
            raise UserError(f"--wavelet_levels {levels} needs a dissolving resolution divisible by {2 ** levels}, "
                            f"got --diff_resolution {resolution}")
        self.threshold, self.levels = threshold, levels
        self.resampler = Resampler(image_size, resolution)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor | int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        small = wavelet_shrink(self.resampler.down(x), self.threshold, self.levels)
        return self.resampler.up(small).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, levels={self.levels}, {self.resampler!r}"


def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> WaveletDissolver:
    return WaveletDissolver(cfg.setting("wavelet_threshold"), cfg.setting("wavelet_levels"), image_size=image_size,
                            resolution=cfg.resolution or BLUR_RESOLUTION).to(device)
