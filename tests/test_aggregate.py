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
    assert dia["paper"] == "0.750" and rows[("kernel", "median_k7")]["paper"] == "0.514"
    assert len(aggregate.collect(tmp_path, table="kernel")) == 1
    table = aggregate.to_markdown(aggregate.collect(tmp_path))
    assert "0.750 ± 0.071" in table and "| 0.514 |" in table
    assert aggregate.to_csv(aggregate.collect(tmp_path)).splitlines()[0].startswith("table,dataset,variant")


def test_other_class_gets_the_paper_figure_with_its_class_and_the_run_cache_is_not_a_table(tmp_path):
    write_run(tmp_path, "batch", "breastmnist_c1", "CSI-1.5", 0, 0.6)
    write_run(tmp_path, "_runs", "breastmnist_c1", "3f9c2a1b7e", 0, 0.6)
    rows = aggregate.collect(tmp_path)
    assert [(r["table"], r["paper"]) for r in rows] == [("batch", "0.564 (c0)")]
    assert aggregate.paper_figure("batch", "kvasir_c3", "nothing") is None


def test_rows_sort_numbers_by_value(tmp_path):
    for variant in ("res128", "res32", "res64"):
        write_run(tmp_path, "resolution", "chestxray_c0", variant, 0, 0.6)
    assert [r["variant"] for r in aggregate.collect(tmp_path)] == ["res32", "res64", "res128"]


def test_best_val_is_found_beside_the_checkpoint_when_the_train_link_is_broken(tmp_path):
    cache = tmp_path / "_runs" / "chestxray_c0" / "abc" / "seed0" / "train"
    cache.mkdir(parents=True)
    (cache / "metrics.jsonl").write_text(json.dumps({"val/auroc": 0.61}) + "\n" + json.dumps({"val/auroc": 0.66}))
    seed_dir = tmp_path / "resolution" / "chestxray_c0" / "res32" / "seed0"
    seed_dir.mkdir(parents=True)
    (seed_dir / "train").symlink_to("no/such/relative/target")
    (seed_dir / "report.json").write_text(json.dumps({"metrics": {"auroc": 0.6}, "checkpoint": str(cache / "best.pt")}))
    [row] = aggregate.collect(tmp_path)
    assert row["val_auroc_mean"] == pytest.approx(0.66)


KEY_SPEC = importlib.util.spec_from_file_location(
    "run_key", Path(__file__).resolve().parents[1] / "scripts" / "run_key.py")
run_key = importlib.util.module_from_spec(KEY_SPEC)
KEY_SPEC.loader.exec_module(run_key)


def test_run_key_ignores_flag_order_and_keeps_the_last_repeat_like_argparse():
    base = ["--width", "16", "--epochs", "20", "--amp", "--mode", "simclr_DIA"]
    assert run_key.run_key(base) == run_key.run_key(["--mode", "simclr_DIA", "--amp", "--epochs", "20", "--width", "16"])
    assert run_key.run_key(base + ["--epochs", "10"]) == run_key.run_key(["--width", "16", "--epochs", "10", "--amp",
                                                                         "--mode", "simclr_DIA"])
    assert run_key.run_key(base) != run_key.run_key(base + ["--epochs", "10"])
    assert run_key.canonical(["--amp", "--width", "16"]) == {"--amp": "true", "--width": "16"}
    with pytest.raises(SystemExit, match="expected a --flag"):
        run_key.canonical(["16"])
