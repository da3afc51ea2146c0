"""Time a full CSI evaluation at PneumoniaMNIST size: a bank of 1,214 normal training
images and 624 test images at 28 px, 10 samples x 4 shifts each.

    python scripts/benchmarks/benchmark_eval.py                 # ResNet-18 width 64, as the paper
    python scripts/benchmarks/benchmark_eval.py --width 16      # the narrow CPU model
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datasets import TensorImageDataset  # noqa: E402
from evals.metrics import summarize  # noqa: E402
from evals.pipeline import features_of, fit_scorer  # noqa: E402
from models import build_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--bank", type=int, default=1214)
    p.add_argument("--test", type=int, default=624)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--device", default=None)
    args = p.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.bank + args.test, 1, 28, 28), generator=gen, dtype=torch.uint8)
    bank = TensorImageDataset(images[: args.bank], np.zeros(args.bank, dtype=np.int64))
    labels = (np.arange(args.test) % 3 == 0).astype(np.int64)
    test = TensorImageDataset(images[args.bank:], labels)
    model = build_model("resnet18", width=args.width).to(device).eval()
    kw = dict(shift_kind="rotation", n_shifts=4, n_samples=args.samples, crop_scale=(0.54, 0.54),
              batch_size=args.batch_size, device=device, amp=args.amp)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    t0 = time.perf_counter()
    bank_feats = features_of(model, bank, seed=0, **kw)
    t1 = time.perf_counter()
    test_feats = features_of(model, test, seed=1, **kw)
    t2 = time.perf_counter()
    scores = fit_scorer(bank_feats).score(test_feats).numpy()
    summarize(scores, labels, n_boot=1000)
    t3 = time.perf_counter()
    views = (args.bank + args.test) * args.samples * 4
    print(f"device: {name} | width {args.width} | {views} views")
    print(f"bank features {t1 - t0:.1f}s | test features {t2 - t1:.1f}s | score + metrics {t3 - t2:.2f}s | "
          f"total {t3 - t0:.1f}s | {views / (t2 - t0):.0f} views/s")


if __name__ == "__main__":
    main()
