"""Folder-backed datasets: the four 224 px medical layouts, APTOS's CSV, and a user's own tree.

Every image file is listed, never decoded, here; decoding happens per item in
``FileImageDataset`` (RGB, resized to S with bilinear antialias). Sets with
``<root>/{train,test}/`` keep that official test split; the others get a seeded,
stratified 7:3 split kept in a manifest (datasets/manifest.py).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.errors import UserError
from datasets.base import IMAGE_EXTENSIONS, FileImageDataset
from datasets.manifest import manifest_test_mask
from datasets.specs import APTOS_GRADES, DatasetSpec
from datasets.split import LabelledPool, LoadRequest, RawSplits

USER_LAYOUTS = ("accepted layouts: <data_root>/normal/ with an optional <data_root>/abnormal/, or class "
                "folders <data_root>/<class>/ with --normal_classes naming the normal ones; either may sit "
                "under <data_root>/train/ and <data_root>/test/")


@dataclass(frozen=True)
class Listing:
    """Image files of one split: ``relpaths`` relative to the image root, ``labels`` (N,) int64."""

    relpaths: list[str]
    labels: np.ndarray

    def take(self, mask: np.ndarray) -> Listing:
        return Listing([p for p, keep in zip(self.relpaths, mask) if keep], self.labels[mask])


def images_in(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden names skipped), sorted for a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_class_dirs(base: Path, image_root: Path, names: Sequence[str], expected: str | None) -> Listing:
    """Images of ``base/<name>/`` labelled by the position of name; an empty class folder is an error.

    expected: the layout to quote when a folder is missing; None makes missing folders allowed.
    """
    relpaths, labels = [], []
    for label, name in enumerate(names):
        folder = base / name
        if not folder.is_dir():
            if expected is None:
                continue
            raise UserError(f"{folder} is missing; expected {expected}")
        files = images_in(folder)
        if not files:
            raise UserError(f"class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        relpaths += [p.relative_to(image_root).as_posix() for p in files]
        labels += [label] * len(files)
    return Listing(relpaths, np.array(labels, dtype=np.int64))


def _pool(image_root: Path, listing: Listing, image_size: int) -> LabelledPool:
    paths = [image_root / p for p in listing.relpaths]
    return LabelledPool(FileImageDataset(paths, np.zeros(len(paths)), image_size), listing.labels)


def _raw_splits(choices: tuple[tuple[str, ...], ...], default: int | None, train: Listing, test: Listing,
                image_root: Path, source: Path, image_size: int) -> RawSplits:
    return RawSplits(class_names=tuple(n for group in choices for n in group), choices=choices,
                     default_choice=default, train=_pool(image_root, train, image_size), val=None,
                     test=_pool(image_root, test, image_size), source=str(source), image_size=image_size)


def _manifest_split(listing: Listing, req: LoadRequest, dataset: str, image_root: Path) -> tuple[Listing, Listing]:
    is_test = manifest_test_mask(req.root, listing.relpaths, listing.labels, req.seed, dataset, image_root)
    return listing.take(~is_test), listing.take(is_test)


def _unnest(root: Path, spec: DatasetSpec) -> Path:
    """``root/<nested_root>/`` when the layout sits in that single wrapper folder (Kvasir's zip)."""
    inner = root / spec.nested_root if spec.nested_root else None
    if inner is not None and inner.is_dir() and not any((root / n).is_dir() for n in spec.class_names):
        return inner
    return root


def load_class_folders(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """chestxray, retina (official test) and kvasir, covid (7:3 manifest): one folder per class."""
    root = _unnest(req.root, spec)
    if spec.official_test:
        train = scan_class_dirs(root / "train", root, spec.class_names, spec.source)
        test = scan_class_dirs(root / "test", root, spec.class_names, spec.source)
    else:
        train, test = _manifest_split(scan_class_dirs(root, root, spec.class_names, spec.source),
                                      req, spec.name, root)
    return _raw_splits(spec.classes, spec.normal_class_default, train, test, root, root, req.image_size)


def read_aptos_csv(root: Path) -> Listing:
    """``train.csv`` rows (id_code, diagnosis 0..4) -> ``train_images/<id_code>.png`` with label = grade."""
    csv_path, relpaths, labels = root / "train.csv", [], []
    if not csv_path.is_file():
        raise UserError(f"{csv_path} is missing; aptos expects <data_root>/train.csv and <data_root>/train_images/")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"id_code", "diagnosis"} <= set(reader.fieldnames or ()):
            raise UserError(f"{csv_path} needs the columns id_code and diagnosis, found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            grade = (row["diagnosis"] or "").strip()
            if grade not in {str(g) for g in range(len(APTOS_GRADES))}:
                raise UserError(f"{csv_path} line {line}: diagnosis {grade!r} is not one of 0..4")
            relpaths.append(f"train_images/{row['id_code'].strip()}.png")
            labels.append(int(grade))
    missing = [p for p in relpaths if not (root / p).is_file()]
    if not relpaths or missing:
        raise UserError(f"{csv_path} lists no images" if not relpaths else
                        f"{root / missing[0]} (listed in {csv_path}) is missing; {len(missing)} missing in all")
    return Listing(relpaths, np.array(labels, dtype=np.int64))


def load_aptos(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """APTOS-2019: only the labelled train set exists, so it is split 7:3 by the manifest."""
    train, test = _manifest_split(read_aptos_csv(req.root), req, spec.name, req.root)
    return _raw_splits(spec.classes, spec.normal_class_default, train, test, req.root, req.root, req.image_size)


def _sub_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _user_choices(names: list[str], normal_classes: tuple[str, ...] | None, spec: DatasetSpec,
                  root: Path) -> tuple[tuple[tuple[str, ...], ...], int | None]:
    """One-class choices of a user tree and the default: normal/ + abnormal/, --normal_classes, or each folder."""
    if normal_classes is not None:
        unknown = [n for n in normal_classes if n not in names]
        if unknown:
            raise UserError(f"--normal_classes {unknown[0]!r} is not a class folder under {root}; "
                            f"found: {', '.join(names)}")
        rest = tuple(n for n in names if n not in normal_classes)
        return ((normal_classes, rest) if rest else (normal_classes,)), 0
    if spec.class_names[0] in names and set(names) <= set(spec.class_names):
        return tuple(g for g in spec.classes if g[0] in names), spec.normal_class_default
    if set(names) <= set(spec.class_names):  # abnormal/ alone: nothing to train on
        raise UserError(f"{root} has abnormal/ but no normal/ folder; {USER_LAYOUTS}")
    return tuple((n,) for n in names), None  # --one_class_idx picks the normal folder


def load_user_folder(spec: DatasetSpec, req: LoadRequest) -> RawSplits:
    """A user's tree (see ``USER_LAYOUTS``); a folder of normal images alone is valid, and then
    validation and test hold normal images only (no AUROC can be computed on them)."""
    root = req.root
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        raise UserError(f"{root} has {'train/' if has_train else 'test/'} but no "
                        f"{'test/' if has_train else 'train/'}; {USER_LAYOUTS}")
    bases = (root / "train", root / "test") if has_train else (root,)
    names = sorted({name for base in bases for name in _sub_dirs(base)})
    if not names:
        raise UserError(f"{bases[0]} has no class folders; {USER_LAYOUTS}")
    choices, default = _user_choices(names, req.normal_classes, spec, bases[0])
    class_names = [n for group in choices for n in group]
    if has_train:
        train, test = (scan_class_dirs(base, root, class_names, None) for base in bases)
    else:
        train, test = _manifest_split(scan_class_dirs(root, root, class_names, None), req, spec.name, root)
    return _raw_splits(choices, default, train, test, root, bases[0], req.image_size)
