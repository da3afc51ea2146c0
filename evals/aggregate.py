"""Collect report.json files into a table: mean ± std over seeds, beside the paper; and each
variant's AUROC difference against its table's CSI run on the same test images, with a paired
bootstrap 95 % CI, per seed and over seeds.

Layout written by the reproduction scripts:
    <root>/<table>/<dataset>_c<class>/<variant>/seed<k>/{report.json, scores.csv, train -> run}

    python -m evals.aggregate results            # Markdown, every table, with the paired section
    python -m evals.aggregate results --table main --format csv --out main.csv
    python -m evals.aggregate results --table main --paired_csv main_paired.csv
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from evals.metrics import auroc_rows, paired_bootstrap

# Published AUROCs (the paper's tables), keyed (table, dataset_c<class>, variant).
# The paper's BreastMNIST runs train on class 0 (malignant as "normal", as upstream's code does).
_MAIN = {"pneumoniamnist_c0": (0.834, 0.903), "breastmnist_c0": (0.546, 0.750), "covid_c0": (0.785, 0.851),
         "kvasir_c0": (0.609, 0.860), "retina_c0": (0.803, 0.944), "aptos_c0": (0.927, 0.934)}
_KERNEL = {"pneumoniamnist_c0": ((0.845, 0.839, 0.856), (0.779, 0.872, 0.678)),
           "breastmnist_c0": ((0.541, 0.653, 0.749), (0.641, 0.689, 0.542)),
           "covid_c0": ((0.813, 0.847, 0.802), (0.837, 0.809, 0.793)),
           "kvasir_c0": ((0.629, 0.586, 0.579), (0.526, 0.514, 0.495))}
# Table 8: (resize only, Gaussian, Median, Diffusion), each (cutperm, rotation).
_SHIFT = {"covid_c0": ((0.768, 0.779), (0.788, 0.847), (0.826, 0.837), (0.841, 0.851)),
          "kvasir_c0": ((0.826, 0.748), (0.712, 0.739), (0.663, 0.687), (0.860, 0.813)),
          "retina_c0": ((0.892, 0.873), (0.754, 0.895), (0.747, 0.876), (0.890, 0.944)),
          "aptos_c0": ((0.924, 0.918), (0.942, 0.922), (0.929, 0.918), (0.926, 0.934))}
_RES = {"covid_c0": (0.851, 0.803, 0.807), "kvasir_c0": (0.860, 0.721, 0.730),
        "retina_c0": (0.944, 0.922, 0.930), "aptos_c0": (0.934, 0.937, 0.905)}
_CONTAM = {"kvasir_c0": (0.860, 0.877, 0.880), "retina_c0": (0.944, 0.948, 0.951), "aptos_c0": (0.934, 0.935, 0.940)}
_BATCH = {"pneumoniamnist_c0": (0.834, 0.838, 0.903), "breastmnist_c0": (0.546, 0.564, 0.750),
          "covid_c0": (0.785, 0.804, 0.851), "kvasir_c0": (0.609, 0.679, 0.860)}


def _paper_table() -> dict[tuple[str, str, str], float]:
    paper: dict[tuple[str, str, str], float] = {}
    for ds, (csi, dia) in _MAIN.items():
        paper[("main", ds, "CSI")], paper[("main", ds, "DIA")] = csi, dia
    for ds, (gauss, median) in _KERNEL.items():
        for k, g, m in zip((3, 7, 11), gauss, median):
            paper[("kernel", ds, f"gaussian_k{k}")], paper[("kernel", ds, f"median_k{k}")] = g, m
    for ds, by_dissolver in _SHIFT.items():
        for prefix, (perm, rot) in zip(("blurnone", "blurgaussian", "blurmedian", "diffusion"), by_dissolver):
            paper[("shift", ds, f"{prefix}_cutperm")], paper[("shift", ds, f"{prefix}_rotation")] = perm, rot
    for ds, values in _RES.items():
        for res, value in zip((32, 64, 128), values):
            paper[("resolution", ds, f"res{res}")] = value
    for ds, values in _CONTAM.items():
        for pct, value in zip((0, 10, 20), values):
            paper[("contamination", ds, f"lambda{pct}")] = value
    for ds, values in _BATCH.items():
        for variant, value in zip(("CSI", "CSI-1.5", "DIA"), values):
            paper[("batch", ds, variant)] = value
    return paper


PAPER = _paper_table()
# Tables that rerun a paper table under another setting (docs/results.md's CPU runs of Table 1) show its figures.
TABLE_OF = {"paper_cpu": "main", "chest_cpu": "main"}


Key = tuple[str, str, str]  # (table, dataset_c<class>, variant)


def find_reports(root: Path, table: str | None = None) -> Iterator[tuple[Key, str, Path]]:
    """(key, seed folder name, report.json) of every table run under ``root``: <table>/<dataset_c<class>>/<variant>/
    seed<k>/report.json exactly. A results root nested inside (RESULTS=results/lr001 puts its own paper_cpu/ there)
    is another set of runs, not more seeds of this one, so deeper reports are left out."""
    for report in sorted(root.glob("*/*/*/seed*/report.json")):
        parts = report.relative_to(root).parts
        if parts[0].startswith("_"):  # _runs/ is the shared run cache, not a table
            continue
        key = (parts[0], parts[1], parts[2])  # table, dataset_c<class>, variant (parent of seed<k>)
        if not table or key[0] == table:
            yield key, parts[-2], report


def collect(root: Path, table: str | None = None) -> list[dict]:
    """One row per (table, dataset, variant), aggregating its seed folders."""
    groups: dict[Key, list[float]] = defaultdict(list)
    val_groups: dict[Key, list[float]] = defaultdict(list)
    for key, _, report in find_reports(root, table):
        data = json.loads(report.read_text())
        groups[key].append(data["metrics"]["auroc"])
        val = best_val_auroc(training_log(report, data))
        if val is not None:
            val_groups[key].append(val)
    rows = []
    for key, values in sorted(groups.items(), key=lambda item: natural_key(item[0])):
        vals = val_groups.get(key, [])
        rows.append({"table": key[0], "dataset": key[1], "variant": key[2], "seeds": len(values),
                     "auroc_mean": round(statistics.fmean(values), 4), "auroc_std": round(_std(values), 4),
                     "val_auroc_mean": round(statistics.fmean(vals), 4) if vals else None,
                     "paper": paper_figure(*key)})
    return rows


def natural_key(parts: tuple[str, ...]) -> list:
    """Sort key that orders numbers by value: res32 < res64 < res128, k3 < k11."""
    return [[int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", part)] for part in parts]


def paper_figure(table: str, dataset: str, variant: str) -> str | None:
    """The paper's AUROC for this row, e.g. "0.750"; "0.750 (c0)" when the paper trained on another class."""
    table = TABLE_OF.get(table, table)
    if (table, dataset, variant) in PAPER:
        return f"{PAPER[(table, dataset, variant)]:.3f}"
    name = dataset.rsplit("_c", 1)[0]
    for (t, ds, v), value in PAPER.items():
        if t == table and v == variant and ds.rsplit("_c", 1)[0] == name:
            return f"{value:.3f} ({ds.rsplit('_', 1)[1]})"
    return None


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def val_aurocs(metrics_jsonl: Path) -> list[float]:
    """Every validation AUROC a training run logged, in order; [] without a log."""
    if not metrics_jsonl.is_file():
        return []
    rows = (json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip())
    return [row["val/auroc"] for row in rows if "val/auroc" in row]


def training_log(report: Path, data: dict) -> Path:
    """The metrics.jsonl of the run behind a report: via the table's ``train`` link, else beside the checkpoint."""
    linked = report.parent / "train" / "metrics.jsonl"
    if linked.is_file() or not data.get("checkpoint"):
        return linked
    return Path(data["checkpoint"]).parent / "metrics.jsonl"


def best_val_auroc(metrics_jsonl: Path) -> float | None:
    """The validation AUROC of the checkpoint that was kept as best.pt (the run's maximum)."""
    values = val_aurocs(metrics_jsonl)
    return max(values) if values else None


def to_markdown(rows: list[dict]) -> str:
    lines = ["| table | dataset | variant | seeds | test AUROC (mean ± std) | best val AUROC | paper |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = r["paper"] or "–"
        val = f"{r['val_auroc_mean']:.3f}" if r["val_auroc_mean"] is not None else "–"
        lines.append(f"| {r['table']} | {r['dataset']} | {r['variant']} | {r['seeds']} | "
                     f"{r['auroc_mean']:.3f} ± {r['auroc_std']:.3f} | {val} | {paper} |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], fieldnames: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_csv(rows: list[dict]) -> str:
    return _csv(rows, ["table", "dataset", "variant", "seeds", "auroc_mean", "auroc_std", "val_auroc_mean", "paper"])


# -- paired statistics: a variant against its table's CSI run, on the same test images ----------------

BASELINE = "CSI"


class PairingError(ValueError):
    """Two score files that cannot be compared image by image; the message names both."""


@dataclass(frozen=True)
class ScoreFile:
    """eval.py's scores.csv: one row per test image; ``keys`` are its paths, or its indices when unknown."""

    path: Path
    keys: tuple[str, ...]
    scores: np.ndarray  # (n,) float64, higher = more normal
    is_anomaly: np.ndarray  # (n,) int64, 1 = anomalous


def read_scores(path: Path) -> ScoreFile:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [row["path"] for row in rows]
    keys = paths if all(paths) else [row["index"] for row in rows]
    return ScoreFile(path, tuple(keys), np.array([float(row["score"]) for row in rows]),
                     np.array([int(row["is_anomaly"]) for row in rows], dtype=np.int64))


def scores_file(report: Path) -> Path | None:
    """The scores.csv of a report: published beside it, else in the run folder its ``train`` link points into."""
    for candidate in (report.parent / "scores.csv", (report.parent / "train").resolve().parent / "scores.csv"):
        if candidate.is_file():
            return candidate
    return None


def check_same_images(a: ScoreFile, b: ScoreFile) -> None:
    """Paired statistics need both files to list the same images, with the same labels, in the same order."""
    if a.keys != b.keys or not np.array_equal(a.is_anomaly, b.is_anomaly):
        row = next((i for i, (ka, kb) in enumerate(zip(a.keys, b.keys)) if ka != kb), min(len(a.keys), len(b.keys)))
        raise PairingError(f"{a.path} and {b.path} do not list the same test images in the same order "
                           f"({len(a.keys)} vs {len(b.keys)} rows, first difference at row {row})")


def baseline_of(key: Key, runs: dict[Key, dict]) -> Key | None:
    """The table's own CSI run; for a table without one (kernel, shift, ...), the main table's."""
    for candidate in ((key[0], key[1], BASELINE), ("main", key[1], BASELINE)):
        if candidate in runs and candidate != key:
            return candidate
    return None


def load_paired(report: Path) -> ScoreFile | None:
    """A report's per-image scores, checked against the AUROC it reports; None (with a note) without any."""
    path = scores_file(report)
    if path is None:
        print(f"note: {report.parent}: no scores.csv, left out of the paired statistics", file=sys.stderr)
        return None
    scores = read_scores(path)
    reported = json.loads(report.read_text())["metrics"]["auroc"]
    full = auroc_rows(scores.scores[None], (scores.is_anomaly == 0)[None])[0]
    if abs(full - reported) > 1e-6:
        raise PairingError(f"{path} gives AUROC {full:.6f}, but {report} reports {reported:.6f}: a stale scores file")
    return scores


def paired_rows(root: Path, table: str | None = None, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per (table, dataset, variant ≠ CSI): one row per seed shared with the baseline, then the mean."""
    runs: dict[Key, dict[str, Path]] = defaultdict(dict)
    for key, seed_name, report in find_reports(root):  # every table: the baseline may be main's
        runs[key][seed_name] = report
    rows = []
    for key in sorted(runs, key=natural_key):
        base = baseline_of(key, runs)
        if (table and key[0] != table) or key[2] == BASELINE or base is None:
            continue
        pairs = [(s, load_paired(runs[key][s]), load_paired(runs[base][s]))
                 for s in sorted(set(runs[key]) & set(runs[base]), key=lambda name: natural_key((name,)))]
        pairs = [(s, a, b) for s, a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        for _, a, b in pairs:
            check_same_images(a, b)
            check_same_images(pairs[0][2], b)  # every seed on the same images, for the joint resampling
        per_seed, mean = paired_bootstrap(np.stack([a.scores for _, a, _ in pairs]),
                                          np.stack([b.scores for _, _, b in pairs]), pairs[0][2].is_anomaly,
                                          n_boot=n_boot, seed=seed)
        baseline = base[2] if base[0] == key[0] else f"{base[0]}/{base[2]}"
        for seed_name, d in [*zip((s for s, _, _ in pairs), per_seed), ("mean", mean)]:
            rows.append({"table": key[0], "dataset": key[1], "variant": key[2], "baseline": baseline,
                         "seed": seed_name, "auroc_diff": round(d.diff, 4), "ci_low": round(d.ci_low, 4),
                         "ci_high": round(d.ci_high, 4), "significant": d.significant})
    return rows


def paired_markdown(rows: list[dict], n_boot: int) -> str:
    lines = [f"Paired AUROC difference, variant − baseline, on the same test images: 95 % CI from {n_boot} "
             "bootstrap resamples of the images (the same for both methods and, for the mean over seeds, "
             "for every seed); * = the CI excludes 0.", "",
             "| table | dataset | variant − baseline | seed | ΔAUROC | 95 % CI |", "|---|---|---|---|---|---|"]
    for r in rows:
        star = "*" if r["significant"] else ""
        lines.append(f"| {r['table']} | {r['dataset']} | {r['variant']} − {r['baseline']} | {r['seed']} | "
                     f"{r['auroc_diff']:+.3f}{star} | [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] |")
    return "\n".join(lines) + "\n"


def paired_csv(rows: list[dict]) -> str:
    return _csv(rows, ["table", "dataset", "variant", "baseline", "seed", "auroc_diff", "ci_low", "ci_high",
                       "significant"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--table", default=None)
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--paired_csv", type=Path, default=None, help="also write the paired differences as CSV")
    p.add_argument("--n_boot", type=int, default=2000, help="paired bootstrap replicates")
    p.add_argument("--boot_seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root}: no such results folder", file=sys.stderr)
        return 2
    rows = collect(args.root, args.table)
    text = to_markdown(rows) if args.format == "md" else to_csv(rows)
    if args.format == "md" or args.paired_csv:
        try:
            paired = paired_rows(args.root, args.table, n_boot=args.n_boot, seed=args.boot_seed)
        except PairingError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if args.paired_csv:
            args.paired_csv.write_text(paired_csv(paired))
        if args.format == "md" and paired:
            text += "\n" + paired_markdown(paired, args.n_boot)
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
