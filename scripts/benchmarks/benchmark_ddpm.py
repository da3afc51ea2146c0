"""Time DDPM training steps (Adam, clip 1.0, as diffusion_models/trainer.py) and print images/s per setting.

Settings, measured one after the other in one run so their ratios compare like with like:
- ``fp32``: the trainer's default;
- ``bf16``: the UNet's forward under bf16 autocast, loss in fp32 (``train_eval_ddpm.py --amp``); only where the
  device computes bf16 natively (a CPU with AVX512-BF16 or AMX, CUDA Ampere or newer);
- ``channels_last+bf16``: ``bf16`` with the UNet and its input in channels-last (NHWC) memory;
- ``compiled`` and ``compiled+bf16``: the same under ``torch.compile`` (inductor; needs a C compiler on a CPU),
  after warm-up calls that compile;
- ``math_attention``: fp32 with attention as plain matrix products and softmax (the SDPA "math" backend) instead of
  the fused CPU kernel, whose backward is slow at small head sizes;
- ``native_conv``: fp32 with oneDNN switched off, so convolutions take PyTorch's own kernels (small channel counts
  run far below peak in oneDNN).

    python scripts/benchmarks/benchmark_ddpm.py --dim 32 --mults 1,2,4,8          # the long-DDPM study's UNet
    python scripts/benchmarks/benchmark_ddpm.py --dim 16 --mults 1,2,2 --settings fp32 bf16 compiled
    python scripts/benchmarks/benchmark_ddpm.py --dim 16 --mults 1,2,2 --profile      # where an fp32 step's time goes
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common.device import native_bf16  # noqa: E402
from diffusion_models.unet import build_scheduler, build_unet, count_parameters, eps_l1  # noqa: E402

SETTINGS = ("fp32", "bf16", "channels_last+bf16", "compiled", "compiled+bf16", "math_attention", "native_conv")
DEFAULT_SETTINGS = SETTINGS[:5]


def step_fn(unet, device: torch.device, batch: int, bf16: bool, channels_last: bool = False):
    """One training step on a fixed random batch: t ≤ 200 as the long-DDPM study trains."""
    opt = torch.optim.Adam(unet.parameters(), lr=8e-5, betas=(0.9, 0.99))
    alphas = build_scheduler().alphas_cumprod.float().to(device)
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1).to(device)
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)

    def step() -> float:
        t = torch.randint(0, 201, (batch,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = eps_l1(unet, x0, t, noise, alphas)
        loss = losses.float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def measure(setting: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    unet = build_unet(args.dim, tuple(args.mults), 32).to(device).train()
    bf16 = setting.endswith("bf16")
    if bf16 and not native_bf16(device):
        return {"setting": setting, "skipped": "no native bf16 on this device"}
    channels_last = setting.startswith("channels_last")
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    forward = torch.compile(unet) if setting.startswith("compiled") else unet
    step = step_fn(forward, device, args.batch, bf16, channels_last)
    attention = sdpa_kernel([SDPBackend.MATH]) if setting == "math_attention" else contextlib.nullcontext()
    with attention, torch.backends.mkldnn.flags(enabled=setting != "native_conv"):
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step()
        warm_s = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses = [step() for _ in range(args.repeats)]
        if device.type == "cuda":
            torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / args.repeats * 1000
    return {"setting": setting, "ms_per_step": ms, "images_per_s": args.batch / ms * 1000,
            "warmup_s": warm_s, "last_loss": losses[-1], "params": count_parameters(unet)}


def profile(args, device: torch.device) -> None:
    """torch.profiler over ``--repeats`` fp32 steps: the 12 ops with the most self time."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    torch.manual_seed(0)
    step = step_fn(build_unet(args.dim, tuple(args.mults), 32).to(device).train(), device, args.batch, False)
    for _ in range(args.warmup):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.repeats):
            step()
    print(f"DDPM dim {args.dim} mults {args.mults}, B = {args.batch}, fp32, {args.repeats} steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--mults", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=SETTINGS)
    p.add_argument("--device", default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--profile", action="store_true", help="instead: the ops that take an fp32 step's time")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.profile:
        profile(args, device)
        return
    print(f"DDPM training step: dim {args.dim} mults {args.mults}, B = {args.batch}, 32 px | device {device} "
          f"({torch.get_num_threads()} threads, native bf16: {native_bf16(device)}) | torch {torch.__version__}")
    rows, base = [], None
    for setting in args.settings:
        try:
            r = measure(setting, args, device)
        except Exception as err:  # e.g. no C compiler for inductor: keep the other settings
            r = {"setting": setting, "error": f"{type(err).__name__}: {str(err)[:200]}"}
        rows.append(r)
        if "ms_per_step" in r:
            base = base or (r["ms_per_step"] if setting == "fp32" else None)
            ratio = f" | x{base / r['ms_per_step']:.2f} vs fp32" if base else ""
            print(f"{setting:18s} {r['ms_per_step']:8.1f} ms/step | {r['images_per_s']:7.1f} images/s | "
                  f"warm-up {r['warmup_s']:.1f} s{ratio}", flush=True)
        else:
            print(f"{setting:14s} {r.get('skipped') or r.get('error')}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"dim": args.dim, "mults": args.mults, "batch": args.batch,
                                             "device": str(device), "torch": torch.__version__, "rows": rows},
                                            indent=2) + "\n")


if __name__ == "__main__":
    main()
