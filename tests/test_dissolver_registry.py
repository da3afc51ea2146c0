"""The dissolver table (common/dissolvers.py): names, CLI spellings, settings and builders come from one entry."""
import dataclasses
import importlib

import pytest
import torch

from common import dissolvers
from common.cli import build_train_parser, shift_trans_types, train_config_from_args
from common.config import DissolveConfig, TrainConfig
from common.errors import UserError
from training.dissolvers import build_dissolver, builder_of

NEEDS_A_CHECKPOINT = {"ddpm"}  # built from a trained DDPM: covered by the DDPM dissolver's own tests


def train_cfg(*flags: str) -> TrainConfig:
    argv = ["--dataset", "breastmnist", "--mode", "simclr_DIA", "--logdir", "unused", *flags]
    return train_config_from_args(build_train_parser().parse_args(argv))


def test_every_builder_is_a_function_in_training_dissolvers():
    for spec in dissolvers.REGISTRY:
        assert spec.builder.startswith("training.dissolvers."), spec.builder
        assert callable(builder_of(spec)), spec.builder


@pytest.mark.parametrize("spec", [s for s in dissolvers.REGISTRY if s.method not in NEEDS_A_CHECKPOINT],
                         ids=lambda s: s.method)
def test_every_entry_runs_from_its_cli_spelling_to_images(spec):
    name = f"{spec.prefix}_cutperm" if spec.prefix else "cutperm"
    cfg = train_cfg("--shift_trans_type", name)
    assert (cfg.dissolve.method, cfg.shift.kind) == (spec.method, "cutperm")
    assert set(cfg.dissolve.settings) == {s.name for s in spec.settings}
    dissolve = build_dissolver(cfg.dissolve, image_size=28, device=torch.device("cpu"))
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    y = dissolve(x, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_the_cli_spells_exactly_the_table():
    assert {method for method, _ in shift_trans_types().values()} == set(dissolvers.methods()) - {"none"}
    assert shift_trans_types()["blurmedian"] == ("median", "rotation")  # upstream's bare spelling


def test_every_setting_has_a_flag_with_its_default_in_help():
    help_text = " ".join(build_train_parser().format_help().split())
    for setting in dissolvers.all_settings().values():
        assert f"--{setting.name}" in help_text
        assert f"(default: {setting.default})" in help_text


def test_a_setting_of_another_dissolver_is_checked_but_not_stored():
    cfg = train_cfg("--shift_trans_type", "blurgaussian_rotation", "--noise_std", "0.3", "--kernel_size", "3")
    assert cfg.dissolve.settings == {"kernel_size": 3}
    with pytest.raises(UserError, match="--noise_std must be in"):
        train_cfg("--shift_trans_type", "blurgaussian_rotation", "--noise_std", "2")
    with pytest.raises(UserError, match="--kernel_size must be a positive odd number"):
        train_cfg("--shift_trans_type", "noise_rotation", "--kernel_size", "4")


def test_config_refuses_a_setting_its_method_does_not_own_and_fills_defaults():
    with pytest.raises(UserError, match="--noise_std does not apply to the 'gaussian' dissolver"):
        DissolveConfig(method="gaussian", settings={"noise_std": 0.1})
    assert DissolveConfig(method="median").setting("kernel_size") == 7
    assert DissolveConfig(method="ddpm", checkpoint="x").settings == {}
    with pytest.raises(UserError, match="--shift_trans_type: no dissolver 'wavelets'"):
        DissolveConfig(method="wavelets")


def test_configs_round_trip_and_older_configs_with_settings_as_fields_load():
    cfg = train_cfg("--shift_trans_type", "blurmedian_rotation", "--kernel_size", "3")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    old["dissolve"] = {k: v for k, v in old["dissolve"].items() if k != "settings"} | {"kernel_size": 3,
                                                                                        "noise_std": 0.1}
    assert TrainConfig.from_dict(old).dissolve.settings == {"kernel_size": 3}


def test_a_new_dissolver_needs_only_its_module_and_one_table_entry(tmp_path, monkeypatch):
    """What docs/dissolvers.md promises: no other file learns the new name, flag or check."""
    (tmp_path / "invert_dissolver.py").write_text(
        "def build(cfg, image_size, device):\n"
        "    strength = cfg.setting('strength')\n"
        "    return lambda x, generator=None: (1 - strength) * x + strength * (1 - x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    strength = dissolvers.Setting("strength", float, 1.0, "invert_*: how far to invert", valid=lambda s: 0 <= s <= 1,
                                  requirement="in [0, 1]")
    spec = dissolvers.DissolverSpec("invert", "invert", "invert_dissolver:build", "1 - x", (strength,))
    monkeypatch.setattr(dissolvers, "REGISTRY", (*dissolvers.REGISTRY, spec))

    cfg = train_cfg("--shift_trans_type", "invert_cutperm", "--strength", "0.25")
    assert (cfg.dissolve.method, cfg.shift.kind, cfg.dissolve.setting("strength")) == ("invert", "cutperm", 0.25)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(build_dissolver(cfg.dissolve, 8, torch.device("cpu"))(x), 0.75 * x + 0.25 * (1 - x))
    with pytest.raises(UserError, match="--strength must be in"):
        train_cfg("--shift_trans_type", "invert_rotation", "--strength", "1.5")
    assert dataclasses.replace(cfg.dissolve).settings == {"strength": 0.25}
