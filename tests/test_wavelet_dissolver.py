"""The wavelet dissolver against a per-pixel Haar reference written from the definition."""
import math

import pytest
import torch

from common.cli import build_train_parser, train_config_from_args
from common.errors import UserError
from training.dissolvers import build_dissolver
from training.dissolvers.wavelet import WaveletDissolver, haar_merge, haar_split, wavelet_shrink


def reference_haar_level(img: list[list[float]]) -> tuple[list[list[float]], list[list[list[float]]]]:
    """One level of the orthonormal 2-D Haar transform, block by block: each 2x2 block [[a, b], [c, d]] gives
    the mean-like (a+b+c+d)/2 and the details (a-b+c-d)/2, (a+b-c-d)/2, (a-b-c+d)/2."""
    n = len(img) // 2
    approx = [[0.0] * n for _ in range(n)]
    details = [[[0.0] * n for _ in range(n)] for _ in range(3)]
    for i in range(n):
        for j in range(n):
            a, b = img[2 * i][2 * j], img[2 * i][2 * j + 1]
            c, d = img[2 * i + 1][2 * j], img[2 * i + 1][2 * j + 1]
            approx[i][j] = (a + b + c + d) / 2
            for k, w in enumerate(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2)):
                details[k][i][j] = w
    return approx, details


def test_haar_split_matches_the_per_block_reference_and_is_orthonormal():
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    approx, details = haar_split(x)
    ref_approx, ref_details = reference_haar_level(x[0, 0].tolist())
    torch.testing.assert_close(approx[0, 0], torch.tensor(ref_approx, dtype=torch.float64))
    torch.testing.assert_close(details[0, 0], torch.tensor(ref_details, dtype=torch.float64))
    energy = approx.square().sum() + details.square().sum()  # orthonormal: the energy is kept
    assert math.isclose(energy.item(), x.square().sum().item(), rel_tol=1e-12)
    torch.testing.assert_close(haar_merge(approx, details), x)


def test_shrinkage_keeps_the_image_at_zero_and_leaves_block_means_when_large():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(wavelet_shrink(x, 0.0, 3), x)
    blocks = torch.nn.functional.avg_pool2d(x, 4).repeat_interleave(4, -2).repeat_interleave(4, -1)
    torch.testing.assert_close(wavelet_shrink(x, 10.0, 2), blocks)


def test_soft_threshold_wipes_weak_detail_and_shrinks_strong_detail():
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 0.4  # details: 0.2 each; approx 0.2
    out = wavelet_shrink(x, 0.05, 1)
    _, details = haar_split(out)
    torch.testing.assert_close(details, torch.full_like(details, 0.15))
    torch.testing.assert_close(wavelet_shrink(x, 0.3, 1), torch.full_like(x, 0.1))


def test_cli_builds_it_and_its_settings_are_checked():
    base = ["--dataset", "breastmnist", "--mode", "simclr_DIA", "--logdir", "unused",
            "--shift_trans_type", "wavelet_rotation"]
    cfg = train_config_from_args(build_train_parser().parse_args(base + ["--wavelet_threshold", "0.1"]))
    assert cfg.dissolve.settings == {"wavelet_threshold": 0.1, "wavelet_levels": 2}
    dissolve = build_dissolver(cfg.dissolve, image_size=28, device=torch.device("cpu"))
    assert isinstance(dissolve, WaveletDissolver) and dissolve.resampler.resolution == 32
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    y = dissolve(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert 0 < (y - x).abs().mean() < 0.1  # detail removed, the image kept
    with pytest.raises(UserError, match="--wavelet_levels must be an integer in"):
        train_config_from_args(build_train_parser().parse_args(base + ["--wavelet_levels", "0"]))
    with pytest.raises(UserError, match="--wavelet_levels 3 needs a dissolving resolution divisible by 8"):
        WaveletDissolver(0.05, 3, image_size=36, resolution=36)
