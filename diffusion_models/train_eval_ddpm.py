"""DDPM pretraining (``--mode train``) and inspection (``--mode eval``) for DIA.

Works from the repository root (``python diffusion_models/train_eval_ddpm.py``)
and from inside ``diffusion_models/`` (``python train_eval_ddpm.py``), as
upstream's README runs it. Examples::

    python diffusion_models/train_eval_ddpm.py --mode train --dataset breastmnist \
        --data_root datasets/builtin --one_class_idx 1 --train_steps 2000
    python diffusion_models/train_eval_ddpm.py --mode eval --load_path runs/ddpm/breastmnist-c1-32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    _ROOT = str(Path(__file__).resolve().parents[1])
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

from common.cli import AMP_DEVICES, CLIParser, finite_float  # noqa: E402
from common.errors import UserError, exit_on_user_error  # noqa: E402
from diffusion_models.diagnostic import format_change  # noqa: E402
from diffusion_models.trainer import DDPMTrainConfig, TrainResult, run_training  # noqa: E402
from diffusion_models.visualize import (  # noqa: E402
    CPU_SAMPLE_STEPS, CUDA_SAMPLE_STEPS, DDPMEvalConfig, EvalResult, run_eval)


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4,8, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = CLIParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("train", "eval"), required=True)
    data = p.add_argument_group("data")
    data.add_argument("--dataset")
    data.add_argument("--data_root")
    data.add_argument("--one_class_idx", type=int, help="normal class (default: the dataset's)")
    data.add_argument("--normal_classes", help="folder dataset: comma-separated normal class folders, as train.py")
    data.add_argument("--split_seed", type=int, default=0,
                      help="the data's validation/test split; must match train.py's (independent of --seed)")
    data.add_argument("--download", action="store_true")
    model = p.add_argument_group("model")
    model.add_argument("--image_size", type=int, default=32, help="DDPM resolution")
    model.add_argument("--dim", type=int, default=64)
    model.add_argument("--dim_mults", type=_int_tuple, default=(1, 2, 4, 8))
    train = p.add_argument_group("training")
    train.add_argument("--train_steps", type=int, default=25_000)
    train.add_argument("--batch_size", type=int, default=64)
    train.add_argument("--grad_accum", type=int, default=2)
    train.add_argument("--lr", type=finite_float, default=8e-5)
    train.add_argument("--ema_decay", type=finite_float, default=0.995)
    train.add_argument("--ema_every", type=int, default=10)
    train.add_argument("--t_train_max", type=int, default=999, help="train only on t <= this (measured option)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--amp", action="store_true",
                       help="bf16 autocast for the UNet's forward (loss and validation stay fp32); off by default, "
                            "the paper found mixed precision hurt its DDPM (docs/speed.md). " + AMP_DEVICES)
    train.add_argument("--device", help="default: cuda when available")
    out = p.add_argument_group("output")
    out.add_argument("--save_dir", help="default: runs/ddpm/<dataset>-c<class>-<image_size>")
    out.add_argument("--save_every", type=int, default=1000)
    out.add_argument("--keep_checkpoints", action="store_true",
                     help="keep every --save_every checkpoint under <save_dir>/steps/<step>; pick one to dissolve "
                          "with train.py --diffusion_checkpoint STEP")
    out.add_argument("--val_every", type=int, default=250)
    out.add_argument("--val_repeats", type=int, default=4, help="(t, noise) draws per validation image")
    out.add_argument("--resume", action="store_true", help="continue from <save_dir>/last")
    ev = p.add_argument_group("eval")
    ev.add_argument("--load_path", "--diffusion_model_path", dest="load_path",
                    help="a run folder (uses best/) or a checkpoint folder (train.py calls it --diffusion_model_path)")
    ev.add_argument("--out_dir", help="default: <checkpoint>/eval")
    ev.add_argument("--num_samples", type=int, default=16)
    ev.add_argument("--sample_steps", type=int, default=None,
                    help=f"ancestral sampling steps (default: {CUDA_SAMPLE_STEPS} on CUDA, {CPU_SAMPLE_STEPS} "
                         "elsewhere, where 1000 take minutes)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def train_config(a: argparse.Namespace) -> DDPMTrainConfig:
    if not a.dataset:
        raise UserError("--dataset is required for --mode train")
    normal = tuple(c for c in a.normal_classes.split(",") if c) if a.normal_classes else None
    return DDPMTrainConfig(
        dataset=a.dataset, data_root=a.data_root, one_class_idx=a.one_class_idx, normal_classes=normal,
        split_seed=a.split_seed, download=a.download,
        image_size=a.image_size, dim=a.dim, dim_mults=a.dim_mults, train_steps=a.train_steps,
        batch_size=a.batch_size, grad_accum=a.grad_accum, lr=a.lr, ema_decay=a.ema_decay,
        ema_every=a.ema_every, t_train_max=a.t_train_max, seed=a.seed, save_dir=a.save_dir,
        save_every=a.save_every, keep_checkpoints=a.keep_checkpoints, val_every=a.val_every,
        val_repeats=a.val_repeats, resume=a.resume, amp=a.amp, device=a.device)


def eval_config(a: argparse.Namespace) -> DDPMEvalConfig:
    if not a.load_path:
        raise UserError("--load_path is required for --mode eval")
    return DDPMEvalConfig(load_path=a.load_path, out_dir=a.out_dir, data_root=a.data_root,
                          download=a.download, num_samples=a.num_samples, sample_steps=a.sample_steps,
                          val_repeats=a.val_repeats, seed=a.seed, device=a.device)


def report_train(r: TrainResult) -> None:
    v = r.last_val
    print(f"trained to step {r.step} in {r.train_seconds:.0f} s ({r.n_params / 1e6:.2f}M parameters)")
    print(f"best step {r.best_step}: val eps-L1 at t in [30,100) = {r.best_val_loss:.4f}")
    print(f"last step: val eps-L1 t in [30,100) raw {v.raw_dissolve:.4f} ema {v.ema_dissolve:.4f}; "
          f"all t raw {v.raw_all:.4f} ema {v.ema_all:.4f}")
    print(f"checkpoints: {r.save_dir / 'best'} and {r.save_dir / 'last'}")


def report_eval(r: EvalResult) -> None:
    for weights, losses in r.losses.items():
        cells = ", ".join(f"{kind} {'n/a' if v is None else f'{v:.4f}'}" for kind, v in losses.items())
        print(f"val eps-L1 at t in [30,100), {weights} weights: {cells}")
    print("mean |x - x0_hat| on validation images, normal/anomalous (ratio):")
    for line in format_change(r.change):
        print(f"  {line}")
    if r.along_training:
        print("kept checkpoints (validation images; ratio and change AUROC on raw weights):")
        for line in r.along_training:
            print(f"  {line}")
    print(f"preferred weights: {r.preferred}; wrote {len(r.files)} files to {r.out_dir}")


MODES = {"train": (train_config, run_training, report_train), "eval": (eval_config, run_eval, report_eval)}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    to_config, run, report = MODES[args.mode]
    report(run(to_config(args)))


if __name__ == "__main__":
    main()
