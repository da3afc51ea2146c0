"""scripts/demo_summary.py: the demo's closing lines, with and without the CSI baseline."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from evals.metrics import auroc, summarize
from evals.report import write_report

REPO = Path(__file__).resolve().parents[1]


def fake_eval(folder: Path, scores: np.ndarray, labels: np.ndarray) -> None:
    write_report(folder, metrics=summarize(scores, labels, n_boot=20), scores=scores, is_anomaly=labels,
                 paths=None, config={}, checkpoint="x.pt", extra={})


def summary(out: Path, *flags: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo_summary.py"), "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_summary_names_the_normal_class_and_adds_the_paired_baseline_when_it_ran(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 40 + [1] * 20)
    dia = rng.normal(size=60) - 1.0 * labels  # higher = more normal
    csi = rng.normal(size=60) - 0.3 * labels
    fake_eval(tmp_path / "eval", dia, labels)
    text = summary(tmp_path, "--normal_class", "0")
    assert "class 0 (malignant)" in text and "CSI baseline: not run" in text and "--with_baseline" in text
    fake_eval(tmp_path / "eval_csi", csi, labels)
    text = summary(tmp_path)
    diff = auroc(dia, labels) - auroc(csi, labels)
    assert "class 1 (normal + benign)" in text
    assert f"test AUROC {auroc(csi, labels):.3f}; DIA - CSI {diff:+.3f}" in text
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert f"DIA test AUROC {report['metrics']['auroc']:.3f}" in text
    # a one-seed difference is printed as a reading, with the training randomness its CI leaves out
    assert "ONE seed" in text and "training randomness" in text and "0.525" in text and "3-seed" in text
