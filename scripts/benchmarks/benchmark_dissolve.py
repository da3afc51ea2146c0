"""Throughput of DDPM pretraining and of the dissolving transform on this machine.

For the paper's UNet (dim 64, mults 1,2,4,8) and a small one (dim 16, mults
1,2,2), at batch 64 and 128, prints:
- DDPM training steps/s: one optimiser step on one batch (forward, L1 loss,
  backward, clipping, Adam), fp32 as the paper requires; a ``--grad_accum 2``
  step of ``train_eval_ddpm.py`` costs twice this;
- dissolved images/s: ``Dissolver.forward`` on 28-px images (pad to 32, one
  UNet forward, crop), fp32; with ``--resolutions 32 64 128 --image_size 128``
  on 128-px images resized to each DDPM resolution and back (Table 9's cost).
With CUDA it also times the dissolve forward under bf16 autocast and under
``torch.compile(mode="reduce-overhead")`` (CUDA graphs), and reports the
largest change of the output against fp32 and whether it stays within one
8-bit grey level (1/255). Weights are random: throughput does not depend on them.

    python scripts/benchmarks/benchmark_dissolve.py            # CPU: 1 timed iteration, under 2 minutes
    python scripts/benchmarks/benchmark_dissolve.py --iters 20 # on a GPU
    python scripts/benchmarks/benchmark_dissolve.py --nets tiny --batch_sizes 16 --image_size 128 \
        --resolutions 32 64 128 --threads 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make the repository root importable
    _ROOT = str(Path(__file__).resolve().parents[2])
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import torch  # noqa: E402

from common.device import default_device  # noqa: E402
from diffusion_models.dissolver import Dissolver  # noqa: E402
import diffusion_models.unet as unet_module  # noqa: E402
from diffusion_models.unet import build_scheduler, build_unet, count_parameters, eps_l1  # noqa: E402
from timing import seconds_per_call  # noqa: E402  (this folder)

NETS = {"paper": (64, (1, 2, 4, 8)), "small": (16, (1, 2, 2)), "tiny": (8, (1, 2, 2))}
TOLERANCE = 1 / 255


def train_step_fn(unet: torch.nn.Module, alphas: torch.Tensor, batch: int, resolution: int,
                  device: torch.device) -> Callable:
    optimizer = torch.optim.Adam(unet.parameters(), lr=8e-5, betas=(0.9, 0.99))
    x0 = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1

    def step() -> None:
        t = torch.randint(0, 1000, (batch,), device=device)
        loss = eps_l1(unet, x0, t, torch.randn_like(x0), alphas).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
    return step


def dissolve_variants(unet: torch.nn.Module, alphas: torch.Tensor, image_size: int, resolution: int,
                      device: torch.device) -> dict[str, Callable]:
    """name → (x, t) → dissolved x; fp32 first, it is the reference."""
    plain = Dissolver(unet, alphas, image_size, resolution).to(device)
    variants: dict[str, Callable] = {"fp32": lambda x, t: plain(x, t=t)}
    if device.type == "cuda":
        def bf16(x, t):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return plain(x, t=t).float()
        compiled = Dissolver(torch.compile(unet, mode="reduce-overhead"), alphas, image_size, resolution).to(device)
        variants["bf16 autocast"] = bf16
        variants["compile+cudagraphs"] = lambda x, t: compiled(x, t=t).clone()
    return variants


def attention_px(n_levels: int, resolution: int) -> list[int]:
    """The feature-map sizes of the levels that carry full attention."""
    return [resolution >> i for i, on in enumerate(unet_module.attention_levels(n_levels, resolution)) if on]


def bench_net(name: str, batches: list[int], image_size: int, resolution: int, iters: int, warmup: int,
              device: torch.device) -> None:
    dim, mults = NETS[name]
    torch.manual_seed(0)
    unet = build_unet(dim, mults, resolution).to(device)
    alphas = build_scheduler().alphas_cumprod.float().to(device)
    print(f"\n{name} UNet at {resolution} px: dim {dim}, mults {mults}, {count_parameters(unet) / 1e6:.2f}M parameters;"
          f" full attention at {attention_px(len(mults), resolution) or 'no level'} px and the middle;"
          f" dissolving {image_size}-px images")
    for batch in batches:
        unet.train().requires_grad_(True)
        sec = seconds_per_call(train_step_fn(unet, alphas, batch, resolution, device), iters, warmup, device)
        print(f"  batch {batch:4d}  train: {1 / sec:8.2f} steps/s ({batch / sec:9.1f} images/s)")
        x = torch.rand(batch, 3, image_size, image_size, device=device)
        t = torch.randint(30, 100, (batch,), device=device)
        reference = None
        for variant, fn in dissolve_variants(unet, alphas, image_size, resolution, device).items():
            try:
                sec = seconds_per_call(lambda: fn(x, t), iters, warmup, device)
                out = fn(x, t)
            except Exception as err:  # a benchmark reports a failed variant and goes on
                print(f"  batch {batch:4d}  dissolve {variant}: failed ({type(err).__name__}: {err})")
                continue
            reference = out if reference is None else reference
            change = (out - reference).abs().max().item()
            verdict = "same" if change <= TOLERANCE else "CHANGES OUTPUT"
            print(f"  batch {batch:4d}  dissolve {variant:18s}: {batch / sec:9.1f} images/s  "
                  f"max |Δ| vs fp32 {change:.2e} ({verdict} at tol 1/255)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="paper,small", help=f"comma-separated, from {', '.join(NETS)}")
    p.add_argument("--batch_sizes", default="64,128")
    p.add_argument("--image_size", type=int, default=28, help="size of the images to dissolve (default 28, MedMNIST)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[32], help="DDPM resolutions R (default 32)")
    p.add_argument("--max_attn_px", type=int, default=unet_module.MAX_ATTN_PX,
                   help=f"largest feature map with full attention (default {unet_module.MAX_ATTN_PX}); "
                        "a larger value times the layout without the cap")
    p.add_argument("--iters", type=int, help="timed iterations (default: 1 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, help="untimed iterations first (default: 1 on CPU, 5 on CUDA)")
    p.add_argument("--device", help="default: cuda when available")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    device = default_device(args.device)
    unet_module.MAX_ATTN_PX = args.max_attn_px
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
    iters = args.iters or (20 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    gpu = torch.cuda.get_device_name(device) if cuda else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({gpu}); torch {torch.__version__}; {iters} timed iterations after {warmup} warm-up")
    for name in args.nets.split(","):
        for resolution in args.resolutions:
            bench_net(name, [int(b) for b in args.batch_sizes.split(",")], args.image_size, resolution,
                      iters, warmup, device)


if __name__ == "__main__":
    main()
