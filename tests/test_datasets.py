"""datasets/: spec table, loaders in their real on-disk formats, honest one-class splits, CLI, errors.

Everything runs offline on tiny generated trees, plus the real BreastMNIST npz and
224 px chest X-rays under ../shared/data when present. Expected values come from
the official counts, from the generated files themselves, or from the formulas.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from common.errors import UserError
from datasets import DATASETS, ImageDataset, get_spec, load_image_file, load_one_class_split, make_synthetic
from datasets.__main__ import main as cli_main
from datasets.specs import APTOS_GRADES, CIFAR100_SUPERCLASSES, KVASIR_NORMAL, KVASIR_POLYPS

REPO = Path(__file__).resolve().parents[1]
S = 16  # image side used for the generated trees


def pick_reference(n: int, fraction: float) -> int:
    """Images of an n-image class on the small side of a split: round(f·n), kept within [1, n − 1]."""
    return 0 if n < 2 or fraction <= 0 else min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1)


def write_images(folder: Path, n: int, seed: int = 0, ext: str = ".png", mode: str = "RGB",
                 size: tuple[int, int] = (12, 10), prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        path = folder / f"{prefix}{i:03d}{ext}"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
        paths.append(path)
    return paths


def counts(ds: ImageDataset) -> tuple[int, int]:
    return int((ds.is_anomaly == 0).sum()), int(ds.is_anomaly.sum())


def write_npz(path: Path, rgb: bool, n_classes: int, sizes=(20, 6, 10), side: int = 28, multilabel: int = 0,
              seed: int = 0) -> dict[str, np.ndarray]:
    """A MedMNIST-format npz: {split}_images uint8 (N, H, W[, 3]), {split}_labels (N, 1) or (N, L)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side, 3) if rgb else (n, side, side),
                                                 dtype=np.uint8)
        width = multilabel or 1
        labels = rng.random((n, width)) < 0.05 if multilabel else (np.arange(n) % n_classes)[:, None]
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------------------- spec table


def test_spec_table_and_unknown_name():
    assert {"pneumoniamnist", "breastmnist", "chestmnist", "dermamnist", "chestxray", "retina", "aptos",
            "kvasir", "covid", "cifar10", "cifar100", "folder", "synthetic"} <= set(DATASETS)
    assert not any(name.endswith("3d") for name in DATASETS)
    assert get_spec("breastmnist").classes[get_spec("breastmnist").normal_class_default] == ("normal, benign",)
    assert get_spec("pneumoniamnist").classes[get_spec("pneumoniamnist").normal_class_default] == ("normal",)
    assert get_spec("dermamnist").normal_class_default is None
    assert get_spec("cifar100").classes == tuple((c,) for c in CIFAR100_SUPERCLASSES) and len(CIFAR100_SUPERCLASSES) == 20
    with pytest.raises(UserError, match="--dataset 'nope'.*breastmnist.*synthetic"):
        get_spec("nope")


# ---------------------------------------------------------------------------- real data


@pytest.mark.parametrize("idx,normal,anomalous", [(1, (399, 57, 114), (147, 21, 42)),
                                                  (0, (147, 21, 42), (399, 57, 114))])
def test_breastmnist_official_counts(shared_data, idx, normal, anomalous):
    split = load_one_class_split("breastmnist", shared_data, idx)
    assert counts(split.train) == (normal[0], 0)
    assert counts(split.val) == (normal[1], anomalous[1])
    assert counts(split.test) == (normal[2], anomalous[2])
    assert counts(split.train_anomalous) == (0, anomalous[0])
    assert split.normal_classes == (("malignant",), ("normal, benign",))[idx]
    assert split.image_size == 28
    with np.load(shared_data / "breastmnist.npz") as npz:
        raw, labels = npz["train_images"], npz["train_labels"][:, 0]
    expected = raw[labels == idx]
    for i in (0, len(expected) - 1):
        x, y = split.train[i]
        assert x.shape == (3, 28, 28) and x.dtype == torch.float32 and y == 0
        assert torch.equal(x, torch.from_numpy(expected[i]).float().div(255).expand(3, -1, -1))


def test_breastmnist_default_is_normal_benign(shared_data):
    assert load_one_class_split("breastmnist", shared_data).normal_classes == ("normal, benign",)


def test_chestxray_real_tree(shared_data):
    root = shared_data / "chest_xray_224"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    split = load_one_class_split("chestxray", root, image_size=64)
    listed = {c: {str(p) for p in (root / "train" / c).iterdir()} for c in ("NORMAL", "PNEUMONIA")}
    assert (len(listed["NORMAL"]), len(listed["PNEUMONIA"])) == (1341, 3875)
    assert counts(split.test) == (234, 390)
    n_val = (pick_reference(1341, 0.1), pick_reference(3875, 0.1))
    assert counts(split.val) == n_val
    assert counts(split.train) == (1341 - n_val[0], 0)
    train, val, held, test = (set(ds.paths) for ds in (split.train, split.val, split.train_anomalous, split.test))
    assert not val & test and not train & val and not held & (train | val)
    assert train | val | held == listed["NORMAL"] | listed["PNEUMONIA"]
    assert all(p.startswith(str(root / "test")) for p in test)
    assert split.train.cache and not load_one_class_split("chestxray", root).train.cache
    x, y = split.test[len(split.test) - 1]
    assert x.shape == (3, 64, 64) and y == 1 and 0 <= x.min() and x.max() <= 1 and x.std() > 0.01
    full = load_image_file(split.test.paths[0], 224)
    assert full.shape == (3, 224, 224) and 0 <= full.min() <= full.max() <= 1


# ---------------------------------------------------------------------------- synthetic


def test_synthetic_split_defaults_and_speed():
    load_one_class_split("synthetic", None)
    start = time.perf_counter()
    split = load_one_class_split("synthetic", None)
    assert time.perf_counter() - start < 1.0  # the target is 0.2 s; loose for a busy 2-core CI box
    assert counts(split.train) == (256, 0) and counts(split.val) == (32, 32) and counts(split.test) == (64, 64)
    assert split.train_anomalous is None and split.image_size == 32
    data = make_synthetic(seed=0)
    x, y = split.test[5]
    assert torch.equal(x, data.test.images[5].float() / 255) and y == data.test.is_anomaly[5]


def test_synthetic_deterministic_by_seed():
    a, b, c = make_synthetic(8, 4, 6, 24, seed=3), make_synthetic(8, 4, 6, 24, seed=3), make_synthetic(8, 4, 6, 24, seed=4)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).images, getattr(b, part).images)
        assert np.array_equal(getattr(a, part).is_anomaly, getattr(b, part).is_anomaly)
        assert not torch.equal(getattr(a, part).images, getattr(c, part).images)
    assert a.train.images.shape == (8, 3, 24, 24) and a.train.images.dtype == torch.uint8


def test_synthetic_anomalies_are_local():
    data = make_synthetic(16, 16, 64, 32, seed=1)
    test = data.test
    diff = (test.images.int() - test.clean.int()).abs()  # (N, 3, S, S)
    for i in range(len(test.is_anomaly)):
        changed = diff[i].amax(0).numpy() > 0
        if test.is_anomaly[i] == 0:
            assert not changed.any() and not test.lesion[i].any()
            continue
        ys, xs = np.nonzero(test.lesion[i])
        side = ys.max() - ys.min() + 1
        assert 2 <= side <= 4 and xs.max() - xs.min() + 1 == side and len(ys) == side * side  # a small square
        assert not (changed & ~test.lesion[i]).any()  # identical outside the lesion
        assert diff[i][:, test.lesion[i]].min() >= 37  # and clearly different inside (>= 0.15 of the range)
    assert not data.train.is_anomaly.any()


# ---------------------------------------------------------------------------- MedMNIST (generated npz)


def test_medmnist_rgb_flag_from_tiny_npz(tmp_path):
    arrays = write_npz(tmp_path / "dermamnist.npz", rgb=True, n_classes=7, sizes=(21, 7, 14))
    split = load_one_class_split("dermamnist", tmp_path, 2)
    train_labels = arrays["train_labels"][:, 0]
    assert counts(split.train) == (3, 0) and counts(split.val) == (1, 6) and counts(split.test) == (2, 12)
    assert counts(split.train_anomalous) == (0, 18)
    assert split.normal_classes == (get_spec("dermamnist").class_names[2],) and len(split.anomaly_classes) == 6
    x, _ = split.train[1]
    expected = arrays["train_images"][np.flatnonzero(train_labels == 2)[1]]
    assert torch.equal(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    with pytest.raises(UserError, match="--one_class_idx is required for dermamnist.*0 \\(actinic"):
        load_one_class_split("dermamnist", tmp_path)
    with pytest.raises(UserError, match="--one_class_idx 7 is not a class of dermamnist.*6 \\("):
        load_one_class_split("dermamnist", tmp_path, 7)
    write_npz(tmp_path / "dermamnist.npz", rgb=True, n_classes=7, sizes=(5, 7, 7))  # no class 5, 6 in train
    with pytest.raises(UserError, match="no normal training images: class .* of dermamnist is empty in .*dermamnist.npz"):
        load_one_class_split("dermamnist", tmp_path, 6)


def test_chestmnist_multilabel_becomes_binary(tmp_path):
    arrays = write_npz(tmp_path / "chestmnist.npz", rgb=False, n_classes=2, multilabel=14, sizes=(30, 8, 12))
    split = load_one_class_split("chestmnist", tmp_path, 0)
    any_finding = arrays["test_labels"].any(axis=1).astype(np.int64)
    assert np.array_equal(split.test.is_anomaly, any_finding)
    assert len(split.train) == int((~arrays["train_labels"].any(axis=1)).sum())
    assert split.normal_classes == ("no finding",)


def test_medmnist_plus_size_file_and_resizing(tmp_path):
    small = write_npz(tmp_path / "pneumoniamnist.npz", rgb=False, n_classes=2, seed=1)
    big = write_npz(tmp_path / "pneumoniamnist_64.npz", rgb=False, n_classes=2, side=64, seed=2)
    x64, _ = load_one_class_split("pneumoniamnist", tmp_path, image_size=64).train[0]
    assert torch.equal(x64, torch.from_numpy(big["train_images"][0]).float().div(255).expand(3, -1, -1))
    for side in (32, 128):  # no _32 / _128 file: the 28 px file is resized
        x, _ = load_one_class_split("pneumoniamnist", tmp_path, image_size=side).train[0]
        pil = Image.fromarray(small["train_images"][0]).resize((side, side), Image.Resampling.BILINEAR)
        assert x.shape == (3, side, side)
        assert (x[0] * 255 - torch.from_numpy(np.array(pil)).float()).abs().max() <= 1.5  # PIL's bilinear


def test_medmnist_download_uses_medmnist_class(tmp_path, monkeypatch):
    import medmnist

    calls = []

    class FakeBreastMNIST:
        def __init__(self, split, root, download, size):
            calls.append((split, root, download, size))
            write_npz(Path(root) / "breastmnist.npz", rgb=False, n_classes=2)

    monkeypatch.setattr(medmnist, "BreastMNIST", FakeBreastMNIST)
    root = tmp_path / "new"
    split = load_one_class_split("breastmnist", root, download=True)
    assert calls == [("train", str(root), True, 28)] and len(split.test) == 10


# ---------------------------------------------------------------------------- folder layouts


def test_retina_official_test_and_val(tmp_path):
    n_train = {"CNV": 5, "DME": 4, "DRUSEN": 3, "NORMAL": 12}
    for i, (cls, n) in enumerate(n_train.items()):
        write_images(tmp_path / "train" / cls, n, seed=i)
        write_images(tmp_path / "test" / cls, 2, seed=10 + i, ext=".jpeg")
    split = load_one_class_split("retina", tmp_path, image_size=S)
    assert split.normal_classes == ("NORMAL",) and split.anomaly_classes == ("CNV", "DME", "DRUSEN")
    n_val_anom = sum(pick_reference(n_train[c], 0.1) for c in ("CNV", "DME", "DRUSEN"))
    assert counts(split.val) == (pick_reference(12, 0.1), n_val_anom)
    assert counts(split.train) == (12 - pick_reference(12, 0.1), 0) and counts(split.test) == (2, 6)
    assert not set(split.val.paths) & (set(split.train.paths) | set(split.test.paths))
    x, _ = split.val[0]
    assert x.shape == (3, S, S)


def write_aptos(root: Path, grades: list[int]) -> None:
    write_images(root / "train_images", len(grades), prefix="id")
    lines = ["id_code,diagnosis"] + [f"id{i:03d},{g}" for i, g in enumerate(grades)]
    (root / "train.csv").write_text("\n".join(lines) + "\n")


def test_aptos_manifest_written_stratified_and_reused(tmp_path):
    grades = [0] * 20 + [1] * 7 + [2] * 5 + [3] * 4 + [4] * 3
    write_aptos(tmp_path, grades)
    split = load_one_class_split("aptos", tmp_path, image_size=S, val_fraction=0.2)
    manifest = tmp_path / "dia_split_seed0.json"
    data = json.loads(manifest.read_text())
    test_names = set(data["test"])
    assert len(test_names) + len(data["train"]) == len(grades)
    for grade in range(5):
        ids = {f"train_images/id{i:03d}.png" for i, g in enumerate(grades) if g == grade}
        assert len(ids & test_names) == pick_reference(len(ids), 0.3)
    assert {os.path.relpath(p, tmp_path) for p in split.test.paths} == test_names
    assert split.normal_classes == (APTOS_GRADES[0],) and len(split.anomaly_classes) == 4
    n_train_normal = 20 - pick_reference(20, 0.3)
    assert counts(split.train) == (n_train_normal - pick_reference(n_train_normal, 0.2), 0)
    # reuse: a hand-edited manifest is followed, not rewritten
    moved = sorted(test_names)[0]
    data["test"].remove(moved)
    data["train"].append(moved)
    manifest.write_text(json.dumps(data))
    again = load_one_class_split("aptos", tmp_path, image_size=S)
    assert str(tmp_path / moved) not in again.test.paths and len(again.test) == len(test_names) - 1
    other = load_one_class_split("aptos", tmp_path, image_size=S, seed=1)
    assert (tmp_path / "dia_split_seed1.json").exists() and set(other.test.paths) != set(split.test.paths)
    (tmp_path / moved).unlink()  # gone from the disk and the CSV, still in the manifest
    csv_lines = (tmp_path / "train.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join(row for row in csv_lines if Path(moved).stem not in row) + "\n")
    with pytest.raises(UserError, match="dia_split_seed0.json lists 1 image.*gone.*delete the manifest"):
        load_one_class_split("aptos", tmp_path, image_size=S)


def test_manifest_falls_back_to_cache_when_root_unwritable(tmp_path, monkeypatch):
    import datasets.manifest as manifest_module

    root, home = tmp_path / "data", tmp_path / "home"
    write_images(root / "COVID", 6, seed=1)
    write_images(root / "non-COVID", 8, seed=2)
    real_dump = manifest_module.json_dump_atomic

    def dump(obj, path):
        if Path(path).parent == root:
            raise PermissionError(13, "Permission denied")
        real_dump(obj, path)

    monkeypatch.setattr(manifest_module, "json_dump_atomic", dump)
    monkeypatch.setenv("HOME", str(home))
    split = load_one_class_split("covid", root, image_size=S)
    written = list((home / ".cache" / "dia").glob("*/dia_split_seed0.json"))
    assert len(written) == 1 and not (root / "dia_split_seed0.json").exists()
    assert counts(split.test) == (pick_reference(8, 0.3), pick_reference(6, 0.3))
    assert split.normal_classes == ("non-COVID",)
    assert set(load_one_class_split("covid", root, image_size=S).test.paths) == set(split.test.paths)


def test_kvasir_nested_folder_and_polyp_classes(tmp_path):
    inner = tmp_path / "kvasir-dataset-v2"
    for i, cls in enumerate(KVASIR_NORMAL + KVASIR_POLYPS):
        write_images(inner / cls, 4, seed=i, ext=".jpg")
    split = load_one_class_split("kvasir", tmp_path, image_size=S)
    assert split.normal_classes == KVASIR_NORMAL and split.anomaly_classes == ("dyed-lifted-polyps", "polyps")
    assert counts(split.test) == (6 * pick_reference(4, 0.3), 2 * pick_reference(4, 0.3))
    held = set(split.train_anomalous.paths) | {p for p, a in zip(split.val.paths, split.val.is_anomaly) if a}
    assert all("polyps" in Path(p).parent.name for p in held)
    assert (tmp_path / "dia_split_seed0.json").exists()


def test_folder_mixed_formats_and_normal_abnormal_layout(tmp_path):
    write_images(tmp_path / "normal", 3, ext=".png", mode="L", size=(30, 20))
    write_images(tmp_path / "normal", 3, ext=".JPG", prefix="rgb", size=(40, 40))
    write_images(tmp_path / "normal", 2, ext=".bmp", prefix="bmp")
    write_images(tmp_path / "normal", 2, ext=".tif", prefix="tif")
    Image.fromarray((np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)).save(tmp_path / "normal" / "deep.png")
    write_images(tmp_path / "abnormal", 5, seed=3)
    split = load_one_class_split("folder", tmp_path, image_size=S)
    assert split.normal_classes == ("normal",) and split.anomaly_classes == ("abnormal",)
    everything = split.train.paths + split.val.paths + split.test.paths + split.train_anomalous.paths
    assert len(everything) == len(set(everything)) == 16
    loader = DataLoader(split.train, batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, S, S) and x.dtype == torch.float32 and y.dtype == torch.int64
    deep = load_image_file(tmp_path / "normal" / "deep.png", 10)
    assert deep.max() > 0.9 and torch.equal(deep[0], deep[2])  # 16-bit gray mapped to [0, 1], 3 channels
    Image.fromarray(np.full((6, 6), 0.5, dtype=np.float32), mode="F").save(tmp_path / "float.tif")
    assert torch.allclose(load_image_file(tmp_path / "float.tif", 6), torch.full((3, 6, 6), 128 / 255))
    gray = load_image_file(tmp_path / "normal" / "img000.png", 8)
    assert torch.equal(gray[0], gray[1])


def test_folder_train_test_class_folders_with_normal_classes(tmp_path, capsys):
    for part, n in (("train", 10), ("test", 3)):
        write_images(tmp_path / part / "healthy", n, seed=1)
        write_images(tmp_path / part / "benign", n, seed=2)
        write_images(tmp_path / part / "tumor", n, seed=3)
    split = load_one_class_split("folder", tmp_path, normal_classes=["healthy", "benign"], image_size=S)
    assert split.normal_classes == ("healthy", "benign") and split.anomaly_classes == ("tumor",)
    assert counts(split.test) == (6, 3) and counts(split.val) == (2, 1) and counts(split.train) == (18, 0)
    by_idx = load_one_class_split("folder", tmp_path, 2, image_size=S)  # sorted folders: benign, healthy, tumor
    assert by_idx.normal_classes == ("tumor",)
    cli_main(["--dataset", "folder", "--data_root", str(tmp_path), "--normal_classes", "healthy,benign",
              "--image_size", str(S)])
    table = capsys.readouterr().out
    assert "'healthy', 'benign'" in table and any(line.split() == ["train", "18", "0", "18"] for line in table.splitlines())


def test_folder_with_only_normal_images(tmp_path):
    write_images(tmp_path / "normal", 10)
    split = load_one_class_split("folder", tmp_path, image_size=S)
    assert split.anomaly_classes == () and split.train_anomalous is None
    assert counts(split.test) == (3, 0) and counts(split.val) == (1, 0) and counts(split.train) == (6, 0)


def test_file_dataset_cache_returns_the_same_image(tmp_path):
    write_images(tmp_path / "normal", 4)
    split = load_one_class_split("folder", tmp_path, image_size=S)
    assert split.train.cache
    first, second = split.train[0][0], split.train[0][0]
    assert torch.equal(first, second) and torch.equal(first, load_image_file(split.train.paths[0], S))
    sub = split.train.subset([1, 0])
    assert sub.paths == split.train.paths[1::-1] and torch.equal(sub[1][0], first)


# ---------------------------------------------------------------------------- CIFAR (tiny pickles)


def write_cifar(root: Path, coarse: bool, n_per_file: int = 6) -> dict[str, dict]:
    """torchvision's on-disk layout with tiny batches; the pickles hold data (n, 3072) uint8 in CHW order."""
    folder = root / ("cifar-100-python" if coarse else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if coarse else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rng = np.random.default_rng(0)
    entries = {}
    for k, name in enumerate(names):
        labels = [(k + i) % (20 if coarse else 10) for i in range(n_per_file * (4 if coarse else 1))]
        entry = {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)}
        entry.update({"fine_labels": [5 * c for c in labels], "coarse_labels": labels} if coarse else {"labels": labels})
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
        entries[name] = entry
    meta = {"fine_label_names": [str(i) for i in range(100)]} if coarse else {"label_names": [str(i) for i in range(10)]}
    with open(folder / ("meta" if coarse else "batches.meta"), "wb") as handle:
        pickle.dump(meta, handle)
    return entries


@pytest.mark.parametrize("coarse", [False, True])
def test_cifar_layouts(tmp_path, monkeypatch, coarse):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    entries = write_cifar(tmp_path, coarse)
    name = "cifar100" if coarse else "cifar10"
    split = load_one_class_split(name, tmp_path, 3, val_fraction=0.2)
    train_names = ["train"] if coarse else [f"data_batch_{i}" for i in range(1, 6)]
    key = "coarse_labels" if coarse else "labels"
    train_labels = np.concatenate([entries[n][key] for n in train_names])
    test_entry = entries["test" if coarse else "test_batch"]
    test_labels = np.asarray(test_entry[key])
    assert np.array_equal(split.test.is_anomaly, (test_labels != 3).astype(np.int64))
    n_normal = int((train_labels == 3).sum())
    assert counts(split.val)[0] == pick_reference(n_normal, 0.2)
    assert len(split.train) == n_normal - pick_reference(n_normal, 0.2)
    assert split.normal_classes == ((CIFAR100_SUPERCLASSES[3],) if coarse else ("cat",))
    x, _ = split.test[0]
    assert torch.equal(x, torch.from_numpy(test_entry["data"][0].reshape(3, 32, 32)).float() / 255)
    with pytest.raises(UserError, match="--one_class_idx is required"):
        load_one_class_split(name, tmp_path)


def test_cifar_missing_files(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py.*--download"):
        load_one_class_split("cifar10", tmp_path, 0)


# ---------------------------------------------------------------------------- contamination


def test_contamination_adds_expected_count(tmp_path):
    write_npz(tmp_path / "pneumoniamnist.npz", rgb=False, n_classes=2, sizes=(60, 6, 10))
    clean = load_one_class_split("pneumoniamnist", tmp_path)
    for ratio in (0.05, 0.2):
        dirty = load_one_class_split("pneumoniamnist", tmp_path, contamination_ratio=ratio, seed=1)
        n_added = int(ratio * 30 / (1 - ratio))  # paper Table 10: n = int(r·n_normal / (1 − r))
        assert counts(dirty.train) == (30, n_added) and len(dirty.train_anomalous) == 30 - n_added
        assert np.array_equal(dirty.val.is_anomaly, clean.val.is_anomaly)
    with pytest.raises(UserError, match="--contamination_ratio 0.6 needs 45.*30"):
        load_one_class_split("pneumoniamnist", tmp_path, contamination_ratio=0.6)
    for bad in (1.0, -0.1):
        with pytest.raises(UserError, match="--contamination_ratio"):
            load_one_class_split("pneumoniamnist", tmp_path, contamination_ratio=bad)


# ---------------------------------------------------------------------------- bad input, one line each


def test_missing_root_and_npz(tmp_path):
    with pytest.raises(UserError, match=f"--data_root {tmp_path / 'absent'}"):
        load_one_class_split("chestxray", tmp_path / "absent")
    with pytest.raises(UserError, match="--data_root is required"):
        load_one_class_split("breastmnist", None)
    with pytest.raises(UserError, match=f"{tmp_path / 'breastmnist.npz'} not found: pass --download.*zenodo"):
        load_one_class_split("breastmnist", tmp_path)
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="pneumoniamnist.npz"):
        load_one_class_split("pneumoniamnist", tmp_path)


def test_empty_normal_folder_is_named(tmp_path):
    (tmp_path / "normal").mkdir()
    write_images(tmp_path / "abnormal", 3)
    with pytest.raises(UserError, match=f"class folder {tmp_path / 'normal'} has no images"):
        load_one_class_split("folder", tmp_path)
    write_images(tmp_path / "x" / "train" / "PNEUMONIA", 2)
    (tmp_path / "x" / "train" / "NORMAL").mkdir()
    with pytest.raises(UserError, match="train/NORMAL has no images"):
        load_one_class_split("chestxray", tmp_path / "x")


def test_corrupt_image_is_named(tmp_path):
    write_images(tmp_path / "normal", 3)
    (tmp_path / "normal" / "bad.png").write_bytes(b"not an image")
    good = write_images(tmp_path / "other", 1, ext=".jpg", size=(64, 64))[0]
    (tmp_path / "normal" / "cut.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    split = load_one_class_split("folder", tmp_path, image_size=S, normal_classes=["normal"], val_fraction=0.0)
    for name in ("bad.png", "cut.jpg"):
        with pytest.raises(UserError, match=f"cannot read image file .*{name}"):
            split.train[split.train.paths.index(str(tmp_path / "normal" / name))]
    with pytest.raises(UserError, match="bad.png"):
        load_image_file(tmp_path / "normal" / "bad.png", S)


def test_wrong_layouts(tmp_path):
    write_images(tmp_path / "flat", 3)
    with pytest.raises(UserError, match="no class folders; accepted layouts: .*normal/.*--normal_classes"):
        load_one_class_split("folder", tmp_path / "flat")
    write_images(tmp_path / "half" / "train" / "normal", 3)
    with pytest.raises(UserError, match="has train/ but no test/"):
        load_one_class_split("folder", tmp_path / "half")
    write_images(tmp_path / "ab" / "abnormal", 3)
    with pytest.raises(UserError, match="no normal/ folder"):
        load_one_class_split("folder", tmp_path / "ab")
    with pytest.raises(UserError, match="test/PNEUMONIA is missing; expected"):
        write_images(tmp_path / "cx" / "train" / "NORMAL", 2)
        write_images(tmp_path / "cx" / "train" / "PNEUMONIA", 2)
        write_images(tmp_path / "cx" / "test" / "NORMAL", 2)
        load_one_class_split("chestxray", tmp_path / "cx")
    with pytest.raises(UserError, match="train.csv is missing"):
        load_one_class_split("aptos", tmp_path / "flat")


def test_bad_class_names_and_flags(tmp_path, shared_data):
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 3)
    with pytest.raises(UserError, match="--normal_classes 'c' is not a class folder.*a, b"):
        load_one_class_split("folder", tmp_path, normal_classes=["c"])
    with pytest.raises(UserError, match="--one_class_idx is required for folder; valid: 0 \\(a\\), 1 \\(b\\)"):
        load_one_class_split("folder", tmp_path)
    with pytest.raises(UserError, match="--normal_classes is only for --dataset folder"):
        load_one_class_split("breastmnist", shared_data, normal_classes=["x"])
    with pytest.raises(UserError, match="--one_class_idx 2 is not a class of breastmnist.*1 \\(normal, benign\\)"):
        load_one_class_split("breastmnist", shared_data, 2)
    with pytest.raises(UserError, match="--image_size"):
        load_one_class_split("synthetic", None, image_size=0)


# ---------------------------------------------------------------------------- CLI


def test_cli_table_for_breastmnist(shared_data):
    out = subprocess.run([sys.executable, "-m", "datasets", "--dataset", "breastmnist", "--data_root",
                          str(shared_data), "--one_class_idx", "1"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in out.splitlines()
            if line.split() and line.split()[0] in ("train", "val", "test", "train_anomalous")}
    assert rows == {"train": [399, 0, 399], "val": [57, 21, 78], "test": [114, 42, 156],
                    "train_anomalous": [0, 147, 147]}
    assert "3 channels x 28 x 28" in out and "'normal, benign'" in out


def test_cli_synthetic_and_error_line(capsys, tmp_path):
    cli_main(["--dataset", "synthetic", "--image_size", "24"])
    assert "3 channels x 24 x 24" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--dataset", "breastmnist", "--data_root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "breastmnist.npz" in err
