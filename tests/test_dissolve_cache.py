"""The dissolve cache reproduces the uncached third branch (``--dissolve_cache``).

Bit for bit when the network's output for an image does not depend on the rest of its batch (an
elementwise stand-in for the UNet); with the real UNet the draws are identical and the pixels agree
to float rounding, because CPU GEMMs round differently for different batch sizes (the time
embedding's Linear already differs by ~1e-6 between a batch of 7 and a batch of 1).
"""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from common.errors import UserError
from diffusion_models.dissolve_cache import DissolveCache, IndexedDataset, stack_images
from diffusion_models.dissolver import Dissolver
from diffusion_models.unet import build_scheduler, build_unet
from training.views import make_views

T_RANGE = (30, 34)  # a short range keeps the table small; the lookup arithmetic is the same


def identity_augment(x, generator=None):
    return x


class ElementwiseNet(nn.Module):
    """A batch-invariant stand-in for the ε-network: each output pixel depends on its own input and t."""

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=torch.sin(3 * z + t.view(-1, 1, 1, 1) / 10))


def tiny_dissolver(per_sample_t: bool, real_unet: bool = False) -> Dissolver:
    torch.manual_seed(0)
    unet = build_unet(8, (1, 2), 32) if real_unet else ElementwiseNet()
    return Dissolver(unet, build_scheduler().alphas_cumprod, image_size=28, resolution=32, t_range=T_RANGE,
                     per_sample_t=per_sample_t)


def cached_and_uncached_views(dissolver: Dissolver) -> dict:
    images = torch.rand(7, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    cache = DissolveCache.build(dissolver, images, chunk=3)
    index = torch.tensor([5, 0, 3, 3])  # a batch may repeat an image (DistributedSampler padding)
    views = {}
    for name, dissolve in (("uncached", dissolver), ("cached", cache)):
        gen = torch.Generator().manual_seed(2)
        views[name] = make_views(images[index], shift_kind="rotation", n_shifts=4, augment=identity_augment,
                                 dissolve=dissolve, generator=gen, index=index)
        views[name + "_next"] = torch.rand(3, generator=gen)  # the generator was consumed identically
    return views


@pytest.mark.parametrize("per_sample_t", [True, False], ids=["t_per_sample", "t_per_call"])
def test_cached_views_equal_uncached_views_bit_for_bit(per_sample_t):
    views = cached_and_uncached_views(tiny_dissolver(per_sample_t))
    assert torch.equal(views["cached"].images, views["uncached"].images)
    assert torch.equal(views["cached_next"], views["uncached_next"])


def test_cached_views_match_the_real_unet_to_float_rounding():
    views = cached_and_uncached_views(tiny_dissolver(True, real_unet=True))
    torch.testing.assert_close(views["cached"].images, views["uncached"].images, rtol=0, atol=1e-5)
    assert torch.equal(views["cached_next"], views["uncached_next"])


def test_table_layout_and_indexed_dataset():
    dissolver = tiny_dissolver(True)
    data = [(torch.rand(3, 28, 28), 0) for _ in range(3)]
    images = stack_images(data, torch.device("cpu"))
    cache = DissolveCache.build(dissolver, images)
    assert cache.table.shape == (2, 5, 3, 3, 28, 28)
    torch.testing.assert_close(cache.table[1, 2, 1], dissolver(images[1:2].flip(-1), t=32)[0], rtol=0, atol=0)
    assert IndexedDataset(data)[2][2] == 2 and len(IndexedDataset(data)) == 3


def test_oversized_cache_is_refused_with_the_flag_name():
    with pytest.raises(UserError, match="--dissolve_cache"):
        DissolveCache.build(tiny_dissolver(True), torch.rand(2, 3, 28, 28), max_gib=1e-9)
