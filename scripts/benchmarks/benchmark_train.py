"""Time one DIA training step and its parts; print ms/step, images/s and peak memory.

Three configurations per image size:
- ``upstream-like``: fp32, eager encoder, eager fp32 dissolver;
- ``fast``: bf16 autocast + channels_last encoder (loss in fp32), dissolver UNet forward in bf16
  (train.py --amp --channels_last --dissolve_dtype bf16), on CUDA also captured with CUDA graphs
  (``torch.compile(mode="reduce-overhead")``); bf16 only where the device computes it natively (a CPU
  with AVX512-BF16 or AMX; elsewhere ``fast`` is channels_last alone);
- ``fast+cache``: ``fast`` with the dissolve cache (every (image, flip, t) precomputed for
  ``--cache_images`` images; 28-64 px only).
The sum of the parts (dissolve + augment + encoder fwd/bwd + optimiser) is printed beside the whole
step, with their ratio, and each configuration's speed-up over upstream-like. ``--json`` writes it all.

    python scripts/benchmarks/benchmark_train.py                     # CPU: small sizes
    python scripts/benchmarks/benchmark_train.py --batch 32 --width 64 --dim 64 --mults 1,2,4,8 --repeats 2
    python scripts/benchmarks/benchmark_train.py --sizes 32 224 --batch 32 --dim 64 --mults 1,2,4,8   # GPU, paper sizes
"""
from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.augment import SimCLRAugment  # noqa: E402
from common.device import native_bf16  # noqa: E402
from diffusion_models.dissolve_cache import DissolveCache  # noqa: E402
from diffusion_models.dissolver import Dissolver  # noqa: E402
from diffusion_models.unet import build_scheduler, build_unet  # noqa: E402
from models import build_model  # noqa: E402
from training.losses import ContrastiveShiftLoss  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.views import make_views  # noqa: E402
from timing import seconds_per_call  # noqa: E402  (this folder)

CONFIGS = ("upstream-like", "fast", "fast+cache")
MAX_CACHE_SIZE = 64  # px: above this the table of 140 versions per image is too large


def timed(fn, device: torch.device, repeats: int) -> float:
    """Mean milliseconds of ``fn()`` after two warm-up calls (compilation, graph capture)."""
    return seconds_per_call(fn, repeats, 2, device) * 1000


# The "fast" dissolver per device: on CUDA its UNet is compiled (CUDA graphs) once for every image size.
_FAST_DISSOLVERS: dict[str, Dissolver] = {}


def build(size: int, args, device: torch.device, config: str):
    """(dissolver or cache, encoder, images (N, 3, S, S)) of one configuration."""
    fast, gpu = config != "upstream-like", device.type == "cuda"
    torch.manual_seed(0)
    unet = build_unet(args.dim, tuple(args.mults), 32).to(device).eval()
    bf16 = fast and native_bf16(device)
    dissolver = Dissolver(unet, build_scheduler().alphas_cumprod, image_size=size, resolution=32,
                          unet_dtype="bf16" if bf16 else "fp32", graphs=fast and gpu).to(device)
    if config == "fast":  # same seed, same weights: reuse the one already compiled
        dissolver = _FAST_DISSOLVERS.setdefault(str(device), dissolver).for_image_size(size)
    images = torch.rand(max(args.batch, args.cache_images), 3, size, size, device=device)
    if config == "fast+cache":  # one batched pass over the table: no graph capture needed
        dissolver.graphs = False
        dissolver = DissolveCache.build(dissolver, images[:args.cache_images])
    model = build_model("resnet18" if size <= 64 else "resnet18_imagenet", width=args.width).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    return dissolver, model, images


def bench(size: int, args, device: torch.device, config: str) -> dict:
    fast, gpu = config != "upstream-like", device.type == "cuda"
    bf16 = fast and native_bf16(device)
    dissolver, model, images = build(size, args, device, config)
    augment = SimCLRAugment().to(device)
    loss_fn = ContrastiveShiftLoss(n_branches=3)
    opt = build_optimizer(model.parameters(), "lars", lr=0.1)
    gen = torch.Generator(device=device).manual_seed(0)
    index = torch.randint(0, min(len(images), args.cache_images), (args.batch,), device=device)
    x = images[index]
    views_of = functools.partial(make_views, shift_kind="rotation", n_shifts=4, augment=augment,
                                 dissolve=dissolver, generator=gen, index=index)

    def encoder_step(images, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(images.contiguous(memory_format=torch.channels_last) if fast else images)
        terms = loss_fn(out.projection.float(), out.shift_logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        opt.step()

    def dissolve_k():
        cached = getattr(dissolver, "flip_and_dissolve", None)
        return [cached(x, index, gen) if cached else dissolver(x, generator=gen) for _ in range(4)]

    views = views_of(x)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    parts = {
        "dissolve (K calls)": timed(dissolve_k, device, args.repeats),
        "augment (3N rows)": timed(lambda: augment(views.images, generator=gen), device, args.repeats),
        "encoder fwd+bwd+opt": timed(lambda: encoder_step(views.images, views.shift_labels), device, args.repeats),
    }
    step = timed(lambda: encoder_step(*(lambda v: (v.images, v.shift_labels))(views_of(x))), device, args.repeats)
    # CUDA: the peak of this configuration; CPU: the process's peak resident memory so far (Linux KiB)
    peak = (torch.cuda.max_memory_allocated() if gpu
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    return {"size": size, "config": config, "parts_ms": parts, "step_ms": step,
            "images_per_s": args.batch / step * 1000, "peak_gib": peak, "step_over_parts": step / sum(parts.values())}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="image sizes (default: 32, and 224 on GPU)")
    p.add_argument("--batch", type=int, default=None, help="loader batch B (default 32 on GPU, 8 on CPU)")
    p.add_argument("--width", type=int, default=None, help="ResNet width (default 64 on GPU, 16 on CPU)")
    p.add_argument("--dim", type=int, default=None, help="DDPM UNet base width (default 64 GPU, 16 CPU)")
    p.add_argument("--mults", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--cache_images", type=int, default=None,
                   help="images in the dissolve cache (default 64 GPU, 4 CPU)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = args.device.type == "cuda"
    args.sizes = args.sizes or ([32, 224] if gpu else [32])
    args.batch = args.batch or (32 if gpu else 8)
    args.width = args.width or (64 if gpu else 16)
    args.dim = args.dim or (64 if gpu else 16)
    args.mults = args.mults or ([1, 2, 4, 8] if gpu else [1, 2, 2])
    args.repeats = args.repeats or (20 if gpu else 3)
    args.cache_images = args.cache_images or (64 if gpu else 4)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device, gpu = args.device, args.device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else f"{cpu_model()} ({torch.get_num_threads()} threads)"
    print(f"bf16 in 'fast': {'yes' if native_bf16(device) else 'no (not native here)'}")
    print(f"device: {name} | torch {torch.__version__} | B={args.batch} K=4 width={args.width} "
          f"DDPM dim={args.dim} mults={args.mults}")
    peak_name = "peak" if gpu else "peak RSS so far"
    rows = []
    for size in args.sizes:
        base = None
        for config in args.configs:
            if config == "fast+cache" and size > MAX_CACHE_SIZE:
                print(f"{size:4d}px {config:13s} n/a: the dissolve cache is for sizes <= {MAX_CACHE_SIZE} px")
                continue
            try:
                r = bench(size, args, device, config)
            except Exception as err:  # one failing configuration (e.g. no compiler for graphs) keeps the rest
                print(f"{size:4d}px {config:13s} failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
                rows.append({"size": size, "config": config, "error": f"{type(err).__name__}: {str(err)[:300]}"})
                write_json(args, name, rows)
                continue
            base = base or (r["step_ms"] if config == "upstream-like" else None)
            r["speedup_vs_upstream"] = base / r["step_ms"] if base else None
            rows.append(r)
            parts = " | ".join(f"{k} {v:.1f}" for k, v in r["parts_ms"].items())
            speed = f" | x{r['speedup_vs_upstream']:.2f} vs upstream-like" if base and config != "upstream-like" else ""
            print(f"{size:4d}px {config:13s} step {r['step_ms']:8.1f} ms | {r['images_per_s']:7.1f} img/s | "
                  f"{peak_name} {r['peak_gib']:.2f} GiB | parts(ms): {parts} | "
                  f"step / sum(parts) = {r['step_over_parts']:.2f}{speed}", flush=True)
            write_json(args, name, rows)  # after every row: a run stopped at a deadline keeps what it measured


def cpu_model() -> str:
    """The CPU's model name (Linux), for the tables."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


def write_json(args, device_name: str, rows: list[dict]) -> None:
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "batch": args.batch,
                                         "width": args.width, "dim": args.dim, "mults": args.mults,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
