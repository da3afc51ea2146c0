"""Runs that go wrong end in one line that names the flag or the step, and keep what was good; --amp on a CPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint
from common.device import native_bf16
from common.errors import UserError
from diffusion_models.checkpoint import load_ddpm
from diffusion_models.trainer import DDPMTrainer
from test_ddpm import tiny_config, tiny_data
from test_train_eval import train_cfg
from training.losses import ContrastiveShiftLoss
from training.run import run_training

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.mark.parametrize("script, args, flag", [
    ("train.py", "--dataset synthetic --lr_init nan", "--lr_init"),
    ("train.py", "--dataset synthetic --temperature inf", "--temperature"),
    ("train.py", "--dataset synthetic --epochs ten", "--epochs"),
    ("eval.py", "--load_path x.pt --resize_factor nan", "--resize_factor"),
    ("diffusion_models/train_eval_ddpm.py", "--mode train --dataset synthetic --lr -inf", "--lr"),
])
def test_non_finite_and_malformed_numbers_are_refused_in_one_line(script, args, flag):
    proc = subprocess.run([sys.executable, script, *args.split()], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: argument " + flag)


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = ContrastiveShiftLoss.forward
    calls = {"n": 0}

    def nan_after_first_epoch(self, *args):
        calls["n"] += 1
        if calls["n"] > 3:  # TINY runs 3 steps per epoch
            raise FloatingPointError("non-finite loss: contrastive=nan, shift=1.386")
        return real(self, *args)

    monkeypatch.setattr(ContrastiveShiftLoss, "forward", nan_after_first_epoch)
    cfg = train_cfg("--mode simclr_CSI --shift_trans_type rotation --epochs 3 --save_step 1", tmp_path / "run")
    with pytest.raises(UserError) as err:
        run_training(cfg, show_progress=False)
    message = str(err.value)
    assert "step 3" in message and "--lr_init" in message and str(tmp_path / "run" / "last.pt") in message
    assert "\n" not in message
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


def test_a_diverging_ddpm_stops_naming_the_step_and_keeps_last(tmp_path, monkeypatch):
    trainer = DDPMTrainer(tiny_config(train_steps=2), tiny_data(), tmp_path, show_progress=False)
    trainer.fit()
    resumed = DDPMTrainer(tiny_config(train_steps=6, resume=True), tiny_data(), tmp_path, show_progress=False)
    resumed.restore()
    monkeypatch.setattr("diffusion_models.trainer.eps_l1", lambda *a: torch.full((4,), float("nan")))
    with pytest.raises(UserError) as err:
        resumed.fit()
    assert "at step 2" in str(err.value) and "--lr" in str(err.value) and "last" in str(err.value)
    assert load_ddpm(tmp_path / "last").meta.step == 2


@pytest.mark.parametrize("change, flag", [
    ("--mode simclr_DIA --shift_trans_type blurgaussian_rotation --kernel_size 3", "--mode/--shift_trans_type"),
    ("--mode simclr_CSI --shift_trans_type rotation --width 8", "--width"),
])
def test_resume_refuses_flags_that_change_what_the_run_is(tmp_path, change, flag):
    csi = "--mode simclr_CSI --shift_trans_type rotation"
    stopped = run_training(train_cfg(f"{csi} --epochs 2", tmp_path / "a"), show_progress=False, stop_after_epoch=1)
    with pytest.raises(UserError, match="--resume_path") as err:
        run_training(train_cfg(f"{change} --epochs 2 --resume_path {stopped}", tmp_path / "a"), show_progress=False)
    assert flag in str(err.value) and "new --logdir" in str(err.value)
    # what may change on resume still does
    run_training(train_cfg(f"{csi} --epochs 3 --val_every 2 --resume_path {stopped}", tmp_path / "a"),
                 show_progress=False)
    assert load_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 3


def test_resume_refuses_another_setting_of_the_same_dissolver(tmp_path):
    blur = "--mode simclr_DIA --shift_trans_type blurmedian_rotation"
    stopped = run_training(train_cfg(f"{blur} --kernel_size 3 --epochs 2", tmp_path / "a"), show_progress=False,
                           stop_after_epoch=1)
    with pytest.raises(UserError, match="--kernel_size is 5 here but 3 in the checkpoint"):
        run_training(train_cfg(f"{blur} --kernel_size 5 --epochs 2 --resume_path {stopped}", tmp_path / "a"),
                     show_progress=False)


@pytest.mark.skipif(not native_bf16(torch.device("cpu")),
                    reason="this CPU has no native bf16 (AVX512-BF16/AMX): --amp runs fp32 here")
def test_amp_on_a_bf16_cpu_trains_with_a_finite_loss_close_to_fp32(tmp_path):
    import json

    first = {}
    for amp in ("", "--amp"):
        logdir = run_training(train_cfg(f"--mode simclr_CSI --shift_trans_type rotation --epochs 1 {amp}",
                                        tmp_path / (amp or "fp32")), show_progress=False)
        rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
        first[amp] = next(r["train/loss"] for r in rows if "train/loss" in r)
    assert np.isfinite(first["--amp"]) and first["--amp"] == pytest.approx(first[""], rel=0.05)
