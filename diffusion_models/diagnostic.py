"""Does the DDPM dissolve anomalies more? The premise of DIA, measured on validation images.

A DDPM trained on normal images should treat the fine detail of *anomalous*
images more as noise, so one dissolving step (the clamped one-step
x̂₀ at a fixed t, at the DDPM resolution) should change them more:

    change_t(X) = mean over x ∈ X of mean |x − x̂₀(x, t)|      (pixel units, [0, 1] scale)

reported at t ∈ {30, 50, 99} for normal and anomalous validation images, with
ratio = change(anomalous) / change(normal). The ratio also follows image content (images with more fine
detail change more under any denoiser); docs/studies/long_ddpm.md separates the two with one DDPM per class,
and follows the ratio along training: it rises above 1 only well past the normal-validation ε-loss minimum.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from common.atomic import atomic_path
from diffusion_models.dissolver import predict_x0

REPORT_T = (30, 50, 99)  # the ends and the middle of the dissolver's default range [30, 99]
PLOT_T = (10, 20, 30, 50, 70, 99, 150, 200)

# {weights: {t (as str, for JSON): {"normal": float, "anomalous": float | None, "ratio": float | None}}}
ChangeTable = dict[str, dict[str, dict[str, float | None]]]


@torch.no_grad()
def per_image_change(unet: nn.Module, alphas_cumprod: torch.Tensor, images: torch.Tensor, t: int,
                     batch_size: int = 256) -> torch.Tensor:
    """images: (n, C, R, R) in [0, 1] at the DDPM resolution → (n,) mean |x − x̂₀| per image at fixed t (CPU).

    x̂₀ is the dissolver's (``predict_x0`` clamped to [−1, 1], in [0, 1] units). The UNet runs in eval mode and
    its mode and ``requires_grad`` are left as found, so a training run can call this on its live model.
    """
    was_training = unet.training
    unet.eval()
    device = alphas_cumprod.device
    out = []
    for chunk in images.split(batch_size):
        z = chunk.to(device) * 2 - 1
        steps = torch.full((len(z),), t, dtype=torch.long, device=device)
        x0 = predict_x0(z, unet(z, steps).sample, alphas_cumprod[t]).clamp(-1, 1)
        out.append(((x0 - z) / 2).abs().flatten(1).mean(1).cpu())
    unet.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def mean_change(unet: nn.Module, alphas_cumprod: torch.Tensor, images: torch.Tensor, t: int,
                batch_size: int = 256) -> float | None:
    """The mean of :func:`per_image_change` (None when n = 0)."""
    if len(images) == 0:
        return None
    return per_image_change(unet, alphas_cumprod, images, t, batch_size).double().mean().item()


def dissolve_change(unets: dict[str, nn.Module], alphas_cumprod: torch.Tensor, normal: torch.Tensor,
                    anomalous: torch.Tensor, ts: tuple[int, ...] = REPORT_T) -> ChangeTable:
    """For each set of weights and t: the mean change of normal and anomalous images, and their ratio."""
    table: ChangeTable = {}
    for weights, unet in unets.items():
        table[weights] = {}
        for t in ts:
            n, a = mean_change(unet, alphas_cumprod, normal, t), mean_change(unet, alphas_cumprod, anomalous, t)
            table[weights][str(t)] = {"normal": n, "anomalous": a, "ratio": a / n if a is not None and n else None}
    return table


def format_change(table: ChangeTable) -> list[str]:
    """One line per weights: ``raw: t=30 0.0210/0.0250 (x1.19) | ...`` (normal/anomalous, ratio)."""
    def cell(t: str, v: dict) -> str:
        anomalous = "n/a" if v["anomalous"] is None else f"{v['anomalous']:.4f}"
        ratio = "" if v["ratio"] is None else f" (x{v['ratio']:.2f})"
        return f"t={t} {v['normal']:.4f}/{anomalous}{ratio}"
    return [f"{weights}: " + " | ".join(cell(t, v) for t, v in by_t.items()) for weights, by_t in table.items()]


def flat_scalars(table: ChangeTable) -> dict[str, float]:
    """``change/<weights>/t<t>/<normal|anomalous|ratio>`` → value, for TensorBoard and metrics.jsonl."""
    return {f"change/{w}/t{t}/{k}": v for w, by_t in table.items() for t, row in by_t.items()
            for k, v in row.items() if v is not None and not math.isnan(v)}


def plot_change(table: ChangeTable, path: Path, title: str) -> None:
    """Mean |x − x̂₀| against t, normal vs anomalous, one panel per weights."""
    fig = Figure(figsize=(4.2 * len(table), 3.2))
    axes = fig.subplots(1, len(table), squeeze=False)[0]
    for ax, (weights, by_t) in zip(axes, table.items()):
        ts = [int(t) for t in by_t]
        for kind, style in (("normal", "o-"), ("anomalous", "s--")):
            values = [by_t[str(t)][kind] for t in ts]
            if all(v is not None for v in values):
                ax.plot(ts, values, style, label=kind)
        ax.axvspan(30, 99, color="0.9", label="dissolver's t range")
        ax.set_xlabel("t")
        ax.set_ylabel("mean |x − x̂₀| (pixel units)")
        ax.set_title(f"{weights} weights", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
