"""The upstream CLI, as an adapter.

The paper's README commands must work verbatim (``--mode simclr_DIA
--shift_trans_type diffusion_rotation ...``). This module is the only place
that parses those flags and translates them, through the tables below, into
the orthogonal fields of ``common.config``.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time
from pathlib import Path
from typing import get_args

from common import dissolvers
from common.config import (AUTO_BACKBONE, EVAL_CROP, AugmentConfig, DataConfig, DissolveConfig, EvalConfig,
                           LossConfig, ModelConfig, OptimConfig, PredictConfig, RunConfig, ShiftConfig, ShiftKind,
                           ThresholdConfig, TrainConfig)
from common.errors import UserError

# --mode -> whether the dissolved branch exists (DIA: three branches, CSI: two).
TRAIN_MODES = {"simclr_CSI": False, "simclr_DIA": True}

# --shift_trans_type -> (dissolve method, shift kind), spelled <prefix>_<shift>, from the dissolver table
# (common/dissolvers.py). The plain shift names (no prefix) are upstream's simclr_DIA with a plain shift; upstream's
# bare blurgaussian/blurmedian/blurnone mean rotation.
def shift_trans_types() -> dict[str, tuple[str, str]]:
    table = {}
    for spec in dissolvers.REGISTRY:
        for shift in get_args(ShiftKind):
            table[f"{spec.prefix}_{shift}" if spec.prefix else shift] = (spec.method, shift)
        if spec.bare_prefix_is_rotation:
            table[spec.prefix] = (spec.method, "rotation")
    return table

STEP_SCALE = 100  # upstream: t = floor(100 * u), u in [offset, upper)



def shown_default(action: argparse.Action) -> str | None:
    """How ``--help`` spells a flag's default; None where there is none to show (no default, a switch that is off)."""
    default = action.default
    if action.help == argparse.SUPPRESS or default is None or default == argparse.SUPPRESS:
        return None
    if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):  # store_true and the like
        return None
    if isinstance(default, list):  # nargs="+": typed as space-separated words
        return " ".join(map(str, default))
    if isinstance(default, tuple):  # a comma-separated type such as --dim_mults
        return ",".join(map(str, default))
    return str(default)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends in "(default: X)", also for flags without help text, so a default is never a guess."""

    def _format_action(self, action: argparse.Action) -> str:
        shown = shown_default(action)
        if shown is not None and "%(default)" not in (action.help or ""):
            action = copy.copy(action)
            suffix = f"(default: {shown})".replace("%", "%%")
            action.help = f"{action.help} {suffix}" if action.help else suffix
        return super()._format_action(action)


class CLIParser(argparse.ArgumentParser):
    """argparse with the project's error style: one line naming the flag, exit status 2 (no usage dump);
    ``--help`` shows every default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} ({self.prog} --help lists every flag)\n")


def finite_float(text: str) -> float:
    """A float flag's type: nan and ±inf are refused at parse time, before any work starts."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value

# What --amp does on each device (train.py, eval.py and train_eval_ddpm.py say the same).
AMP_DEVICES = ("Where the device computes bf16 natively: CUDA (Ampere or newer), or a CPU with AVX512-BF16 or AMX, "
               "2-3x faster there (docs/speed.md); elsewhere one line, and fp32.")

def _floor(value: float) -> int:
    """⌊value⌋, robust to float error: 100·0.3 = 30.000000000000004 and 100·0.29 = 28.999999999999996."""
    nearest = round(value)
    return nearest if abs(value - nearest) < 1e-9 else math.floor(value)


def t_range_from_offsets(diffusion_offset: float = 0.3, diffusion_upper_offset: float = 1.0,
                         step_scale: int = STEP_SCALE) -> tuple[int, int]:
    """Upstream's t = ⌊step_scale·u⌋, u ~ U[offset, upper), as an inclusive integer range.

    The defaults give (30, 99). ``u`` never reaches ``upper``, so t_max is the
    largest integer strictly below step_scale·upper.
    """
    if not 0 <= diffusion_offset < diffusion_upper_offset:
        raise UserError(f"--diffusion_offset {diffusion_offset} must be >= 0 and below "
                        f"--diffusion_upper_offset {diffusion_upper_offset}")
    t_min = _floor(step_scale * diffusion_offset)
    upper = step_scale * diffusion_upper_offset
    t_max = _floor(upper) - 1 if abs(upper - round(upper)) < 1e-9 else _floor(upper)
    return t_min, max(t_min, t_max)


def _add_data_flags(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", required=required, help="dataset name, see `python -m datasets --help`")
    g.add_argument("--data_root", default=None, help="folder holding the dataset (no download unless --download)")
    g.add_argument("--one_class_idx", type=int, default=None, help="normal class index (default: the dataset's)")
    g.add_argument("--normal_classes", default=None, help="folder dataset: comma-separated normal class folders")
    g.add_argument("--image_size", type=int, default=None, help="classifier input size (default: the dataset's)")
    g.add_argument("--download", action="store_true", help="allow downloading MedMNIST/CIFAR files")
    g.add_argument("--num_workers", type=int, default=0)


def build_train_parser() -> argparse.ArgumentParser:
    p = CLIParser(description="Train CSI or DIA (one-class contrastive + shift prediction).")
    _add_data_flags(p, required=True)
    p.add_argument("--split_seed", type=int, default=0,
                   help="the data's validation/test split (shared with the DDPM; independent of --seed)")
    p.add_argument("--model", default=AUTO_BACKBONE,
                   help="resnet18 (CIFAR stem, 28/32 px), resnet18_imagenet (ImageNet stem, 224 px), or auto: "
                        "resnet18 for images up to 32 px, else resnet18_imagenet")
    p.add_argument("--width", type=int, default=64, help="ResNet base width (64 = standard ResNet-18)")
    p.add_argument("--mode", default="simclr_DIA", choices=sorted(TRAIN_MODES))
    p.add_argument("--shift_trans_type", default="diffusion_rotation", choices=sorted(shift_trans_types()))
    p.add_argument("--diffusion_model_path", default=None,
                   help="DDPM run folder (train_eval_ddpm.py --save_dir) or one checkpoint folder of it")
    p.add_argument("--diffusion_checkpoint", default="best",
                   help="which checkpoint of the DDPM run dissolves: best (lowest normal-validation eps-loss), "
                        "last, or a step kept with train_eval_ddpm.py --keep_checkpoints")
    p.add_argument("--diff_resolution", type=int, default=None,
                   help="dissolving resolution R (default: the DDPM's own; 32 for the blurs)")
    p.add_argument("--diffusion_offset", type=finite_float, default=0.3, help="lower bound of t/100")
    p.add_argument("--diffusion_upper_offset", type=finite_float, default=1.0, help="upper bound of t/100")
    p.add_argument("--diffusion_t_granularity", choices=["sample", "batch"], default="sample",
                   help="draw t per sample, or once per (batch, shift) as upstream")
    p.add_argument("--diffusion_weights", choices=["auto", "ema", "raw"], default="auto",
                   help="DDPM weights; auto = the better on validation epsilon-loss (upstream: raw)")
    p.add_argument("--diffusion_input_range", choices=["normalized", "upstream"], default="normalized",
                   help="upstream feeds [0,1] images to the [-1,1] DDPM (an upstream quirk)")
    for setting in dissolvers.all_settings().values():  # each dissolver's own settings, from its table entry
        p.add_argument(f"--{setting.name}", type=finite_float if setting.type is float else setting.type,
                       default=setting.default, help=setting.help)
    p.add_argument("--dissolve_dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="DDPM dissolver: UNet forward under bf16/fp16 autocast (GPU fast path; x0 stays fp32)")
    p.add_argument("--dissolve_graphs", action="store_true",
                   help="DDPM dissolver: capture the UNet with CUDA graphs (torch.compile reduce-overhead); CUDA only")
    p.add_argument("--dissolve_cache", action="store_true",
                   help="DDPM dissolver: precompute every (image, flip, t) once and look it up (small data sets)")
    p.add_argument("--contamination_ratio", type=finite_float, default=0.0)
    p.add_argument("--loss_mode", default="naive", choices=["naive", "shifted_removed"],
                   help="naive: the paper's DIA-(a) (main Table 1); shifted_removed: DIA-(b), the ablation")
    p.add_argument("--temperature", type=finite_float, default=0.5)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--steps_per_epoch", type=int, default=200, help="iteration cap per epoch (upstream ~200)")
    p.add_argument("--optimizer", default="lars", choices=["sgd", "lars"])
    p.add_argument("--lr_init", type=finite_float, default=0.1)
    p.add_argument("--warmup", type=finite_float, default=10, help="warm-up epochs (lr_init -> 10x lr_init)")
    p.add_argument("--weight_decay", type=finite_float, default=1e-6)
    p.add_argument("--resize_factor", type=finite_float, default=0.08, help="lower bound of the crop scale")
    p.add_argument("--save_step", type=int, default=1, help="save `last` and validate every N epochs")
    p.add_argument("--val_every", type=int, default=None, help="validate every N epochs (default: --save_step)")
    p.add_argument("--val_samples", type=int, default=2, help="test-time samples for in-training validation")
    p.add_argument("--keep_checkpoints", action="store_true",
                   help="also keep checkpoints/epochNNNN.pt at every validation (for the upstream-protocol figure)")
    p.add_argument("--suffix", default=None, help="appended to the automatic log-dir name")
    p.add_argument("--logdir", default=None, help="default logs/<auto name>")
    p.add_argument("--resume_path", default=None, help="log dir (or last.pt) to resume from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast for the encoder (the loss stays fp32). " + AMP_DEVICES)
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument("--device", default=None)
    p.add_argument("--sync_bn", action="store_true", help="torchrun: SyncBatchNorm across processes (CUDA)")
    p.add_argument("--dist_backend", default=None, choices=["gloo", "nccl"], help="torchrun backend")
    p.add_argument("--global_batch_size", type=int, default=None,
                   help="torchrun: total batch, split evenly over processes (else --batch_size per process)")
    return p


def _data_config(args: argparse.Namespace, contamination: float = 0.0) -> DataConfig:
    """eval.py has no --split_seed: it evaluates on the split the checkpoint was trained with."""
    normal = tuple(c for c in args.normal_classes.split(",") if c) if args.normal_classes else None
    return DataConfig(dataset=args.dataset, data_root=args.data_root, one_class_idx=args.one_class_idx,
                      image_size=args.image_size, normal_classes=normal, contamination_ratio=contamination,
                      download=args.download, num_workers=args.num_workers,
                      split_seed=getattr(args, "split_seed", 0))


def auto_logdir(args: argparse.Namespace) -> str:
    """Upstream's run name plus a timestamp, so reruns never collide (upstream asks before overwriting)."""
    cls = "default" if args.one_class_idx is None else args.one_class_idx
    name = f"{args.dataset}_{args.model}_{args.mode}_{args.shift_trans_type}_one_class_{cls}"
    if args.suffix:
        name += f"_{args.suffix}"
    return str(Path("logs") / f"{name}_{time.strftime('%Y%m%d-%H%M%S')}")


def resume_logdir(resume_path: str | None) -> str | None:
    """A resumed run keeps writing into the folder it resumes from."""
    if not resume_path:
        return None
    path = Path(resume_path)
    return str(path if path.is_dir() else path.parent)


def fitted_warmup(warmup: float, epochs: int) -> float:
    """Upstream's 10 warm-up epochs do not fit a short run (``--epochs 2``): warm up over half of it, and say so."""
    if epochs <= 0 or warmup < epochs:
        return warmup
    if os.environ.get("RANK", "0") == "0":
        print(f"note: --warmup {warmup:g} does not fit --epochs {epochs}: warming up over {epochs / 2:g} epochs",
              flush=True)
    return epochs / 2


def dissolver_settings(args: argparse.Namespace, method: str) -> dict:
    """The chosen dissolver's own settings from their flags. Every setting flag is checked, also one that the
    chosen dissolver does not use, so a bad value never passes silently."""
    for setting in dissolvers.all_settings().values():
        setting.check(getattr(args, setting.name))
    if method == dissolvers.NO_DISSOLVING:
        return {}
    return {s.name: getattr(args, s.name) for s in dissolvers.spec_of(method).settings}


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Translate the upstream flags into typed config; the only place that reads mode strings."""
    method, shift_kind = shift_trans_types()[args.shift_trans_type]
    if not TRAIN_MODES[args.mode]:
        if method not in ("identity",):
            raise UserError(f"--shift_trans_type {args.shift_trans_type} dissolves, which needs --mode simclr_DIA")
        method = "none"
    t_min, t_max = t_range_from_offsets(args.diffusion_offset, args.diffusion_upper_offset)
    dissolve = DissolveConfig(
        method=method, checkpoint=args.diffusion_model_path, checkpoint_choice=args.diffusion_checkpoint,
        resolution=args.diff_resolution,
        t_min=t_min, t_max=t_max, per_sample_t=args.diffusion_t_granularity == "sample",
        weights=args.diffusion_weights, input_range=args.diffusion_input_range,
        settings=dissolver_settings(args, method), unet_dtype=args.dissolve_dtype, graphs=args.dissolve_graphs,
        cache=args.dissolve_cache)
    logdir = args.logdir or resume_logdir(args.resume_path) or auto_logdir(args)
    run = RunConfig(logdir=logdir, seed=args.seed, save_step=args.save_step,
                    val_every=args.val_every, val_samples=args.val_samples, amp=args.amp, device=args.device,
                    resume_path=args.resume_path, channels_last=args.channels_last, compile=args.compile,
                    sync_bn=args.sync_bn, dist_backend=args.dist_backend, keep_checkpoints=args.keep_checkpoints)
    return TrainConfig(
        data=_data_config(args, args.contamination_ratio), run=run, dissolve=dissolve,
        shift=ShiftConfig(kind=shift_kind), model=ModelConfig(backbone=args.model, width=args.width),
        loss=LossConfig(temperature=args.temperature, mode=args.loss_mode),
        optim=OptimConfig(kind=args.optimizer, lr_init=args.lr_init,
                          warmup_epochs=fitted_warmup(args.warmup, args.epochs),
                          weight_decay=args.weight_decay, epochs=args.epochs,
                          steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                          global_batch_size=args.global_batch_size),
        augment=AugmentConfig(crop_scale_min=args.resize_factor),
    )


# eval.py --shift_trans_type: the shift used at test time (no dissolving at test time).
def eval_shifts() -> dict[str, str]:
    return {name: kind for name, (_, kind) in shift_trans_types().items()}


def build_eval_parser() -> argparse.ArgumentParser:
    p = CLIParser(description="Evaluate a CSI/DIA checkpoint with the CSI score (ood_pre), "
                                "or flag anomalous images with its calibrated threshold (predict).")
    _add_data_flags(p, required=False)
    p.add_argument("--mode", default="ood_pre", choices=sorted(EVAL_MODES))
    p.add_argument("--load_path", required=True, help="checkpoint file (last.pt/best.pt) or its log dir")
    p.add_argument("--ood_score", nargs="+", default=["CSI"], help="CSI, simclr or shift")
    p.add_argument("--ood_samples", type=int, default=10)
    p.add_argument("--resize_factor", type=finite_float, default=EVAL_CROP[0], help="area of the test-time crop")
    p.add_argument("--resize_fix", action=argparse.BooleanOptionalAction, default=True,
                   help="crop area fixed at --resize_factor, as in-training validation scores; --no-resize_fix: "
                        "random area in [--resize_factor, 1]")
    p.add_argument("--shift_trans_type", default=None, choices=sorted(eval_shifts()),
                   help="test-time shift (default: the checkpoint's)")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--print_score", action="store_true")
    p.add_argument("--out_dir", default=None, help="default <checkpoint dir>/eval_<split>")
    p.add_argument("--batch_size", type=int, default=None,
                   help="default 128; predict: the calibration's (memory only: an image's score does not depend on it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the AUROC CI")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast for feature extraction (scores accumulate in fp32). " + AMP_DEVICES)
    p.add_argument("--device", default=None)
    p.add_argument("--model", default=None, help="ignored: the checkpoint rebuilds its model")
    # Accepted for upstream compatibility; they have no effect at test time (no dissolving).
    p.add_argument("--diffusion_offset", type=finite_float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--diffusion_upper_offset", type=finite_float, default=None, help=argparse.SUPPRESS)
    g = p.add_argument_group("threshold and predict")
    g.add_argument("--threshold_rule", default=None, choices=["recall", "f1"],
                   help="recall: keep --target_normal_recall of normal validation images (default); "
                        "f1: best F1 on validation. predict: default the stored rule")
    g.add_argument("--target_normal_recall", type=finite_float, default=None, help="default 0.95")
    g.add_argument("--calibrate_only", action="store_true", help="ood_pre: calibrate on validation, skip --split")
    g.add_argument("--input", nargs="+", default=None, help="predict: image files, folders or globs")
    g.add_argument("--save_grid", action="store_true", help="predict: PNG of the top-k extremes")
    g.add_argument("--top_k", type=int, default=8, help="predict: images per row of the grid")
    return p


def _threshold_config(args: argparse.Namespace) -> ThresholdConfig | None:
    """None when neither threshold flag was given (predict then uses the stored threshold)."""
    if args.threshold_rule is None and args.target_normal_recall is None:
        return None
    given = {"rule": args.threshold_rule, "target_normal_recall": args.target_normal_recall}
    return ThresholdConfig(**{name: value for name, value in given.items() if value is not None})


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    if len(args.ood_score) != 1:
        raise UserError("--ood_score takes one score (CSI, simclr or shift)")
    if args.input:
        raise UserError("--input is read by --mode predict only")
    data = _data_config(args) if args.dataset else None
    crop = (args.resize_factor, args.resize_factor if args.resize_fix else 1.0)
    shift = eval_shifts()[args.shift_trans_type] if args.shift_trans_type else None
    return EvalConfig(load_path=args.load_path, out_dir=args.out_dir, data=data, split=args.split,
                      score=args.ood_score[0], shift_kind=shift, n_samples=args.ood_samples,
                      crop_scale=crop, batch_size=128 if args.batch_size is None else args.batch_size,
                      seed=args.seed, n_boot=args.n_boot, print_score=args.print_score, device=args.device,
                      amp=args.amp, threshold=_threshold_config(args) or ThresholdConfig(),
                      calibrate_only=args.calibrate_only)


def predict_config_from_args(args: argparse.Namespace) -> PredictConfig:
    if args.dataset or args.data_root:
        raise UserError("--mode predict reads no dataset (--dataset/--data_root): it scores --input with the "
                        "feature bank stored by eval.py")
    return PredictConfig(load_path=args.load_path, inputs=tuple(args.input or ()), out_dir=args.out_dir,
                         threshold=_threshold_config(args), batch_size=args.batch_size,
                         save_grid=args.save_grid, top_k=args.top_k, device=args.device, amp=args.amp)


# eval.py --mode -> its typed config; eval.py runs it by the config's type.
EVAL_MODES = {"ood_pre": eval_config_from_args, "predict": predict_config_from_args}


def config_from_eval_args(args: argparse.Namespace) -> EvalConfig | PredictConfig:
    return EVAL_MODES[args.mode](args)
