"""scripts/studies/runs_summary.py: one JSON per table set, merged into (never replacing) what earlier machines wrote."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "studies" / "runs_summary.py"


def run(root: Path, key: str, auroc: float, vals: list[float]) -> None:
    folder = root / key
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "metrics.jsonl").write_text("".join(json.dumps({"val/auroc": v}) + "\n" for v in vals))
    (folder / "flags.txt").write_text("--mode simclr_CSI --seed 0\n")
    report = {"metrics": {"auroc": auroc, "auroc_ci_low": auroc - 0.1, "auroc_ci_high": auroc + 0.1,
                          "aupr": 0.5, "fpr95": 0.9},
              "checkpoint": str(folder / "train" / "best.pt"), "extra": {"epoch": 10},
              "config": {"eval": {"n_samples": 10, "crop_scale": 0.54, "seed": 0}}}
    (folder / "report.json").write_text(json.dumps(report))


def summarise(root: Path, out: Path) -> dict:
    subprocess.run([sys.executable, str(SCRIPT), str(root), "paper_cpu", "--out", str(out)], check=True,
                   capture_output=True)
    return json.loads(out.read_text())


def test_merges_into_earlier_entries(tmp_path):
    out = tmp_path / "runs.json"
    first, second = tmp_path / "machine1", tmp_path / "machine2"
    run(first, "paper_cpu/breastmnist_c0/CSI/seed0", 0.61, [0.6, 0.64])
    run(first, "paper_cpu/breastmnist_c0/DIA/seed0", 0.62, [0.63])
    assert set(summarise(first, out)) == {"paper_cpu/breastmnist_c0/CSI/seed0", "paper_cpu/breastmnist_c0/DIA/seed0"}
    # a later machine has only its own runs: a new one, and one of the earlier runs measured again
    run(second, "paper_cpu/breastmnist_c1/CSI/seed0", 0.70, [0.7])
    run(second, "paper_cpu/breastmnist_c0/DIA/seed0", 0.55, [0.5, 0.52])
    merged = summarise(second, out)
    assert set(merged) == {"paper_cpu/breastmnist_c0/CSI/seed0", "paper_cpu/breastmnist_c0/DIA/seed0",
                           "paper_cpu/breastmnist_c1/CSI/seed0"}
    assert merged["paper_cpu/breastmnist_c0/CSI/seed0"]["test_auroc"] == 0.61  # kept from machine 1
    assert merged["paper_cpu/breastmnist_c0/DIA/seed0"]["test_auroc"] == 0.55  # replaced by machine 2
    assert merged["paper_cpu/breastmnist_c0/DIA/seed0"]["best_val_auroc"] == 0.52
    assert not (tmp_path / "runs.json.tmp").exists()
