"""scripts/studies: the long-DDPM report pairs its three arms on the same test images; the curves script runs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from evals.metrics import auroc, summarize
from evals.report import write_report

REPO = Path(__file__).resolve().parents[1]


def fake_run(folder: Path, scores: np.ndarray, labels: np.ndarray) -> None:
    write_report(folder, metrics=summarize(scores, labels, n_boot=20), scores=scores, is_anomaly=labels,
                 paths=None, config={}, checkpoint="x.pt", extra={})


def test_report_prints_each_arm_and_the_paired_differences(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 15)
    strength = {"CSI": 0.3, "DIA_best": 0.5, "DIA_long": 1.0}
    scores = {(arm, s): rng.normal(size=45) - k * labels for arm, k in strength.items() for s in (0, 1)}
    for (arm, s), x in scores.items():
        fake_run(tmp_path / "long_ddpm" / "breastmnist_c0" / arm / f"seed{s}", x, labels)
    out = subprocess.run([sys.executable, str(REPO / "scripts/studies/long_ddpm_report.py"), str(tmp_path),
                          "--n_boot", "200"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for a, b in (("DIA_long", "CSI"), ("DIA_best", "CSI"), ("DIA_long", "DIA_best")):
        diffs = [auroc(scores[a, s], labels) - auroc(scores[b, s], labels) for s in (0, 1)]
        assert f"| {a} − {b} | seed0 | {diffs[0]:+.3f} |" in out.stdout, out.stdout
        assert f"| {a} − {b} | mean of 2 | **{np.mean(diffs):+.3f}" in out.stdout, out.stdout
    csi = [auroc(scores["CSI", s], labels) for s in (0, 1)]
    assert f"| CSI | 2 | {np.mean(csi):.3f} ± {np.std(csi, ddof=1):.3f} |" in out.stdout, out.stdout


def test_curves_script_writes_the_tables_and_the_factor_at_matched_steps(tmp_path):
    from diffusion_models.trainer import DDPMTrainConfig, run_training

    for name, steps in (("a", 4), ("b", 6)):
        run_training(DDPMTrainConfig(dataset="synthetic", dim=8, dim_mults=(1, 2), train_steps=steps, batch_size=8,
                                     grad_accum=1, val_every=2, save_every=2, keep_checkpoints=True,
                                     save_dir=str(tmp_path / name)), show_progress=False)
    out = subprocess.run([sys.executable, str(REPO / "scripts/studies/ddpm_curves.py"), str(tmp_path / "a"),
                          str(tmp_path / "b"), "--out", str(tmp_path / "curves")], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "curves" / "curves.md").read_text()
    assert text.count("| 2 |") >= 3 and "| 6 |" in text  # steps 2, 4 matched; 6 only in run b
    factor_rows = [line for line in text.split("## Own-class factor")[1].splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in factor_rows[1:]] == ["| 2", "| 4"]  # after the header
    assert (tmp_path / "curves" / "curves.png").stat().st_size > 0

    # run a trains on; --reuse measures only its new step and keeps the earlier rows exactly
    first = json.loads((tmp_path / "curves" / "curves.json").read_text())
    run_training(DDPMTrainConfig(dataset="synthetic", dim=8, dim_mults=(1, 2), train_steps=6, batch_size=8,
                                 grad_accum=1, val_every=2, save_every=2, keep_checkpoints=True, resume=True,
                                 save_dir=str(tmp_path / "a")), show_progress=False)
    again = subprocess.run([sys.executable, str(REPO / "scripts/studies/ddpm_curves.py"), str(tmp_path / "a"),
                            str(tmp_path / "b"), "--out", str(tmp_path / "again"),
                            "--reuse", str(tmp_path / "curves" / "curves.json")],
                           capture_output=True, text=True, timeout=300, cwd=REPO)
    assert again.returncode == 0, again.stderr
    measured = [line for line in again.stdout.splitlines() if line.strip().startswith("step ")]
    assert [line.split(":")[0].strip() for line in measured] == ["step 6"]  # only run a's new checkpoint
    second = json.loads((tmp_path / "again" / "curves.json").read_text())
    rows_a = second["runs"][str(tmp_path / "a")]["rows"]
    assert rows_a[:2] == first["runs"][str(tmp_path / "a")]["rows"] and [r["step"] for r in rows_a] == [2, 4, 6]
    assert [r["step"] for r in second["own_class_factor"]] == [2, 4, 6]


def test_the_rule_picks_the_highest_factor_and_prefers_an_earlier_near_tie():
    sys.path.insert(0, str(REPO / "scripts" / "studies"))
    from ddpm_curves import pick_step

    rows = [{"step": s, "factor_t50": f} for s, f in ((250, 1.00), (500, 1.10), (750, 1.13), (1000, 1.134))]
    assert pick_step(rows) == 750  # 1.13 is within 0.005 of 1.134
    assert pick_step(rows, tolerance=0.0) == 1000
    assert pick_step(rows, max_step=500) == 500
