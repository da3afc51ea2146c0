"""evals/aggregate.py: mean ± std over seed folders, best validation AUROC, paper figure,
and the paired bootstrap of AUROC differences against the table's CSI run."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evals import metrics

from evals import aggregate
from training import run_key


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
    # the CPU reruns of Table 1 carry Table 1's figures
    assert aggregate.paper_figure("paper_cpu", "breastmnist_c0", "DIA") == "0.750"
    assert aggregate.paper_figure("paper_cpu", "breastmnist_c1", "CSI") == "0.546 (c0)"


def test_a_results_root_nested_inside_is_not_more_seeds_of_the_same_table(tmp_path):
    # RESULTS=results/lr001 writes results/lr001/paper_cpu/...: another setting under the same table name
    write_run(tmp_path, "paper_cpu", "breastmnist_c0", "DIA", 0, 0.60)
    write_run(tmp_path / "lr001", "paper_cpu", "breastmnist_c0", "DIA", 0, 0.90)
    write_run(tmp_path / "lr001", "paper_cpu", "breastmnist_c0", "DIA", 1, 0.80)
    rows = aggregate.collect(tmp_path, table="paper_cpu")
    assert [(r["seeds"], r["auroc_mean"]) for r in rows] == [(1, 0.60)]
    assert [(r["seeds"], r["auroc_mean"]) for r in aggregate.collect(tmp_path / "lr001")] == [(2, 0.85)]


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



def test_run_key_ignores_flag_order_and_keeps_the_last_repeat_like_argparse():
    base = ["--width", "16", "--epochs", "20", "--amp", "--mode", "simclr_DIA"]
    assert run_key.run_key(base) == run_key.run_key(["--mode", "simclr_DIA", "--amp", "--epochs", "20", "--width", "16"])
    assert run_key.run_key(base + ["--epochs", "10"]) == run_key.run_key(["--width", "16", "--epochs", "10", "--amp",
                                                                         "--mode", "simclr_DIA"])
    assert run_key.run_key(base) != run_key.run_key(base + ["--epochs", "10"])
    assert run_key.canonical(["--amp", "--width", "16"]) == {"--amp": "true", "--width": "16"}
    with pytest.raises(SystemExit, match="expected a --flag"):
        run_key.canonical(["16"])


# -- paired statistics ---------------------------------------------------------------------------------

def slow_paired_bootstrap(a, b, y, idx, alpha=0.05):
    """Reference: a plain loop over replicates and seeds with sklearn, on the given (R, n) indices."""
    per_seed = []
    for sa, sb in zip(a, b):
        diffs = [roc_auc_score(1 - y[row], sa[row]) - roc_auc_score(1 - y[row], sb[row]) for row in idx]
        per_seed.append(diffs)
    per_seed = np.array(per_seed)
    full = [roc_auc_score(1 - y, sa) - roc_auc_score(1 - y, sb) for sa, sb in zip(a, b)]
    q = [alpha / 2, 1 - alpha / 2]
    return ([(d, *np.quantile(r, q)) for d, r in zip(full, per_seed)],
            (float(np.mean(full)), *np.quantile(per_seed.mean(axis=0), q)))


def synthetic_scores(n_normal=30, n_anomalous=20, seeds=2, gap=0.5, seed=0):
    """Shuffled labels (n,) and (seeds, n) scores, anomalies lower by ``gap``, rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.zeros(n_normal, int), np.ones(n_anomalous, int)])
    scores = np.round(rng.normal(size=(seeds, y.size)) - gap * y, 1)
    return y, scores


def test_rank_auroc_rows_match_sklearn_with_ties():
    y, s = synthetic_scores(seeds=5)
    np.testing.assert_allclose(metrics.auroc_rows(s, np.broadcast_to(y == 0, s.shape)),
                               [roc_auc_score(1 - y, row) for row in s], rtol=0, atol=1e-12)


def test_paired_bootstrap_matches_a_slow_reference_loop():
    y, a = synthetic_scores(gap=0.8, seed=1)
    _, b = synthetic_scores(gap=0.3, seed=2)
    per_seed, mean = metrics.paired_bootstrap(a, b, y, n_boot=200, seed=7)
    idx = metrics.bootstrap_indices(y, 200, np.random.default_rng(7))  # the one block the fast path drew
    assert (np.sort(y[idx], axis=1) == np.sort(y)).all(), "every replicate keeps the class balance"
    ref_seeds, ref_mean = slow_paired_bootstrap(a, b, y, idx)
    for got, ref in zip(per_seed, ref_seeds):
        assert (got.diff, got.ci_low, got.ci_high) == pytest.approx(ref, abs=1e-12)
    assert (mean.diff, mean.ci_low, mean.ci_high) == pytest.approx(ref_mean, abs=1e-12)
    again, _ = metrics.paired_bootstrap(a, b, y, n_boot=200, seed=7)
    assert again == per_seed  # seeded


def test_a_clearly_better_method_is_significant_and_an_identical_one_is_not():
    y, weak = synthetic_scores(n_normal=60, n_anomalous=40, seeds=3, gap=0.2)
    strong = weak - 3.0 * y  # the same noise, anomalies pushed far below
    per_seed, mean = metrics.paired_bootstrap(strong, weak, y, n_boot=300)
    assert all(d.significant and d.ci_low > 0 for d in per_seed) and mean.significant and mean.diff > 0.2
    per_seed, mean = metrics.paired_bootstrap(weak, weak.copy(), y, n_boot=300)
    assert all(d == metrics.PairedDiff(0.0, 0.0, 0.0) for d in [*per_seed, mean]) and not mean.significant


def write_scored_run(root: Path, table: str, variant: str, seed: int, scores, y, beside: bool = True,
                     paths=None, ds: str = "breastmnist_c0") -> Path:
    """A published seed folder with report.json and the run's scores.csv (beside it, or behind ``train``)."""
    seed_dir = root / table / ds / variant / f"seed{seed}"
    run = root / "_runs" / ds / f"{table}_{variant}" / f"seed{seed}"
    (run / "train").mkdir(parents=True)
    seed_dir.mkdir(parents=True)
    (seed_dir / "train").symlink_to(run / "train")
    with (seed_dir if beside else run).joinpath("scores.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "path", "score", "is_anomaly"])
        for i, (score, label) in enumerate(zip(scores, y)):
            writer.writerow([i, paths[i] if paths else "", repr(float(score)), int(label)])
    auroc = roc_auc_score(1 - np.asarray(y), scores)
    (seed_dir / "report.json").write_text(json.dumps({"metrics": {"auroc": auroc}}))
    return seed_dir


def test_paired_rows_per_seed_and_mean_against_the_tables_csi(tmp_path, capsys):
    y, weak = synthetic_scores(n_normal=40, n_anomalous=30, seeds=2, gap=0.2)
    for seed in (0, 1):
        write_scored_run(tmp_path, "main", "CSI", seed, weak[seed], y)
        write_scored_run(tmp_path, "main", "DIA", seed, weak[seed] - 3.0 * y, y, beside=seed == 0)
        write_scored_run(tmp_path, "kernel", "median_k7", seed, weak[seed], y)  # no CSI: main's is the baseline
    rows = aggregate.paired_rows(tmp_path, n_boot=100)
    by_key = {(r["table"], r["variant"], r["seed"]): r for r in rows}
    assert sorted(by_key) == [("kernel", "median_k7", s) for s in ("mean", "seed0", "seed1")] + \
        [("main", "DIA", s) for s in ("mean", "seed0", "seed1")]
    assert by_key[("main", "DIA", "mean")]["significant"] and by_key[("main", "DIA", "seed1")]["baseline"] == "CSI"
    kernel = by_key[("kernel", "median_k7", "mean")]
    assert kernel["baseline"] == "main/CSI" and kernel["auroc_diff"] == 0 and not kernel["significant"]
    assert [r["table"] for r in aggregate.paired_rows(tmp_path, table="kernel", n_boot=10)] == ["kernel"] * 3
    assert aggregate.main([str(tmp_path), "--n_boot", "100", "--paired_csv", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert "| main | breastmnist_c0 | DIA − CSI | mean | +0." in out and "*" in out
    assert (tmp_path / "p.csv").read_text().startswith("table,dataset,variant,baseline,seed,auroc_diff")


def test_score_files_listing_other_images_are_refused_naming_both(tmp_path, capsys):
    y, s = synthetic_scores(seeds=1)
    paths = [f"img{i}.png" for i in range(y.size)]
    base = write_scored_run(tmp_path, "main", "CSI", 0, s[0], y, paths=paths)
    other = write_scored_run(tmp_path, "main", "DIA", 0, s[0], y, paths=paths[::-1])
    with pytest.raises(aggregate.PairingError) as excinfo:
        aggregate.paired_rows(tmp_path, n_boot=10)
    assert str(base / "scores.csv") in str(excinfo.value) and str(other / "scores.csv") in str(excinfo.value)
    assert aggregate.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_run_without_scores_is_left_out_of_the_paired_table_with_a_note(tmp_path, capsys):
    y, s = synthetic_scores(seeds=1)
    write_scored_run(tmp_path, "main", "CSI", 0, s[0], y)
    write_run(tmp_path, "main", "breastmnist_c0", "DIA", 0, 0.7)
    assert aggregate.paired_rows(tmp_path, n_boot=10) == []
    assert "no scores.csv" in capsys.readouterr().err
