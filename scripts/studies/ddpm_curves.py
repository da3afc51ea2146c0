"""Curves of two DDPMs trained on the two classes of a binary dataset, every kept checkpoint (validation only).

For each run (``train_eval_ddpm.py --keep_checkpoints``, e.g. ``scripts/studies/long_ddpm.sh``): the
normal-validation ε-loss, the change ratio at t = 30/50/99 and the change's validation AUROC per kept step;
for the pair, the own-class factor √(ratio_A · ratio_B) at matched steps (diffusion_models/along_training.py).
Writes ``<out>/curves.json``, ``<out>/curves.md`` and ``<out>/curves.png``; test images are never read.

    python scripts/studies/ddpm_curves.py runs/long_ddpm/breastmnist-c0-d32-t200 \
        runs/long_ddpm/breastmnist-c1-d32-t200 --out docs/studies/long_ddpm
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from common.atomic import atomic_path, json_dump_atomic  # noqa: E402
from diffusion_models.along_training import (CheckpointRow, kept_steps, markdown_table, measure_run,  # noqa: E402
                                             own_class_factor, rows_from_json, rows_to_json)
from diffusion_models.checkpoint import load_meta  # noqa: E402
from diffusion_models.trainer import load_ddpm_data  # noqa: E402

FACTOR_T = ("30", "50", "99")


def measure(run: Path, data_root: str | None, known: dict | None = None) -> tuple[str, list[CheckpointRow]]:
    """The run's label and its kept checkpoints' rows (``known``: step -> row measured before)."""
    meta = load_meta(next(iter(kept_steps(run).values())))
    data = load_ddpm_data(meta.dataset, data_root or meta.data_root, meta.one_class_idx, meta.resolution,
                          split_seed=meta.split_seed)
    label = f"{meta.dataset} class {'+'.join(meta.normal_classes)} ({len(data.train)} normal training images)"
    print(f"{run}: {label}", flush=True)
    return label, measure_run(run, data.val_normal, data.val_anomalous, n_train=len(data.train), progress=True,
                              known=known)


def known_rows(curves_json: Path | None, run: Path) -> dict[int, CheckpointRow]:
    """step -> row of ``run`` in an earlier curves.json (empty when there is none or it lacks the run)."""
    if curves_json is None or not curves_json.exists():
        return {}
    entry = json.loads(curves_json.read_text())["runs"].get(str(run))
    return {r.step: r for r in rows_from_json(entry["rows"])} if entry else {}


def factor_rows(a: list[CheckpointRow], b: list[CheckpointRow]) -> list[dict]:
    """step -> own-class factor at each t, for the steps both runs kept."""
    by_step = {r.step: r for r in b}
    out = []
    for ra in a:
        rb = by_step.get(ra.step)
        if rb is not None:
            out.append({"step": ra.step, "passes_a": ra.passes, "passes_b": rb.passes,
                        **{f"factor_t{t}": own_class_factor(ra.ratio[t], rb.ratio[t]) for t in FACTOR_T}})
    return out


def pick_step(factors: list[dict], t: str = "50", tolerance: float = 0.005, max_step: int | None = None) -> int:
    """The study's rule (docs/studies/long_ddpm.md): the matched step with the highest own-class factor at ``t``;
    a step within ``tolerance`` of the highest loses to an earlier one. Validation figures only."""
    rows = [r for r in factors if max_step is None or r["step"] <= max_step]
    if not rows:
        raise SystemExit("error: the two runs share no kept step")
    best = max(r[f"factor_t{t}"] for r in rows)
    return min(r["step"] for r in rows if r[f"factor_t{t}"] >= best - tolerance)


def factor_table(rows: list[dict]) -> list[str]:
    lines = ["| step | passes A | passes B | " + " | ".join(f"factor t={t}" for t in FACTOR_T) + " |",
             "|---|---|---|" + "---|" * len(FACTOR_T)]
    for r in rows:
        lines.append(f"| {r['step']} | {r['passes_a']:.0f} | {r['passes_b']:.0f} | " +
                     " | ".join(f"{r[f'factor_t{t}']:.3f}" for t in FACTOR_T) + " |")
    return lines


def plot(labels: list[str], runs: list[list[CheckpointRow]], factors: list[dict], path: Path) -> None:
    """ε-loss, ratio (t = 50) and change AUROC (t = 50) of each run, and the factor, against passes."""
    fig = Figure(figsize=(16, 3.6))
    axes = fig.subplots(1, 4)
    for label, rows in zip(labels, runs):
        passes = [r.passes for r in rows]
        axes[0].plot(passes, [r.eps_loss_raw for r in rows], "o-", ms=3, label=label)
        axes[1].plot(passes, [r.ratio["50"] for r in rows], "o-", ms=3, label=label)
        axes[2].plot(passes, [r.change_auroc["50"] for r in rows], "o-", ms=3, label=label)
    for t in FACTOR_T:
        axes[3].plot([r["step"] for r in factors], [r[f"factor_t{t}"] for r in factors], "o-", ms=3, label=f"t={t}")
    titles = ("normal-validation ε-L1, t ∈ [30, 100) (raw)", "change ratio at t = 50 (raw)",
              "validation AUROC of the change, t = 50", "own-class factor √(ratio_A·ratio_B)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("passes over the run's normal training images")
        ax.legend(fontsize=6)
    axes[3].set_xlabel("DDPM step (matched)")
    for ax, level in ((axes[1], 1.0), (axes[2], 0.5), (axes[3], 1.0)):
        ax.axhline(level, color="0.6", lw=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data_root", help="default: the one recorded in the checkpoints")
    p.add_argument("--max_step", type=int, help="the rule looks at matched steps up to this one (default: all)")
    p.add_argument("--reuse", type=Path, default=None,
                   help="an earlier curves.json of the same runs: its steps are not measured again")
    a = p.parse_args(argv)
    for run in (a.run_a, a.run_b):
        if not kept_steps(run):
            raise SystemExit(f"error: {run} keeps no step checkpoints (train it with --keep_checkpoints)")
    (label_a, rows_a), (label_b, rows_b) = (measure(run, a.data_root, known_rows(a.reuse, run))
                                            for run in (a.run_a, a.run_b))
    factors = factor_rows(rows_a, rows_b)
    json_dump_atomic({"runs": {str(a.run_a): {"label": label_a, "rows": rows_to_json(rows_a)},
                               str(a.run_b): {"label": label_b, "rows": rows_to_json(rows_b)}},
                      "own_class_factor": factors}, a.out / "curves.json")
    text = [f"## A: {label_a}", "", *markdown_table(rows_a), "", f"## B: {label_b}", "", *markdown_table(rows_b),
            "", "## Own-class factor at matched steps", "", *factor_table(factors), ""]
    with atomic_path(a.out / "curves.md") as tmp:
        tmp.write_text("\n".join(text))
    plot([label_a, label_b], [rows_a, rows_b], factors, a.out / "curves.png")
    print("\n".join(factor_table(factors)))
    print(f"rule (highest own-class factor at t=50, ties within 0.005 to the earlier step): step "
          f"{pick_step(factors, max_step=a.max_step)} of {a.run_a}")
    print(f"wrote {a.out}/curves.{{json,md,png}}")


if __name__ == "__main__":
    main()
