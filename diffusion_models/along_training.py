"""The dissolver along DDPM training: every kept checkpoint of a run, measured on validation images.

A DDPM kept with ``--keep_checkpoints`` has ``<run>/steps/<step>/``. For each, on the validation split only:
- ``eps_loss``: mean ε-L1 at t ∈ [30, 100) on normal validation images (the ``best/`` criterion), raw and EMA;
- ``change``: mean |x − x̂₀| of normal and anomalous validation images at t ∈ {30, 50, 99}, and their
  ratio (anomalous / normal) (:mod:`diffusion_models.diagnostic`);
- ``change_auroc``: the validation AUROC of the per-image change used as an anomaly score (more change =
  more anomalous); 0.5 means the dissolver's change carries nothing about anomalies.

``passes`` = step × images per step / normal training images, the unit that compares runs of different
batch sizes and datasets (the paper's DDPM saw each image tens of thousands of times).

The **own-class factor** of two DDPMs trained on the two classes of a binary dataset, validated on the
same images, is √(ratio_A · ratio_B) at a matched step: image content cancels, and a factor above 1 means
each DDPM changes the class it did not see more, which is DIA's premise (docs/studies/long_ddpm.md).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from common.atomic import atomic_path
from common.errors import UserError
from diffusion_models.checkpoint import META_FILE, DDPMCheckpoint, load_ddpm
from diffusion_models.diagnostic import REPORT_T, per_image_change
from diffusion_models.unet import DISSOLVE_T, make_probe, probe_loss

STEPS_DIR = "steps"


@dataclass(frozen=True)
class CheckpointRow:
    """One kept checkpoint's validation figures (``change_auroc`` is None without anomalous images)."""

    step: int
    passes: float
    eps_loss_raw: float
    eps_loss_ema: float
    ratio: dict[str, float | None]  # raw weights, t (as str) -> anomalous / normal change
    change_auroc: dict[str, float | None]  # raw weights, t -> AUROC of the change, anomalous as positives


def kept_steps(run: str | Path) -> dict[int, Path]:
    """step -> checkpoint folder, for every ``<run>/steps/<step>/`` (sorted by step)."""
    folder = Path(run) / STEPS_DIR
    if not folder.is_dir():
        return {}
    found = {int(p.name): p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()}
    return dict(sorted(found.items()))


def select_checkpoint(run: str | Path, which: str) -> Path:
    """The checkpoint folder ``which`` names in the DDPM folder ``run``: ``best``, ``last`` or a kept step.

    ``run`` may also be a checkpoint folder itself, which only ``best`` (the default) accepts. Errors name
    ``--diffusion_checkpoint`` and list what the run holds.
    """
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"--diffusion_model_path {run} does not exist")
    if (run / META_FILE).is_file():
        if which != "best":
            raise UserError(f"--diffusion_checkpoint {which} needs a DDPM run folder; {run} is one checkpoint")
        return run
    if which in ("best", "last"):
        return run / which
    if not which.isdigit():
        raise UserError(f"--diffusion_checkpoint must be best, last or a kept step number, got {which!r}")
    kept = kept_steps(run)
    if int(which) not in kept:
        listed = ", ".join(str(s) for s in kept) or "none (train with --keep_checkpoints)"
        raise UserError(f"--diffusion_checkpoint {which}: {run} keeps no step {int(which)}; kept steps: {listed}")
    return kept[int(which)]


def change_auroc(change_normal: np.ndarray, change_anomalous: np.ndarray) -> float | None:
    """AUROC of the change as an anomaly score (anomalous images as positives); None if a group is empty."""
    if len(change_normal) == 0 or len(change_anomalous) == 0:
        return None
    labels = np.r_[np.zeros(len(change_normal)), np.ones(len(change_anomalous))]
    return float(roc_auc_score(labels, np.r_[change_normal, change_anomalous]))


def measure_checkpoint(ckpt: DDPMCheckpoint, val_normal: torch.Tensor, val_anomalous: torch.Tensor,
                       images_per_step: int, n_train: int, seed: int = 0, repeats: int = 4) -> CheckpointRow:
    """The validation figures of one checkpoint (raw weights for the change, as the dissolver uses them)."""
    alphas = ckpt.alphas_cumprod.to(next(ckpt.unet.parameters()).device)
    probe = make_probe(val_normal * 2 - 1, *DISSOLVE_T, repeats, seed)
    unet = ckpt.unet.eval()
    ratio, aurocs = {}, {}
    for t in REPORT_T:  # one pass per image and t gives both the ratio of the means and the AUROC
        normal = per_image_change(unet, alphas, val_normal, t).double().numpy()
        anomalous = per_image_change(unet, alphas, val_anomalous, t).double().numpy()
        ratio[str(t)] = float(anomalous.mean() / normal.mean()) if len(anomalous) and len(normal) else None
        aurocs[str(t)] = change_auroc(normal, anomalous)
    step = ckpt.meta.step
    return CheckpointRow(step=step, passes=step * images_per_step / max(1, n_train),
                         eps_loss_raw=probe_loss(unet, probe, alphas),
                         eps_loss_ema=probe_loss(ckpt.unet_ema.eval(), probe, alphas),
                         ratio=ratio, change_auroc=aurocs)


def measure_run(run: str | Path, val_normal: torch.Tensor, val_anomalous: torch.Tensor, n_train: int,
                device: torch.device | str = "cpu", progress: bool = False,
                known: dict[int, CheckpointRow] | None = None) -> list[CheckpointRow]:
    """:func:`measure_checkpoint` for every kept step of ``run`` (in step order). ``known`` holds rows measured
    before (a kept step's checkpoint never changes), so a run that trained on is measured only where it is new."""
    kept = kept_steps(run)
    if not kept:
        raise UserError(f"{run} keeps no step checkpoints: train it with --keep_checkpoints")
    rows = []
    for step, folder in kept.items():
        if known and step in known:
            rows.append(known[step])
            continue
        ckpt = load_ddpm(folder, device=device)
        cfg = ckpt.meta.config
        rows.append(measure_checkpoint(ckpt, val_normal, val_anomalous,
                                       images_per_step=cfg["batch_size"] * cfg["grad_accum"], n_train=n_train,
                                       seed=cfg.get("seed", 0), repeats=cfg.get("val_repeats", 4)))
        if progress:
            print(f"  step {step}: {format_row(rows[-1])}", flush=True)
    return rows


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _passes(p: float) -> str:
    return f"{p:.0f}" if p >= 10 else f"{p:.1f}"


def format_row(r: CheckpointRow) -> str:
    return (f"passes {_passes(r.passes)}, eps-L1 raw {_num(r.eps_loss_raw, 4)} ema {_num(r.eps_loss_ema, 4)}, "
            "ratio " + "/".join(_num(r.ratio[t]) for t in r.ratio) + " at t=" + "/".join(r.ratio) +
            ", change AUROC " + "/".join(_num(r.change_auroc[t]) for t in r.change_auroc))


def markdown_table(rows: list[CheckpointRow]) -> list[str]:
    ts = list(rows[0].ratio) if rows else [str(t) for t in REPORT_T]
    head = ["step", "passes", "ε-L1 raw", "ε-L1 EMA"] + [f"ratio t={t}" for t in ts] + \
        [f"change AUROC t={t}" for t in ts]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.step), _passes(r.passes), _num(r.eps_loss_raw, 4), _num(r.eps_loss_ema, 4)]
        cells += [_num(r.ratio[t]) for t in ts] + [_num(r.change_auroc[t]) for t in ts]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def rows_to_json(rows: list[CheckpointRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def rows_from_json(items: list[dict]) -> list[CheckpointRow]:
    """The inverse of :func:`rows_to_json`."""
    return [CheckpointRow(**item) for item in items]


def plot_rows(rows: list[CheckpointRow], path: Path, title: str) -> None:
    """ε-loss, change ratio and change AUROC against steps (bottom axis) and passes (top axis)."""
    steps = [r.step for r in rows]
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
    axes[0].plot(steps, [r.eps_loss_raw for r in rows], "o-", label="raw")
    axes[0].plot(steps, [r.eps_loss_ema for r in rows], "s--", label="EMA")
    axes[0].set_ylabel("normal-validation ε-L1, t ∈ [30, 100)")
    for t in rows[0].ratio:
        axes[1].plot(steps, [r.ratio[t] for r in rows], "o-", label=f"t={t}")
        axes[2].plot(steps, [r.change_auroc[t] for r in rows], "o-", label=f"t={t}")
    axes[1].axhline(1.0, color="0.6", lw=0.8)
    axes[1].set_ylabel("change ratio, anomalous / normal")
    axes[2].axhline(0.5, color="0.6", lw=0.8)
    axes[2].set_ylabel("validation AUROC of the change")
    per_step = rows[-1].passes / rows[-1].step if rows and rows[-1].step else 1.0
    for ax in axes:
        ax.set_xlabel("DDPM step")
        ax.legend(fontsize=7)
        top = ax.secondary_xaxis("top", functions=(lambda s: s * per_step, lambda p: p / per_step))
        top.set_xlabel("passes over the normal training images", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def own_class_factor(ratio_a: float, ratio_b: float) -> float:
    """√(ratio_A · ratio_B): how much more two DDPMs change the class they did not see, content cancelled."""
    return math.sqrt(ratio_a * ratio_b)
