"""scripts/aggregate_results.py: mean ± std over seed folders, best validation AUROC, paper figure."""
import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "aggregate_results", Path(__file__).resolve().parents[1] / "scripts" / "aggregate_results.py")
aggregate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(aggregate)


def write_run(root: Path, table: str, ds: str, variant: str, seed: int, auroc: float, vals=()):
    run = root / table / ds / variant / f"seed{seed}"
    (run / "train").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({"metrics": {"auroc": auroc}}))
    lines = [json.dumps({"step": i, "val/auroc": v}) for i, v in enumerate(vals)]
    (run / "train" / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_rows_average_seeds_and_carry_the_paper_figure(tmp_path):
    write_run(tmp_path, "main", "breastmnist_c0", "DIA", 0, 0.70, vals=(0.6, 0.8))
    write_run(tmp_path, "main", "breastmnist_c0", "DIA", 1, 0.80, vals=(0.7,))
    write_run(tmp_path, "kernel", "kvasir_c0", "median_k7", 0, 0.5)
    rows = {(r["table"], r["variant"]): r for r in aggregate.collect(tmp_path)}
    dia = rows[("main", "DIA")]
    assert dia["seeds"] == 2 and dia["auroc_mean"] == pytest.approx(0.75)
    assert dia["auroc_std"] == pytest.approx(0.0707, abs=1e-4)
    assert dia["val_auroc_mean"] == pytest.approx(0.75)  # best val of each seed: 0.8 and 0.7
    assert dia["paper"] == 0.750 and rows[("kernel", "median_k7")]["paper"] == 0.514
    assert len(aggregate.collect(tmp_path, table="kernel")) == 1
    table = aggregate.to_markdown(aggregate.collect(tmp_path))
    assert "0.750 ± 0.071" in table and "| 0.514 |" in table
    assert aggregate.to_csv(aggregate.collect(tmp_path)).splitlines()[0].startswith("table,dataset,variant")
