"""Kept DDPM checkpoints, choosing one to dissolve with, the measurements along training, and bf16 training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.device import native_bf16, resolve_amp
from common.errors import UserError
from diffusion_models.along_training import (change_auroc, kept_steps, markdown_table, measure_run,
                                             own_class_factor, select_checkpoint)
from diffusion_models.checkpoint import load_ddpm, load_meta
from diffusion_models.diagnostic import mean_change, per_image_change
from diffusion_models.trainer import DDPMTrainer, step_dir
from test_ddpm import tiny_config, tiny_data

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> Path:
    """A tiny DDPM trained 6 steps, every 2nd kept."""
    run = tmp_path_factory.mktemp("kept")
    DDPMTrainer(tiny_config(train_steps=6, keep_checkpoints=True), tiny_data(), run, show_progress=False).fit()
    return run


def test_keep_checkpoints_keeps_every_saved_step_with_its_own_weights(kept_run):
    assert list(kept_steps(kept_run)) == [2, 4, 6]
    assert [load_meta(step_dir(kept_run, s)).step for s in (2, 4, 6)] == [2, 4, 6]
    early, late = load_ddpm(step_dir(kept_run, 2)).unet, load_ddpm(kept_run / "last").unet
    assert not torch.equal(next(early.parameters()), next(late.parameters()))
    torch.testing.assert_close(next(load_ddpm(step_dir(kept_run, 6)).unet.parameters()), next(late.parameters()))


def test_without_the_flag_no_steps_are_kept(tmp_path):
    DDPMTrainer(tiny_config(train_steps=4), tiny_data(), tmp_path, show_progress=False).fit()
    assert kept_steps(tmp_path) == {} and not (tmp_path / "steps").exists()


def test_resume_keeps_adding_steps(tmp_path):
    DDPMTrainer(tiny_config(train_steps=4, keep_checkpoints=True), tiny_data(), tmp_path, show_progress=False).fit()
    resumed = DDPMTrainer(tiny_config(train_steps=8, keep_checkpoints=True, resume=True), tiny_data(), tmp_path,
                          show_progress=False)
    resumed.restore()
    resumed.fit()
    assert list(kept_steps(tmp_path)) == [2, 4, 6, 8]


def test_select_checkpoint_names_best_last_and_kept_steps(kept_run):
    assert select_checkpoint(kept_run, "best") == kept_run / "best"
    assert select_checkpoint(kept_run, "last") == kept_run / "last"
    assert select_checkpoint(kept_run, "4") == step_dir(kept_run, 4)
    assert select_checkpoint(kept_run / "best", "best") == kept_run / "best"  # a checkpoint folder itself


@pytest.mark.parametrize("which, needle", [("5", "kept steps: 2, 4, 6"), ("latest", "best, last or a kept step")])
def test_select_checkpoint_refuses_what_the_run_does_not_hold(kept_run, which, needle):
    with pytest.raises(UserError, match="--diffusion_checkpoint") as err:
        select_checkpoint(kept_run, which)
    assert needle in str(err.value)


def test_a_step_of_a_single_checkpoint_folder_is_refused(kept_run):
    with pytest.raises(UserError, match="needs a DDPM run folder"):
        select_checkpoint(kept_run / "best", "4")


def test_change_auroc_matches_a_pair_count():
    rng = np.random.default_rng(0)
    normal, anomalous = rng.random(7), rng.random(5) + 0.2
    pairs = [(a > n) + 0.5 * (a == n) for a in anomalous for n in normal]
    assert change_auroc(normal, anomalous) == pytest.approx(np.mean(pairs))
    assert change_auroc(normal, anomalous[:0]) is None


def test_per_image_change_averages_to_the_logged_mean_change(kept_run):
    ckpt = load_ddpm(kept_run / "last")
    images = tiny_data().val_normal
    per_image = per_image_change(ckpt.unet, ckpt.alphas_cumprod, images, 50)
    assert per_image.shape == (len(images),)
    expected = mean_change(ckpt.unet, ckpt.alphas_cumprod, images, 50)
    assert float(per_image.mean()) == pytest.approx(expected, rel=1e-5)


def test_measure_run_reproduces_the_ratio_logged_during_training(kept_run):
    data = tiny_data()
    rows = measure_run(kept_run, data.val_normal, data.val_anomalous, n_train=len(data.train))
    logged = {r["step"]: r["dissolve_change"]["raw"] for r in map(json.loads, (kept_run / "metrics.jsonl").open())}
    assert [r.step for r in rows] == [2, 4, 6]
    for row in rows:
        assert row.passes == pytest.approx(row.step * 4 * 2 / len(data.train))
        for t, ratio in row.ratio.items():
            assert ratio == pytest.approx(logged[row.step][t]["ratio"], rel=1e-5)
        assert all(0.0 <= v <= 1.0 for v in row.change_auroc.values())
    assert len(markdown_table(rows)) == 2 + len(rows)


def test_own_class_factor_cancels_image_content():
    content_a, content_b, strength = 0.8, 1.2, 1.1  # change = content x strength, 1/s for the own class
    ratio_a = content_b / (content_a / strength)  # DDPM on A: B images over A images
    ratio_b = content_a / (content_b / strength)
    assert own_class_factor(ratio_a, ratio_b) == pytest.approx(strength)


def test_resolve_amp_falls_back_to_fp32_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr("common.device.native_bf16", lambda device: False)
    assert resolve_amp(True, torch.device("cpu")) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--amp" in err[0] and "fp32" in err[0]
    assert resolve_amp(False, torch.device("cpu")) is False


@pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_bf16_ddpm_step_is_finite_and_close_to_fp32():
    losses = {}
    for amp in (False, True):
        trainer = DDPMTrainer(tiny_config(amp=amp, grad_accum=1), tiny_data(), Path("/nonexistent"),
                              show_progress=False)
        assert trainer.amp is amp
        losses[amp] = trainer.train_step()
    assert np.isfinite(losses[True])
    assert losses[True] == pytest.approx(losses[False], rel=0.05)


def test_train_dissolves_with_the_chosen_kept_step_and_records_it(tmp_path):
    from diffusion_models.trainer import DDPMTrainConfig, run_training as train_ddpm
    from test_train_eval import train_cfg
    from training.run import run_training

    ddpm = tmp_path / "ddpm"
    train_ddpm(DDPMTrainConfig(dataset="synthetic", dim=8, dim_mults=(1, 2), train_steps=4, batch_size=8,
                               grad_accum=1, val_every=2, save_every=2, keep_checkpoints=True, save_dir=str(ddpm)),
               show_progress=False)
    logdir = run_training(train_cfg(f"--mode simclr_DIA --shift_trans_type diffusion_rotation --epochs 1 "
                                    f"--diffusion_model_path {ddpm} --diffusion_checkpoint 2", tmp_path / "run"),
                          show_progress=False)
    dissolve = json.loads((logdir / "config.json").read_text())["dissolve"]
    assert Path(dissolve["checkpoint"]) == step_dir(ddpm, 2) and dissolve["checkpoint_choice"] == "2"
