"""scripts/benchmark_*.py run end to end at toy sizes and print the numbers they promise."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "benchmarks" / name), *args], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_benchmark_dissolve_times_each_resolution():
    out = run_script("benchmark_dissolve.py", "--nets", "tiny", "--batch_sizes", "2", "--image_size", "64",
                     "--resolutions", "32", "64", "--iters", "1", "--warmup", "0", "--threads", "1", "--device", "cpu")
    for res in (32, 64):
        assert f"tiny UNet at {res} px" in out
    assert "full attention at [16, 8] px" in out and "full attention at [16] px" in out  # 64 px: not at 32
    rates = re.findall(r"dissolve fp32\s*:\s*([\d.]+) images/s", out)
    assert len(rates) == 2 and all(float(r) > 0 for r in rates), out


def test_benchmark_train_prints_step_time_and_ratio(tmp_path):
    out = run_script("benchmark_train.py", "--sizes", "32", "--batch", "2", "--width", "8", "--dim", "8",
                     "--mults", "1,2", "--repeats", "1", "--cache_images", "2", "--device", "cpu",
                     "--json", str(tmp_path / "bench.json"))
    assert re.search(r"\d+(\.\d+)?\s*ms", out), out
    assert "upstream-like" in out and "fast " in out and "fast+cache" in out, out
    peaks = re.findall(r"peak RSS so far ([\d.]+) GiB", out)
    assert len(peaks) == 3 and all(float(p) > 0 for p in peaks), out
    assert len(re.findall(r"step / sum\(parts\) = [\d.]+", out)) == 3 and "vs upstream-like" in out, out
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["config"] for r in rows] == ["upstream-like", "fast", "fast+cache"]
    assert all(r["step_ms"] > 0 and r["images_per_s"] > 0 for r in rows)


def test_benchmark_ddpm_prints_images_per_second_and_the_ratio_to_fp32(tmp_path):
    out = run_script("benchmark_ddpm.py", "--dim", "8", "--mults", "1,2", "--batch", "2", "--repeats", "1",
                     "--warmup", "1", "--settings", "fp32", "bf16", "math_attention", "native_conv", "--device", "cpu",
                     "--json", str(tmp_path / "d.json"))
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    assert [r["setting"] for r in rows] == ["fp32", "bf16", "math_attention", "native_conv"]
    assert all(r["ms_per_step"] > 0 for r in rows[2:]), out
    assert rows[0]["images_per_s"] > 0 and re.search(r"fp32\s+[\d.]+ ms/step \|\s+[\d.]+ images/s", out), out
    from common.device import native_bf16  # bf16 is measured where the CPU has it natively, else says why not
    if native_bf16(__import__("torch").device("cpu")):
        assert rows[1]["images_per_s"] > 0 and re.search(r"bf16 .* x[\d.]+ vs fp32", out), out
    else:
        assert "no native bf16" in rows[1]["skipped"], out
