"""Additive Gaussian noise as a dissolver: the ICLR reviewers' question.

Would plain additive noise dissolve fine detail as well as the DDPM? Same
interface and geometry as the blurs and the diffusion dissolver (down-sample to
R, transform, up-sample back) and, like them, only on the dissolved branch. The
noise is drawn from the run's generator, so a run is reproducible.
"""
from __future__ import annotations

import torch
from torch import nn

from common.config import DissolveConfig
from common.errors import UserError
from diffusion_models.resample import Resampler
from training.dissolvers.blur import BLUR_RESOLUTION


class NoiseDissolver(nn.Module):
    """(B, C, S, S) in [0, 1] → same shape in [0, 1]: x + N(0, std²) at resolution R, clamped, resampled back.

    ``std`` is in [0, 1] pixel units (``--noise_std``). For scale: the DDPM dissolver at t ∈ [30, 99] changes a
    normal BreastMNIST image by a mean |x − x̂₀| of a few hundredths (``train_eval_ddpm.py --mode eval``).
    """

    def __init__(self, std: float, image_size: int, resolution: int = 32):
        super().__init__()
        if not 0.0 <= std <= 1.0:
            raise UserError(f"--noise_std must be in [0, 1] (pixel units), got {std}")
        self.std = std
        self.resampler = Resampler(image_size, resolution)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor | int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        small = self.resampler.down(x)
        gen_device = generator.device if generator is not None else small.device
        noise = torch.randn(small.shape, generator=generator, device=gen_device).to(small.device)
        return self.resampler.up((small + self.std * noise).clamp(0, 1))

    def extra_repr(self) -> str:
        return f"std={self.std}, {self.resampler!r}"


def build(cfg: DissolveConfig, image_size: int, device: torch.device) -> NoiseDissolver:
    return NoiseDissolver(cfg.setting("noise_std"), image_size=image_size,
                          resolution=cfg.resolution or BLUR_RESOLUTION).to(device)
