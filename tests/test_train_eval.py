"""End to end on CPU: train.py and eval.py on tiny synthetic data; resume; checkpoint round trip."""
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import load_checkpoint
from common.cli import build_eval_parser, build_train_parser, eval_config_from_args, train_config_from_args
from datasets.from_config import load_split
from evals.pipeline import features_of, fit_scorer
from evals.run import load_model, run_eval
from training.run import run_training

REPO = Path(__file__).resolve().parents[1]
TINY = ("--dataset synthetic --model resnet18 --width 4 --batch_size 16 --steps_per_epoch 3 --warmup 0.5 "
        "--val_samples 1 --seed 0 --num_workers 0")


def train_cfg(extra: str, logdir: Path):
    return train_config_from_args(build_train_parser().parse_args(shlex.split(f"{TINY} {extra} --logdir {logdir}")))


def eval_cfg(extra: str):
    return eval_config_from_args(build_eval_parser().parse_args(shlex.split(extra)))


@pytest.mark.parametrize("mode", ["--mode simclr_CSI --shift_trans_type cutperm",
                                  "--mode simclr_DIA --shift_trans_type blurgaussian_rotation --kernel_size 3"])
def test_train_then_eval_writes_report(tmp_path, mode):
    logdir = run_training(train_cfg(f"{mode} --epochs 2", tmp_path / "run"), show_progress=False)
    assert (logdir / "last.pt").is_file() and (logdir / "best.pt").is_file()
    assert (logdir / "metrics.jsonl").read_text().count("\"train/loss\":") == 6  # exactly --steps_per_epoch x epochs
    out = run_eval(eval_cfg(f"--load_path {logdir} --ood_samples 2 --n_boot 50 --out_dir {tmp_path / 'ev'}"),
                   show_progress=False)
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert 0.0 <= report["metrics"]["auroc"] <= 1.0
    for name in ("scores.csv", "roc.png", "scores_hist.png"):
        assert (tmp_path / "ev" / name).is_file()
    assert len(out["scores"]) == len(out["is_anomaly"]) > 0


def test_best_checkpoint_is_chosen_on_validation_only(tmp_path):
    logdir = run_training(train_cfg("--mode simclr_CSI --shift_trans_type rotation --epochs 2", tmp_path),
                          show_progress=False)
    best = load_checkpoint(logdir / "best.pt")
    log = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    val = [row["val/auroc"] for row in log if "val/auroc" in row]
    assert len(val) == 2 and best["val_auroc"] == max(val)
    assert "optimizer" not in best


def test_resume_after_one_epoch_equals_an_uninterrupted_run(tmp_path):
    flags = "--mode simclr_DIA --shift_trans_type blurmedian_rotation --kernel_size 3 --epochs 2"
    straight = run_training(train_cfg(flags, tmp_path / "a"), show_progress=False)
    stopped = run_training(train_cfg(flags, tmp_path / "b"), show_progress=False, stop_after_epoch=1)
    assert load_checkpoint(stopped / "last.pt")["epoch"] == 1
    resumed = run_training(train_cfg(flags + f" --resume_path {stopped}", tmp_path / "b"), show_progress=False)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] and b["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_checkpoint_round_trip_gives_identical_scores(tmp_path):
    cfg = train_cfg("--mode simclr_CSI --shift_trans_type rotation --epochs 1", tmp_path)
    logdir = run_training(cfg, show_progress=False)
    ckpt = load_checkpoint(logdir / "last.pt")
    split = load_split(cfg.data)
    kwargs = dict(shift_kind="rotation", n_shifts=4, n_samples=2, crop_scale=(0.54, 0.54), batch_size=64,
                  device=torch.device("cpu"))

    def scores(model):
        scorer = fit_scorer(features_of(model, split.train, seed=0, **kwargs))
        return scorer.score(features_of(model, split.val, seed=1, **kwargs)).numpy()

    reloaded = load_model(load_checkpoint(logdir / "last.pt"), torch.device("cpu"))
    fresh = load_model(ckpt, torch.device("cpu"))
    np.testing.assert_array_equal(scores(reloaded), scores(fresh))


def test_dia_with_a_tiny_ddpm_end_to_end(tmp_path):
    ddpm = tmp_path / "ddpm"
    subprocess.run([sys.executable, "diffusion_models/train_eval_ddpm.py", "--mode", "train", "--dataset",
                    "synthetic", "--dim", "8", "--dim_mults", "1,2", "--train_steps", "4", "--batch_size", "8",
                    "--grad_accum", "1", "--save_dir", str(ddpm)], cwd=REPO, check=True, capture_output=True)
    logdir = run_training(train_cfg(f"--mode simclr_DIA --shift_trans_type diffusion_rotation --epochs 1 "
                                    f"--diffusion_model_path {ddpm}", tmp_path / "run"), show_progress=False)
    out = run_eval(eval_cfg(f"--load_path {logdir / 'last.pt'} --ood_samples 1 --n_boot 20 --split val"),
                   show_progress=False)
    assert 0.0 <= out["metrics"]["auroc"] <= 1.0


@pytest.mark.parametrize("script, args, needle", [
    ("train.py", "--dataset no_such_set --shift_trans_type rotation", "no_such_set"),
    ("train.py", "--dataset synthetic --mode simclr_DIA --shift_trans_type diffusion_rotation "
                 "--diffusion_model_path /nonexistent/ddpm", "/nonexistent/ddpm"),
    ("eval.py", "--load_path /nonexistent/best.pt", "--load_path"),
])
def test_entry_points_fail_with_one_line(script, args, needle):
    proc = subprocess.run([sys.executable, script, *shlex.split(args)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_resume_restores_rng_states_from_cpu_tensors_whatever_the_device(tmp_path):
    """On CUDA, mapping the whole checkpoint to the device put the RNG states on the GPU, where
    torch.set_rng_state refuses them; a device without storage (meta) shows the same on a CPU."""
    from datasets.from_config import load_split as split_of
    from training.run import Trainer

    cfg = train_cfg("--mode simclr_CSI --shift_trans_type rotation --epochs 2", tmp_path / "a")
    stopped = run_training(cfg, show_progress=False, stop_after_epoch=1)
    trainer = Trainer(cfg, split_of(cfg.data), show_progress=False)
    trainer.device = torch.device("meta")  # what the checkpoint would be mapped to, were it loaded onto the device
    trainer.resume(str(stopped))
    assert trainer.epoch == 1 and trainer.generator.get_state().device.type == "cpu"
