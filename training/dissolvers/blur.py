"""Heuristic dissolvers: Gaussian and median blur (the paper's ablation).

Same interface and geometry as the diffusion dissolver: down-sample to the
dissolving resolution R, filter, up-sample back, so that the only difference from
:class:`~diffusion_models.dissolver.Dissolver` is the filter. Both filters pad
with zeros, as upstream's (kornia's median blur always does; upstream's
Gaussian convolution did too).
"""
from __future__ import annotations

from typing import Callable, Literal

import kornia
import torch
from torch import nn

from common.config import DissolveConfig
from common.errors import UserError
from diffusion_models.resample import Resampler

BlurKind = Literal["gaussian", "median"]
BLUR_RESOLUTION = 32  # the default dissolving resolution R of the filters (paper Table 9: 32 is best)


def opencv_sigma(kernel_size: int) -> float:
    """OpenCV's σ for ``sigma=0``: 0.3·((k − 1)/2 − 1) + 0.8 (1.4 for k = 7), as upstream."""
    return 0.3 * ((kernel_size - 1) / 2 - 1) + 0.8


def gaussian_filter(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    sigma = opencv_sigma(kernel_size)
    return kornia.filters.gaussian_blur2d(x, (kernel_size, kernel_size), (sigma, sigma), border_type="constant")


def median_filter(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    return kornia.filters.median_blur(x, (kernel_size, kernel_size))


BLUR_FILTERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "gaussian": gaussian_filter,
    "median": median_filter,
}


class BlurDissolver(nn.Module):
    """(B, C, S, S) in [0, 1] → same shape in [0, 1]; deterministic, so ``t``/``generator`` are ignored.

    ``kernel_size`` is odd; 1 is the identity filter (only the resampling remains,
    which is lossless for the 28 → 32 pad).
    """

    def __init__(self, kind: BlurKind, kernel_size: int, image_size: int, resolution: int = BLUR_RESOLUTION):
        super().__init__()
        if kind not in BLUR_FILTERS:
            raise UserError(f"unknown blur kind {kind!r}; valid: {', '.join(BLUR_FILTERS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise UserError(f"--kernel_size must be a positive odd number, got {kernel_size}")
        self.kind = kind
        self.kernel_size = kernel_size
        self.resampler = Resampler(image_size, resolution)
        self._filter = BLUR_FILTERS[kind]

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor | int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        blurred = self._filter(self.resampler.down(x), self.kernel_size)
        return self.resampler.up(blurred).clamp(0, 1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, kernel_size={self.kernel_size}, {self.resampler!r}"


def _build(kind: BlurKind, cfg: DissolveConfig, image_size: int, device: torch.device,
           kernel_size: int | None = None) -> BlurDissolver:
    kernel = cfg.setting("kernel_size") if kernel_size is None else kernel_size
    return BlurDissolver(kind, kernel, image_size=image_size, resolution=cfg.resolution or BLUR_RESOLUTION).to(device)


def build_gaussian(cfg: DissolveConfig, image_size: int, device: torch.device) -> BlurDissolver:
    return _build("gaussian", cfg, image_size, device)


def build_median(cfg: DissolveConfig, image_size: int, device: torch.device) -> BlurDissolver:
    return _build("median", cfg, image_size, device)


def build_resize_only(cfg: DissolveConfig, image_size: int, device: torch.device) -> BlurDissolver:
    """Paper Table 8 "resize only": down to R and back, no filter (a kernel-1 blur)."""
    return _build("gaussian", cfg, image_size, device, kernel_size=1)
