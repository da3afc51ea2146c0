"""Loading a checkpoint never runs code: a malicious pickle is a one-line error and does nothing.

Each malicious file would, if unpickled, create ``pwned`` next to it (``open(path, "w")``).
"""
from __future__ import annotations

import pickle
import random
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as eval_entry
import train as train_entry
from common.checkpoint import FORMAT_VERSION, load_checkpoint, resolve_checkpoint, save_checkpoint
from common.errors import UserError
from common.seed import rng_state, set_rng_state
from diffusion_models.checkpoint import load_ddpm, load_trainer_state
from diffusion_models.trainer import DDPMData, DDPMTrainConfig, DDPMTrainer
from evals.calibrate import calibration_path, load_calibration

torch.set_num_threads(1)
TINY_TRAIN = ("--dataset synthetic --model resnet18 --width 4 --batch_size 16 --steps_per_epoch 1 --warmup 0.5 "
              "--val_samples 1 --seed 0 --num_workers 0 --mode simclr_CSI --shift_trans_type rotation --epochs 1")


class CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing means code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def write_malicious(path: Path) -> Path:
    """A pickle at ``path`` that would create ``path.parent / 'pwned'``; returns that witness path."""
    witness = path.parent / "pwned"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({"format_version": 1, "model": CreatesAFile(witness)}, handle, protocol=2)
    return witness


def assert_one_line_exit(capsys, excinfo, needle: str) -> None:
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err


def test_eval_refuses_a_malicious_checkpoint_without_running_it(tmp_path, capsys):
    bad = tmp_path / "shared" / "best.pt"
    witness = write_malicious(bad)
    with pytest.raises(SystemExit) as excinfo:
        eval_entry.main(["--mode", "ood_pre", "--load_path", str(bad)])
    assert_one_line_exit(capsys, excinfo, str(bad))
    assert not witness.exists()


def test_train_refuses_a_malicious_resume_checkpoint_without_running_it(tmp_path, capsys):
    bad = tmp_path / "shared" / "last.pt"
    witness = write_malicious(bad)
    with pytest.raises(SystemExit) as excinfo:
        train_entry.main(shlex.split(TINY_TRAIN) + ["--resume_path", str(bad.parent), "--logdir", str(tmp_path / "run")])
    assert_one_line_exit(capsys, excinfo, str(bad))
    assert not witness.exists()


def test_a_missing_resume_path_is_named_by_the_flag_the_user_typed(tmp_path, capsys):
    missing = tmp_path / "missing" / "run"
    with pytest.raises(SystemExit) as excinfo:
        train_entry.main(shlex.split(TINY_TRAIN) + ["--resume_path", str(missing), "--logdir", str(tmp_path / "run")])
    assert_one_line_exit(capsys, excinfo, f"--resume_path {missing}")
    with pytest.raises(UserError, match="^--load_path .*no such checkpoint file"):
        resolve_checkpoint(missing)


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory) -> Path:
    """A real DDPM run folder (best/ and last/, with trainer_state.pt), trained for two steps."""
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    data = DDPMData(images, images[:4], images[:4], source_image_size=16, normal_classes=("normal",))
    cfg = DDPMTrainConfig(dataset="synthetic", image_size=16, dim=8, dim_mults=(1, 2), batch_size=4, grad_accum=1,
                          train_steps=2, ema_every=1, val_every=2, save_every=2, val_repeats=1)
    save_dir = tmp_path_factory.mktemp("ddpm")
    DDPMTrainer(cfg, data, save_dir, show_progress=False).fit()
    return save_dir


def test_ddpm_trainer_state_round_trips_with_tensors_only(ddpm_run):
    state = load_trainer_state(ddpm_run / "last")
    assert state["step"] == 2 and state["generator"].dtype == torch.uint8
    assert load_ddpm(ddpm_run).meta.step >= 1


def test_ddpm_loader_refuses_a_malicious_trainer_state(tmp_path):
    last = tmp_path / "last"
    last.mkdir()
    witness = write_malicious(last / "trainer_state.pt")
    with pytest.raises(UserError, match=r"trainer_state\.pt: not a readable trainer state") as excinfo:
        load_trainer_state(last)
    assert "\n" not in str(excinfo.value) and not witness.exists()


def test_ddpm_loader_never_unpickles_bin_weights(ddpm_run, tmp_path):
    folder = tmp_path / "ddpm_best"
    shutil.copytree(ddpm_run / "best", folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.unlink()
    witness = write_malicious(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(UserError, match="safetensors") as excinfo:
        load_ddpm(folder)
    assert str(folder / "unet") in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert not witness.exists()


def test_a_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "rng": rng_state(), "config": {"seed": 0}})
    payload = torch.load(path, weights_only=True)  # would raise on any pickled object
    assert payload["format_version"] == FORMAT_VERSION == load_checkpoint(path)["format_version"]


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # leave a cached Gaussian in both
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(2)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = random.random(), random.gauss(0, 1), np.random.normal(), np.random.rand(), torch.rand(2)
    assert got[:4] == expected[:4] and torch.equal(got[4], expected[4])


def test_a_format_1_checkpoint_with_numpy_rng_state_still_loads_and_restores(tmp_path):
    """The previous code pickled np.random.get_state() (a uint32 ndarray); those files still load."""
    np.random.seed(5)
    old = tmp_path / "last.pt"
    legacy_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"format_version": 1, "model": {"w": torch.ones(2)}, "rng": legacy_rng}, old)
    expected = np.random.rand(3)
    ckpt = load_checkpoint(old)
    np.random.seed(0)
    set_rng_state(ckpt["rng"])
    np.testing.assert_array_equal(np.random.rand(3), expected)
    assert torch.equal(ckpt["model"]["w"], torch.ones(2))


def test_saving_anything_but_tensors_and_plain_values_fails_loudly(tmp_path):
    with pytest.raises(TypeError, match=r"payload\['val_auroc'\] is a float64"):
        save_checkpoint(tmp_path / "best.pt", {"val_auroc": np.float64(0.5)})
    with pytest.raises(TypeError, match=r"payload\['rng'\]\['numpy'\]\[1\] is a ndarray"):
        save_checkpoint(tmp_path / "last.pt", {"rng": {"numpy": np.random.get_state()}})
    assert not list(tmp_path.iterdir())


def test_a_malicious_calibration_file_is_refused_without_running_it(tmp_path):
    ckpt = tmp_path / "best.pt"
    witness = write_malicious(calibration_path(ckpt))
    with pytest.raises(UserError, match="not a readable calibration"):
        load_calibration(ckpt, weights={})
    assert not witness.exists()
