"""Defaults that fit together: --help shows them, the model follows the image size, eval.py crops as validation
did, one name for the split seed, and DDPM sampling that is quick on a CPU."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datasets.__main__ as datasets_cli
from common.checkpoint import load_checkpoint
from common.cli import build_eval_parser, build_train_parser, eval_config_from_args
from common.config import EvalConfig
from common.errors import UserError
from datasets.from_config import load_split
from diffusion_models import train_eval_ddpm, visualize
from diffusion_models.trainer import run_training as run_ddpm_training
from diffusion_models.unet import build_scheduler, build_unet
from diffusion_models.visualize import DDPMEvalConfig, ancestral_samples, sample_steps_for
from models import backbone_for, stem_mismatch
from test_ddpm import tiny_config
from test_train_eval import train_cfg
from training.run import Trainer, fit_backbone, run_training
from training.validate import VAL_CROP

torch.set_num_threads(1)

PARSERS = {"train.py": build_train_parser, "eval.py": build_eval_parser,
           "train_eval_ddpm.py": train_eval_ddpm.build_parser, "python -m datasets": datasets_cli.build_parser}


# -- 1. --help shows every default ------------------------------------------------------------------------------

def _expected(default) -> str:
    if isinstance(default, list):
        return " ".join(map(str, default))
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default)


def _help_blocks(parser: argparse.ArgumentParser) -> dict[str, str]:
    """First option string -> that flag's entry in --help, whitespace collapsed (wrapping may split a default)."""
    blocks = {}
    for block in re.split(r"\n(?=  -)", parser.format_help()):
        match = re.match(r"\s+(-[-\w]+)", block)
        if match:
            blocks[match.group(1)] = " ".join(block.split())
    return blocks


@pytest.mark.parametrize("name", PARSERS)
def test_help_shows_every_default(name):
    parser = PARSERS[name]()
    blocks = _help_blocks(parser)
    checked = 0
    for action in parser._actions:
        if (not action.option_strings or action.help == argparse.SUPPRESS or action.default is None
                or action.default == argparse.SUPPRESS):
            continue
        block = blocks[action.option_strings[0]]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            assert "(default:" not in block, block  # a switch that is off says nothing
            continue
        assert f"(default: {_expected(action.default)})" in block, block
        checked += 1
    assert checked >= 2
    assert all(block.count("(default:") <= 1 for block in blocks.values())


def test_help_keeps_the_existing_text_and_spells_defaults_as_typed():
    blocks = _help_blocks(build_train_parser())
    assert "ResNet base width (64 = standard ResNet-18) (default: 64)" in blocks["--width"]
    assert "(default: 0)" in blocks["--num_workers"]  # no help text: the default alone
    assert "(default: CSI)" in _help_blocks(build_eval_parser())["--ood_score"]
    assert "(default: 1,2,4,8)" in _help_blocks(train_eval_ddpm.build_parser())["--dim_mults"]


# -- 2. the model follows the image size -------------------------------------------------------------------------

def write_folder(root: Path, n: int = 10, size: int = 96) -> Path:
    rng = np.random.default_rng(0)
    for kind in ("normal", "abnormal"):
        (root / kind).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / kind / f"{i}.png")
    return root


def test_auto_backbone_is_the_cifar_stem_up_to_32_px_and_the_imagenet_stem_above():
    assert [backbone_for(s) for s in (28, 32)] == ["resnet18"] * 2
    assert [backbone_for(s) for s in (33, 64, 128, 224)] == ["resnet18_imagenet"] * 4
    assert build_train_parser().parse_args(["--dataset", "folder"]).model == "auto"


def test_a_folder_dataset_at_its_default_224_px_trains_the_imagenet_stem(tmp_path):
    root = write_folder(tmp_path / "data")
    cfg = train_cfg(f"--dataset folder --data_root {root} --model auto --mode simclr_CSI --shift_trans_type rotation",
                    tmp_path / "run")
    split = load_split(cfg.data)
    assert split.image_size == 224
    trainer = Trainer(cfg, split, show_progress=False)
    assert trainer.cfg.model.backbone == "resnet18_imagenet"
    assert isinstance(trainer.model.backbone.stem[-1], torch.nn.MaxPool2d)  # the ImageNet stem
    small = train_cfg("--model auto --mode simclr_CSI --shift_trans_type rotation", tmp_path / "s")  # synthetic 32 px
    assert fit_backbone(small, 32) == (train_cfg("--model resnet18 --mode simclr_CSI --shift_trans_type rotation",
                                                 tmp_path / "s"), None)


def test_an_explicit_model_is_kept_with_one_warning_line_where_its_stem_does_not_fit(tmp_path):
    for name, size in (("resnet18", 224), ("resnet18", 64), ("resnet18_imagenet", 32), ("resnet18_imagenet", 28)):
        warning = stem_mismatch(name, size)
        assert warning.startswith("warning: --model " + name) and "\n" not in warning and f"{size} px" in warning
    assert stem_mismatch("resnet18", 28) is None and stem_mismatch("resnet18_imagenet", 224) is None
    cfg = train_cfg("--model resnet18 --mode simclr_CSI --shift_trans_type rotation", tmp_path / "run")
    kept, warning = fit_backbone(cfg, 224)
    assert kept == cfg and "resnet18_imagenet" in warning


def test_auto_resumes_with_the_checkpoints_model_and_records_the_resolved_one(tmp_path, capsys):
    csi = "--mode simclr_CSI --shift_trans_type rotation"
    stopped = run_training(train_cfg(f"{csi} --model resnet18_imagenet --epochs 2", tmp_path / "a"),
                           show_progress=False, stop_after_epoch=1)
    out = capsys.readouterr().out
    assert out.count("warning: --model resnet18_imagenet") == 1  # 32 px synthetic images
    run_training(train_cfg(f"{csi} --model auto --epochs 2 --resume_path {stopped}", tmp_path / "a"),
                 show_progress=False)
    ckpt = load_checkpoint(tmp_path / "a" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["model"]["backbone"] == "resnet18_imagenet"
    assert '"backbone": "resnet18_imagenet"' in (tmp_path / "a" / "config.json").read_text()


# -- 3. eval.py crops as in-training validation did -------------------------------------------------------------

def eval_crop(flags: str) -> tuple[float, float]:
    return eval_config_from_args(build_eval_parser().parse_args(shlex.split(f"--load_path x.pt {flags}"))).crop_scale


def test_eval_default_crop_is_the_validation_crop():
    assert VAL_CROP == (0.54, 0.54)
    assert eval_crop("") == VAL_CROP and EvalConfig(load_path="x.pt").crop_scale == VAL_CROP
    paper = "--mode ood_pre --ood_score CSI --shift_trans_type rotation --resize_factor 0.54 --resize_fix"
    assert eval_crop(paper) == VAL_CROP


def test_eval_random_crop_is_one_flag_away():
    assert eval_crop("--no-resize_fix") == (0.54, 1.0)
    assert eval_crop("--resize_factor 0.3") == (0.3, 0.3)
    assert eval_crop("--resize_factor 0.3 --no-resize_fix") == (0.3, 1.0)
    assert "--no-resize_fix" in build_eval_parser().format_help()


# -- 4. one name for the split seed -----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, seed, note", [([], 0, False), (["--split_seed", "3"], 3, False),
                                              (["--seed", "3"], 3, True)])
def test_python_m_datasets_takes_split_seed_and_still_reads_seed(monkeypatch, capsys, argv, seed, note):
    seen = {}

    def fake_load(*args, **kwargs):
        seen.update(kwargs)
        raise UserError("stop here")

    monkeypatch.setattr(datasets_cli, "load_one_class_split", fake_load)
    with pytest.raises(SystemExit):
        datasets_cli.main(["--dataset", "synthetic", *argv])
    assert seen["seed"] == seed
    err = capsys.readouterr().err
    assert ("--seed is deprecated; use --split_seed" in err) == note
    assert "--split_seed" in datasets_cli.build_parser().format_help()


# -- 5. DDPM sampling steps by device -----------------------------------------------------------------------------

def test_sample_steps_default_by_device_and_an_explicit_value_wins():
    assert sample_steps_for(torch.device("cpu")) == 100 and sample_steps_for(torch.device("cuda")) == 1000
    assert sample_steps_for(torch.device("cpu"), 1000) == 1000 and sample_steps_for(torch.device("cuda"), 5) == 5
    parse = train_eval_ddpm.parse_args
    assert train_eval_ddpm.eval_config(parse(["--mode", "eval", "--load_path", "r"])).sample_steps is None
    assert train_eval_ddpm.eval_config(parse(["--mode", "eval", "--load_path", "r",
                                              "--sample_steps", "250"])).sample_steps == 250
    for bad in (0, 1001):
        with pytest.raises(UserError, match="--sample_steps"):
            DDPMEvalConfig(load_path="r", sample_steps=bad)


def test_ancestral_sampling_shows_a_progress_bar(capsys):
    unet = build_unet(8, (1, 2), 16).eval()
    samples = ancestral_samples(unet, build_scheduler(), 1, 3, torch.Generator().manual_seed(0), show_progress=True)
    assert samples.shape == (1, 3, 16, 16)
    assert "sampling" in capsys.readouterr().err


def test_ddpm_eval_on_a_cpu_samples_100_steps_unless_told(tmp_path, monkeypatch, capsys):
    run_ddpm_training(tiny_config(train_steps=2, save_dir=str(tmp_path / "ddpm"), device="cpu"), show_progress=False)
    steps = []

    def fake_samples(unet, scheduler, n, k, generator, show_progress=False):
        steps.append(k)
        return torch.zeros(n, 3, 16, 16)

    monkeypatch.setattr(visualize, "ancestral_samples", fake_samples)
    for given, expected in ((None, 100), (7, 7)):
        capsys.readouterr()
        visualize.run_eval(DDPMEvalConfig(load_path=str(tmp_path / "ddpm"), out_dir=str(tmp_path / "ev"),
                                          rows_per_kind=1, num_samples=1, val_repeats=1, sample_steps=given,
                                          device="cpu"))
        assert steps[-1] == expected
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sampling:")]
        assert lines == (["sampling: 100 steps on cpu (--sample_steps; default 1000 on CUDA, 100 elsewhere)"]
                         if given is None else [])
