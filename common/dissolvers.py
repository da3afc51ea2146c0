"""Every dissolver DIA can use, in one table: its name, its ``--shift_trans_type`` prefix, its settings, its builder.

The configuration (``DissolveConfig``) and the CLI read this table and nothing else, so a dissolver's name, its
flags and their checks exist in one place. The code that makes the images lives in ``training/dissolvers/``; an
entry names its builder as ``"module:function"``, which only ``training.dissolvers.build_dissolver`` imports (this
module stays free of torch and of the packages above ``common``).

Adding a dissolver (docs/dissolvers.md walks through one): write ``training/dissolvers/<name>.py`` with a
``build(cfg, image_size, device)``, add one ``DissolverSpec`` below, add a test. Nothing else changes:
``--shift_trans_type <prefix>_rotation`` and ``<prefix>_cutperm``, the setting flags, their ``--help`` and their
checks all follow from the entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from common.errors import UserError


@dataclass(frozen=True)
class Setting:
    """One setting a dissolver owns: the flag ``--<name>`` and the key in ``DissolveConfig.settings``."""

    name: str
    type: type  # int or float (float flags refuse nan and inf at parse time)
    default: Any
    help: str
    valid: Callable[[Any], bool] = lambda value: True
    requirement: str = ""  # what ``valid`` asks for, for the error line: "a positive odd number"

    def check(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.valid(value):
            raise UserError(f"--{self.name} must be {self.requirement or 'a number'}, got {value!r}")


@dataclass(frozen=True)
class DissolverSpec:
    method: str  # the name DissolveConfig.method and a run's config.json use
    prefix: str  # --shift_trans_type <prefix>_rotation / <prefix>_cutperm; "" = the plain shift names
    builder: str  # "module:function" taking (DissolveConfig, image_size, device), returning the dissolver
    summary: str
    settings: tuple[Setting, ...] = ()
    bare_prefix_is_rotation: bool = False  # upstream also spells <prefix>_rotation as <prefix>


KERNEL_SIZE = Setting("kernel_size", int, 7, "blur kernel size of blurgaussian_*/blurmedian_* (odd)",
                      valid=lambda k: k >= 1 and k % 2 == 1, requirement="a positive odd number")

REGISTRY: tuple[DissolverSpec, ...] = (
    DissolverSpec("identity", "", "training.dissolvers.identity:build",
                  "upstream's simclr_DIA with a plain shift: the third branch is one more flipped view"),
    DissolverSpec("ddpm", "diffusion", "training.dissolvers.ddpm:build",
                  "one reverse-diffusion step of a DDPM trained on the normal images (DIA)"),
    DissolverSpec("gaussian", "blurgaussian", "training.dissolvers.blur:build_gaussian",
                  "Gaussian blur at the dissolving resolution (paper Table 8)", (KERNEL_SIZE,),
                  bare_prefix_is_rotation=True),
    DissolverSpec("median", "blurmedian", "training.dissolvers.blur:build_median",
                  "median blur at the dissolving resolution (paper Table 8)", (KERNEL_SIZE,),
                  bare_prefix_is_rotation=True),
    DissolverSpec("resize", "blurnone", "training.dissolvers.blur:build_resize_only",
                  "down to the dissolving resolution and back, no filter (paper Table 8, resize only)",
                  bare_prefix_is_rotation=True),
    DissolverSpec("noise", "noise", "training.dissolvers.noise:build",
                  "additive Gaussian noise at the dissolving resolution",
                  (Setting("noise_std", float, 0.1, "noise_*: std of the additive Gaussian noise, in pixel units",
                           valid=lambda s: 0.0 <= s <= 1.0, requirement="in [0, 1] (pixel units)"),)),
    DissolverSpec("wavelet", "wavelet", "training.dissolvers.wavelet:build",
                  "Haar wavelet shrinkage at the dissolving resolution: detail weaker than the threshold is wiped out",
                  (Setting("wavelet_threshold", float, 0.05,
                           "wavelet_*: soft threshold of the Haar detail coefficients, in pixel units",
                           valid=lambda s: 0.0 <= s <= 1.0, requirement="in [0, 1] (pixel units)"),
                   Setting("wavelet_levels", int, 2, "wavelet_*: Haar levels (the resolution must divide by 2^levels)",
                           valid=lambda n: 1 <= n <= 5, requirement="an integer in [1, 5]"))),
)

NO_DISSOLVING = "none"  # DissolveConfig.method of a CSI run: no third branch, so no entry and no builder


def methods() -> tuple[str, ...]:
    """Every valid DissolveConfig.method, ``none`` (CSI) first."""
    return (NO_DISSOLVING, *(spec.method for spec in REGISTRY))


def spec_of(method: str) -> DissolverSpec:
    for spec in REGISTRY:
        if spec.method == method:
            return spec
    raise UserError(f"--shift_trans_type: no dissolver {method!r}; valid: {', '.join(methods())}")


def all_settings() -> dict[str, Setting]:
    """Every setting of every dissolver, once each (dissolvers may share one, as the two blurs share
    --kernel_size); two different settings under one name are a mistake in the table."""
    found: dict[str, Setting] = {}
    for spec in REGISTRY:
        for setting in spec.settings:
            if found.setdefault(setting.name, setting) is not setting:
                raise ValueError(f"two dissolvers define different settings named {setting.name!r}")
    return found
