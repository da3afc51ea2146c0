"""MedMNIST 2-D flags, read offline from the official npz file.

``<data_root>/<flag>.npz`` holds ``{train,val,test}_images`` (uint8 (N, 28, 28)
gray or (N, 28, 28, 3) RGB) and ``{train,val,test}_labels`` (N, 1), or (N, L)
for multi-label flags, which become binary any(label) as upstream does for
chestmnist. The official train/val/test splits are used as they are. When
the requested side is a MedMNIST+ size (64/128/224) and ``<flag>_<size>.npz``
exists, that file is read instead of upsampling the 28 px one.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from datasets.base import TensorImageDataset
from datasets.specs import MEDMNIST_PLUS_SIZES, DatasetSpec
from datasets.split import LabelledPool, LoadRequest, RawSplits

SPLITS = ("train", "val", "test")
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def npz_path(root: Path, flag: str, size: int) -> Path:
    """The official file name: ``<flag>.npz`` at 28 px, ``<flag>_<size>.npz`` for MedMNIST+."""
    return root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")


def _url(flag: str, size: int) -> str:
    from medmnist import INFO  # deferred: see datasets/specs.py

    return INFO[flag]["url" if size == 28 else f"url_{size}"]


def _download(flag: str, root: Path, size: int) -> None:
    """Fetch the npz with medmnist's own downloader (checks the official MD5)."""
    import medmnist

    dataset_class = getattr(medmnist, medmnist.INFO[flag]["python_class"])
    try:
        dataset_class(split="train", root=str(root), download=True, size=size)
    except (RuntimeError, OSError) as err:
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"--download of {npz_path(root, flag, size)} failed ({reason}); fetch "
                        f"{_url(flag, size)} into {root} by hand") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All six arrays of an official MedMNIST npz, in memory."""
    keys = [f"{split}_{what}" for split in SPLITS for what in ("images", "labels")]
    try:
        with np.load(path) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise UserError(f"{path} is not a MedMNIST npz: key {missing[0]} is missing")
            return {key: npz[key] for key in keys}
    except _NPZ_ERRORS as err:
        raise UserError(f"cannot read {path}: {' '.join(str(err).split())}") from None


def _images(arr: np.ndarray, path: Path, key: str) -> torch.Tensor:
    """(N, H, W) or (N, H, W, 3) uint8 -> (N, C, H, W) uint8."""
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
        raise UserError(f"{path}: {key} must be uint8 (N, H, W[, 3]), got {arr.dtype} {arr.shape}")
    images = torch.from_numpy(np.ascontiguousarray(arr))
    return images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()


def _labels(arr: np.ndarray, n_classes: int, path: Path, key: str) -> np.ndarray:
    """(N, 1) class labels, or (N, L) multi-label -> (N,) int64 with binary any(label)."""
    labels = arr.reshape(len(arr), -1)
    labels = (labels.any(axis=1) if labels.shape[1] > 1 else labels[:, 0]).astype(np.int64)
    if len(labels) and not 0 <= labels.min() <= labels.max() < n_classes:
        raise UserError(f"{path}: {key} holds labels outside 0..{n_classes - 1}")
    return labels


def _choose_file(spec: DatasetSpec, root: Path, image_size: int, download: bool) -> Path:
    """The npz to read for ``image_size``; downloads it or raises a UserError when absent."""
    size = 28
    if image_size in MEDMNIST_PLUS_SIZES and (download or npz_path(root, spec.name, image_size).exists()):
        size = image_size
    path = npz_path(root, spec.name, size)
    if not path.exists():
        if not download:
            raise UserError(f"{path} not found: pass --download, or fetch {_url(spec.name, size)} "
                            f"into {root}")
        _download(spec.name, root, size)
    return path


def load_medmnist(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """The official train/val/test splits of ``spec.name`` at side ``req.image_size``."""
    image_size = req.image_size
    path = _choose_file(spec, req.root, image_size, req.download)
    arrays = _read_npz(path)
    n_classes = len(spec.class_names)
    pools = {}
    for split in SPLITS:
        images = _images(arrays[f"{split}_images"], path, f"{split}_images")
        labels = _labels(arrays[f"{split}_labels"], n_classes, path, f"{split}_labels")
        if len(images) != len(labels):
            raise UserError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
        pools[split] = LabelledPool(TensorImageDataset(images, np.zeros(len(labels)), image_size), labels)
    return RawSplits(class_names=spec.class_names, choices=spec.classes,
                     default_choice=spec.normal_class_default, train=pools["train"], val=pools["val"],
                     test=pools["test"], source=str(path), image_size=image_size)
