"""Time one DIA training step and its parts; print ms/step, images/s and peak memory.

Two configurations:
- ``upstream-like``: fp32, eager encoder, eager dissolver;
- ``fast``: bf16 autocast for the encoder, channels_last, a compiled dissolver
  UNet (CUDA only), and the vectorised augmentation (always on in this code).
The sum of the parts (dissolve + augment + encoder fwd/bwd + optimiser) is
printed beside the whole step, with their ratio.

    python scripts/benchmark_train.py                     # CPU: small sizes
    python scripts/benchmark_train.py --sizes 32 224 --batch 32 --dim 64 --mults 1,2,4,8   # GPU, paper sizes
"""
from __future__ import annotations

import argparse
import functools
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.augment import SimCLRAugment  # noqa: E402
from diffusion_models.dissolver import Dissolver  # noqa: E402
from diffusion_models.unet import build_scheduler, build_unet  # noqa: E402
from models import build_model  # noqa: E402
from training.losses import ContrastiveShiftLoss  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.views import make_views  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> float:
    """Mean milliseconds of ``fn()`` after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1000


def build(size: int, args, device: torch.device, fast: bool):
    resolution = 32
    unet = build_unet(args.dim, tuple(args.mults), resolution).to(device).eval()
    dissolver = Dissolver(unet, build_scheduler().alphas_cumprod, image_size=size, resolution=resolution).to(device)
    if fast and device.type == "cuda":
        dissolver.unet = torch.compile(unet, mode="max-autotune-no-cudagraphs")
    model = build_model("resnet18" if size <= 64 else "resnet18_imagenet", width=args.width).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    return dissolver, model


def bench(size: int, args, device: torch.device, fast: bool) -> dict:
    dissolver, model = build(size, args, device, fast)
    augment = SimCLRAugment().to(device)
    loss_fn = ContrastiveShiftLoss(n_branches=3)
    opt = build_optimizer(model.parameters(), "lars", lr=0.1)
    x = torch.rand(args.batch, 3, size, size, device=device)
    amp = fast and device.type == "cuda"
    views_of = functools.partial(make_views, shift_kind="rotation", n_shifts=4, augment=augment, dissolve=dissolver)

    def encoder_step(images, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(images.contiguous(memory_format=torch.channels_last) if fast else images)
        terms = loss_fn(out.projection.float(), out.shift_logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        opt.step()

    views = views_of(x)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    parts = {
        "dissolve (K calls)": timed(lambda: [dissolver(x) for _ in range(4)], device, args.repeats),
        "augment (3N rows)": timed(lambda: augment(views.images), device, args.repeats),
        "encoder fwd+bwd+opt": timed(lambda: encoder_step(views.images, views.shift_labels), device, args.repeats),
    }
    step = timed(lambda: encoder_step(*(lambda v: (v.images, v.shift_labels))(views_of(x))), device, args.repeats)
    # CUDA: the peak of this configuration; CPU: the process's peak resident memory so far (Linux KiB)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    return {"parts": parts, "step_ms": step, "images_per_s": args.batch / step * 1000, "peak_gib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="image sizes (default: 32, and 224 on GPU)")
    p.add_argument("--batch", type=int, default=None, help="loader batch B (default 32 on GPU, 8 on CPU)")
    p.add_argument("--width", type=int, default=None, help="ResNet width (default 64 on GPU, 16 on CPU)")
    p.add_argument("--dim", type=int, default=None, help="DDPM UNet base width (default 64 GPU, 16 CPU)")
    p.add_argument("--mults", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--device", default=None)
    args = p.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    args.sizes = args.sizes or ([32, 224] if gpu else [32])
    args.batch = args.batch or (32 if gpu else 8)
    args.width = args.width or (64 if gpu else 16)
    args.dim = args.dim or (64 if gpu else 16)
    args.mults = args.mults or ([1, 2, 4, 8] if gpu else [1, 2, 2])
    args.repeats = args.repeats or (20 if gpu else 3)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name} | torch {torch.__version__} | B={args.batch} K=4 width={args.width} "
          f"DDPM dim={args.dim} mults={args.mults}")
    peak_name = "peak" if gpu else "peak RSS so far"
    for size in args.sizes:
        for fast in (False, True):
            r = bench(size, args, device, fast)
            parts = " | ".join(f"{k} {v:.1f}" for k, v in r["parts"].items())
            total = sum(r["parts"].values())
            print(f"{size:4d}px {'fast' if fast else 'upstream-like':13s} step {r['step_ms']:8.1f} ms | "
                  f"{r['images_per_s']:7.1f} img/s | {peak_name} {r['peak_gib']:.2f} GiB | parts(ms): {parts} | "
                  f"step / sum(parts) = {r['step_ms'] / total:.2f}")


if __name__ == "__main__":
    main()
