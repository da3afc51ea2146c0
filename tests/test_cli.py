"""The upstream CLI adapter: verbatim README commands, flag translation, one-line errors."""
import shlex

import pytest

from common.cli import (build_eval_parser, build_train_parser, eval_config_from_args, shift_trans_types,
                        t_range_from_offsets, train_config_from_args)
from common.errors import UserError

README_TRAIN = ("--data_root ../data --dataset breastmnist --model resnet18 --mode simclr_DIA "
                "--shift_trans_type diffusion_rotation --diff_resolution 32 --batch_size 32 --one_class_idx 0 "
                "--save_step 1 --diffusion_model_path ddpm_models/breast")
README_EVAL = ("--mode ood_pre --dataset breastmnist --model resnet18 --ood_score CSI --shift_trans_type rotation "
               "--print_score --diffusion_upper_offset 0. --diffusion_offset 0. --ood_samples 10 "
               "--resize_factor 0.54 --resize_fix --one_class_idx 0 --load_path logs/x/last.pt")


def train_cfg(cmd: str):
    return train_config_from_args(build_train_parser().parse_args(shlex.split(cmd)))


def test_readme_train_command_parses_verbatim():
    cfg = train_cfg(README_TRAIN)
    assert cfg.dissolve.method == "ddpm" and cfg.shift.kind == "rotation"
    assert (cfg.dissolve.t_min, cfg.dissolve.t_max) == (30, 99)
    assert cfg.n_branches == 3 and cfg.optim.batch_size == 32 and cfg.data.one_class_idx == 0
    assert cfg.optim.kind == "lars" and cfg.optim.lr_init == 0.1 and cfg.loss.temperature == 0.5
    assert cfg.loss.mode == "naive"  # the paper's DIA-(a), main Table 1 (supplement Table 12)
    assert cfg.dissolve.resolution == 32 and cfg.data.split_seed == 0
    assert cfg.run.logdir.startswith("logs/breastmnist_resnet18_simclr_DIA_diffusion_rotation_one_class_0")


def test_readme_eval_command_parses_verbatim():
    cfg = eval_config_from_args(build_eval_parser().parse_args(shlex.split(README_EVAL)))
    assert cfg.score == "CSI" and cfg.n_samples == 10 and cfg.crop_scale == (0.54, 0.54)
    assert cfg.shift_kind == "rotation" and cfg.split == "test" and cfg.data.dataset == "breastmnist"


@pytest.mark.parametrize("name, method, kind", [
    ("diffusion_cutperm", "ddpm", "cutperm"), ("blurgaussian", "gaussian", "rotation"),
    ("blurmedian_cutperm", "median", "cutperm"), ("blurnone", "resize", "rotation"),
    ("rotation", "identity", "rotation")])
def test_shift_trans_types_translate_to_orthogonal_fields(name, method, kind):
    cfg = train_cfg(f"--dataset synthetic --mode simclr_DIA --shift_trans_type {name} --diffusion_model_path x")
    assert (cfg.dissolve.method, cfg.shift.kind) == (method, kind)


def test_every_shift_trans_type_has_a_translation():
    assert set(shift_trans_types()) >= {"diffusion_rotation", "diffusion_cutperm", "blurgaussian_rotation",
                                      "blurmedian_rotation", "blurgaussian", "blurmedian", "rotation", "cutperm"}


def test_csi_mode_has_two_branches_and_no_dissolver():
    cfg = train_cfg("--dataset synthetic --mode simclr_CSI --shift_trans_type cutperm")
    assert cfg.n_branches == 2 and cfg.dissolve.method == "none" and cfg.shift.kind == "cutperm"


def test_t_range_matches_upstream_truncation():
    assert t_range_from_offsets(0.3, 1.0) == (30, 99)
    assert t_range_from_offsets(0.0, 0.5) == (0, 49)


@pytest.mark.parametrize("cmd, flag", [
    ("--dataset synthetic --mode simclr_CSI --shift_trans_type diffusion_rotation", "--shift_trans_type"),
    ("--dataset synthetic --mode simclr_DIA --shift_trans_type diffusion_rotation", "--diffusion_model_path"),
    ("--dataset synthetic --shift_trans_type rotation --contamination_ratio 1.5", "--contamination_ratio"),
    ("--dataset synthetic --kernel_size 4 --shift_trans_type blurgaussian", "--kernel_size"),
    ("--dataset synthetic --shift_trans_type rotation --temperature 0", "--temperature"),
    ("--dataset synthetic --epochs 5 --warmup -1 --shift_trans_type rotation", "--warmup"),
    ("--dataset synthetic --diffusion_offset 0.9 --diffusion_upper_offset 0.5 --diffusion_model_path x",
     "--diffusion_offset"),
])
def test_bad_flags_raise_one_line_errors_naming_the_flag(cmd, flag):
    with pytest.raises(UserError) as err:
        train_cfg(cmd)
    assert flag in str(err.value) and "\n" not in str(err.value)


def test_config_round_trips_through_a_dict():
    cfg = train_cfg(README_TRAIN + " --normal_classes a,b")
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def test_resume_keeps_the_log_dir(tmp_path):
    (tmp_path / "run").mkdir()
    cfg = train_cfg(f"--dataset synthetic --shift_trans_type rotation --resume_path {tmp_path / 'run'}")
    assert cfg.run.logdir == str(tmp_path / "run")
    cfg = train_cfg(f"--dataset synthetic --shift_trans_type rotation --resume_path {tmp_path / 'run' / 'last.pt'}")
    assert cfg.run.logdir == str(tmp_path / "run")
