"""Bring images to the DDPM resolution and back.

The DDPM sees R×R images (R = 32 by default). MedMNIST's 28-px images are
zero-padded to 32 and centre-cropped back, as upstream does (it asserts R = 32
for MedMNIST); every other size is resized to R and
back, bilinear with antialias. The same geometry serves DDPM training, the
diffusion dissolver and the blur dissolvers, so all three see the same pixels.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from common.errors import UserError

MEDMNIST_SIZE = 28
MEDMNIST_RESOLUTION = 32


def _pad(x: torch.Tensor, margin: int) -> torch.Tensor:
    return F.pad(x, (margin, margin, margin, margin))


def _crop(x: torch.Tensor, margin: int) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def resample_mode(image_size: int, resolution: int) -> str:
    """Which geometry maps ``image_size`` images to the DDPM ``resolution``.

    Returns ``"identity"``, ``"pad"`` (28 → 32) or ``"resize"``. Raises
    :class:`UserError` for 28-px images at any resolution other than 32: the
    DDPM for MedMNIST is trained on padded 32-px images, and a resized 28-px
    image would be a different input distribution.
    """
    if image_size < 1 or resolution < 1:
        raise UserError(f"image size {image_size} and DDPM resolution {resolution} must be positive")
    if image_size == resolution:
        return "identity"
    if image_size == MEDMNIST_SIZE:
        if resolution != MEDMNIST_RESOLUTION:
            raise UserError(
                f"{MEDMNIST_SIZE}-px images need a DDPM resolution of {MEDMNIST_RESOLUTION} "
                f"(zero-padded), got {resolution}"
            )
        return "pad"
    return "resize"


class Resampler:
    """``down``: (B, C, S, S) → (B, C, R, R); ``up``: (B, C, R, R) → (B, C, S, S).

    S = ``image_size``, R = ``resolution``. Values are not rescaled; bilinear
    resizing and zero padding keep [0, 1] inputs in [0, 1].
    """

    def __init__(self, image_size: int, resolution: int):
        self.image_size = image_size
        self.resolution = resolution
        self.mode = resample_mode(image_size, resolution)
        margin = (resolution - image_size) // 2
        table: dict[str, tuple[Callable, Callable]] = {
            "identity": (lambda x: x, lambda x: x),
            "pad": (lambda x: _pad(x, margin), lambda x: _crop(x, margin)),
            "resize": (lambda x: _resize(x, resolution), lambda x: _resize(x, image_size)),
        }
        self._down, self._up = table[self.mode]

    def down(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.image_size)
        return self._down(x)

    def up(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, self.resolution)
        return self._up(x)

    @staticmethod
    def _check(x: torch.Tensor, size: int) -> None:
        if x.ndim != 4 or x.shape[-2:] != (size, size):
            raise ValueError(f"expected images of shape (B, C, {size}, {size}), got {tuple(x.shape)}")

    def __repr__(self) -> str:
        return f"Resampler({self.image_size} -> {self.resolution}, {self.mode})"
