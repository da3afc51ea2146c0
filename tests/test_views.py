"""The three branches of one step: layout, flips, dissolving, labels."""
import torch

from common.shifts import apply_shift
from common.transforms import random_hflip
from training.views import make_views


def identity_augment(x, generator=None):
    return x


def test_views_layout_is_branch_major_then_k_major():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8)
    gen = torch.Generator().manual_seed(1)
    marker = lambda img, generator=None: torch.full_like(img, 0.25)  # a recognisable "dissolver"
    views = make_views(x, shift_kind="rotation", n_shifts=4, augment=identity_augment, dissolve=marker, generator=gen)
    B, K = 3, 4
    assert views.images.shape == (3 * K * B, 3, 8, 8) and views.n_branches == 3
    assert views.shift_labels.tolist() == [k for _ in range(3) for k in range(K) for _ in range(B)]
    for branch in range(2):  # a and b: each row is image i, possibly flipped, under shift k
        for k in range(K):
            for i in range(B):
                row = views.images[(branch * K + k) * B + i]
                candidates = [apply_shift(x[i:i + 1], k, "rotation")[0],
                              apply_shift(x[i:i + 1].flip(3), k, "rotation")[0]]
                assert any(torch.equal(row, c) for c in candidates)
    assert torch.all(views.images[2 * K * B:] == 0.25)  # the dissolved branch went through the dissolver


def test_csi_views_have_two_branches_and_flip_each_view_independently():
    x = torch.rand(64, 3, 4, 4)
    views = make_views(x, shift_kind="cutperm", n_shifts=4, augment=identity_augment, dissolve=None,
                       generator=torch.Generator().manual_seed(0))
    assert views.n_branches == 2 and views.images.shape[0] == 2 * 4 * 64
    a, b = views.images[:64], views.images[4 * 64:5 * 64]  # k = 0 blocks of both views
    assert not torch.equal(a, b)  # independent flips: some images differ between the views


def test_random_hflip_uses_only_the_generator():
    x = torch.rand(16, 3, 5, 5)
    state = torch.get_rng_state()
    y1 = random_hflip(x, torch.Generator().manual_seed(3))
    y2 = random_hflip(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2) and torch.equal(torch.get_rng_state(), state)
    flipped = [torch.equal(y1[i], x[i].flip(2)) for i in range(16)]
    assert 0 < sum(flipped) < 16
