"""DDPM training, checkpoints and the train_eval_ddpm.py CLI, on tiny UNets and tiny data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from diffusion_models.checkpoint import DDPMMeta, ValLosses, load_ddpm, save_ddpm
from diffusion_models.dissolver import Dissolver
from common.transforms import random_hflip
from diffusion_models.trainer import (DDPMData, DDPMTrainConfig, DDPMTrainer, batch_indices, paper_ema,
                                      run_training)
from diffusion_models.unet import MAX_ATTN_PX, attention_levels, build_scheduler, build_unet

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: bilinear up-sampled 4×4 noise, easy for a tiny DDPM to learn."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def tiny_data(size: int = 16) -> DDPMData:
    return DDPMData(smooth_images(64, size, 0), smooth_images(8, size, 1), smooth_images(4, size, 2),
                    source_image_size=size, normal_classes=("normal",))


def tiny_config(**overrides) -> DDPMTrainConfig:
    base = DDPMTrainConfig(dataset="synthetic", image_size=16, dim=8, dim_mults=(1, 2), batch_size=4,
                           grad_accum=2, ema_every=2, val_every=2, save_every=2, val_repeats=1)
    return replace(base, **overrides)


def make_meta(resolution: int = 32, channels: int = 3, val: ValLosses = ValLosses(0.5, 0.3, 0.5, 0.2)) -> DDPMMeta:
    return DDPMMeta(dataset="synthetic", one_class_idx=None, normal_classes=("normal",), data_root=None,
                    split_seed=0, resolution=resolution,
                    channels=channels, source_image_size=28, step=1, n_params=0, val=val, best_step=1,
                    best_val_loss=val.score)


def save_tiny(path: Path, resolution: int = 32, channels: int = 3, val: ValLosses = ValLosses(0.5, 0.3, 0.5, 0.2)):
    torch.manual_seed(0)
    raw, ema = build_unet(8, (1, 2), resolution, channels), build_unet(8, (1, 2), resolution, channels)
    save_ddpm(path, raw, ema, build_scheduler(), make_meta(resolution, channels, val))
    return raw.eval(), ema.eval()


@pytest.mark.parametrize("mults, resolution, expected", [
    ((1, 2, 4, 8), 32, ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]),  # paper: 8 and 4 px
    ((1, 2, 2), 32, ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]),  # quick preset: 16 and 8 px
    ((1, 2, 4, 8), 128, ["DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]),  # 16 px only
    ((1, 2, 2), 128, ["DownBlock2D", "DownBlock2D", "DownBlock2D"]),  # 64/32 px would be quadratic
])
def test_full_attention_sits_on_the_low_resolution_half_and_never_above_16_px(mults, resolution, expected):
    unet = build_unet(8, mults, resolution)
    assert list(unet.config.down_block_types) == expected
    assert list(unet.config.up_block_types) == [b.replace("Down", "Up") for b in reversed(expected)]
    for i, attn in enumerate(attention_levels(len(mults), resolution)):
        assert not attn or resolution // 2 ** i <= MAX_ATTN_PX


def test_batch_indices_are_shuffled_epochs():
    n, bs = 10, 3  # 3 batches per epoch, the last image of each epoch dropped
    epoch0 = torch.cat([batch_indices(n, bs, m, seed=0) for m in range(3)])
    epoch1 = torch.cat([batch_indices(n, bs, m, seed=0) for m in range(3, 6)])
    assert len(set(epoch0.tolist())) == 9 and len(set(epoch1.tolist())) == 9
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(batch_indices(n, bs, 4, seed=0), batch_indices(n, bs, 4, seed=0))


def test_random_hflip_flips_about_half_exactly():
    x = torch.rand(400, 1, 2, 5)
    y = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert ((y == x).flatten(1).all(1) | flipped).all()
    assert 150 < flipped.sum() < 250


def test_tiny_unet_lowers_its_validation_loss(tmp_path):
    cfg = tiny_config(train_steps=80, batch_size=16, grad_accum=1, lr=2e-3, val_every=80, save_every=80, val_repeats=2)
    trainer = DDPMTrainer(cfg, tiny_data(), tmp_path, show_progress=False)
    before = trainer.validate()
    result = trainer.fit()
    assert result.last_val.raw_all < 0.75 * before.raw_all
    assert result.best_step == 80 and (tmp_path / "best" / "ddpm.json").exists()


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tmp_path):
    data = tiny_data()
    straight = DDPMTrainer(tiny_config(train_steps=6), data, tmp_path / "a", show_progress=False)
    straight.fit()
    DDPMTrainer(tiny_config(train_steps=4), data, tmp_path / "b", show_progress=False).fit()
    resumed = DDPMTrainer(tiny_config(train_steps=6, resume=True), data, tmp_path / "b", show_progress=False)
    resumed.restore()
    assert resumed.step == 4
    result = resumed.fit()
    assert result.step == 6 and load_ddpm(tmp_path / "b" / "last").meta.step == 6
    for ours, ref in ((resumed.unet, straight.unet), (resumed.ema_unet(), straight.ema_unet())):
        for (name, p), q in zip(ours.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


def paper_decay(step: int, decay: float = 0.995) -> float:
    """ema-pytorch's decay at training step s: weights copied up to step 100, then
    1 − (1 + e)^(−2/3) with e = s − 101, capped at ``decay``."""
    e = step - 101
    return 0.0 if e < 0 else min(decay, 1 - (1 + e) ** (-2 / 3))


@pytest.mark.parametrize("every", [10, 4, 1])
def test_ema_decay_follows_the_paper_schedule_in_training_steps(every):
    ema = paper_ema([torch.nn.Parameter(torch.zeros(1))], 0.995, every)
    for step in (every, 100, 104, 110, 200, 1000, 2000, 20000):
        if step % every == 0:  # the EMA counts its calls: call c happens at training step c·every
            assert ema.get_decay(step // every) == pytest.approx(paper_decay(step), abs=1e-12), step
    assert ema.get_decay(20000 // every) == 0.995


def test_trainer_ema_matches_a_slow_reference_of_the_paper_ema(tmp_path):
    cfg = tiny_config(train_steps=120, ema_every=10, val_every=1000, save_every=1000, ema_decay=0.9)
    trainer = DDPMTrainer(cfg, tiny_data(), tmp_path, show_progress=False)
    reference = [p.detach().clone() for p in trainer.unet.parameters()]
    while trainer.step < cfg.train_steps:
        trainer.train_step()
        if trainer.step % cfg.ema_every == 0:
            d = paper_decay(trainer.step, cfg.ema_decay)
            reference = [d * r + (1 - d) * p.detach() for r, p in zip(reference, trainer.unet.parameters())]
    assert 0 < paper_decay(120, 0.9) < 0.9  # past the warm-up: a real average, so it lags the raw weights
    for ours, ref, raw in zip(trainer.ema_unet().parameters(), reference, trainer.unet.parameters()):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(p, q) for p, q in zip(trainer.ema_unet().parameters(), trainer.unet.parameters()))


def test_resume_refuses_a_changed_model(tmp_path):
    DDPMTrainer(tiny_config(train_steps=2), tiny_data(), tmp_path, show_progress=False).fit()
    trainer = DDPMTrainer(tiny_config(train_steps=4, dim=16, resume=True), tiny_data(), tmp_path, show_progress=False)
    with pytest.raises(UserError, match="--dim"):
        trainer.restore()


@pytest.mark.parametrize("bad, flag", [({"dim": 12}, "--dim"), ({"dim_mults": (1,)}, "--dim_mults"),
                                       ({"t_train_max": 1000}, "--t_train_max"), ({"batch_size": 0}, "--batch_size"),
                                       ({"image_size": 30, "dim_mults": (1, 2, 4)}, "--image_size")])
def test_config_names_the_bad_flag(bad, flag):
    with pytest.raises(UserError, match=flag):
        tiny_config(**bad)


@pytest.mark.parametrize("weights", ["raw", "ema", "auto"])
def test_save_load_gives_identical_dissolver_outputs(tmp_path, weights):
    raw, ema = save_tiny(tmp_path / "ckpt")  # val prefers EMA (0.2 < 0.3)
    expected_net = raw if weights == "raw" else ema
    alphas = build_scheduler().alphas_cumprod
    x, t = torch.rand(3, 3, 28, 28), torch.tensor([30, 64, 99])
    loaded = Dissolver.from_checkpoint(tmp_path / "ckpt", image_size=28, weights=weights)
    torch.testing.assert_close(loaded(x, t=t), Dissolver(expected_net, alphas, 28, 32)(x, t=t), rtol=0, atol=0)


def test_run_folder_resolves_to_best_and_auto_follows_validation(tmp_path):
    save_tiny(tmp_path / "run" / "best", val=ValLosses(0.5, 0.1, 0.5, 0.4))
    ckpt = load_ddpm(tmp_path / "run")
    assert ckpt.path == tmp_path / "run" / "best"
    assert ckpt.weights("auto") is ckpt.unet and ckpt.meta == make_meta(val=ValLosses(0.5, 0.1, 0.5, 0.4))


def test_checkpoint_that_cannot_serve_the_images_is_refused(tmp_path):
    save_tiny(tmp_path / "r64", resolution=64)
    with pytest.raises(UserError, match=r"r64.*64.*28-px"):
        Dissolver.from_checkpoint(tmp_path / "r64", image_size=28)
    save_tiny(tmp_path / "gray", channels=1)
    with pytest.raises(UserError, match=r"gray.*1 channels"):
        Dissolver.from_checkpoint(tmp_path / "gray", image_size=32)


def test_missing_or_incomplete_checkpoint_is_named(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        load_ddpm(tmp_path / "nowhere")
    save_tiny(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "unet_ema" / "config.json").unlink()
    with pytest.raises(UserError, match=r"ckpt.*unet_ema/config.json"):
        load_ddpm(tmp_path / "ckpt")


# ---- the CLI, in subprocesses (needs the data layer for --dataset synthetic) ----

def _has_data_layer() -> bool:
    try:
        from datasets import load_one_class_split  # noqa: F401
    except ImportError:
        return False
    return True


needs_data = pytest.mark.skipif(not _has_data_layer(), reason="datasets.load_one_class_split is not available")


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    script = "train_eval_ddpm.py" if cwd.name == "diffusion_models" else "diffusion_models/train_eval_ddpm.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@needs_data
def test_cli_trains_from_root_and_evaluates_from_inside_the_package(tmp_path):
    run = tmp_path / "ddpm"
    trained = cli("--mode", "train", "--dataset", "synthetic", "--dim", "8", "--dim_mults", "1,2",
                  "--train_steps", "20", "--batch_size", "8", "--grad_accum", "1", "--val_repeats", "1",
                  "--save_dir", str(run))
    assert trained.returncode == 0, trained.stderr
    assert load_ddpm(run / "last").meta.step == 20 and "best step" in trained.stdout
    evaluated = cli("--mode", "eval", "--load_path", str(run), "--sample_steps", "5", "--num_samples", "4",
                    cwd=REPO / "diffusion_models")
    assert evaluated.returncode == 0, evaluated.stderr
    out = run / "best" / "eval"
    pngs = [out / "dissolve_raw.png", out / "dissolve_ema.png", *out.glob("samples_*.png")]
    assert len(pngs) == 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "normal" in evaluated.stdout and "anomalous" in evaluated.stdout
    # the dissolver diagnostic: printed, in val_losses.json, plotted, and in the checkpoint's ddpm.json
    assert "mean |x - x0_hat|" in evaluated.stdout and "t=50" in evaluated.stdout
    report = json.loads((out / "val_losses.json").read_text())["dissolve_change"]
    assert set(report) == {"raw", "ema"} and set(report["raw"]) == {"30", "50", "99"}
    assert (out / "dissolve_change.png").read_bytes()[:4] == b"\x89PNG"
    assert set(load_ddpm(run).meta.dissolve_change["raw"]) == {"30", "50", "99"}


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = cli("--mode", "train", "--dataset", "synthetic", "--dim", "12", "--save_dir", str(tmp_path / "x"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "--dim" in lines[0]


@needs_data
@pytest.mark.parametrize("overrides, needle", [
    ({"dataset": "no_such_set"}, "no_such_set"),
    ({"dataset": "breastmnist", "data_root": "/nonexistent/medmnist"}, "/nonexistent/medmnist"),
])
def test_run_training_names_bad_data_flags(tmp_path, overrides, needle):
    with pytest.raises(UserError, match=needle) as err:
        run_training(tiny_config(save_dir=str(tmp_path), **overrides), show_progress=False)
    assert "\n" not in str(err.value)


@needs_data
def test_run_training_resumes_to_more_steps_and_refuses_to_overwrite(tmp_path):
    cfg = tiny_config(image_size=32, train_steps=3, save_every=3, save_dir=str(tmp_path))
    assert run_training(cfg, show_progress=False).step == 3
    with pytest.raises(UserError, match="--resume"):
        run_training(replace(cfg, train_steps=5), show_progress=False)
    assert run_training(replace(cfg, train_steps=5, resume=True), show_progress=False).step == 5
    assert load_ddpm(tmp_path / "last").meta.step == 5


def test_a_diff_resolution_other_than_the_ddpms_is_refused_naming_both(tmp_path):
    save_tiny(tmp_path / "ckpt", resolution=32)
    with pytest.raises(UserError, match=r"--diff_resolution 64 differs from the resolution 32") as err:
        Dissolver.from_checkpoint(tmp_path / "ckpt", image_size=28, resolution=64)
    assert "\n" not in str(err.value)
    for resolution in (None, 32):  # omitted, or the DDPM's own
        assert Dissolver.from_checkpoint(tmp_path / "ckpt", image_size=28, resolution=resolution).resampler.resolution == 32


# -- the dissolver diagnostic ----------------------------------------------------------------------------
def test_dissolve_change_matches_a_per_image_reference_and_leaves_the_training_unet_alone():
    from diffusion_models.diagnostic import dissolve_change
    torch.manual_seed(0)
    unet = build_unet(8, (1, 2), 16, 3).train()
    alphas = build_scheduler().alphas_cumprod.float()
    normal, anomalous = smooth_images(5, 16, 1), smooth_images(3, 16, 2)
    table = dissolve_change({"raw": unet}, alphas, normal, anomalous, ts=(30, 99))
    assert unet.training and all(p.requires_grad for p in unet.parameters())
    reference_net = Dissolver(build_unet(8, (1, 2), 16, 3), alphas, 16, 16)
    reference_net.unet.load_state_dict(unet.state_dict())
    for t in (30, 99):
        for kind, images in (("normal", normal), ("anomalous", anomalous)):
            per_image = [(reference_net(x[None], t=t) - x[None]).abs().mean().item() for x in images]
            assert table["raw"][str(t)][kind] == pytest.approx(sum(per_image) / len(per_image), rel=1e-5)
        row = table["raw"][str(t)]
        assert row["ratio"] == pytest.approx(row["anomalous"] / row["normal"])
    assert table["raw"]["99"]["normal"] > table["raw"]["30"]["normal"]  # a larger t removes more
    empty = dissolve_change({"raw": unet}, alphas, normal, anomalous[:0], ts=(50,))
    assert empty["raw"]["50"]["anomalous"] is None and empty["raw"]["50"]["ratio"] is None


def test_training_logs_the_dissolve_change_at_each_validation(tmp_path):
    cfg = tiny_config(train_steps=4, val_every=2, save_every=4)
    DDPMTrainer(cfg, tiny_data(), tmp_path, show_progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(set(r["dissolve_change"]) == {"raw", "ema"} for r in records)
    assert load_ddpm(tmp_path / "last").meta.dissolve_change == records[-1]["dissolve_change"]


def test_the_ddpm_trainer_does_not_import_diffusers_training_utils():
    """diffusers.training_utils imports accelerate, transformers and peft when they are installed (a GPU
    machine's versions we do not control); the trainer's own EMA keeps its import light."""
    code = ("import sys; import diffusion_models.trainer; "
            "sys.exit('diffusers.training_utils' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
