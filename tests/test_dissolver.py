"""The dissolving transform, its schedule and the blur dissolvers, against formulas written out here."""
from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from training.dissolvers.blur import BlurDissolver
from common.cli import t_range_from_offsets
from diffusion_models.dissolver import Dissolver, predict_x0
from diffusion_models.resample import Resampler
from diffusion_models.unet import build_scheduler, build_unet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_unet(8, (1, 2), 32).eval()


@pytest.fixture(scope="module")
def alphas():
    return build_scheduler().alphas_cumprod.float()


class RecordingEps(nn.Module):
    """Predicts ε = c everywhere and records the timesteps it is called with."""

    def __init__(self, c: float = 0.0):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t):
        self.seen.append(t.clone())
        return SimpleNamespace(sample=torch.zeros_like(x) + self.c)


def cosine_alpha_bar(t: int, T: int = 1000, s: float = 0.008) -> float:
    f = lambda tau: math.cos((tau / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t + 1) / f(0)


@pytest.mark.parametrize("t, table", [(30, 0.99647), (50, 0.99172), (99, 0.97209)])
def test_schedule_is_upstream_cosine(alphas, t, table):
    assert alphas[t].item() == pytest.approx(cosine_alpha_bar(t), abs=2e-6)
    assert alphas[t].item() == pytest.approx(table, abs=6e-6)


@pytest.mark.parametrize("clip", [False, True])
def test_predict_x0_matches_diffusers_step(clip):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=clip)
    gen = torch.Generator().manual_seed(0)
    for t in (0, 30, 64, 99, 500):
        x, eps = torch.randn(2, 3, 8, 8, generator=gen) * 1.5, torch.randn(2, 3, 8, 8, generator=gen)
        expected = scheduler.step(eps, t, x, generator=gen).pred_original_sample
        ours = predict_x0(x, eps, scheduler.alphas_cumprod[t])
        torch.testing.assert_close(ours.clamp(-1, 1) if clip else ours, expected, rtol=1e-4, atol=5e-5)


def reference_dissolve(unet, alphas, x, t, upstream=False):
    """Per image, the dissolving step spelled out: pad 28→32, to [−1,1], one step, clamp, back, crop."""
    out = []
    for img, ti in zip(x, t.tolist()):
        z = F.pad(img[None], (2, 2, 2, 2))
        z = z if upstream else z * 2 - 1
        eps = unet(z, torch.tensor([ti])).sample
        a = alphas[ti].double()
        x0 = (z.double() / a.sqrt() - torch.sqrt(1 / a - 1) * eps.double()).clamp(-1, 1).float()
        x0 = x0 if upstream else (x0 + 1) / 2
        out.append(x0[0, :, 2:-2, 2:-2])
    return torch.stack(out)


@pytest.mark.parametrize("upstream", [False, True])
def test_dissolver_matches_reference_loop(unet, alphas, upstream):
    x = torch.rand(5, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([30, 45, 60, 99, 800])
    d = Dissolver(unet, alphas, 28, 32, input_range="upstream" if upstream else "normalized")
    with torch.no_grad():
        torch.testing.assert_close(d(x, t=t), reference_dissolve(unet, alphas, x, t, upstream), atol=1e-5, rtol=1e-5)


def test_for_image_size_shares_the_unet_and_its_compiled_graph(unet, alphas):
    d = Dissolver(unet, alphas, 32, 32, t_range=(40, 60), graphs=True)
    other = d.for_image_size(28)
    assert other.unet is d.unet and other._captured is d._captured is not None  # compiled once, for every size
    assert (other.t_range, other.graphs, other.resampler.image_size) == ((40, 60), True, 28)
    x, t = torch.rand(3, 3, 28, 28), torch.tensor([40, 50, 60])
    torch.testing.assert_close(other(x, t=t), Dissolver(unet, alphas, 28, 32)(x, t=t), rtol=0, atol=0)


@pytest.mark.parametrize("size", [28, 32, 48])
def test_output_keeps_shape_and_range(unet, alphas, size):
    x = torch.rand(4, 3, size, size)
    y = Dissolver(unet, alphas, size, 32)(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.equal(y, x)


def test_upstream_range_returns_minus_one_to_one_and_differs(alphas):
    x = torch.rand(6, 3, 28, 28)
    shift_down = RecordingEps(c=3.0)  # a large ε pushes x̂₀ below zero
    upstream = Dissolver(shift_down, alphas, 28, 32, input_range="upstream")(x, t=99)
    normalized = Dissolver(shift_down, alphas, 28, 32)(x, t=99)
    assert upstream.min() >= -1 and upstream.max() <= 1 and upstream.min() < 0
    assert normalized.min() >= 0
    assert not torch.allclose(upstream, normalized)


def test_no_gradient_reaches_the_unet_and_it_stays_in_eval(unet, alphas):
    d = Dissolver(unet, alphas, 28, 32)
    x = torch.rand(2, 3, 28, 28, requires_grad=True)
    y = d(x)
    assert not y.requires_grad
    assert all(not p.requires_grad and p.grad is None for p in d.parameters())
    d.train()
    assert d.training and not d.unet.training


def test_seeded_generator_is_deterministic(unet, alphas):
    d = Dissolver(unet, alphas, 28, 32)
    x = torch.rand(8, 3, 28, 28)
    run = lambda seed: d(x, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.equal(run(3), run(4))


@pytest.mark.parametrize("per_sample", [True, False])
def test_t_is_drawn_per_sample_or_per_call(alphas, per_sample):
    eps = RecordingEps()
    d = Dissolver(eps, alphas, 32, 32, t_range=(30, 99), per_sample_t=per_sample)
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):
        d(torch.rand(8, 3, 32, 32), generator=gen)
    calls = torch.stack(eps.seen)  # (calls, batch)
    distinct_within_call = (calls != calls[:, :1]).any(dim=1)
    assert distinct_within_call.all() if per_sample else not distinct_within_call.any()
    assert calls.min() == 30 and calls.max() == 99
    assert len(torch.unique(calls)) == 70


def test_wrong_device_input_is_refused(unet, alphas):
    d = Dissolver(unet, alphas, 28, 32)
    with pytest.raises(ValueError, match="meta"):
        d(torch.rand(1, 3, 28, 28, device="meta"))


def reference_t_range(offset, upper, scale):
    """All t = ⌊scale·u⌋ over a fine exact grid of u ∈ [offset, upper)."""
    lo, hi, n = Fraction(str(offset)), Fraction(str(upper)), 10_000
    ts = {math.floor(scale * (lo + (hi - lo) * k / n)) for k in range(n)}
    return min(ts), max(ts)


@pytest.mark.parametrize("offset, upper", [(0.3, 1.0), (0.29, 0.5), (0.0, 0.1), (0.3, 0.755), (0.5, 0.501)])
def test_t_range_from_offsets(offset, upper):
    assert t_range_from_offsets(offset, upper, 100) == reference_t_range(offset, upper, 100)


def test_t_range_from_offsets_refuses_an_empty_interval():
    with pytest.raises(UserError, match="--diffusion_offset"):
        t_range_from_offsets(0.5, 0.4)


def test_resampler_pads_and_resizes():
    x = torch.rand(2, 3, 28, 28)
    pad = Resampler(28, 32)
    assert pad.mode == "pad" and torch.equal(pad.up(pad.down(x)), x)
    assert pad.down(x)[..., :2, :].abs().sum() == 0
    big = torch.rand(2, 3, 64, 64)
    resize = Resampler(64, 32)
    expected = F.interpolate(big, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(resize.down(big), expected)
    assert resize.up(resize.down(big)).shape == big.shape
    with pytest.raises(UserError, match="28-px"):
        Resampler(28, 64)


def opencv_gaussian_kernel(k: int) -> torch.Tensor:
    sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8
    g = torch.tensor([math.exp(-((i - (k - 1) / 2) ** 2) / (2 * sigma**2)) for i in range(k)], dtype=torch.float64)
    g = g / g.sum()
    return torch.outer(g, g).float()


@pytest.mark.parametrize("k", [3, 7, 11])
def test_gaussian_blur_matches_reference_convolution(k):
    x = torch.rand(2, 3, 28, 28)
    kernel = opencv_gaussian_kernel(k).expand(3, 1, k, k)
    expected = F.conv2d(F.pad(x, (2, 2, 2, 2)), kernel, padding=k // 2, groups=3)[..., 2:-2, 2:-2]
    torch.testing.assert_close(BlurDissolver("gaussian", k, 28)(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [3, 7])
def test_median_blur_matches_reference(k):
    x = torch.rand(1, 3, 28, 28)
    patches = F.unfold(F.pad(x, (2, 2, 2, 2)), k, padding=k // 2)  # (1, 3·k², 32·32), zero padded
    expected = patches.view(1, 3, k * k, 32, 32).median(dim=2).values[..., 2:-2, 2:-2]
    torch.testing.assert_close(BlurDissolver("median", k, 28)(x), expected)


@pytest.mark.parametrize("kind", ["gaussian", "median"])
def test_blur_keeps_shape_range_and_kernel_one_is_identity(kind):
    x = torch.rand(3, 3, 28, 28)
    y = BlurDissolver(kind, 7, 28)(x, generator=torch.Generator())
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.allclose(y, x)
    torch.testing.assert_close(BlurDissolver(kind, 1, 28)(x), x, rtol=0, atol=1e-7)
    assert BlurDissolver(kind, 5, 64)(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_blur_refuses_unknown_kind_and_even_kernel():
    with pytest.raises(UserError, match="gaussian, median"):
        BlurDissolver("box", 3, 28)
    with pytest.raises(UserError, match="--kernel_size"):
        BlurDissolver("median", 4, 28)


# -- additive-noise dissolver and the one list of dissolver names ------------------------------------------
def test_noise_dissolver_adds_seeded_noise_of_the_given_std_at_the_dissolving_resolution():
    from training.dissolvers.noise import NoiseDissolver
    x = torch.full((64, 3, 28, 28), 0.5)
    noisy = NoiseDissolver(0.1, image_size=28, resolution=32)
    out = noisy(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert (out - x).std().item() == pytest.approx(0.1, rel=0.05)  # 0.5 ± 0.1 is never clamped
    again = noisy(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, noisy(x, generator=torch.Generator().manual_seed(1)))
    # 64 px images are noised at 32 px and resized back up: neighbouring pixels share their noise
    big = NoiseDissolver(0.1, image_size=64, resolution=32)(torch.full((4, 3, 64, 64), 0.5),
                                                            generator=torch.Generator().manual_seed(0))
    assert (big[..., ::2] - big[..., 1::2]).abs().mean() < (big - 0.5).abs().mean()
    assert torch.equal(NoiseDissolver(0.0, image_size=28)(x), x)
    with pytest.raises(UserError, match="--noise_std"):
        NoiseDissolver(1.5, image_size=28)


def test_noise_shift_trans_type_builds_a_noise_dissolver_and_checks_its_std():
    from common.cli import build_train_parser, train_config_from_args
    from training.dissolvers import build_dissolver
    argv = ["--dataset", "breastmnist", "--mode", "simclr_DIA", "--shift_trans_type", "noise_cutperm",
            "--noise_std", "0.2", "--logdir", "unused"]
    cfg = train_config_from_args(build_train_parser().parse_args(argv))
    assert (cfg.dissolve.method, cfg.shift.kind, cfg.dissolve.setting("noise_std")) == ("noise", "cutperm", 0.2)
    assert build_dissolver(cfg.dissolve, image_size=28, device=torch.device("cpu")).std == 0.2
    with pytest.raises(UserError, match="--noise_std"):
        train_config_from_args(build_train_parser().parse_args(argv[:-4] + ["--noise_std", "-0.1"] + argv[-2:]))
