"""Paper scale in one GPU command (docs/gpu.md); ``scripts/gpu/gpu_paper.sh`` installs the wheels and calls this.

Stages, each timed and skipped with a printed line when its expected time no longer fits the budget,
the most wanted figures first: environment -> the pipeline (per task: DDPM, then DIA and CSI per seed,
each followed by the CSI evaluation; all runs side by side on the one device) -> the results table ->
GPU-marked tests -> training benchmark. Everything that comes back lands in ``$OUT`` (else
``results/gpu/``): gpu_paper.json (every figure, card, torch, wall time per stage; rewritten whenever a
stage or a run ends, so a call killed at its limit still returns what finished), table.md, paired.csv,
logs.tar.gz. The budget counts from the shell script's first line (wheel installation included).

    bash scripts/gpu/gpu_paper.sh --preflight  # < 1 minute: wheels, imports, versions, torch.compile, the card
    bash scripts/gpu/gpu_paper.sh              # paper scale (CUDA), 9 minutes by the H100 figures
    bash scripts/gpu/gpu_paper.sh --smoke      # the same script on CPU at toy size (tests/test_gpu_paper.py)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]  # the root; gpu_plan, gpu_probe

from gpu_plan import FIXED_STAGES, SCALES, Scale, Task, estimate_pipeline, find_tasks, fitting_tasks, plan_lines  # noqa: E402,E501
from gpu_probe import dissolve_eps_error, environment, preflight  # noqa: E402

TABLE = "paper_gpu"
EVAL_RESERVE_S = 30.0  # a training run cut at the deadline still gets its best.pt evaluated


@dataclass
class Runner:
    """Runs the commands of one invocation: logs per command, a shared deadline, ``jobs`` at once."""

    py: str
    work: Path
    deadline: float
    slots: threading.Semaphore
    env: dict = field(default_factory=dict)
    commands: list = field(default_factory=list)

    def left(self) -> float:
        return self.deadline - time.time()

    def sh(self, name: str, args: list[str], timeout: float | None = None, env: dict | None = None) -> dict:
        """Run ``args`` (holding a slot) with output in logs/<name>.log; never raises on failure."""
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        timeout = max(1.0, min(timeout or self.left(), self.left()))
        with self.slots:
            t0 = time.time()
            print(f"[{time.strftime('%H:%M:%S')}] start {name}: {' '.join(args)}", flush=True)
            with log.open("w") as out:
                try:
                    rc = subprocess.run(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                        env={**os.environ, **self.env, **(env or {})}).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
        record = {"name": name, "command": args, "rc": rc, "wall_s": round(time.time() - t0, 1)}
        self.commands.append(record)
        print(f"[{time.strftime('%H:%M:%S')}] done  {name}: rc {rc} in {record['wall_s']} s", flush=True)
        return record


def log_tail(runner: Runner, name: str, lines: int = 3) -> list[str]:
    path = runner.work / "logs" / f"{name}.log"
    return path.read_text(errors="replace").strip().splitlines()[-lines:] if path.exists() else []


def gpu_tests(runner: Runner, scale: Scale) -> dict:
    record = runner.sh("gpu_tests", [runner.py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                                     "tests/test_gpu.py"], timeout=FIXED_STAGES["gpu tests"] * 3)
    return {**record, "summary": log_tail(runner, "gpu_tests", 1)}


def benchmark(runner: Runner, scale: Scale) -> dict:
    out = runner.work / "benchmark.json"
    record = runner.sh("benchmark", [runner.py, "scripts/benchmarks/benchmark_train.py", *scale.bench_flags,
                                     "--json", str(out)],
                       timeout=FIXED_STAGES["benchmark"] * 2)
    return {**record, "results": json.loads(out.read_text()) if out.exists() else None}


def train_and_eval(runner: Runner, scale: Scale, task: Task, variant: str, seed: int, cuda: bool,
                   ddpm: Path | None) -> dict:
    """One seed of one variant into <work>/results/paper_gpu/<ds>_c<k>/<variant>/seed<s> (the aggregator's layout).

    Training and evaluation share a process (scripts/gpu/train_eval.py); a run cut at the deadline still
    has its best.pt evaluated by eval.py in the time kept for that."""
    out = runner.work / "results" / TABLE / f"{task.dataset}_c{task.normal_class}" / variant / f"seed{seed}"
    mode = (["--mode", "simclr_DIA", "--shift_trans_type", "diffusion_rotation", "--diffusion_model_path", str(ddpm),
             *scale.dia_flags] if variant == "DIA" else ["--mode", "simclr_CSI", "--shift_trans_type", "rotation"])
    train = ["--dataset", task.dataset, "--data_root", str(task.data_root), "--one_class_idx", str(task.normal_class),
             "--model", "resnet18", "--seed", str(seed), *scale.train_flags,
             *(scale.fast_flags if cuda or scale.fast_on_cpu else ()),
             *mode, "--logdir", str(out / "train")]
    evaluate = ["--mode", "ood_pre", "--ood_score", "CSI", "--load_path", str(out / "train" / "best.pt"),
                *scale.eval_flags, "--seed", str(seed), "--out_dir", str(out)]
    name = f"{task.dataset}_c{task.normal_class}_{variant}_seed{seed}"
    record = runner.sh(name, [runner.py, "scripts/gpu/train_eval.py", *train, "--", *evaluate],
                       timeout=runner.left() - EVAL_RESERVE_S)
    result = {"task": f"{task.dataset}_c{task.normal_class}", "variant": variant, "seed": seed, "run": record}
    report = out / "report.json"
    if not report.exists() and (out / "train" / "best.pt").exists():
        result["late_eval"] = runner.sh(f"eval_{name}", [runner.py, "eval.py", *evaluate])
    metrics = json.loads(report.read_text())["metrics"] if report.exists() else None
    status = "ok" if metrics and record["rc"] == 0 else ("truncated" if metrics else "failed")
    return {**result, "metrics": metrics, "status": status}


def safely(fn, *args) -> dict:
    """``fn(*args)``, or the error as a record: one failure must not stop the other runs or the table."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 (reported in the JSON and on screen)
        print(f"error in {getattr(fn, '__name__', fn)}: {type(err).__name__}: {err}", flush=True)
        return {"error": f"{type(err).__name__}: {err}"}


def run_task(runner: Runner, scale: Scale, task: Task, cuda: bool, keep) -> None:
    """CSI seeds start at once; the DDPM trains meanwhile, then the DIA seeds start; all side by side.
    ``keep(record)`` files each finished piece."""

    def variant(name: str, seed: int, ddpm: Path | None) -> threading.Thread:
        return threading.Thread(target=lambda: keep({"variant": name, "seed": seed, **safely(
            train_and_eval, runner, scale, task, name, seed, cuda, ddpm)}))

    threads = [variant("CSI", s, None) for s in scale.seeds]
    for t in threads:
        t.start()
    ddpm = runner.work / "ddpm" / f"{task.dataset}_c{task.normal_class}"
    record = runner.sh(f"ddpm_{task.dataset}_c{task.normal_class}", [
        runner.py, "diffusion_models/train_eval_ddpm.py", "--mode", "train", "--dataset", task.dataset,
        "--data_root", str(task.data_root), "--one_class_idx", str(task.normal_class), *scale.ddpm_flags,
        "--save_dir", str(ddpm)], env={"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"})  # tf32, as measured
    keep({"task": f"{task.dataset}_c{task.normal_class}", "variant": "DDPM", "train": record,
          "tail": log_tail(runner, record["name"], 4)})
    if (ddpm / "best").exists():
        dia = [variant("DIA", s, ddpm) for s in scale.seeds]
        for t in dia:
            t.start()
        threads += dia
        keep({"task": f"{task.dataset}_c{task.normal_class}", "variant": "dissolve_eps_error",
              **safely(dissolve_eps_error, ddpm, task.dataset, task.data_root, task.normal_class)})
    for t in threads:
        t.join()


def pipeline(runner: Runner, scale: Scale, tasks: list[Task], cuda: bool, summary: dict) -> dict:
    """All tasks side by side; the summary (with every run finished so far) is rewritten as each run ends."""
    result = summary["pipeline"] = {"tasks": [asdict(t) | {"data_root": str(t.data_root)} for t in tasks], "runs": []}
    lock = threading.Lock()

    def keep(record: dict) -> None:
        with lock:
            result["runs"].append(record)
            write_summary(summary, runner)

    threads = [threading.Thread(target=run_task, args=(runner, scale, t, cuda, keep)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def aggregate(runner: Runner, out: Path) -> dict:
    record = runner.sh("aggregate", [runner.py, "-m", "evals.aggregate", str(runner.work / "results"),
                                     "--table", TABLE, "--out", str(out / "table.md"),
                                     "--paired_csv", str(out / "paired.csv")], timeout=120)
    table = out / "table.md"
    return {**record, "table_md": table.read_text() if table.exists() else None}


def stage(summary: dict, name: str, expected: float, runner: Runner, fn, *args) -> None:
    """Run ``fn`` unless its expected time no longer fits; record its wall time either way, and write the
    summary so far, so a call killed at its limit still returns every stage that finished."""
    if runner.left() < expected:
        print(f"skip stage {name}: expected {expected:.0f} s, {runner.left():.0f} s left", flush=True)
        summary["stages"][name] = {"status": "skipped", "expected_s": round(expected), "left_s": round(runner.left())}
    else:
        print(f"== stage {name} (expected {expected:.0f} s, {runner.left():.0f} s left)", flush=True)
        t0 = time.time()
        summary[name] = fn(*args)
        summary["stages"][name] = {"status": "ran", "expected_s": round(expected),
                                   "wall_s": round(time.time() - t0, 1)}
    write_summary(summary, runner)


def write_summary(summary: dict, runner: Runner) -> None:
    """``<out>/gpu_paper.json``, atomically: every figure so far, the commands run and the wall time."""
    summary["commands"] = runner.commands
    summary["total_wall_s"] = round(time.time() - summary["t_start"], 1)
    path = Path(summary["out"]) / "gpu_paper.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    tmp.replace(path)


def refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2


def cuda_available() -> bool:
    import torch  # here: the import takes seconds, and --help should not
    return torch.cuda.is_available()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, toy size, one seed, built-in data")
    p.add_argument("--preflight", action="store_true",
                   help="only check the machine (< 1 minute): versions, imports, torch.compile, the card; "
                        "exit status 1 on any problem (no CUDA is one; with --smoke, the rest is checked on a CPU)")
    p.add_argument("--data_root", type=Path, default=REPO / "device_data",
                   help="folder searched for more <name>mnist.npz files (class 0 of each is run)")
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoints and logs; must be new or empty (default: a new runs/gpu_paper_<scale>/<time>)")
    p.add_argument("--budget", type=float, default=None, help="seconds (default: 540, the 9-minute target)")
    p.add_argument("--jobs", type=int, default=None, help="processes at once on the device")
    p.add_argument("--skip", nargs="*", default=[], choices=["gpu tests", "benchmark"], help="stages to leave out")
    args = p.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    return args


def start_time() -> float:
    """When this call began: gpu_paper.sh exports its first line's time, so wheel installation and imports
    count against the budget; run directly, now."""
    try:
        return float(os.environ["GPU_PAPER_T0"])
    except (KeyError, ValueError):
        return time.time()


def main(argv: list[str] | None = None) -> int:
    t_start = start_time()
    args = parse_args(argv)
    if args.preflight:
        return preflight(REPO, need_cuda=not args.smoke)
    scale = SCALES["smoke" if args.smoke else "paper"]
    if not args.smoke and not cuda_available():
        return refuse("no CUDA device: the paper scale needs a GPU (bash scripts/gpu/gpu_paper.sh --smoke runs the "
                      "same script on a CPU at toy size)")
    work = args.work or REPO / "runs" / f"gpu_paper_{scale.name}" / time.strftime("%Y%m%d-%H%M%S")
    if work.exists() and any(work.iterdir()):  # an old DDPM or report.json must never count as this call's
        return refuse(f"--work {work} already holds a run: give a new or empty folder, or leave --work out")
    out = Path(os.environ.get("OUT") or REPO / "results" / "gpu")
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or scale.budget_s
    runner = Runner(py=sys.executable, work=work, deadline=t_start + budget,
                    slots=threading.Semaphore(args.jobs or scale.jobs), env={"OMP_NUM_THREADS": "1"})
    env = environment()
    cuda = env["cuda"]
    tasks = find_tasks(scale, REPO / "datasets" / "builtin", args.data_root)
    print("stage plan (expected seconds by the H100 figures):\n" + "\n".join(plan_lines(tasks, scale)), flush=True)
    summary: dict = {"scale": scale.name, "budget_s": budget, "environment": env, "plan": plan_lines(tasks, scale),
                     "stages": {}, "t_start": t_start, "out": str(out), "work": str(work)}
    write_summary(summary, runner)
    fitting = fitting_tasks(tasks, scale, runner.left() - FIXED_STAGES["aggregate"])
    for task in tasks[len(fitting):]:
        print(f"skip task {task.dataset} c{task.normal_class}: the pipeline with it would overrun the budget",
              flush=True)
    if fitting:
        expected = estimate_pipeline(fitting, scale).wall_s
        runner.deadline = t_start + budget - FIXED_STAGES["aggregate"]  # the table's time is kept inside the budget
        stage(summary, "pipeline", expected, runner, pipeline, runner, scale, fitting, cuda, summary)
        runner.deadline = t_start + budget
    stage(summary, "aggregate", FIXED_STAGES["aggregate"], runner, aggregate, runner, out)
    if "gpu tests" not in args.skip:  # after the figures: what is left of the budget, capped at its own limit
        stage(summary, "gpu tests", FIXED_STAGES["gpu tests"], runner, gpu_tests, runner, scale)
    if "benchmark" not in args.skip:
        stage(summary, "benchmark", FIXED_STAGES["benchmark"], runner, benchmark, runner, scale)
    write_summary(summary, runner)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(work / "logs", arcname="logs")
    print(f"wrote {out / 'gpu_paper.json'}, table.md, paired.csv, logs.tar.gz in {summary['total_wall_s']} s")
    if summary.get("aggregate", {}).get("table_md"):
        print(summary["aggregate"]["table_md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
