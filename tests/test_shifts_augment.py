"""Shifts (rotation, cut-permutation, layout, labels) and the SimCLR augmentation."""
import pytest
import torch

from common.augment import N_PARAMS, SimCLRAugment, color_jitter, crop_size
from common.errors import UserError
from common.shifts import SHIFTS, apply_shift, cutperm, rotate, shift_labels, stack_shifts

torch.set_num_threads(1)


def images(b=3, h=6, w=6, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- shifts


def test_rotation_four_times_is_identity_and_k1_is_rot90():
    x = images()
    y = x
    for _ in range(4):
        y = apply_shift(y, 1, "rotation")
    assert torch.equal(y, x)
    # k = 1: pixel (r, c) of the output is pixel (c, W−1−r) of the input (rot90 from H towards W).
    r1 = rotate(x, 1)
    for r in range(6):
        for c in range(6):
            assert torch.equal(r1[:, :, r, c], x[:, :, c, 5 - r])
    assert torch.equal(apply_shift(x, 2, "rotation"), x.flip(2).flip(3))


def cutperm_ref(x, k):
    """Written from the text: split at ⌊H/2⌋, ⌊W/2⌋; k odd swaps left/right, k ≥ 2 swaps top/bottom."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    if k % 2 == 1:
        x = torch.cat([x[:, :, :, w:], x[:, :, :, :w]], dim=3)
    if k >= 2:
        x = torch.cat([x[:, :, h:], x[:, :, :h]], dim=2)
    return x


@pytest.mark.parametrize("h,w", [(6, 6), (5, 7), (28, 28)])
@pytest.mark.parametrize("k", range(4))
def test_cutperm_matches_reference(k, h, w):
    x = images(h=h, w=w)
    assert torch.equal(cutperm(x, k), cutperm_ref(x, k))


@pytest.mark.parametrize("k", range(4))
def test_cutperm_twice_is_identity(k):
    x = images(h=8, w=8)
    assert torch.equal(apply_shift(apply_shift(x, k, "cutperm"), k, "cutperm"), x)
    if k:
        assert not torch.equal(apply_shift(x, k, "cutperm"), x)


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_stack_shifts_is_k_major(kind):
    x = images(b=3)
    stacked = stack_shifts(x, kind, K=4)
    assert stacked.shape == (12, 3, 6, 6)
    for k in range(4):
        for i in range(3):
            assert torch.equal(stacked[k * 3 + i], apply_shift(x[i : i + 1], k, kind)[0])


def test_shift_labels_blocks():
    B, K = 2, 4
    labels = shift_labels(B, K, n_branches=3)
    assert labels.dtype == torch.int64 and labels.shape == (3 * K * B,)
    for branch in range(3):
        for k in range(K):
            for i in range(B):
                assert labels[branch * K * B + k * B + i] == k


def test_shift_errors():
    with pytest.raises(UserError, match="cutperm"):
        apply_shift(images(), 1, "flip")
    with pytest.raises(ValueError):
        apply_shift(images(), 4, "rotation")
    with pytest.raises(ValueError, match="square"):
        stack_shifts(images(h=4, w=6), "rotation")


# ---------------------------------------------------------------- augmentation


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shape_and_range():
    x = images(b=16, h=16, w=16)
    y = SimCLRAugment()(x, generator=gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.allclose(y, x)


def test_deterministic_per_generator_and_global_rng_untouched():
    x = images(b=8, h=12, w=12)
    aug = SimCLRAugment()
    state = torch.get_rng_state()
    first, again = aug(x, generator=gen(1)), aug(x, generator=gen(1))
    other = aug(x, generator=gen(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_given_params_are_the_generator_draw_row_by_row():
    """Evaluation passes each image's own draw; row i of the output depends on row i of params only."""
    x = images(b=6, h=12, w=12)
    aug = SimCLRAugment()
    u = torch.rand(6, N_PARAMS, generator=gen(4))
    assert torch.equal(aug(x, params=u), aug(x, generator=gen(4)))
    torch.testing.assert_close(aug(x[2:3], params=u[2:3])[0], aug(x, params=u)[2], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        aug(x, generator=gen(4), params=u)
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        aug(x, params=u[:, :9])


def test_identity_without_jitter_gray_or_crop():
    x = images(b=4, h=10, w=10)
    aug = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.0, p_gray=0.0)
    assert torch.allclose(aug(x, generator=gen(3)), x, atol=1e-6)


def ramp(b, size, axis):
    """Images whose value is linear in one axis, so a crop's scale shows as the slope."""
    line = torch.linspace(0.1, 0.9, size)
    img = line.view(1, 1, 1, size) if axis == "x" else line.view(1, 1, size, 1)
    return img.expand(b, 3, size, size).contiguous()


@pytest.mark.parametrize("s", [0.54, 0.25])
def test_fixed_crop_scale_gives_fixed_area(s):
    """A bilinear crop of a linear ramp is linear, with slope scaled by the crop's side fraction."""
    size, b = 32, 16
    aug = SimCLRAugment(crop_scale=(s, s), p_jitter=0.0, p_gray=0.0)
    slopes = {}
    for axis in ("x", "y"):
        y = aug(ramp(b, size, axis), generator=gen(7))  # same generator seed -> same boxes
        diff = y.diff(dim=3 if axis == "x" else 2)
        interior = diff[..., 6:-6, 6:-6]  # away from the border, where sampling clamps
        slopes[axis] = interior.mean(dim=(1, 2, 3)) / (0.8 / (size - 1))
    area = slopes["x"] * slopes["y"]
    assert torch.allclose(area, torch.full_like(area, s), atol=1e-3)
    assert slopes["x"].std() > 1e-3  # the aspect ratio still varies


def test_crop_size_area_and_clip():
    area = torch.tensor([0.5, 0.5, 0.9])
    log_ratio = torch.tensor([0.0, 0.2, 0.28])
    w, h = crop_size(area, log_ratio, 20, 20)
    assert torch.allclose(w[:2] * h[:2], area[:2])
    assert torch.allclose(w[:2] / h[:2], log_ratio[:2].exp())
    assert w[2] == 1.0 and h[2] < 1.0  # 0.9·e^0.28 > 1: clipped


def test_grayscale_always():
    x = images(b=4, h=8, w=8)
    aug = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.0, p_gray=1.0)
    y = aug(x, generator=gen(0))
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(y[:, c], luma, atol=1e-5)


def test_probabilities_apply_per_sample():
    x = images(b=2000, h=2, w=2, seed=5)
    aug = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.0, p_gray=0.3)
    y = aug(x, generator=gen(0))
    changed = (y - x).abs().flatten(1).amax(1) > 1e-4
    assert abs(changed.float().mean().item() - 0.3) < 0.04


def test_brightness_only_jitter_matches_formula():
    x = images(b=6, h=5, w=5)
    ones = torch.ones(6)
    b = torch.linspace(0.6, 1.4, 6)
    y = color_jitter(x, b, ones, ones, torch.zeros(6))
    assert torch.allclose(y, (x * b.view(-1, 1, 1, 1)).clamp(0, 1), atol=1e-5)


def test_contrast_blends_towards_mean_luma():
    x = images(b=3, h=5, w=5)
    ones = torch.ones(3)
    c = torch.tensor([0.6, 1.0, 1.4])
    y = color_jitter(x, ones, c, ones, torch.zeros(3))
    mean = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(-1, 1, 1, 1)
    expected = (c.view(-1, 1, 1, 1) * x + (1 - c.view(-1, 1, 1, 1)) * mean).clamp(0, 1)
    assert torch.allclose(y, expected, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(UserError, match="resize_factor"):
        SimCLRAugment(crop_scale=(0.0, 1.0))
    with pytest.raises(UserError, match="p_gray"):
        SimCLRAugment(p_gray=1.5)


def test_rotate_hue_keeps_gray_and_luma_and_is_periodic():
    from common.augment import rotate_hue

    torch.manual_seed(0)
    x = torch.rand(5, 3, 6, 6)
    hue = torch.rand(5) - 0.5
    gray = x[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(rotate_hue(gray, hue), gray, atol=1e-5, rtol=0)
    luma = lambda img: (0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2])
    torch.testing.assert_close(luma(rotate_hue(x, hue)), luma(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_hue(x, torch.ones(5)), x, atol=1e-5, rtol=0)  # a full turn
    assert not torch.allclose(rotate_hue(x, torch.full((5,), 0.25)), x, atol=1e-2)
