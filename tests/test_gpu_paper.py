"""``scripts/gpu/gpu_paper.sh --smoke``: the paper-scale GPU command, end to end on CPU at toy size.

The GPU run happens rarely and cannot be debugged there; this keeps every stage of the identical
script working: plan, GPU tests (skipped), benchmark, DDPM -> DIA/CSI -> CSI eval, table, JSON.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "gpu"))

from gpu_paper import Runner  # noqa: E402
from gpu_plan import (FIXED_STAGES, PAPER, STAGE_ORDER, Task, estimate_pipeline, find_tasks, fitting_tasks,  # noqa: E402
                      guaranteed_s, plan_lines)
from gpu_probe import dependency_report, tf32_off, unmet  # noqa: E402


def test_paper_plan_fits_nine_minutes_by_the_h100_figures():
    tasks = find_tasks(PAPER, REPO / "datasets" / "builtin", None)
    assert [(t.dataset, t.normal_class, t.n_train) for t in tasks] == [("breastmnist", 0, 147), ("breastmnist", 1, 399)]
    lines = plan_lines(tasks, PAPER)
    totals = [float(line.split("total")[1].split("s")[0]) for line in lines[:-1]]
    assert len(totals) == len(STAGE_ORDER) and totals == sorted(totals)
    assert totals[-1] <= PAPER.budget_s == 540, "\n".join(lines)
    assert not any("over budget" in line for line in lines)
    big = Task("pneumoniamnist", REPO, 0, 3000)  # too large for what is left: dropped, BreastMNIST kept
    assert fitting_tasks([*tasks, big], PAPER, estimate_pipeline(tasks, PAPER).wall_s) == tasks


def test_the_pipelines_aurocs_and_table_come_first_and_the_budget_guarantees_them():
    tasks = find_tasks(PAPER, REPO / "datasets" / "builtin", None)
    assert STAGE_ORDER[:3] == ("environment", "pipeline", "aggregate")
    # what must finish for the AUROC table fits, with room to spare for the GPU tests and the benchmark
    assert guaranteed_s(tasks, PAPER) + FIXED_STAGES["gpu tests"] + FIXED_STAGES["benchmark"] <= PAPER.budget_s
    # a task that does not fit what is left of the budget is dropped, never started
    left = guaranteed_s(tasks[:1], PAPER) - FIXED_STAGES["environment"] - FIXED_STAGES["aggregate"]
    assert fitting_tasks(tasks, PAPER, left) == tasks[:1]


def test_a_stage_command_is_cut_at_the_calls_deadline_whatever_its_own_limit(tmp_path):
    runner = Runner(py=sys.executable, work=tmp_path, deadline=time.time() + 2, slots=threading.Semaphore(1))
    t0 = time.time()
    record = runner.sh("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], timeout=600)
    assert record["rc"] == "timeout" and time.time() - t0 < 30
    assert (tmp_path / "logs" / "sleeper.log").exists() and runner.commands == [record]


def test_tf32_off_holds_for_each_block_even_with_two_threads_at_once():
    import torch
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    seen = []

    def measure():
        with tf32_off():
            time.sleep(0.2)  # another thread's block must not restore TF32 meanwhile
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))

    try:
        threads = [threading.Thread(target=measure) for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert seen == [(False, False), (False, False)]
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_dependency_report_flags_a_carried_wheel_at_another_version_and_unmet_minimums(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pins\ndiffusers==0.0.1  # carried: must match\nnumpy==0.0.1\nnot-a-package-xyz==1.0\ntqdm\n")
    problems, notes = dependency_report(req)
    assert any(p.startswith("diffusers ") and "(pinned 0.0.1)" in p for p in problems), problems
    assert any("not-a-package-xyz is not installed" in p for p in problems)
    assert any(n.startswith("numpy ") for n in notes) and not any(p.startswith("numpy ") for p in problems)
    assert dependency_report(REPO / "requirements.txt")[0] == []  # this environment meets its own pins
    assert "needs numpy>=999" in unmet("numpy>=999", "diffusers 0.42.1")
    assert "not installed" in unmet("not-a-package-xyz>=1", "diffusers 0.42.1")
    assert unmet('not-a-package-xyz>=1; extra == "dev"', "diffusers 0.42.1") is None  # optional extras skipped
    assert unmet("numpy>=1", "diffusers 0.42.1") is None


def _preflight(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out")}
    return subprocess.run(["bash", "scripts/gpu/gpu_paper.sh", "--preflight", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_preflight_smoke_checks_everything_but_the_gpu_on_a_cpu(tmp_path):
    proc = _preflight(tmp_path, "--smoke")
    out = proc.stdout
    assert "environment: " in out and "diffusers 0.42.1" in out and "C compiler: " in out and "TF32: " in out
    if shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"):
        assert proc.returncode == 0 and "preflight: ready" in out, out[-2000:] + proc.stderr[-2000:]
    else:
        assert proc.returncode == 1 and "no C compiler" in out
    assert not (tmp_path / "out").exists()  # it only checks: no results, no work folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the preflight's verdict on a machine without CUDA")
def test_preflight_without_cuda_fails_with_one_problem_line_naming_it(tmp_path):
    proc = _preflight(tmp_path)
    problems = [line for line in proc.stdout.splitlines() if line.startswith("problem: ")]
    assert proc.returncode == 1 and any("no CUDA device" in p and "--preflight --smoke" in p for p in problems)


@pytest.mark.slow
def test_smoke_runs_every_stage_and_writes_the_table(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "scripts/gpu/gpu_paper.sh", "--smoke", "--work", str(tmp_path / "work"),
                           "--data_root", str(tmp_path / "none")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stage plan" in proc.stdout
    started = [line.split("== stage ")[1].split(" (")[0] for line in proc.stdout.splitlines() if "== stage " in line]
    assert started == list(STAGE_ORDER[1:])  # the pipeline and its table before the GPU tests and the benchmark
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_paper.json", "logs.tar.gz", "paired.csv", "table.md"]
    summary = json.loads((out / "gpu_paper.json").read_text())
    assert {name: s["status"] for name, s in summary["stages"].items()} == {
        "gpu tests": "ran", "benchmark": "ran", "pipeline": "ran", "aggregate": "ran"}
    assert summary["gpu tests"]["rc"] == 0 and "skipped" in summary["gpu tests"]["summary"][0]
    assert [r["config"] for r in summary["benchmark"]["results"]["rows"]] == ["upstream-like", "fast", "fast+cache"]
    runs = {r["variant"]: r for r in summary["pipeline"]["runs"]}
    assert runs["DIA"]["status"] == runs["CSI"]["status"] == "ok"
    for variant in ("DIA", "CSI"):  # the fast-path flags went through the CLI into the engine's config
        config = json.loads((tmp_path / "work" / "results" / "paper_gpu" / "breastmnist_c1" / variant / "seed0" /
                             "train" / "config.json").read_text())
        assert config["run"]["amp"] is True and config["run"]["channels_last"] is True, config["run"]
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
    assert _flag_map(arrays["DIA"] + ["--batch_size", "32"]) == _flag_map([*PAPER.train_flags, *PAPER.fast_flags])
    assert _flag_map(arrays["DIA_ONLY"]) == _flag_map(list(PAPER.dia_flags))
    assert "--one_class_idx \"$CLS\"" in text and "CLS=1" in text and 1 in PAPER.breast_classes


def _gpu_paper(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "scripts/gpu/gpu_paper.py", *args], cwd=REPO, env=env, capture_output=True,
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
    assert list(summary["stages"]) == list(STAGE_ORDER[2:])  # no pipeline fits; every later stage is recorded
    assert all(s["status"] == "skipped" for s in summary["stages"].values())
    assert summary["total_wall_s"] >= 0 and summary["work"] == str(tmp_path / "work")
