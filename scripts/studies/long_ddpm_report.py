"""The long-DDPM study's three arms (CSI, DIA_best, DIA_long), paired on the same test images over seeds.

Reads ``<results>/long_ddpm/<dataset>_c<class>/<arm>/seed<k>/{report.json, scores.csv}`` as written by
``scripts/studies/long_ddpm_dia.sh``, and prints per arm the test AUROC (mean ± std over seeds) and the best
validation AUROC, then DIA_long − CSI, DIA_best − CSI and DIA_long − DIA_best per seed and over the seeds they
share, each with a paired bootstrap 95 % CI over the test images (the same resamples for every seed).

    python scripts/studies/long_ddpm_report.py results --dataset breastmnist_c0
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from evals.aggregate import check_same_images, read_scores, val_aurocs  # noqa: E402
from evals.metrics import paired_bootstrap  # noqa: E402

ARMS = ("CSI", "DIA_best", "DIA_long")
PAIRS = (("DIA_long", "CSI"), ("DIA_best", "CSI"), ("DIA_long", "DIA_best"))


def seeds_of(folder: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted(folder.glob("seed*/report.json"))}


def arm_lines(root: Path) -> list[str]:
    lines = ["| arm | seeds | test AUROC (mean ± std) | per seed | best val AUROC (mean) | dissolving DDPM step |",
             "|---|---|---|---|---|---|"]
    for arm in ARMS:
        runs = seeds_of(root / arm)
        if not runs:
            continue
        tests = [json.loads((run / "report.json").read_text())["metrics"]["auroc"] for run in runs.values()]
        vals = [max(v) for v in (val_aurocs(run / "train" / "metrics.jsonl") for run in runs.values()) if v]
        config = runs[next(iter(runs))] / "train" / "config.json"
        ckpt = json.loads(config.read_text())["dissolve"]["checkpoint"] if config.exists() else None
        step = Path(ckpt).name if ckpt else "–"
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        val = f"{statistics.mean(vals):.3f}" if vals else "–"
        lines.append(f"| {arm} | {len(tests)} | {statistics.mean(tests):.3f} ± {std:.3f} | "
                     f"{', '.join(f'{t:.3f}' for t in tests)} | {val} | {step} |")
    return lines


def pair_lines(root: Path, n_boot: int) -> list[str]:
    lines = [f"| pair | seed | ΔAUROC | 95 % CI (paired bootstrap over test images, {n_boot} resamples) |",
             "|---|---|---|---|"]
    for a, b in PAIRS:
        runs_a, runs_b = seeds_of(root / a), seeds_of(root / b)
        shared = sorted(runs_a.keys() & runs_b.keys())
        if not shared:
            continue
        files_a = [read_scores(runs_a[s] / "scores.csv") for s in shared]
        files_b = [read_scores(runs_b[s] / "scores.csv") for s in shared]
        for fa, fb in zip(files_a, files_b):
            check_same_images(fa, files_a[0])
            check_same_images(fb, files_a[0])
        # scores are "higher = more normal"; paired_bootstrap takes them as stored, anomalies labelled 1
        per_seed, mean = paired_bootstrap(np.stack([f.scores for f in files_a]), np.stack([f.scores for f in files_b]),
                                          files_a[0].is_anomaly, n_boot=n_boot)
        for seed, d in zip(shared, per_seed):
            lines.append(f"| {a} − {b} | {seed} | {d.diff:+.3f} | [{d.ci_low:+.3f}, {d.ci_high:+.3f}] |")
        star = "*" if mean.ci_low > 0 or mean.ci_high < 0 else ""
        lines.append(f"| {a} − {b} | mean of {len(shared)} | **{mean.diff:+.3f}{star}** | "
                     f"[{mean.ci_low:+.3f}, {mean.ci_high:+.3f}] |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="the RESULTS folder of long_ddpm_dia.sh (default there: results)")
    p.add_argument("--dataset", default="breastmnist_c0")
    p.add_argument("--n_boot", type=int, default=2000)
    a = p.parse_args(argv)
    root = a.results / "long_ddpm" / a.dataset
    if not root.is_dir():
        raise SystemExit(f"error: {root} does not exist: run scripts/studies/long_ddpm_dia.sh first")
    print("\n".join(arm_lines(root)) + "\n\n" + "\n".join(pair_lines(root, a.n_boot)))


if __name__ == "__main__":
    main()
