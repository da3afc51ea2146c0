"""Evaluation report: what a person reads after ``eval.py``.

One folder holds ``report.json`` (checkpoint, config, metrics, score quantiles,
counts, time), ``scores.csv`` (one row per test image), ``roc.png`` and
``scores_hist.png``. Every file is written atomically, so an interrupted run
never leaves a half-written report. Plots use ``matplotlib.figure.Figure``
directly, without pyplot, so no global backend or figure state is touched.
"""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from common.atomic import atomic_path, json_dump_atomic
from evals.metrics import Metrics, score_quantiles

REPORT_FILES = ("report.json", "scores.csv", "roc.png", "scores_hist.png")


def format_summary(metrics: Metrics) -> str:
    """A few human-readable lines: AUROC with its bootstrap interval, AUPR, FPR@95%TPR."""
    return "\n".join([
        f"AUROC      {metrics.auroc:.4f}  [bootstrap CI {metrics.auroc_ci_low:.4f}, "
        f"{metrics.auroc_ci_high:.4f}]",
        f"AUPR       {metrics.aupr:.4f}  (anomalies as positives)",
        f"FPR@95TPR  {metrics.fpr95:.4f}  (anomalies accepted at 95% of normals accepted)",
        f"test set   {metrics.n_normal} normal, {metrics.n_anomalous} anomalous",
    ])


def _write_scores_csv(
    path: Path, scores: np.ndarray, is_anomaly: np.ndarray, paths: Sequence[str] | None
) -> None:
    """One row per test image: index, path ('' when unknown), score, is_anomaly."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "path", "score", "is_anomaly"])
        for i, (score, label) in enumerate(zip(scores, is_anomaly)):
            writer.writerow([i, paths[i] if paths is not None else "", repr(float(score)), int(label)])


def _save_figure(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _plot_roc(path: Path, scores: np.ndarray, is_anomaly: np.ndarray, auroc: float) -> None:
    """ROC with normal images as positives, matching the AUROC convention."""
    fpr, tpr, _ = roc_curve(1 - is_anomaly, scores)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=1.5, label="CSI score")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set(xlabel="false-positive rate (anomalies accepted)",
           ylabel="true-positive rate (normals accepted)",
           title=f"ROC, AUROC = {auroc:.4f}", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save_figure(fig, path)


def _plot_histograms(path: Path, scores: np.ndarray, is_anomaly: np.ndarray) -> None:
    """Overlaid normal and anomalous score histograms on shared bins, as densities,
    so that unbalanced test sets stay comparable."""
    bins = np.histogram_bin_edges(scores, bins=40)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, name, colour in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        group = scores[is_anomaly == label]
        ax.hist(group, bins=bins, density=True, alpha=0.5, color=colour, label=f"{name} (n={group.size})")
    ax.set(xlabel="score (higher = more normal)", ylabel="density", title="Test scores")
    ax.legend()
    _save_figure(fig, path)


def write_report(
    out_dir: str | Path,
    *,
    metrics: Metrics,
    scores: Any,
    is_anomaly: Any,
    paths: Sequence[str] | None = None,
    config: dict,
    checkpoint: str,
    extra: dict | None = None,
) -> Path:
    """Write the four report files into ``out_dir`` (created if needed); returns report.json's path.

    scores: (n,) higher = more normal; is_anomaly: (n,) 0/1; paths: n file names
    or None. ``metrics`` must come from these scores (``evals.metrics.summarize``).
    """
    out_dir = Path(out_dir)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_anomaly).astype(np.int64).reshape(-1)
    if y.shape != s.shape or (paths is not None and len(paths) != s.size):
        raise ValueError(
            f"scores ({s.size}), is_anomaly ({y.size}) and paths "
            f"({'-' if paths is None else len(paths)}) must have one entry per image"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_scores_csv(out_dir / "scores.csv", s, y, paths)
    _plot_roc(out_dir / "roc.png", s, y, metrics.auroc)
    _plot_histograms(out_dir / "scores_hist.png", s, y)
    report = {
        "checkpoint": str(checkpoint),
        "config": config,
        "metrics": metrics.to_dict(),
        "score_quantiles": score_quantiles(s, y),
        "counts": {"n": int(s.size), "n_normal": int((y == 0).sum()), "n_anomalous": int(y.sum())},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extra": extra or {},
    }
    json_dump_atomic(report, out_dir / "report.json")
    return out_dir / "report.json"
