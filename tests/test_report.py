"""Evaluation report files."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from evals.metrics import summarize
from evals.report import REPORT_FILES, format_summary, write_report


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    labels[:2] = (0, 1)
    scores = rng.normal(size=40) - labels
    return scores, labels, summarize(scores, labels, n_boot=50)


def test_write_report_writes_the_four_files(tmp_path, scored):
    scores, labels, metrics = scored
    paths = [f"img_{i}.png" for i in range(40)]
    out = tmp_path / "eval_test"
    report_path = write_report(
        out, metrics=metrics, scores=scores, is_anomaly=labels, paths=paths,
        config={"score": "CSI", "n_samples": 10}, checkpoint="runs/x/last.pt", extra={"split": "test"},
    )
    assert report_path == out / "report.json"
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    for png in ("roc.png", "scores_hist.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads(report_path.read_text())
    assert report["metrics"] == pytest.approx(metrics.to_dict())
    assert report["checkpoint"] == "runs/x/last.pt"
    assert report["config"] == {"score": "CSI", "n_samples": 10}
    assert report["extra"] == {"split": "test"}
    assert report["counts"] == {"n": 40, "n_normal": int((labels == 0).sum()), "n_anomalous": int(labels.sum())}
    assert report["score_quantiles"]["normal"]["count"] == int((labels == 0).sum())
    assert report["timestamp"]

    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == paths
    assert [int(r["index"]) for r in rows] == list(range(40))
    np.testing.assert_array_equal([float(r["score"]) for r in rows], scores)
    np.testing.assert_array_equal([int(r["is_anomaly"]) for r in rows], labels)


def test_write_report_without_paths_and_overwriting(tmp_path, scored):
    scores, labels, metrics = scored
    for _ in range(2):  # a second evaluation replaces the first report in place
        write_report(tmp_path, metrics=metrics, scores=scores, is_anomaly=labels,
                     config={}, checkpoint="c.pt")
    with (tmp_path / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40 and all(r["path"] == "" for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)


def test_write_report_rejects_mismatched_lengths(tmp_path, scored):
    scores, labels, metrics = scored
    with pytest.raises(ValueError, match="one entry per image"):
        write_report(tmp_path, metrics=metrics, scores=scores, is_anomaly=labels,
                     paths=["a.png"], config={}, checkpoint="c.pt")


def test_format_summary_names_the_numbers(scored):
    metrics = scored[2]
    text = format_summary(metrics)
    assert f"{metrics.auroc:.4f}" in text and f"{metrics.auroc_ci_low:.4f}" in text
    assert f"{metrics.aupr:.4f}" in text and f"{metrics.fpr95:.4f}" in text
    assert "AUROC" in text and "AUPR" in text and "FPR@95" in text
