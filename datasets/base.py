"""Image datasets as every loader returns them.

``ds[i] -> (image float32 (3, S, S) in [0, 1], is_anomaly int)`` (docs/ARCHITECTURE.md):
grayscale is repeated to 3 channels and every image is resized to the split's
side ``S`` at load time, so the models and the dissolver see one format.
``ds.is_anomaly`` (int64, (N,)) is available without decoding a single image.
"""
from __future__ import annotations

import struct
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from common.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CACHE_MAX_SIZE = 64  # file-backed sets at or below this side keep decoded images in RAM by default
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                  Image.DecompressionBombError)
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _as_index(indices) -> np.ndarray:
    """Row indices (int64) from an index sequence or a boolean mask."""
    idx = np.asarray(indices)
    if idx.dtype == bool:
        return np.flatnonzero(idx)
    return idx.astype(np.int64).reshape(-1)


def fit_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) float in [0, 1], C in {1, 3} -> (3, size, size) float in [0, 1].

    Bilinear with antialias, as torchvision's Resize on PIL images that upstream
    used for its 224 px sets.
    """
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if tuple(x.shape[1:]) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0.0, 1.0)
    return x.contiguous()


class ImageDataset(Dataset, ABC):
    """A list of images with a 0/1 anomaly label each; ``subset`` selects rows without copying images."""

    paths: list[str] | None = None

    def __init__(self, is_anomaly, image_size: int) -> None:
        self.is_anomaly = np.asarray(is_anomaly, dtype=np.int64).reshape(-1)
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.is_anomaly)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.is_anomaly[index])  # IndexError past the end ends plain iteration
        return self._image(int(index)), label

    @abstractmethod
    def _image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""

    @abstractmethod
    def subset(self, indices: Sequence[int] | np.ndarray, is_anomaly=None) -> ImageDataset:
        """Rows ``indices`` (ints or a bool mask); ``is_anomaly`` relabels them (used by the one-class split)."""


class TensorImageDataset(ImageDataset):
    """In-memory images: uint8 (N, C, H, W), C in {1, 3} (MedMNIST, CIFAR, synthetic).

    Images stay at their stored size and are resized per item, so asking a
    28 px set for 224 px costs no extra memory.
    """

    def __init__(self, images: torch.Tensor, is_anomaly, image_size: int | None = None,
                 rows: np.ndarray | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, C, H, W) with C in {{1, 3}}, got "
                             f"{images.dtype} {tuple(images.shape)}")
        super().__init__(is_anomaly, image_size or images.shape[-1])
        self.images = images
        self.rows = np.arange(len(images)) if rows is None else rows
        if len(self.rows) != len(self.is_anomaly):
            raise ValueError(f"{len(self.rows)} images but {len(self.is_anomaly)} labels")

    def _image(self, index: int) -> torch.Tensor:
        x = self.images[int(self.rows[index])].float().div_(255.0)
        return fit_image(x, self.image_size)

    def subset(self, indices, is_anomaly=None) -> TensorImageDataset:
        idx = _as_index(indices)
        labels = self.is_anomaly[idx] if is_anomaly is None else is_anomaly
        return TensorImageDataset(self.images, labels, self.image_size, rows=self.rows[idx])


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB. High-bit gray maps linearly: from [0, 65535] when it exceeds 255
    (16-bit scans), from [0, 1] for float images that stay within it, as is otherwise."""
    if img.mode in _HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max(initial=0.0)
        scale = 255.0 / 65535.0 if peak > 255.0 else 255.0 if img.mode == "F" and peak <= 1.0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0.0, 255.0).round().astype(np.uint8), mode="L")
    return img.convert("RGB")


def decode_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Decode ``path`` -> uint8 (3, S, S): RGB, resized bilinear with antialias (PIL, as upstream)."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = _to_rgb(img)
        if rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        arr = np.array(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"cannot read image file {path}: {reason}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image_file(path: str | Path, image_size: int) -> torch.Tensor:
    """One image file -> float32 (3, S, S) in [0, 1], exactly as the file-backed datasets load it."""
    return decode_image(path, image_size).float().div_(255.0)


class FileImageDataset(ImageDataset):
    """Images decoded from files on access (folder datasets); ``paths`` are absolute.

    ``cache`` (default: on when S <= 64) keeps each decoded uint8 image in RAM
    after its first read, so fast CPU runs at small sizes decode every file once.
    With DataLoader workers each worker fills its own copy.
    """

    def __init__(self, paths: Sequence[str | Path], is_anomaly, image_size: int,
                 cache: bool | None = None) -> None:
        super().__init__(is_anomaly, image_size)
        self.paths = [str(p) for p in paths]
        if len(self.paths) != len(self.is_anomaly):
            raise ValueError(f"{len(self.paths)} paths but {len(self.is_anomaly)} labels")
        self.cache = self.image_size <= CACHE_MAX_SIZE if cache is None else bool(cache)
        self._store: torch.Tensor | None = None  # uint8 (N, 3, S, S), allocated on first read
        self._filled = np.zeros(len(self.paths), dtype=bool)

    def _image(self, index: int) -> torch.Tensor:
        if not self.cache:
            return load_image_file(self.paths[index], self.image_size)
        if self._store is None:
            self._store = torch.empty((len(self.paths), 3, self.image_size, self.image_size), dtype=torch.uint8)
        if not self._filled[index]:
            self._store[index] = decode_image(self.paths[index], self.image_size)
            self._filled[index] = True
        return self._store[index].float().div_(255.0)

    def subset(self, indices, is_anomaly=None) -> FileImageDataset:
        idx = _as_index(indices)
        labels = self.is_anomaly[idx] if is_anomaly is None else is_anomaly
        return FileImageDataset([self.paths[i] for i in idx], labels, self.image_size, cache=self.cache)
