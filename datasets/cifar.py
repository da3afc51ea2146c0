"""CIFAR-10 and CIFAR-100 (20 superclasses), the coarse-grained sanity check of paper Table 13.

Read through torchvision's classes from its on-disk layout under --data_root
(``cifar-10-batches-py/``, ``cifar-100-python/``), which also checks the files'
MD5 and downloads only when asked. CIFAR-100's one-class protocol (CSI) uses
the 20 superclasses, stored as ``coarse_labels`` in the pickles, which
torchvision does not expose, so those are read from the same files.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from common.errors import UserError
from datasets.base import TensorImageDataset
from datasets.specs import DatasetSpec
from datasets.split import LabelledPool, LoadRequest, RawSplits

_TORCHVISION = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _coarse_labels(folder: Path, files: list[list[str]]) -> np.ndarray:
    labels = []
    for name, _md5 in files:
        with open(folder / name, "rb") as handle:
            labels.extend(pickle.load(handle, encoding="latin1")["coarse_labels"])
    return np.array(labels, dtype=np.int64)


def _read(dataset_class: type[CIFAR10], root: Path, train: bool, download: bool, image_size: int) -> LabelledPool:
    """One split as uint8 (N, 3, 32, 32) images with class (CIFAR-10) or superclass (CIFAR-100) labels."""
    folder = root / dataset_class.base_folder
    try:
        data = dataset_class(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        reason = " ".join(str(err).split())
        raise UserError(f"{folder} is missing or corrupted ({reason}); pass --download, or unpack "
                        f"{dataset_class.url} into {root}") from None
    images = torch.from_numpy(np.ascontiguousarray(data.data)).permute(0, 3, 1, 2).contiguous()
    if dataset_class is CIFAR100:
        labels = _coarse_labels(folder, data.train_list if train else data.test_list)
    else:
        labels = np.asarray(data.targets, dtype=np.int64)
    return LabelledPool(TensorImageDataset(images, np.zeros(len(labels)), image_size), labels)


def load_cifar(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """Official train/test; validation is held aside from train by the one-class split."""
    dataset_class = _TORCHVISION[spec.name]
    train = _read(dataset_class, req.root, True, req.download, req.image_size)
    test = _read(dataset_class, req.root, False, False, req.image_size)
    return RawSplits(class_names=spec.class_names, choices=spec.classes, default_choice=spec.normal_class_default,
                     train=train, val=None, test=test, source=str(req.root / dataset_class.base_folder),
                     image_size=req.image_size)
