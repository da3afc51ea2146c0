"""The paper-scale GPU run as data: its two scales and the expected time of every stage.

``scripts/gpu/gpu_paper.py`` runs what this module describes; the expected times come from the
H100 figures measured on 2026-11-27 and are printed as the stage plan
before anything runs, so the arithmetic behind "it fits 9 minutes" is on screen (docs/gpu.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# H100 figures, milliseconds; B = 32, K = 4, 32 px, three branches = 384 images.
ENCODER_MS = 9.4  # ResNet-18 CIFAR stem fwd+bwd, bf16 + channels_last
AUGMENT_MS = 16.0  # kornia SimCLR augmentation of the 384 rows
DISSOLVE_FP32_MS = 36.0  # paper UNet, 128 images, fp32 (the cache is built in fp32)
DDPM_STEP_MS = 80.0  # paper UNet, batch 64, tf32
STEP_OVERHEAD_MS = 5.0  # python, optimizer, lookup: an allowance, not a measurement
PROCESS_START_S = 15.0  # interpreter + torch + CUDA context, per process (an allowance)
VALIDATION_S = 1.0  # one in-training validation (2 samples, ~4k images at 32 px)
EVAL_S = 5.0  # CSI score with 10 samples: ~30k forward passes at 32 px
# Several processes share the one GPU; a 32 px step is launch-bound and leaves most of it idle.
# Assumed throughput gain of running them side by side (owed: measured by the first GPU run).
CONCURRENCY_GAIN = 3.0
T_VALUES = 70  # t in [30, 99]


@dataclass(frozen=True)
class Scale:
    """One size of the run; ``--smoke`` is the same script on CPU at toy size."""

    name: str
    seeds: tuple[int, ...]
    breast_classes: tuple[int, ...]
    ddpm_flags: tuple[str, ...]
    train_flags: tuple[str, ...]
    dia_flags: tuple[str, ...]  # only the DIA runs take these (the dissolver's fast path)
    fast_flags: tuple[str, ...]  # the fast path, added to every training run on CUDA (and on CPU if fast_on_cpu)
    eval_flags: tuple[str, ...]
    bench_flags: tuple[str, ...]
    epochs: int
    ddpm_steps: int
    val_every: int
    budget_s: float
    jobs: int  # processes at once on the one device
    fast_on_cpu: bool = False  # smoke: the CPU test walks the fast path's flags through CLI -> engine too


PAPER = Scale(
    name="paper", seeds=(0, 1, 2), breast_classes=(0, 1),
    ddpm_flags=("--dim", "64", "--dim_mults", "1,2,4,8", "--train_steps", "1500", "--batch_size", "64",
                "--grad_accum", "1", "--val_every", "250", "--save_every", "500"),
    train_flags=("--width", "64", "--epochs", "200", "--batch_size", "32", "--warmup", "10",
                 "--save_step", "20", "--val_every", "20", "--val_samples", "2"),
    dia_flags=("--dissolve_cache",),
    fast_flags=("--amp", "--channels_last"),
    eval_flags=("--ood_samples", "10", "--resize_factor", "0.54", "--resize_fix"),
    bench_flags=("--sizes", "32", "224", "--batch", "32", "--width", "64", "--dim", "64", "--mults", "1,2,4,8",
                 "--repeats", "10"),
    epochs=200, ddpm_steps=1500, val_every=20, budget_s=540.0, jobs=10)

SMOKE = Scale(
    name="smoke", seeds=(0,), breast_classes=(1,),
    ddpm_flags=("--dim", "8", "--dim_mults", "1,2", "--train_steps", "4", "--batch_size", "8",
                "--grad_accum", "1", "--val_every", "4", "--save_every", "4", "--val_repeats", "1"),
    train_flags=("--width", "8", "--epochs", "1", "--steps_per_epoch", "2", "--batch_size", "8", "--warmup", "0.5",
                 "--save_step", "1", "--val_samples", "1"),
    # t in [30, 31]: the cache's table stays small on a CPU
    dia_flags=("--dissolve_cache", "--diffusion_offset", "0.3", "--diffusion_upper_offset", "0.32"),
    fast_flags=("--amp", "--channels_last"),
    eval_flags=("--ood_samples", "1", "--n_boot", "20"),
    bench_flags=("--sizes", "32", "--batch", "2", "--width", "8", "--dim", "8", "--mults", "1,2", "--repeats", "1",
                 "--cache_images", "4"),
    epochs=1, ddpm_steps=4, val_every=1, budget_s=600.0, jobs=2, fast_on_cpu=True)

SCALES = {"paper": PAPER, "smoke": SMOKE}


@dataclass(frozen=True)
class Task:
    """One (dataset, normal class) of the pipeline: a DDPM, then DIA and CSI per seed, each evaluated."""

    dataset: str
    data_root: Path
    normal_class: int
    n_train: int  # normal training images


def find_tasks(scale: Scale, builtin: Path, data_root: Path | None) -> list[Task]:
    """BreastMNIST (built in) at the scale's classes, then class 0 of every other ``<name>mnist.npz``
    in ``data_root`` (the paper's setting: PneumoniaMNIST's normal class is 0)."""
    tasks = [Task("breastmnist", builtin, c, _count(builtin / "breastmnist.npz", c)) for c in scale.breast_classes]
    for path in sorted(data_root.glob("*mnist.npz")) if data_root and data_root.is_dir() else []:
        if path.stem != "breastmnist":
            tasks.append(Task(path.stem, data_root, 0, _count(path, 0)))
    return tasks


def _count(npz: Path, label: int) -> int:
    with np.load(npz) as data:
        return int((data["train_labels"].reshape(len(data["train_labels"]), -1)[:, 0] == label).sum())


@dataclass(frozen=True)
class Estimate:
    """Seconds: the longest chain of one task (DDPM -> DIA -> eval) and the GPU work of all its runs."""

    critical_s: float
    work_s: float

    @property
    def wall_s(self) -> float:
        """Runs go side by side: the task takes its longest chain or its work over the gain, whichever is longer."""
        return max(self.critical_s, self.work_s / CONCURRENCY_GAIN)


def estimate_task(task: Task, scale: Scale, batch: int = 32) -> Estimate:
    """Expected seconds of one task at paper scale by the H100 figures (the smoke scale reuses the formula)."""
    steps = scale.epochs * math.ceil(task.n_train / batch)
    vals = scale.epochs // scale.val_every * VALIDATION_S
    ddpm = scale.ddpm_steps * DDPM_STEP_MS / 1000 + scale.ddpm_steps / 250 * 2 * VALIDATION_S
    cache = 2 * T_VALUES * task.n_train / 128 * DISSOLVE_FP32_MS / 1000
    dia = steps * (ENCODER_MS + AUGMENT_MS + STEP_OVERHEAD_MS) / 1000 + cache + vals
    csi = steps * ((ENCODER_MS + AUGMENT_MS) * 2 / 3 + STEP_OVERHEAD_MS) / 1000 + vals
    n = len(scale.seeds)
    start = PROCESS_START_S
    critical = (start + ddpm) + (start + dia) + (start + EVAL_S)
    work = ddpm + n * (dia + csi + 2 * EVAL_S)
    return Estimate(critical_s=critical, work_s=work)


def estimate_pipeline(tasks: list[Task], scale: Scale) -> Estimate:
    """All tasks run side by side: the longest chain of any, and the work of all."""
    parts = [estimate_task(t, scale) for t in tasks]
    return Estimate(critical_s=max((p.critical_s for p in parts), default=0.0),
                    work_s=sum(p.work_s for p in parts))


def fitting_tasks(tasks: list[Task], scale: Scale, seconds_left: float) -> list[Task]:
    """The longest prefix of ``tasks`` whose pipeline is expected to end within ``seconds_left``."""
    for n in range(len(tasks), 0, -1):
        if estimate_pipeline(tasks[:n], scale).wall_s <= seconds_left:
            return tasks[:n]
    return []


FIXED_STAGES = {"environment": 20.0, "aggregate": 20.0, "gpu tests": 60.0, "benchmark": 60.0}
# The order gpu_paper.py runs them in: the pipeline's AUROCs and their table first, so no other stage can
# take their time; the GPU tests and the benchmark get what is left (each capped at its own limit).
STAGE_ORDER = ("environment", "pipeline", "aggregate", "gpu tests", "benchmark")


def plan_lines(tasks: list[Task], scale: Scale) -> list[str]:
    """The stage plan as printed: expected seconds per stage and the running total against the budget."""
    pipeline = estimate_pipeline(tasks, scale)
    names = ", ".join(f"{t.dataset} c{t.normal_class} (n={t.n_train})" for t in tasks)
    seconds = {**FIXED_STAGES, "pipeline": pipeline.wall_s}
    lines, total = [], 0.0
    for name in STAGE_ORDER:
        total += seconds[name]
        label = f"pipeline: {names}" if name == "pipeline" else name
        mark = ("" if total <= scale.budget_s else
                "  <- over budget: skipped" if name in ("gpu tests", "benchmark") else
                "  <- over budget: tasks are dropped from the end")
        lines.append(f"  {seconds[name]:6.0f} s  (total {total:6.0f} s)  {label}{mark}")
    lines.append(f"  pipeline = max(longest chain {pipeline.critical_s:.0f} s, work {pipeline.work_s:.0f} s / "
                 f"{CONCURRENCY_GAIN:g}x assumed gain of side-by-side runs); budget {scale.budget_s:.0f} s; "
                 f"H100 figures of docs/gpu.md")
    return lines


def guaranteed_s(tasks: list[Task], scale: Scale) -> float:
    """Expected seconds up to the results table (environment, pipeline, aggregate): what the budget must hold."""
    return FIXED_STAGES["environment"] + estimate_pipeline(tasks, scale).wall_s + FIXED_STAGES["aggregate"]
