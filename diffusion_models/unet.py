"""The DDPM's ε-network, its noise schedule and its ε-objective.

The network is diffusers' ``UNet2DModel``; the schedule is the cosine schedule
with T = 1000 (``squaredcos_cap_v2``, identical to upstream's betas). Images
inside the DDPM are in [−1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler, UNet2DModel

NUM_TRAIN_TIMESTEPS = 1000
GROUPS = 8  # GroupNorm groups, as upstream's resnet_block_groups
HEAD_DIM = 32  # attention head width, as upstream (4 heads x 32)
MAX_ATTN_PX = 16  # no full attention on feature maps larger than this (quadratic cost)
DISSOLVE_T = (30, 100)  # the t range the dissolver uses by default, half-open


def attention_levels(n_levels: int, resolution: int) -> list[bool]:
    """Which UNet levels carry full self-attention: the lower-resolution half, at most ``MAX_ATTN_PX`` px.

    Level i works at ``resolution / 2**i`` px (the last level does not downsample).
    """
    return [i >= n_levels // 2 and resolution >> i <= MAX_ATTN_PX for i in range(n_levels)]


def build_unet(dim: int, dim_mults: tuple[int, ...], resolution: int, channels: int = 3) -> UNet2DModel:
    """An ε-prediction UNet with levels of ``dim·m`` channels, two ResNet layers each.

    Upstream's UNet has linear attention at every level and full attention in
    the middle; diffusers offers full attention only, so it sits at the
    lower-resolution half of the levels (8 and 4 px for the paper's 32-px,
    four-level net) and in the middle block. Full attention is quadratic in
    the number of pixels, so a level above ``MAX_ATTN_PX`` gets none: at 128 px,
    attention at 64 px made the quick UNet about 6x slower to train and to
    dissolve with (``scripts/benchmarks/benchmark_dissolve.py --max_attn_px``). The paper size
    (64, (1, 2, 4, 8)) comes to 63M parameters here against upstream's 35M:
    diffusers puts a level's ResNet layers at its output width and uses three
    per level on the way up.
    """
    attn = attention_levels(len(dim_mults), resolution)
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(dim * m for m in dim_mults),
        layers_per_block=2,
        norm_num_groups=GROUPS,
        attention_head_dim=min(HEAD_DIM, dim),
        down_block_types=down,
        up_block_types=up,
    )


def build_scheduler() -> DDPMScheduler:
    """Cosine schedule, T = 1000: ᾱ_t = f(t+1)/f(0), f(τ) = cos²((τ/T + s)/(1 + s)·π/2), s = 0.008."""
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="squaredcos_cap_v2")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward diffusion x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.

    x0, noise: (B, C, H, W) in [−1, 1] / N(0, 1); t: (B,) int64; alphas_cumprod: (T,).
    """
    a = alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def eps_l1(unet: UNet2DModel, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
           alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Per-sample ε-prediction L1 loss, (B,): mean over pixels of |ε_θ(x_t, t) − ε| (upstream's loss)."""
    eps = unet(q_sample(x0, t, noise, alphas_cumprod), t).sample
    return (eps - noise).abs().flatten(1).mean(1)


@dataclass(frozen=True)
class LossProbe:
    """A fixed set of (image, t, noise) triples, so losses are comparable across steps and weights.

    x0: (M, C, R, R) in [−1, 1]; t: (M,) int64; noise: (M, C, R, R).
    """

    x0: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor


def make_probe(images: torch.Tensor, t_low: int, t_high: int, repeats: int, seed: int) -> LossProbe:
    """Each of the n images ([−1, 1]) ``repeats`` times with t ~ U{t_low, …, t_high − 1} and fresh noise."""
    gen = torch.Generator().manual_seed(seed)
    x0 = images.repeat(repeats, 1, 1, 1)
    t = torch.randint(t_low, t_high, (len(x0),), generator=gen)
    return LossProbe(x0, t, torch.randn(x0.shape, generator=gen))


@torch.no_grad()
def probe_loss(unet: UNet2DModel, probe: LossProbe, alphas_cumprod: torch.Tensor,
               batch_size: int = 256) -> float:
    """Mean ε-L1 of ``unet`` over the probe (nan for an empty probe), evaluated in eval mode."""
    if len(probe.x0) == 0:
        return float("nan")
    was_training = unet.training
    unet.eval()
    device = next(unet.parameters()).device
    total = 0.0
    for i in range(0, len(probe.x0), batch_size):
        chunk = slice(i, i + batch_size)
        losses = eps_l1(unet, probe.x0[chunk].to(device), probe.t[chunk].to(device),
                        probe.noise[chunk].to(device), alphas_cumprod)
        total += losses.sum().item()
    unet.train(was_training)
    return total / len(probe.x0)
