"""Which dissolver changes anomalous images more than normal ones? (validation only)

DIA's premise is that a DDPM trained on normal images dissolves the fine detail of *anomalous* images more.
This script puts the trained DDPM beside controls on the same validation images, at the DDPM resolution:
- the same UNet **untrained** (what image statistics alone give a one-step x̂₀),
- Gaussian and median blur (the paper's heuristic dissolvers), additive Gaussian noise (the reviewers' question),
  Haar wavelet shrinkage.
For each: mean |x − dissolve(x)| on normal and on anomalous validation images, their ratio, and the
validation AUROC of the change itself used as an anomaly score (less change = more normal): 0.5 means the
dissolver's change carries no information about anomalies.

    python scripts/diagnostics/dissolver_diagnostic.py --ddpm runs/ddpm/quick/breastmnist_c0_r32_... [--t 50]
Test images are never read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from diffusion_models.checkpoint import load_ddpm  # noqa: E402
from diffusion_models.dissolver import Dissolver  # noqa: E402
from diffusion_models.trainer import load_ddpm_data  # noqa: E402
from diffusion_models.unet import build_unet  # noqa: E402
from evals.metrics import summarize  # noqa: E402
from training.dissolvers.blur import BlurDissolver  # noqa: E402
from training.dissolvers.noise import NoiseDissolver  # noqa: E402
from training.dissolvers.wavelet import WaveletDissolver  # noqa: E402


@torch.no_grad()
def per_image_change(dissolve: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> np.ndarray:
    """images: (n, C, R, R) in [0, 1] → (n,) mean |x − dissolve(x)| per image."""
    return torch.cat([(dissolve(chunk) - chunk).abs().flatten(1).mean(1) for chunk in images.split(128)]).numpy()


def dissolvers(ckpt, resolution: int, t: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Name → deterministic dissolve function at the DDPM resolution (noise from a fixed seed)."""
    alphas = ckpt.alphas_cumprod
    torch.manual_seed(0)
    cfg = ckpt.unet.config
    untrained = build_unet(cfg.block_out_channels[0], tuple(c // cfg.block_out_channels[0]
                                                            for c in cfg.block_out_channels), resolution)
    table: dict[str, Callable] = {}
    for name, unet in (("DDPM raw", ckpt.unet), ("DDPM EMA", ckpt.unet_ema), ("UNet untrained", untrained)):
        model = Dissolver(unet, alphas, resolution, resolution)
        table[f"{name}, t={t}"] = lambda x, m=model: m(x, t=t)
    for kind in ("gaussian", "median"):
        for k in (3, 7, 11):
            table[f"{kind} blur k={k}"] = BlurDissolver(kind, k, image_size=resolution, resolution=resolution)
    for std in (0.02, 0.05, 0.1):
        noise = NoiseDissolver(std, image_size=resolution, resolution=resolution)
        table[f"noise std={std}"] = lambda x, m=noise: m(x, generator=torch.Generator().manual_seed(0))
    for threshold in (0.02, 0.05, 0.1):
        table[f"wavelet threshold={threshold}, 2 levels"] = WaveletDissolver(threshold, 2, image_size=resolution,
                                                                             resolution=resolution)
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ddpm", required=True, help="DDPM run or checkpoint folder")
    p.add_argument("--data_root", default=None, help="default: the one stored in the checkpoint")
    p.add_argument("--t", type=int, default=50)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_ddpm(args.ddpm)
    meta = ckpt.meta
    data = load_ddpm_data(meta.dataset, args.data_root or meta.config.get("data_root"), meta.one_class_idx,
                          meta.resolution, split_seed=meta.split_seed, with_train=False,
                          normal_classes=meta.normal_classes if meta.config.get("normal_classes") else None)
    images = torch.cat([data.val_normal, data.val_anomalous])
    is_anomaly = np.r_[np.zeros(len(data.val_normal)), np.ones(len(data.val_anomalous))].astype(int)
    print(f"{meta.dataset}, normal {'+'.join(meta.normal_classes)}, DDPM step {meta.step}; validation "
          f"{len(data.val_normal)} normal / {len(data.val_anomalous)} anomalous images at {meta.resolution} px\n")
    print("| dissolver | mean change, normal | mean change, anomalous | ratio | val AUROC of −change [95 % CI] |")
    print("|---|---|---|---|---|")
    for name, dissolve in dissolvers(ckpt, meta.resolution, args.t).items():
        change = per_image_change(dissolve, images)
        normal, anomalous = change[is_anomaly == 0].mean(), change[is_anomaly == 1].mean()
        m = summarize(-change, is_anomaly, n_boot=2000, seed=0)
        print(f"| {name} | {normal:.4f} | {anomalous:.4f} | {anomalous / normal:.2f} | "
              f"{m.auroc:.3f} [{m.auroc_ci_low:.3f}, {m.auroc_ci_high:.3f}] |")


if __name__ == "__main__":
    main()
