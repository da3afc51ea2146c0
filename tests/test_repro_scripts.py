"""scripts/*.sh: they parse, and lib_repro.sh's run cache trains a run once however many tables use it."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").rglob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def run_lib(tmp_path: Path, body: str, **env) -> subprocess.CompletedProcess:
    """Source lib_repro.sh with a tiny preset on synthetic data, then run ``body``."""
    script = f"""
source "{REPO}/scripts/lib_repro.sh"
preset quick
TRAIN_FLAGS+=(--steps_per_epoch 1 --warmup 0.5 --val_samples 1)
EVAL_FLAGS+=(--ood_samples 1)
{body}
"""
    full_env = {**os.environ, "PY": sys.executable, "RESULTS": str(tmp_path / "res"), "EPOCHS": "1",
                "DATA_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=full_env, timeout=600)


def test_run_one_shares_one_training_between_tables_and_reports_into_each(tmp_path):
    body = """
run_one tableA synthetic 0 CSI 0 --mode simclr_CSI --shift_trans_type rotation
run_one tableB synthetic 0 CSI_again 0 --shift_trans_type rotation --mode simclr_CSI
"""
    result = run_lib(tmp_path, body)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "res" / "_runs" / "synthetic_c0").iterdir())
    assert len(runs) == 1, "the same flags in another order must reuse the run"
    shared = json.loads((runs[0] / "seed0" / "report.json").read_text())
    for table, variant in (("tableA", "CSI"), ("tableB", "CSI_again")):
        seed_dir = tmp_path / "res" / table / "synthetic_c0" / variant / "seed0"
        assert json.loads((seed_dir / "report.json").read_text()) == shared
        assert (seed_dir / "train" / "best.pt").is_file()
        assert (seed_dir / "scores.csv").read_bytes() == (runs[0] / "seed0" / "scores.csv").read_bytes()
    assert result.stderr.count("== table") == 1  # one training announced, the second table reused it

    # changed eval flags are a different run, not a stale report
    result = run_lib(tmp_path, "run_one tableC synthetic 0 CSI 0 --mode simclr_CSI --shift_trans_type rotation",
                     EVAL_EXTRA="--ood_samples 2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "res" / "_runs" / "synthetic_c0").iterdir())) == 2


def test_relative_results_and_ddpm_dirs_become_absolute(tmp_path):
    result = subprocess.run(["bash", "-c", f'source "{REPO}/scripts/lib_repro.sh"; echo "$RESULTS|$DDPM_DIR"'],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={**os.environ, "RESULTS": "res", "DDPM_DIR": "sub/ddpm"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{tmp_path.resolve() / 'res'}|{tmp_path.resolve() / 'sub' / 'ddpm'}"


def test_two_scripts_needing_the_same_ddpm_train_it_once(tmp_path):
    body = """
DDPM_FLAGS=(--dim 8 --dim_mults 1,2 --train_steps 2 --batch_size 4 --grad_accum 1 --val_every 2)
ddpm synthetic 0 16 > "$RESULTS.a" & first=$!
ddpm synthetic 0 16 > "$RESULTS.b" & second=$!
wait $first && wait $second
"""
    result = run_lib(tmp_path, body, DDPM_DIR=str(tmp_path / "ddpm"))
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "ddpm" / "quick" / "synthetic_c0_r16"
    for out in ("res.a", "res.b"):
        assert (tmp_path / out).read_text().strip() == str(folder)
    assert (folder / "best" / "ddpm.json").is_file()
    assert result.stderr.count("trained to step") == 1, "the second caller must wait and reuse the DDPM"


def test_two_scripts_finishing_the_same_run_both_publish_it(tmp_path):
    body = """
run_one tableA synthetic 0 CSI 0 --mode simclr_CSI --shift_trans_type rotation & first=$!
run_one tableA synthetic 0 CSI 0 --mode simclr_CSI --shift_trans_type rotation & second=$!
wait $first && wait $second
"""
    result = run_lib(tmp_path, body)
    assert result.returncode == 0, result.stderr[-2000:]
    seed_dir = tmp_path / "res" / "tableA" / "synthetic_c0" / "CSI" / "seed0"
    assert json.loads((seed_dir / "report.json").read_text())["metrics"]["auroc"] >= 0
    assert sorted(p.name for p in seed_dir.iterdir()) == ["report.json", "scores.csv", "train"]  # no temp file left
    assert result.stderr.count("== table") == 1


def test_why_dia_variants_build_valid_train_configs():
    """Each scripts/studies/why_dia_cpu.sh variant's flags parse into the config it names (a typo fails here, not 40
    CPU-minutes into a sweep)."""
    import re
    import shlex

    from common.cli import build_train_parser, train_config_from_args

    text = (REPO / "scripts" / "studies" / "why_dia_cpu.sh").read_text()
    variants = dict(re.findall(r'^\s+\[([\w.]+)\]="([^"]*)"$', text, flags=re.M))
    assert {"CSI", "DIA", "CSI_lr0.01", "DIA_lr0.01", "noise_0.05", "gaussian_k7"} <= variants.keys()
    base = ("--dataset breastmnist --data_root x --one_class_idx 0 --model resnet18 --mode simclr_DIA "
            "--diffusion_model_path some/ddpm")
    for name, flags in variants.items():
        cfg = train_config_from_args(build_train_parser().parse_args(shlex.split(f"{base} {flags}")))
        method = cfg.dissolve.method
        assert (method == "none") == name.startswith("CSI"), name
        assert (method == "ddpm") == name.startswith("DIA"), name
        assert cfg.optim.lr_init == (0.01 if name.endswith("lr0.01") else 0.1), name
    noise = train_config_from_args(build_train_parser().parse_args(shlex.split(f"{base} {variants['noise_0.05']}")))
    assert (noise.dissolve.method, noise.dissolve.setting("noise_std")) == ("noise", 0.05)


def test_demo_candidates_use_the_demos_quick_preset():
    """scripts/studies/demo_candidates.sh compares candidates against today's demo: its DDPM and training flags must be the
    quick preset of scripts/demo.sh, word for word."""
    def arrays(script: str) -> dict[str, str]:
        text = (REPO / "scripts" / script).read_text()
        return {name: re.search(rf"\b{name}=\(([^)]*)\)", text).group(1) for name in ("DDPM", "DIA")}
    assert arrays("studies/demo_candidates.sh") == arrays("demo.sh")  # demo.sh's first DDPM=/DIA= are the quick preset


def lib_output(body: str, **env) -> subprocess.CompletedProcess:
    script = f'source "{REPO}/scripts/lib_repro.sh"\n{body}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PY": sys.executable, **env})


@pytest.mark.parametrize("dataset, epochs, former", [
    # the flags the former CPU-only table scripts passed (the quick preset plus their overrides)
    ("breastmnist", "200", "--width 16 --epochs 20 --batch_size 32 --warmup 2 --save_step 2 --val_samples 2 --amp "
                           "--channels_last --epochs 200 --warmup 10 --save_step 10 --keep_checkpoints"),
    ("breastmnist", "50", "--width 16 --epochs 20 --batch_size 32 --warmup 2 --save_step 2 --val_samples 2 --amp "
                          "--channels_last --epochs 50 --warmup 10 --save_step 10 --keep_checkpoints"),
    ("chestxray", "", "--width 16 --epochs 20 --batch_size 32 --warmup 2 --save_step 2 --val_samples 2 --amp "
                      "--channels_last --epochs 15 --image_size 64 --steps_per_epoch 20 --warmup 2 --save_step 3 "
                      "--keep_checkpoints"),
])
def test_cpu_preset_keeps_the_run_keys_of_the_cpu_figures(tmp_path, dataset, epochs, former):
    """The cpu preset replaced two CPU-only scripts: the same runs must come out (same cache key, same DDPM flags)."""
    body = (f'preset cpu {dataset}; run_key "${{TRAIN_FLAGS[@]}}"; run_key {former}; '
            'run_key "${DDPM_FLAGS[@]}"; '
            'run_key --dim 16 --dim_mults 1,2,2 --train_steps 2000 --batch_size 16 --train_steps 1500 '
            '--grad_accum 1 --val_every 250')
    result = lib_output(body, RESULTS=str(tmp_path / "r"), DDPM_DIR=str(tmp_path / "d"),
                        **({"EPOCHS": epochs} if epochs else {}))
    assert result.returncode == 0, result.stderr
    new, old, ddpm_new, ddpm_old = result.stdout.split()
    assert new == old and ddpm_new == ddpm_old


def test_run_jobs_expands_seeds_trains_the_ddpm_once_and_refuses_a_bad_job(tmp_path):
    body = """
ddpm() { echo "ddpm $*" >&2; echo /ddpm/dir; }
run_one() { echo "run_one $*"; }
run_jobs T breastmnist 0 32 "--x 1" CSI:2 1 DIA:3
"""
    result = lib_output(body, RESULTS=str(tmp_path / "r"), DDPM_DIR=str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert result.stderr.count("ddpm ") == 1, "the DDPM is asked for once, at the first DIA job"
    assert lines == [
        "run_one T breastmnist 0 CSI 2 --mode simclr_CSI --shift_trans_type rotation",
        "run_one T breastmnist 0 CSI 1 --mode simclr_CSI --shift_trans_type rotation",
        "run_one T breastmnist 0 DIA 1 --mode simclr_DIA --shift_trans_type diffusion_rotation "
        "--diffusion_model_path /ddpm/dir --x 1",
        "run_one T breastmnist 0 DIA 3 --mode simclr_DIA --shift_trans_type diffusion_rotation "
        "--diffusion_model_path /ddpm/dir --x 1"]
    bad = lib_output("run_jobs T breastmnist 0 32 '' SIMCLR:0", RESULTS=str(tmp_path / "r"),
                     DDPM_DIR=str(tmp_path / "d"))
    assert bad.returncode == 2 and "job 'SIMCLR:0' must be a seed" in bad.stderr
