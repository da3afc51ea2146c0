"""Typed configuration, one frozen dataclass per stage, validated once.

Nothing past the CLI adapter (``common/cli.py``) sees an upstream mode string:
``--shift_trans_type diffusion_rotation`` arrives here as
``DissolveConfig(method="ddpm")`` plus ``ShiftConfig(kind="rotation")``.
Cross-field checks live in ``__post_init__`` and their messages name the flag.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from common import dissolvers
from common.errors import UserError

ShiftKind = Literal["rotation", "cutperm"]
LossMode = Literal["shifted_removed", "naive"]
OptimizerKind = Literal["sgd", "lars"]
ScoreKind = Literal["CSI", "simclr", "shift"]
Weights = Literal["auto", "ema", "raw"]
InputRange = Literal["normalized", "upstream"]
UnetDtype = Literal["fp32", "bf16", "fp16"]
ThresholdRule = Literal["recall", "f1"]

# --model auto: the backbone follows the image size (training.run.fit_backbone), so a 224 px folder gets the
# ImageNet stem and a 28 px MedMNIST set the CIFAR stem without a flag.
AUTO_BACKBONE = "auto"

# The test-time crop, area fixed at 0.54 (the paper's --resize_factor 0.54 --resize_fix): in-training validation
# and eval.py's default both use it, so a checkpoint is scored the way it was selected.
EVAL_CROP = (0.54, 0.54)


def _check_choice(value: Any, literal: Any, flag: str) -> None:
    choices = get_args(literal)
    if value not in choices:
        raise UserError(f"{flag}: {value!r} is not one of {', '.join(map(str, choices))}")


def _check_positive(value: float, flag: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str
    data_root: str | None = None
    one_class_idx: int | None = None
    image_size: int | None = None
    normal_classes: tuple[str, ...] | None = None
    contamination_ratio: float = 0.0
    download: bool = False
    split_seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.contamination_ratio < 1.0:
            raise UserError(f"--contamination_ratio must be in [0, 1), got {self.contamination_ratio}")
        if self.image_size is not None:
            _check_positive(self.image_size, "--image_size")
        _check_positive(self.num_workers, "--num_workers", allow_zero=True)


@dataclass(frozen=True)
class DissolveConfig:
    """How the third (dissolved) branch is made. ``none`` means CSI: no third branch.

    ``method`` names an entry of ``common.dissolvers.REGISTRY``; ``settings`` holds that entry's own settings
    (``kernel_size`` of the blurs, ``noise_std`` of the noise), completed with their defaults. The DDPM
    dissolver's fields below are typed ones, as the method's own.
    """

    method: str = dissolvers.NO_DISSOLVING
    settings: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoint_choice: str = "best"  # which of the DDPM run's checkpoints: best, last or a kept step
    resolution: int | None = None  # None: the DDPM's own; 32 for the blurs
    t_min: int = 30
    t_max: int = 99
    per_sample_t: bool = True
    weights: Weights = "auto"
    input_range: InputRange = "normalized"
    unet_dtype: UnetDtype = "fp32"  # the DDPM UNet forward under bf16/fp16 autocast (GPU fast path)
    graphs: bool = False  # capture the UNet with CUDA graphs (torch.compile reduce-overhead); CUDA only
    cache: bool = False  # precompute every (image, flip, t) once (diffusion_models/dissolve_cache.py)

    def __post_init__(self) -> None:
        self._check_settings()
        _check_choice(self.unet_dtype, UnetDtype, "--dissolve_dtype")
        if (self.cache or self.graphs or self.unet_dtype != "fp32") and self.method != "ddpm":
            raise UserError("--dissolve_cache, --dissolve_graphs and --dissolve_dtype apply to the DDPM "
                            "dissolver only: they need a diffusion_* --shift_trans_type")
        _check_choice(self.weights, Weights, "--diffusion_weights")
        _check_choice(self.input_range, InputRange, "--diffusion_input_range")
        if self.checkpoint_choice not in ("best", "last") and not self.checkpoint_choice.isdigit():
            raise UserError(f"--diffusion_checkpoint must be best, last or a step number, got "
                            f"{self.checkpoint_choice!r}")
        if self.method == "ddpm" and not self.checkpoint:
            raise UserError("--diffusion_model_path is required with a diffusion_* --shift_trans_type")
        if not 0 <= self.t_min <= self.t_max < 1000:
            raise UserError(
                f"--diffusion_offset/--diffusion_upper_offset give t in [{self.t_min}, {self.t_max}];"
                " need 0 <= t_min <= t_max < 1000")
        if self.resolution is not None:
            _check_positive(self.resolution, "--diff_resolution")

    def _check_settings(self) -> None:
        """The method exists, every setting is one of its own and valid; missing ones get their defaults."""
        if self.method == dissolvers.NO_DISSOLVING:
            own: tuple[dissolvers.Setting, ...] = ()
        else:
            own = dissolvers.spec_of(self.method).settings
        names = {s.name for s in own}
        for name in self.settings:
            if name not in names:
                raise UserError(f"--{name} does not apply to the {self.method!r} dissolver"
                                + (f" (its settings: {', '.join('--' + n for n in sorted(names))})" if names else ""))
        completed = {s.name: self.settings.get(s.name, s.default) for s in own}
        for setting in own:
            setting.check(completed[setting.name])
        object.__setattr__(self, "settings", completed)

    def setting(self, name: str) -> Any:
        """One of the method's own settings (``cfg.setting("kernel_size")``)."""
        return self.settings[name]

    @classmethod
    def from_dict(cls, values: dict) -> "DissolveConfig":
        """A saved run's dissolve config; runs saved before settings moved into ``settings`` kept them as
        fields (kernel_size, noise_std): those that belong to the run's method move in, the rest are dropped."""
        values = dict(values)
        settings = dict(values.pop("settings", {}))
        method = values.get("method", dissolvers.NO_DISSOLVING)
        own = set() if method == dissolvers.NO_DISSOLVING else {s.name for s in dissolvers.spec_of(method).settings}
        for name in set(values) & set(dissolvers.all_settings()):
            value = values.pop(name)
            if name in own:
                settings.setdefault(name, value)
        return cls(**values, settings=settings)

    @property
    def enabled(self) -> bool:
        return self.method != dissolvers.NO_DISSOLVING


@dataclass(frozen=True)
class ShiftConfig:
    kind: ShiftKind = "rotation"
    n_shifts: int = 4

    def __post_init__(self) -> None:
        _check_choice(self.kind, ShiftKind, "--shift_trans_type")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"  # a models.BACKBONES key, or AUTO_BACKBONE before training resolves it
    width: int = 64
    proj_dim: int = 128

    def __post_init__(self) -> None:
        _check_positive(self.width, "--width")


@dataclass(frozen=True)
class LossConfig:
    temperature: float = 0.5
    mode: LossMode = "naive"  # the paper's DIA-(a), main Table 1 (supp. Tables 12-13)

    def __post_init__(self) -> None:
        _check_choice(self.mode, LossMode, "--loss_mode")
        _check_positive(self.temperature, "--temperature")


@dataclass(frozen=True)
class OptimConfig:
    kind: OptimizerKind = "lars"
    lr_init: float = 0.1
    warmup_epochs: float = 10.0
    weight_decay: float = 1e-6
    momentum: float = 0.9
    epochs: int = 1000
    steps_per_epoch: int = 200
    batch_size: int = 32  # per process, as upstream
    global_batch_size: int | None = None  # if given: split over the processes (must divide)

    def __post_init__(self) -> None:
        _check_choice(self.kind, OptimizerKind, "--optimizer")
        _check_positive(self.lr_init, "--lr_init")
        _check_positive(self.epochs, "--epochs")
        _check_positive(self.steps_per_epoch, "--steps_per_epoch")
        _check_positive(self.batch_size, "--batch_size")
        _check_positive(self.warmup_epochs, "--warmup", allow_zero=True)
        if self.warmup_epochs >= self.epochs:
            raise UserError(f"--warmup ({self.warmup_epochs}) must be smaller than --epochs ({self.epochs})")


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale_min: float = 0.08

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise UserError(f"--resize_factor must be in (0, 1], got {self.crop_scale_min}")


@dataclass(frozen=True)
class RunConfig:
    logdir: str
    seed: int = 0
    save_step: int = 1
    val_every: int | None = None
    val_samples: int = 2
    amp: bool = False
    device: str | None = None
    resume_path: str | None = None
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    dist_backend: str | None = None
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        _check_positive(self.save_step, "--save_step")
        _check_positive(self.val_samples, "--val_samples")
        if self.val_every is not None:
            _check_positive(self.val_every, "--val_every")

    @property
    def validate_every(self) -> int:
        """Validation runs with each save unless ``--val_every`` asks otherwise."""
        return self.val_every or self.save_step


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    run: RunConfig
    dissolve: DissolveConfig = field(default_factory=DissolveConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def n_branches(self) -> int:
        """CSI contrasts two views; DIA adds the dissolved branch."""
        return 3 if self.dissolve.enabled else 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        def build(kind, values):
            values = dict(values)
            if kind is DataConfig and values.get("normal_classes") is not None:
                values["normal_classes"] = tuple(values["normal_classes"])
            return kind(**values)

        return cls(
            data=build(DataConfig, d["data"]), run=build(RunConfig, d["run"]),
            dissolve=DissolveConfig.from_dict(d["dissolve"]), shift=build(ShiftConfig, d["shift"]),
            model=build(ModelConfig, d["model"]), loss=build(LossConfig, d["loss"]),
            optim=build(OptimConfig, d["optim"]), augment=build(AugmentConfig, d["augment"]),
        )


@dataclass(frozen=True)
class ThresholdConfig:
    """How the normal/anomalous threshold is calibrated on validation (evals/calibrate.py)."""

    rule: ThresholdRule = "recall"
    target_normal_recall: float = 0.95

    def __post_init__(self) -> None:
        _check_choice(self.rule, ThresholdRule, "--threshold_rule")
        if not 0.0 < self.target_normal_recall <= 1.0:
            raise UserError(f"--target_normal_recall must be in (0, 1], got {self.target_normal_recall}")


@dataclass(frozen=True)
class EvalConfig:
    load_path: str
    out_dir: str | None = None
    data: DataConfig | None = None  # None: the data the checkpoint was trained on
    split: Literal["test", "val"] = "test"
    score: ScoreKind = "CSI"
    shift_kind: ShiftKind | None = None  # None: the checkpoint's shift
    n_samples: int = 10
    crop_scale: tuple[float, float] = EVAL_CROP
    batch_size: int = 128
    seed: int = 0
    n_boot: int = 1000
    print_score: bool = False
    device: str | None = None
    amp: bool = False
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    calibrate_only: bool = False  # fit the scorer and calibrate on validation; skip --split

    def __post_init__(self) -> None:
        _check_choice(self.score, ScoreKind, "--ood_score")
        _check_choice(self.split, Literal["test", "val"], "--split")
        _check_positive(self.n_samples, "--ood_samples")
        _check_positive(self.batch_size, "--batch_size")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise UserError(f"--resize_factor must be in (0, 1], got {self.crop_scale[0]}")


@dataclass(frozen=True)
class PredictConfig:
    """``eval.py --mode predict``: score image files with a calibrated checkpoint."""

    load_path: str
    inputs: tuple[str, ...]  # files, folders (searched recursively) or glob patterns
    out_dir: str | None = None
    threshold: ThresholdConfig | None = None  # None: the threshold stored by eval.py
    batch_size: int | None = None  # None: eval.py's; sets memory use only, scores do not depend on it
    save_grid: bool = False
    top_k: int = 8
    device: str | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UserError("--mode predict needs --input FILE, FOLDER or GLOB")
        if self.batch_size is not None:
            _check_positive(self.batch_size, "--batch_size")
        _check_positive(self.top_k, "--top_k")
