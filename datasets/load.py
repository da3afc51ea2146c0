"""``load_one_class_split``: validate the request, run the dataset's loader, make the one-class split."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from common.errors import UserError
from datasets.cifar import load_cifar
from datasets.folder import load_aptos, load_class_folders, load_user_folder
from datasets.medmnist import load_medmnist
from datasets.specs import DatasetSpec, get_spec
from datasets.split import LoadRequest, OneClassSplit, RawSplits, make_one_class_split
from datasets.synthetic import load_synthetic

Loader = Callable[[DatasetSpec, LoadRequest], RawSplits]

LOADERS: dict[str, Loader] = {
    "medmnist": load_medmnist,
    "class_folders": load_class_folders,
    "aptos": load_aptos,
    "user_folder": load_user_folder,
    "cifar": load_cifar,
    "synthetic": load_synthetic,
}
_DOWNLOADABLE = ("medmnist", "cifar")


def _check_fraction(flag: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UserError(f"{flag} must be in [0, 1), got {value!r}")
    return float(value)


def _check_size(image_size: int | None, spec: DatasetSpec) -> int:
    if image_size is None:
        return spec.image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise UserError(f"--image_size must be an integer >= 8, got {image_size!r}")
    return image_size


def _check_root(data_root: str | Path | None, spec: DatasetSpec, download: bool) -> Path | None:
    """The absolute data root; with --download a missing root is created for downloadable sets."""
    if spec.kind == "synthetic":
        return None
    if data_root is None or str(data_root) == "":
        raise UserError(f"--data_root is required for {spec.name}: {spec.source}")
    root = Path(data_root).expanduser().resolve()
    if not root.exists() and download and spec.kind in _DOWNLOADABLE:
        root.mkdir(parents=True)
    if not root.is_dir():
        raise UserError(f"--data_root {root} does not exist or is not a folder; {spec.name} expects {spec.source}")
    return root


def _check_normal_classes(normal_classes: Sequence[str] | None, spec: DatasetSpec) -> tuple[str, ...] | None:
    if normal_classes is None:
        return None
    if spec.kind != "user_folder":
        raise UserError(f"--normal_classes is only for --dataset folder; {spec.name} picks its normal "
                        "class with --one_class_idx")
    if isinstance(normal_classes, str):
        normal_classes = [normal_classes]
    names = tuple(str(name) for name in normal_classes if str(name))
    if not names:
        raise UserError("--normal_classes is empty; name at least one class folder")
    return names


def load_one_class_split(dataset: str, data_root: str | Path | None, one_class_idx: int | None = None, *,
                         image_size: int | None = None, normal_classes: Sequence[str] | None = None,
                         contamination_ratio: float = 0.0, seed: int = 0, download: bool = False,
                         val_fraction: float = 0.1) -> OneClassSplit:
    """Load ``dataset`` from ``data_root`` as a one-class split (docs/ARCHITECTURE.md).

    one_class_idx: index into the dataset's classes (see ``DATASETS[dataset].classes``);
        None -> the dataset's default normal class, a UserError where there is none.
    image_size: side S of every returned image (None -> native: 28 MedMNIST, 32 CIFAR and
        synthetic, 224 folder sets). Items are float32 (3, S, S) in [0, 1].
    normal_classes: `folder` only: the names of the class folders that are normal.
    contamination_ratio: fraction r in [0, 1) of anomalous images in train (paper Table 10).
    seed: the validation hold-out, the 7:3 manifest split and the contamination draw.
    download: fetch MedMNIST / CIFAR files that are missing; never happens otherwise.
    val_fraction: share of every train class held aside as validation where the
        dataset has no official validation split (ignored for MedMNIST and synthetic).
    """
    spec = get_spec(dataset)
    ratio = _check_fraction("--contamination_ratio", contamination_ratio)
    val_share = _check_fraction("val_fraction", val_fraction)
    request = LoadRequest(root=_check_root(data_root, spec, download), image_size=_check_size(image_size, spec),
                          seed=int(seed), download=bool(download),
                          normal_classes=_check_normal_classes(normal_classes, spec))
    raw = LOADERS[spec.kind](spec, request)
    return make_one_class_split(raw, spec.name, one_class_idx, contamination_ratio=ratio, seed=request.seed,
                                val_fraction=val_share)
