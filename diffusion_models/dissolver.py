"""The dissolving transform: one frozen reverse-diffusion step (docs/method.md, "DDPM and the dissolver").

For a clean image x the pretrained ε-network is run once at a small t, as if
x were already x_t, and the one-step estimate of x₀ is kept:

    x̂₀ = clamp( x/√ᾱ_t − √(1/ᾱ_t − 1)·ε_θ(x, t), −1, 1 )

With t ∈ [30, 99] this removes at most ~0.17·ε̂ and rescales by ≤ 1.4 %: a
mild, model-driven removal of the fine detail the DDPM considers noise.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from common.errors import UserError
from diffusion_models.checkpoint import load_ddpm
from diffusion_models.resample import Resampler, resample_mode

InputRange = Literal["normalized", "upstream"]
UnetDtype = Literal["fp32", "bf16", "fp16"]

# --dissolve_dtype -> the autocast dtype of the UNet forward (None: plain fp32). The ε estimate is
# returned in fp32 and x̂₀ is formed in fp32, so only the network's own rounding changes.
UNET_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# (into the model, out of the model). "upstream" reproduces upstream's quirk: [0, 1]
# images go straight into the [−1, 1] DDPM and the clamped [−1, 1] estimate is
# returned as is.
INPUT_RANGES: dict[str, tuple[Callable, Callable]] = {
    "normalized": (lambda x: 2 * x - 1, lambda y: (y + 1) / 2),
    "upstream": (_identity, _identity),
}


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """One-step estimate x₀ = x/√ᾱ − √(1/ᾱ − 1)·ε (no clamping); ``alpha_bar`` broadcasts to x."""
    return x / alpha_bar.sqrt() - (1 / alpha_bar - 1).sqrt() * eps


def draw_t(n: int, t_range: tuple[int, int], per_sample: bool, generator: torch.Generator | None,
           device: torch.device) -> torch.Tensor:
    """(n,) int64 timesteps uniform over the inclusive ``t_range``: one per sample, or one shared."""
    gen_device = generator.device if generator is not None else device
    count = n if per_sample else 1
    t = torch.randint(t_range[0], t_range[1] + 1, (count,), generator=generator, device=gen_device)
    return t.to(device).expand(n)


class Dissolver(nn.Module):
    """Frozen single-step x̂₀ dissolver: (B, C, S, S) in [0, 1] → same shape in [0, 1].

    ``input_range="upstream"`` returns [−1, 1] instead (upstream's [0, 1] feed). ``t_range``
    is inclusive; t is drawn per sample or once per call (upstream: once per
    batch and shift). The UNet is frozen: no gradients, always eval mode.
    """

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, image_size: int, resolution: int,
                 t_range: tuple[int, int] = (30, 99), per_sample_t: bool = True,
                 input_range: InputRange = "normalized", unet_dtype: UnetDtype = "fp32", graphs: bool = False):
        super().__init__()
        if not 0 <= t_range[0] <= t_range[1] < len(alphas_cumprod):
            raise UserError(f"dissolve t_range {t_range} must satisfy 0 <= t_min <= t_max < {len(alphas_cumprod)}")
        if input_range not in INPUT_RANGES:
            raise UserError(f"input_range must be one of {', '.join(INPUT_RANGES)}; got {input_range!r}")
        if unet_dtype not in UNET_DTYPES:
            raise UserError(f"--dissolve_dtype must be one of {', '.join(UNET_DTYPES)}; got {unet_dtype!r}")
        self.unet_dtype, self.graphs = unet_dtype, graphs
        self.__dict__["_captured"] = None  # the compiled UNet (CUDA only); kept out of the module tree
        self.unet = unet.eval().requires_grad_(False)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float().clone(), persistent=False)
        self.resampler = Resampler(image_size, resolution)
        self.t_range = tuple(t_range)
        self.per_sample_t = per_sample_t
        self.input_range = input_range
        self._to_model, self._from_model = INPUT_RANGES[input_range]

    @classmethod
    def from_checkpoint(cls, path: str | Path, image_size: int,
                        weights: Literal["auto", "raw", "ema"] = "auto",
                        t_range: tuple[int, int] = (30, 99), per_sample_t: bool = True,
                        input_range: InputRange = "normalized", channels: int = 3,
                        resolution: int | None = None,
                        device: torch.device | str | None = None, unet_dtype: UnetDtype = "fp32",
                        graphs: bool = False) -> "Dissolver":
        """Load a DDPM folder (run folder → ``best/``); ``"auto"`` = the weights that validated better.

        ``resolution`` (``--diff_resolution``), when given, must be the DDPM's own: it dissolves at that size.
        """
        ckpt = load_ddpm(path, device=device)
        meta = ckpt.meta
        if resolution is not None and resolution != meta.resolution:
            raise UserError(f"--diff_resolution {resolution} differs from the resolution {meta.resolution} of the "
                            f"DDPM checkpoint {ckpt.path}; omit the flag or train a {resolution}-px DDPM")
        if meta.channels != channels:
            raise UserError(f"DDPM checkpoint {ckpt.path} has {meta.channels} channels, images have {channels}")
        try:
            resample_mode(image_size, meta.resolution)
        except UserError as err:
            raise UserError(f"DDPM checkpoint {ckpt.path} (resolution {meta.resolution}) cannot serve "
                            f"{image_size}-px images: {err}") from None
        dissolver = cls(ckpt.weights(weights), ckpt.alphas_cumprod, image_size, meta.resolution,
                        t_range=t_range, per_sample_t=per_sample_t, input_range=input_range,
                        unet_dtype=unet_dtype, graphs=graphs)
        return dissolver.to(device or "cpu")

    def for_image_size(self, image_size: int) -> "Dissolver":
        """This dissolver for images of another size: the same frozen UNet and the same captured graph, so a
        ``graphs`` dissolver compiles once however many image sizes it serves (its input is always R px)."""
        other = Dissolver(self.unet, self.alphas_cumprod, image_size, self.resampler.resolution,
                          t_range=self.t_range, per_sample_t=self.per_sample_t, input_range=self.input_range,
                          unet_dtype=self.unet_dtype, graphs=self.graphs)
        if self.graphs and self._captured is None:  # torch.compile is lazy: nothing compiles until the first call
            self.__dict__["_captured"] = torch.compile(self.unet, mode="reduce-overhead")
        other.__dict__["_captured"] = self._captured
        return other.to(self.alphas_cumprod.device)

    def train(self, mode: bool = True) -> "Dissolver":
        """A parent's ``.train()`` must not unfreeze the DDPM: it stays in eval mode."""
        super().train(mode)
        self.unet.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor | int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, S, S) in [0, 1]; t: None (drawn from ``t_range``), an int or (B,) int64."""
        self._check_device(x)
        t = self._timesteps(x, t, generator)
        z = self._to_model(self.resampler.down(x))
        eps = self.predict_eps(z, t)
        x0 = predict_x0(z, eps, self.alphas_cumprod[t].view(-1, 1, 1, 1)).clamp(-1, 1)
        return self.resampler.up(self._from_model(x0))

    def predict_eps(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε_θ(z, t) in fp32; z: (B, C, R, R) in the model's range, t: (B,) int64.

        ``unet_dtype`` bf16/fp16 runs the network under autocast (normalisations stay fp32).
        ``graphs`` captures it with ``torch.compile(mode="reduce-overhead")`` (CUDA graphs): at
        32 px the UNet is launch-bound. Both are for CUDA; graphs is a no-op on CPU.
        """
        dtype = UNET_DTYPES[self.unet_dtype]
        with torch.autocast(z.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            eps = self._network(z)(z, t).sample
        return eps.float()

    def _network(self, z: torch.Tensor) -> Callable:
        if not (self.graphs and z.is_cuda):
            return self.unet
        if self._captured is None:
            self.__dict__["_captured"] = torch.compile(self.unet, mode="reduce-overhead")
        mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
        if mark is not None:  # each call is a new "step": the previous call's outputs may be overwritten
            mark()
        return self._captured

    def _timesteps(self, x: torch.Tensor, t: torch.Tensor | int | None,
                   generator: torch.Generator | None) -> torch.Tensor:
        if t is None:
            return draw_t(len(x), self.t_range, self.per_sample_t, generator, x.device)
        t = torch.as_tensor(t, dtype=torch.long, device=x.device).expand(len(x))
        if t.min() < 0 or t.max() >= len(self.alphas_cumprod):
            raise ValueError(f"t must lie in [0, {len(self.alphas_cumprod)}), got {t.tolist()}")
        return t

    def _check_device(self, x: torch.Tensor) -> None:
        device = self.alphas_cumprod.device
        if x.device != device:
            raise ValueError(f"Dissolver is on {device} but its input is on {x.device}; move it with .to()")

    def extra_repr(self) -> str:
        return (f"t_range={self.t_range}, per_sample_t={self.per_sample_t}, "
                f"input_range={self.input_range!r}, unet_dtype={self.unet_dtype!r}, graphs={self.graphs}, "
                f"{self.resampler!r}")
