"""``scripts/gpu_paper.sh --smoke``: the paper-scale GPU command, end to end on CPU at toy size.

The GPU run happens rarely and cannot be debugged there; this keeps every stage of the identical
script working: plan, GPU tests (skipped), benchmark, DDPM -> DIA/CSI -> CSI eval, table, JSON.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from gpu_plan import PAPER, Task, estimate_pipeline, find_tasks, fitting_tasks, plan_lines  # noqa: E402


def test_paper_plan_fits_nine_minutes_by_the_h100_figures():
    tasks = find_tasks(PAPER, REPO / "datasets" / "builtin", None)
    assert [(t.dataset, t.normal_class, t.n_train) for t in tasks] == [("breastmnist", 0, 147), ("breastmnist", 1, 399)]
    lines = plan_lines(tasks, PAPER)
    total = float(lines[-2].split("total")[1].split("s")[0])
    assert total <= PAPER.budget_s == 540, "\n".join(lines)
    assert not any("over budget" in line for line in lines)
    big = Task("pneumoniamnist", REPO, 0, 3000)  # too large for what is left: dropped, BreastMNIST kept
    assert fitting_tasks([*tasks, big], PAPER, estimate_pipeline(tasks, PAPER).wall_s) == tasks


@pytest.mark.slow
def test_smoke_runs_every_stage_and_writes_the_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "scripts/gpu_paper.sh", "--smoke", "--work", str(tmp_path / "work"),
                           "--data_root", str(tmp_path / "none")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage plan" in proc.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_paper.json", "logs.tar.gz", "paired.csv", "table.md"]
    summary = json.loads((out / "gpu_paper.json").read_text())
    assert {name: s["status"] for name, s in summary["stages"].items()} == {
        "gpu tests": "ran", "benchmark": "ran", "pipeline": "ran", "aggregate": "ran"}
    assert summary["gpu tests"]["rc"] == 0 and "skipped" in summary["gpu tests"]["summary"][0]
    assert [r["config"] for r in summary["benchmark"]["results"]["rows"]] == ["upstream-like", "fast", "fast+cache"]
    runs = {r["variant"]: r for r in summary["pipeline"]["runs"]}
    assert runs["DIA"]["status"] == runs["CSI"]["status"] == "ok"
    assert 0 <= runs["DIA"]["metrics"]["auroc"] <= 1
    assert runs["dissolve_eps_error"]["eps_rel_l2"] < 0.2
    table = (out / "table.md").read_text()
    assert "breastmnist_c1 | DIA" in table and "DIA − CSI" in table
    assert summary["environment"]["torch"] and summary["total_wall_s"] > 0


def _flag_map(tokens: list[str]) -> dict[str, str | bool]:
    """["--a", "1", "--b"] -> {"--a": "1", "--b": True}."""
    out: dict[str, str | bool] = {}
    for i, tok in enumerate(tokens):
        if tok.startswith("--"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            out[tok] = nxt if nxt is not None and not nxt.startswith("--") else True
    return out


def test_the_demos_paper_preset_is_the_gpu_scripts_pipeline():
    import re
    import shlex
    text = (REPO / "scripts" / "demo.sh").read_text()
    paper = text[text.index("  paper) "):text.index(";;", text.index("  paper) "))]
    arrays = {name: shlex.split(body) for name, body in re.findall(r"(\w+)=\(([^)]*)\)", paper)}
    assert _flag_map(arrays["DDPM"]) == _flag_map(list(PAPER.ddpm_flags))
    # demo.sh gives --batch_size on the train.py line itself
    assert _flag_map(arrays["DIA"] + ["--batch_size", "32"]) == _flag_map([*PAPER.train_flags, *PAPER.cuda_flags])
    assert _flag_map(arrays["DIA_ONLY"]) == _flag_map(list(PAPER.dia_flags))
    assert "--one_class_idx \"$CLS\"" in text and "CLS=1" in text and 1 in PAPER.breast_classes


def _gpu_paper(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "scripts/gpu_paper.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_paper_scale_without_cuda_stops_at_once_in_one_line(tmp_path):
    proc = _gpu_paper(tmp_path, "--work", str(tmp_path / "work"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "no CUDA device" in lines[0] and "--smoke" in lines[0]
    assert not (tmp_path / "work").exists()


def test_a_work_folder_holding_an_earlier_run_is_refused(tmp_path):
    (tmp_path / "work" / "ddpm").mkdir(parents=True)
    proc = _gpu_paper(tmp_path, "--smoke", "--work", str(tmp_path / "work"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--work" in lines[0] and "already holds a run" in lines[0]


def test_the_summary_is_written_after_every_stage_even_when_the_budget_skips_them(tmp_path):
    proc = _gpu_paper(tmp_path, "--smoke", "--work", str(tmp_path / "work"), "--budget", "1",
                      "--data_root", str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "gpu_paper.json").read_text())
    assert summary["stages"]["gpu tests"]["status"] == "skipped" and "aggregate" in summary["stages"]
    assert summary["total_wall_s"] > 0 and summary["work"] == str(tmp_path / "work")
