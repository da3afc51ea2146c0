"""One data split for the DDPM and the classifier, and the refusals around it.

The leak this guards against: on datasets without an official test split (7:3 manifest) the DDPM's
split used to follow its own --seed, so a DDPM trained with --seed 1 trained on the classifier's test
images. Images here are generated noise, so two equal tensors are the same file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from common.config import DataConfig
from common.errors import UserError
from datasets.from_config import load_split
from diffusion_models import train_eval_ddpm
from diffusion_models.resample import Resampler
from diffusion_models.trainer import DDPMTrainConfig, load_ddpm_data, run_training
from training.dissolvers import check_ddpm_data

DDPM_FLAGS = ["--image_size", "16", "--dim", "8", "--dim_mults", "1,2", "--train_steps", "2", "--batch_size", "4",
              "--grad_accum", "1", "--val_every", "2", "--save_every", "2", "--val_repeats", "1", "--device", "cpu"]


def write_noise(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(folder / f"{seed}_{i}.png")


@pytest.fixture
def tree(tmp_path) -> Path:
    """normal/ + abnormal/ and no train/test folders: the 7:3 manifest split, val held out of train."""
    root = tmp_path / "data"
    write_noise(root / "normal", 30, seed=1)
    write_noise(root / "abnormal", 12, seed=2)
    return root


def rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def classifier_held_out(root: Path, split_seed: int = 0) -> torch.Tensor:
    """The classifier's validation and test images, brought to 16 px as the DDPM brings its own, (n, 3, 16, 16)."""
    split = load_split(DataConfig(dataset="folder", data_root=str(root), split_seed=split_seed))
    images = torch.stack([split.val[i][0] for i in range(len(split.val))] +
                         [split.test[i][0] for i in range(len(split.test))])
    return Resampler(split.image_size, 16).down(images)


def test_a_ddpm_trained_with_another_seed_never_sees_classifier_val_or_test_images(tree, tmp_path):
    cfg = DDPMTrainConfig(dataset="folder", data_root=str(tree), seed=1, image_size=16)
    data = load_ddpm_data(cfg.dataset, cfg.data_root, None, cfg.image_size, split_seed=cfg.split_seed)
    held_out = rows(classifier_held_out(tree))
    assert len(data.train) > 0 and len(rows(data.train) & held_out) == 0
    # the old behaviour (split seed = the DDPM's --seed) does leak on this tree, so the check can fail
    leaky = load_ddpm_data(cfg.dataset, cfg.data_root, None, cfg.image_size, split_seed=cfg.seed)
    assert len(rows(leaky.train) & held_out) > 0
    # and the CLI path: --seed 1 trains on the shared split, which train.py then accepts without a word
    train_eval_ddpm.main(["--mode", "train", "--dataset", "folder", "--data_root", str(tree), "--seed", "1",
                          "--save_dir", str(tmp_path / "ddpm"), *DDPM_FLAGS])
    meta = json.loads((tmp_path / "ddpm" / "best" / "ddpm.json").read_text())
    assert meta["split_seed"] == 0 and meta["data_root"] == str(tree.resolve())
    split = load_split(DataConfig(dataset="folder", data_root=str(tree), image_size=16))
    assert check_ddpm_data(str(tmp_path / "ddpm"), DataConfig(dataset="folder", data_root=str(tree)), split) is None


def test_train_refuses_a_ddpm_of_the_same_data_under_another_split(tree, tmp_path, capsys):
    train_eval_ddpm.main(["--mode", "train", "--dataset", "folder", "--data_root", str(tree), "--split_seed", "1",
                          "--save_dir", str(tmp_path / "ddpm"), *DDPM_FLAGS])
    capsys.readouterr()  # the DDPM's progress bar
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dataset", "folder", "--data_root", str(tree), "--image_size", "16", "--width", "8",
                    "--epochs", "1", "--diffusion_model_path", str(tmp_path / "ddpm"),
                    "--logdir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--split_seed 0" in err and "split seed 1" in err
    # another dataset's DDPM is allowed (paper Appendix D); the same split seed is allowed
    split = load_split(DataConfig(dataset="folder", data_root=str(tree), image_size=16, split_seed=1))
    assert check_ddpm_data(str(tmp_path / "ddpm"), DataConfig(dataset="folder", data_root=str(tree),
                                                              split_seed=1), split) is None
    other = tmp_path / "other"
    write_noise(other / "normal", 10, seed=5)
    split = load_split(DataConfig(dataset="folder", data_root=str(other), image_size=16))
    assert check_ddpm_data(str(tmp_path / "ddpm"), DataConfig(dataset="folder", data_root=str(other)), split) is None


def test_a_ddpm_of_another_normal_class_is_allowed_with_a_warning(tmp_path):
    root = tmp_path / "classes"
    for i, name in enumerate(("healthy", "benign", "tumor")):
        write_noise(root / name, 12, seed=10 + i)
    train_eval_ddpm.main(["--mode", "train", "--dataset", "folder", "--data_root", str(root),
                          "--normal_classes", "benign", "--save_dir", str(tmp_path / "ddpm"), *DDPM_FLAGS])
    data = DataConfig(dataset="folder", data_root=str(root), normal_classes=("healthy",))
    warning = check_ddpm_data(str(tmp_path / "ddpm"), data, load_split(data))
    assert warning.startswith("warning:") and "benign" in warning and "healthy" in warning
    assert "\n" not in warning
    same = DataConfig(dataset="folder", data_root=str(root), normal_classes=("benign",))
    assert check_ddpm_data(str(tmp_path / "ddpm"), same, load_split(same)) is None


def test_the_split_seed_matters_only_where_the_split_depends_on_it(tmp_path):
    """BreastMNIST's official splits ignore the seed: its DDPM serves under any --split_seed. Synthetic
    images are themselves drawn from the seed: refused."""
    builtin = Path(__file__).resolve().parents[1] / "datasets" / "builtin"
    for dataset, root in (("breastmnist", builtin), ("synthetic", None)):
        cfg = DDPMTrainConfig(dataset=dataset, data_root=root and str(root), image_size=32, dim=8, dim_mults=(1, 2),
                              train_steps=1, batch_size=4, grad_accum=1, val_every=1, save_every=1, val_repeats=1,
                              save_dir=str(tmp_path / dataset), split_seed=1, device="cpu")
        run_training(cfg, show_progress=False)
    data = DataConfig(dataset="breastmnist", data_root=str(builtin))
    assert check_ddpm_data(str(tmp_path / "breastmnist"), data, load_split(data)) is None
    data = DataConfig(dataset="synthetic")
    with pytest.raises(UserError, match="--split_seed 0"):
        check_ddpm_data(str(tmp_path / "synthetic"), data, load_split(data))


def run_train(argv: list[str], capsys) -> tuple[int | None, str, str]:
    try:
        train.main(argv)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


TINY = ["--dataset", "synthetic", "--image_size", "16", "--width", "8", "--mode", "simclr_CSI",
        "--shift_trans_type", "rotation", "--steps_per_epoch", "1", "--val_samples", "1"]


def test_bad_logdir_and_missing_resume_name_the_flag_typed(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_train([*TINY, "--epochs", "1", "--logdir", str(blocker / "run")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: --logdir {blocker / 'run'}")
    code, _, err = run_train([*TINY, "--epochs", "1", "--resume_path", str(tmp_path / "missing" / "run")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "--resume_path" in err and "--load_path" not in err


def test_a_warmup_longer_than_the_run_is_shortened_with_a_note(tmp_path, capsys):
    code, out, err = run_train([*TINY, "--epochs", "2", "--logdir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note: --warmup")]
    assert notes == ["note: --warmup 10 does not fit --epochs 2: warming up over 1 epochs"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["optim"]["warmup_epochs"] == 1.0
