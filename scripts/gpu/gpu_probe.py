"""What ``scripts/gpu/gpu_paper.py`` measures in its own process: the machine, the preflight, and the bf16
dissolver's error.

The preflight (``gpu_paper.sh --preflight``) checks in well under a minute what would otherwise fail minutes
into the one GPU call: package versions against ``requirements.txt`` and diffusers' and kornia's own
minimums, that every project module imports, and that ``torch.compile`` works on the device.
The dissolver's UNet forward in bf16 (``--dissolve_dtype bf16``) is checked against fp32 on the
task's normal validation images, with the trained DDPM, at t spread over [30, 99].
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch

MODULES = ("torchvision", "numpy", "diffusers", "kornia", "kornia_rs", "medmnist", "huggingface_hub", "safetensors")
# Installed from .whl/ on the GPU machine (scripts/gpu/device_wheels.sh): their versions must be the pinned ones.
CARRIED = ("diffusers", "kornia", "medmnist")
# Packages whose own install requirements must hold (diffusers needs huggingface-hub and safetensors minimums).
CHECKED_DEPENDENTS = ("diffusers", "kornia")
PACKAGES = ("common", "datasets", "models", "training", "evals", "diffusion_models")
TOP_MODULES = ("train", "eval")
TF32_ENV = ("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "NVIDIA_TF32_OVERRIDE")
_TF32_LOCK = threading.Lock()  # the TF32 switches are process-global; runs measure from several threads


def environment() -> dict:
    """Versions, the card and its free memory; printed and returned."""
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda": torch.cuda.is_available()}
    for name in MODULES:  # the installed distribution's version, without paying for the import
        try:
            env[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:  # reported, not fatal: the stage that needs it fails in its log
            env[name] = "missing"
    if env["cuda"]:
        free, total = torch.cuda.mem_get_info()
        env.update(card=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   free_gib=round(free / 2**30, 1), total_gib=round(total / 2**30, 1))
    else:
        env["card"] = f"CPU ({torch.get_num_threads()} threads)"
    print("environment: " + " | ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    return env


@torch.no_grad()
def dissolve_eps_error(ddpm_dir, dataset: str, data_root, normal_class: int, max_images: int = 256) -> dict:
    """ε and x̂₀ of the bf16 UNet forward against fp32 (TF32 off) on normal validation images."""
    from common.config import DataConfig
    from datasets.from_config import load_split
    from diffusion_models.dissolver import Dissolver

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = load_split(DataConfig(dataset=dataset, data_root=str(data_root), one_class_idx=normal_class))
    rows = [i for i in range(len(split.val)) if split.val.is_anomaly[i] == 0][:max_images]
    x = torch.stack([split.val[i][0] for i in rows]).to(device)  # (N, 3, S, S) in [0, 1]
    t = torch.arange(len(x), device=device) % 70 + 30
    fp32, bf16 = (Dissolver.from_checkpoint(ddpm_dir, image_size=split.image_size, device=device, unet_dtype=d)
                  for d in ("fp32", "bf16"))
    with tf32_off():
        z = 2 * fp32.resampler.down(x) - 1  # the "normalized" input range
        e32, e16 = fp32.predict_eps(z, t), bf16.predict_eps(z, t)
        x0_diff = (bf16(x, t=t) - fp32(x, t=t)).abs()
    result = {"n_images": len(x), "device": str(device),
              "eps_rel_l2": round(float((e16 - e32).norm() / e32.norm()), 5),
              "eps_max_abs": round(float((e16 - e32).abs().max()), 5),
              "x0_max_abs_pixels": round(float(x0_diff.max()), 5), "x0_mean_abs_pixels": float(x0_diff.mean())}
    print(f"bf16 dissolver vs fp32 ({dataset} c{normal_class}, {len(x)} validation images): {result}", flush=True)
    return result


@contextmanager
def tf32_off():
    """TF32 off for matmuls and convolutions inside the block, restored after; one block at a time, so two
    threads measuring at once cannot restore each other's setting halfway through."""
    with _TF32_LOCK:
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_pins(requirements: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file (comments and unpinned lines skipped)."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[name] = version
    return pins


def unmet(requirement: str, owner: str) -> str | None:
    """Why ``requirement`` (a Requires-Dist string of ``owner``) does not hold here, or None when it holds
    or only concerns an optional extra."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    found = _version(req.name)
    if found is None:
        return f"{owner} needs {req}, which is not installed"
    if req.specifier and not req.specifier.contains(found, prereleases=True):
        return f"{owner} needs {req}, found {req.name} {found}"
    return None


def dependency_report(requirements: Path, carried=CARRIED, dependents=CHECKED_DEPENDENTS) -> tuple[list, list]:
    """(problems, notes). Problems: a pinned package missing, a carried wheel at another version than its pin,
    an install requirement of ``dependents`` unmet. Notes: the machine's own packages at other versions than
    the pins (its torch, say), which the project supports when the tests pass."""
    problems, notes = [], []
    for name, pin in read_pins(requirements).items():
        found = _version(name)
        if found is None:
            problems.append(f"{name} is not installed ({requirements.name} pins {pin})")
        elif found.split("+")[0] != pin:
            (problems if name in carried else notes).append(f"{name} {found} (pinned {pin})")
    for owner in dependents:
        problems += [why for req in (metadata.requires(owner) or []) if _version(owner)
                     for why in [unmet(req, f"{owner} {_version(owner)}")] if why]
    return problems, notes


def project_modules(repo: Path) -> list[str]:
    """Every importable module of the project packages, plus the top-level entry points."""
    names = list(TOP_MODULES)
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_problems(repo: Path) -> list[str]:
    problems = []
    for name in project_modules(repo):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 (every failing module is reported, not just the first)
            problems.append(f"import {name}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    return problems


def compile_problem(device: torch.device) -> str | None:
    """Compile and run a tiny function with inductor on ``device``; None when it matches eager."""
    try:
        fn = torch.compile(lambda x: torch.sin(x) * 2 + x.square().mean())
        x = torch.linspace(-1, 1, 64, device=device)
        torch.testing.assert_close(fn(x), torch.sin(x) * 2 + x.square().mean())
    except Exception as err:  # noqa: BLE001 (the one-line reason is what the user needs)
        return f"torch.compile on {device}: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
    return None


def compute_mode() -> str:
    """The GPU's compute mode from nvidia-smi (Default, Exclusive_Process, ...), or why it is unknown."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "unknown (no nvidia-smi)"
    try:
        out = subprocess.run([smi, "--query-gpu=compute_mode", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip() or f"unknown ({out.stderr.strip()[:100]})"
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({err})"


def preflight(repo: Path, need_cuda: bool = True) -> int:
    """Print the machine's readiness for the full run; 0 when nothing is wrong, 1 otherwise. Without CUDA
    that is a problem unless ``need_cuda`` is False (``--preflight --smoke``: everything else, on a CPU)."""
    t0 = time.time()
    env = environment()
    cuda = env["cuda"]
    device = torch.device("cuda" if cuda else "cpu")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    print(f"C compiler: {compiler or 'none found'} | TF32: "
          + ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in TF32_ENV)
          + f", matmul precision {torch.get_float32_matmul_precision()}"
          + (f" | compute mode: {compute_mode()}" if cuda else ""), flush=True)
    problems, notes = dependency_report(repo / "requirements.txt")
    if need_cuda and not cuda:
        problems.append("no CUDA device: the full run needs a GPU (--preflight --smoke checks everything else here)")
    if not compiler:
        problems.append("no C compiler (cc, gcc, clang or $CC): torch.compile and the CUDA-graph paths need one")
    problems += import_problems(repo)
    problem = compile_problem(device)
    problems += [problem] if problem else []
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"problem: {problem}")
    verdict = "ready" if not problems else f"{len(problems)} problem(s)"
    print(f"preflight: {verdict} in {time.time() - t0:.0f} s "
          f"({'CUDA: ' + env.get('card', '') if cuda else 'no CUDA'})", flush=True)
    return 0 if not problems else 1
