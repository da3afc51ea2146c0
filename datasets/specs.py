"""One table of dataset facts: name -> source, loader kind, classes, default normal class, size.

The normal class of every dataset is declared here and nowhere else.
``classes[i]`` is what ``--one_class_idx i`` makes normal: a tuple of fine
class names (MedMNIST label names, folder names, APTOS grades); every other
class of the dataset is anomalous. For the folder-based medical sets index 0 is
the normal group, as upstream maps it, so the paper's ``--one_class_idx 0``
commands keep their meaning.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from common.errors import UserError

Kind = Literal["medmnist", "class_folders", "aptos", "user_folder", "cifar", "synthetic"]


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about one dataset; ``kind`` picks the loader in ``datasets.load.LOADERS``."""

    name: str
    source: str  # where the data lives under --data_root (shown in errors and the summary)
    kind: Kind
    normal_class_default: int | None  # index into `classes`; None: --one_class_idx is required
    image_size: int  # native side in pixels; every image is resized to a square of this side
    classes: tuple[tuple[str, ...], ...]
    official_test: bool = True  # False: a seeded 7:3 train/test split is written to a manifest
    nested_root: str | None = None  # a single sub-folder that may wrap the layout (Kvasir zip)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Fine class names in label order: label ``i`` of the loader is ``class_names[i]``."""
        return tuple(name for group in self.classes for name in group)


# MedMNIST default normal classes: 0 = normal chest X-ray;
# BreastMNIST 1 = normal+benign (upstream trains on 0, malignant: pass --one_class_idx 0).
_MEDMNIST_NORMAL = {"pneumoniamnist": 0, "breastmnist": 1}
MEDMNIST_PLUS_SIZES = (64, 128, 224)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The 20 CIFAR-100 superclasses in `coarse_labels` order (CSI one-class protocol, paper Table 13).
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2")
KVASIR_NORMAL = ("dyed-resection-margins", "esophagitis", "normal-cecum", "normal-pylorus",
                 "normal-z-line", "ulcerative-colitis")
KVASIR_POLYPS = ("dyed-lifted-polyps", "polyps")
APTOS_GRADES = ("no DR", "mild", "moderate", "severe", "proliferative DR")  # diagnosis 0..4


def _singletons(names) -> tuple[tuple[str, ...], ...]:
    return tuple((name,) for name in names)


def _medmnist_spec(flag: str, info: dict) -> DatasetSpec:
    """A 2-D MedMNIST flag; multi-label flags (chestmnist) become binary any(label), as upstream."""
    if info["task"].startswith("multi-label"):
        classes = (("no finding",), ("any finding",))
    else:
        classes = _singletons(info["label"][str(i)] for i in range(len(info["label"])))
    return DatasetSpec(
        name=flag, kind="medmnist", normal_class_default=_MEDMNIST_NORMAL.get(flag), image_size=28,
        source=f"<data_root>/{flag}.npz (MedMNIST v2; {flag}_{{64,128,224}}.npz for MedMNIST+)",
        classes=classes)


_OTHER_SPECS = (
    DatasetSpec("chestxray", "<data_root>/{train,test}/{NORMAL,PNEUMONIA}/ (Kermany chest X-ray)",
                "class_folders", 0, 224, (("NORMAL",), ("PNEUMONIA",))),
    DatasetSpec("retina", "<data_root>/{train,test}/{CNV,DME,DRUSEN,NORMAL}/ (OCT2017)",
                "class_folders", 0, 224, (("NORMAL",), ("CNV", "DME", "DRUSEN"))),
    DatasetSpec("aptos", "<data_root>/train.csv (id_code, diagnosis) + <data_root>/train_images/<id_code>.png"
                " (APTOS-2019)", "aptos", 0, 224, ((APTOS_GRADES[0],), APTOS_GRADES[1:]), official_test=False),
    DatasetSpec("kvasir", "<data_root>/<class>/*.jpg with the 8 Kvasir v2 class folders"
                " (or <data_root>/kvasir-dataset-v2/<class>/)", "class_folders", 0, 224,
                (KVASIR_NORMAL, KVASIR_POLYPS), official_test=False, nested_root="kvasir-dataset-v2"),
    DatasetSpec("covid", "<data_root>/{COVID,non-COVID}/*.png (SARS-COV-2 CT-scan)",
                "class_folders", 0, 224, (("non-COVID",), ("COVID",)), official_test=False),
    DatasetSpec("cifar10", "<data_root>/cifar-10-batches-py/ (torchvision layout)",
                "cifar", None, 32, _singletons(CIFAR10_CLASSES)),
    DatasetSpec("cifar100", "<data_root>/cifar-100-python/ (torchvision layout; 20 superclasses)",
                "cifar", None, 32, _singletons(CIFAR100_SUPERCLASSES)),
    # `folder`: these classes are the normal/ + abnormal/ layout; class-folder trees
    # name their normal folders with --normal_classes (datasets/folder.py).
    DatasetSpec("folder", "<data_root>/normal/ (+ optional abnormal/), or class folders with --normal_classes;"
                " either optionally under <data_root>/train/ and <data_root>/test/",
                "user_folder", 0, 224, (("normal",), ("abnormal",))),
    DatasetSpec("synthetic", "generated in memory by datasets.synthetic.make_synthetic (--data_root ignored)",
                "synthetic", 0, 32, (("normal",), ("lesion",))),
)


def _medmnist_specs() -> dict[str, DatasetSpec]:
    """The 2-D flags of medmnist's own table, whose label names are the class names."""
    from medmnist import INFO  # deferred: importing medmnist creates ~/.medmnist and costs seconds

    return {flag: _medmnist_spec(flag, info) for flag, info in INFO.items() if not flag.endswith("3d")}


class _SpecTable(Mapping[str, DatasetSpec]):
    """name -> DatasetSpec. The MedMNIST rows come from medmnist on first use, so importing
    ``datasets`` (every CLI start) never imports medmnist and a folder run never needs it."""

    def __init__(self, others: tuple[DatasetSpec, ...]) -> None:
        self._others = {spec.name: spec for spec in others}

    @cached_property
    def _all(self) -> dict[str, DatasetSpec]:
        return {**_medmnist_specs(), **self._others}

    def __getitem__(self, name: str) -> DatasetSpec:
        return self._others[name] if name in self._others else self._all[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)


DATASETS: Mapping[str, DatasetSpec] = _SpecTable(_OTHER_SPECS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name is a UserError listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"--dataset {name!r} is unknown; valid: {', '.join(sorted(DATASETS))}") from None
