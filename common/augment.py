"""SimCLR augmentation, per sample and vectorised on the input's device.

Applied to the whole stacked batch (2N or 3N rows) after shifting, and at
evaluation time to build the test views. In order:

1. colour jitter with probability ``p_jitter`` per sample;
2. grayscale with probability ``p_gray`` per sample;
3. random resized crop, resampled back to (H, W).

All random parameters of a call come from **one** ``torch.rand`` draw of shape
(B, 10). With a ``generator`` the draw happens on the generator's device (a CPU
generator's draw is then copied to the input's device, a few hundred bytes);
without one it uses the global RNG of the input's device. So a seeded generator
gives the same views on any device and never touches the global random state,
which evaluation requires (upstream reseeded the global RNG per sample).
Evaluation instead passes the (B, 10) draw as ``params``, drawn per image from
that image's own generator, so a view does not depend on the rest of the batch
(evals/features.py).

Departures from upstream, each harmless for
grayscale medical images and documented here rather than flagged:
- jitter order is fixed (brightness, contrast, saturation, hue, as
  torchvision's fixed-order variant) instead of a random order per batch;
- contrast blends towards the mean luma (torchvision/PIL) instead of the
  per-channel mean; the two agree when R = G = B;
- saturation blends towards the pixel's gray (torchvision) instead of scaling
  S in HSV, and hue rotates the YIQ chroma plane by h·2π (h a fraction of the
  colour circle) instead of shifting H by upstream's h·255/360 of the circle:
  both avoid HSV round trips, the CPU hotspot; both do nothing when R = G = B;
- a crop box larger than the image after the aspect draw is clipped to the
  image, instead of upstream's rejection sampling with a full-size fallback.
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError

N_PARAMS = 10  # columns of the parameter draw, see SimCLRAugment._draw


# RGB <-> YIQ. A hue shift is a rotation of the chroma plane (I, Q) by the hue
# angle, so per-sample hue jitter is one batched 3x3 matrix per image instead of
# two HSV conversions (which cost ~10x the rest of the augmentation on a CPU).
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def rotate_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W); hue (B,) as fractions of the colour circle -> hue-rotated x (not clamped).

    Rotating (I, Q) keeps the luma Y, so gray pixels (R = G = B) are unchanged.
    """
    angle = hue * (2 * math.pi)
    cos, sin, zero, one = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)  # (B, 3, 3)
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x), _YIQ_TO_RGB.to(x)
    matrix = to_rgb @ rot.to(x) @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def color_jitter(
    x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor, hue: torch.Tensor
) -> torch.Tensor:
    """x (B, 3, H, W) in [0, 1]; factors (B,) (1 = unchanged), hue (B,) in circle fractions -> [0, 1].

    Brightness multiplies RGB (upstream scales V in HSV: the same up to clipping);
    contrast blends towards the mean luma and saturation towards the pixel's gray
    (torchvision's definitions); hue rotates the YIQ chroma plane.
    """
    x = kornia.enhance.adjust_brightness_accumulative(x, brightness)
    x = kornia.enhance.adjust_contrast_with_mean_subtraction(x, contrast)
    x = kornia.enhance.adjust_saturation_with_gray_subtraction(x, saturation)
    return rotate_hue(x, hue).clamp(0.0, 1.0)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W) -> luma 0.299R + 0.587G + 0.114B repeated to 3 channels."""
    return kornia.color.rgb_to_grayscale(x).expand_as(x)


def crop_size(
    area: torch.Tensor, log_ratio: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop width and height as fractions of the image side, each (B,) in (0, 1].

    area: fraction of the image area; log_ratio: log(w/h) of the box in pixels.
    The product of the fractions is ``area`` unless a side had to be clipped to 1.
    """
    ratio = log_ratio.exp()
    w_frac = (area * ratio * height / width).sqrt().clamp(max=1.0)
    h_frac = (area / ratio * width / height).sqrt().clamp(max=1.0)
    return w_frac, h_frac


def resized_crop(
    x: torch.Tensor, w_frac: torch.Tensor, h_frac: torch.Tensor, u_x: torch.Tensor, u_y: torch.Tensor
) -> torch.Tensor:
    """Crop a box per sample and resample it bilinearly to the full (H, W).

    x (B, C, H, W); w_frac, h_frac (B,) box size as fractions of the sides;
    u_x, u_y (B,) in [0, 1] place the box anywhere inside the image (0 = left/top).
    Box and image are continuous squares (align_corners=False), so a full-size
    box reproduces the image exactly.
    """
    cx = (1.0 - w_frac) * (2.0 * u_x - 1.0)  # normalised centre; the box stays within [-1, 1]
    cy = (1.0 - h_frac) * (2.0 * u_y - 1.0)
    zero = torch.zeros_like(w_frac)
    theta = torch.stack([torch.stack([w_frac, zero, cx], 1), torch.stack([zero, h_frac, cy], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if not low < pair[0] <= pair[1] <= high:
        raise UserError(f"{name} must satisfy {low} < min <= max <= {high}, got {tuple(pair)}")


class SimCLRAugment(nn.Module):
    """forward(x (B, 3, H, W) in [0, 1], generator=None, params=None) -> (B, 3, H, W) in [0, 1].

    crop_scale is the area fraction range (``--resize_factor``, 1.0); give
    (s, s) for ``--resize_fix``. crop_ratio bounds w/h (drawn log-uniformly).
    jitter = (brightness, contrast, saturation, hue) strengths as torchvision:
    factors ~ U(max(0, 1 − j), 1 + j), hue ~ U(−h, h) circle fractions.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        p_jitter: float = 0.8,
        p_gray: float = 0.2,
    ) -> None:
        super().__init__()
        _check_range("crop_scale (--resize_factor)", crop_scale, 0.0, 1.0)
        _check_range("crop_ratio", crop_ratio, 0.0, math.inf)
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise UserError(f"jitter must be 4 values >= 0 with hue <= 0.5, got {tuple(jitter)}")
        for name, p in (("p_jitter", p_jitter), ("p_gray", p_gray)):
            if not 0.0 <= p <= 1.0:
                raise UserError(f"{name} must be in [0, 1], got {p}")
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.jitter, self.p_jitter, self.p_gray = tuple(jitter), p_jitter, p_gray

    def _draw(self, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """(B, 10) uniforms in [0, 1), drawn on the generator's device, returned on ``device``."""
        draw_device = generator.device if generator is not None else device
        return torch.rand(batch, N_PARAMS, generator=generator, device=draw_device).to(device)

    @staticmethod
    def _given(params: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is not None:
            raise ValueError("SimCLRAugment: pass params or a generator, not both")
        if tuple(params.shape) != (x.shape[0], N_PARAMS):
            raise ValueError(f"SimCLRAugment params must be (B, {N_PARAMS}) = {(x.shape[0], N_PARAMS)}, "
                             f"got {tuple(params.shape)}")
        return params.to(x.device)

    def _jitter_factors(self, u: torch.Tensor) -> list[torch.Tensor]:
        """Columns 1–4 of the draw -> brightness, contrast, saturation factors and hue shift, each (B,)."""
        factors = []
        for column, strength in zip(u.unbind(1), self.jitter[:3]):
            low = max(0.0, 1.0 - strength)
            factors.append(low + (1.0 + strength - low) * column)
        hue = self.jitter[3]
        return factors + [(2.0 * u[:, 3] - 1.0) * hue]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                params: torch.Tensor | None = None) -> torch.Tensor:
        """params: (B, 10) uniforms in [0, 1), drawn beforehand (evaluation draws every image's own,
        evals/features.py); None draws them here, from ``generator``."""
        u = self._draw(x.shape[0], x.device, generator) if params is None else self._given(params, x, generator)
        per_sample = (-1, 1, 1, 1)

        jittered = color_jitter(x, *self._jitter_factors(u[:, 1:5]))
        x = torch.where((u[:, 0] < self.p_jitter).view(per_sample), jittered, x)
        x = torch.where((u[:, 5] < self.p_gray).view(per_sample), grayscale(x), x)

        (s_lo, s_hi), (r_lo, r_hi) = self.crop_scale, self.crop_ratio
        area = s_lo + (s_hi - s_lo) * u[:, 6]
        log_ratio = math.log(r_lo) + (math.log(r_hi) - math.log(r_lo)) * u[:, 7]
        w_frac, h_frac = crop_size(area, log_ratio, x.shape[2], x.shape[3])
        return resized_crop(x, w_frac, h_frac, u[:, 8], u[:, 9]).clamp(0.0, 1.0)
