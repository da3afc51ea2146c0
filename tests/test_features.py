"""Test-time feature extraction and the per-image view streams behind it.

The contract: an image's features are a pure function of (model, image, seed, key). The tests
check the vectorised extraction against a slow loop over one image at a time, then that batch
size, batch position, order, neighbours and sharding change nothing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from common.augment import SimCLRAugment
from common.errors import UserError
from common.seed import make_generator
from common.shifts import apply_shift, stack_shifts
from datasets import FileImageDataset, TensorImageDataset
from evals.features import VIEW_PARAMS, Features, draw_view_params, extract_features, shift_views
from evals.pipeline import eval_loader, features_of
from evals.view_keys import KeyedImages, file_key, stream_seed, view_generator

torch.set_num_threads(1)
N_SAMPLES, K, SIZE = 3, 4, 8


@dataclass(frozen=True)
class _Out:
    features: torch.Tensor
    projection: torch.Tensor
    shift_logits: torch.Tensor


class _TinyEncoder(nn.Module):
    """Conv + BN + two linear heads; records its mode and inference state per call."""

    def __init__(self, d: int = 5) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.proj, self.shift = nn.Linear(6, d), nn.Linear(6, K)
        g = make_generator(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> _Out:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        h = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return _Out(h, self.proj(h), self.shift(h))


class _Recording:
    """The real augmentation, remembering every batch of views it returned."""

    def __init__(self) -> None:
        self.augment, self.outputs = SimCLRAugment(crop_scale=(0.3, 1.0)), []

    def __call__(self, views: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        self.outputs.append(self.augment(views, params=params).clone())
        return self.outputs[-1]


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=make_generator(seed))


def _batches(images: torch.Tensor, keys: torch.Tensor, batch: int) -> list:
    return [(images[i : i + batch], keys[i : i + batch]) for i in range(0, len(images), batch)]


def _extract(model, loader, seed=0, n_samples=N_SAMPLES, augment=None, **kwargs) -> Features:
    return extract_features(model, loader, shift_kind="rotation", K=K, n_samples=n_samples,
                            augment=augment or SimCLRAugment(crop_scale=(0.3, 1.0)), seed=seed, device="cpu",
                            progress=False, **kwargs)


def _one_image_reference(model, x: torch.Tensor, key: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test-time views of one image (3, H, W), one view at a time: its generator's (n_samples, K, 11) draw
    gives each view's flip coin and augmentation -> the sample means (K, d) and (K, K)."""
    augment = SimCLRAugment(crop_scale=(0.3, 1.0))
    u = torch.rand(N_SAMPLES, K, VIEW_PARAMS, generator=view_generator(seed, key))
    proj, logits = [], []
    for k in range(K):
        outs = []
        for s in range(N_SAMPLES):
            view = x.flip(-1) if u[s, k, 0] < 0.5 else x
            view = augment(apply_shift(view[None], k, "rotation"), params=u[s, k, 1:][None])
            with torch.no_grad():
                outs.append(model(view))
        proj.append(sum(o.projection[0] for o in outs) / N_SAMPLES)
        logits.append(sum(o.shift_logits[0] for o in outs) / N_SAMPLES)
    return torch.stack(proj), torch.stack(logits)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- view streams


def test_shift_views_layout_and_one_flip_per_view():
    x = torch.rand(16, 3, 6, 6, generator=make_generator(1))
    flip = torch.rand(16, K, generator=make_generator(2)) < 0.5
    views = shift_views(x, "rotation", K, flip)
    assert views.shape == (K * 16, 3, 6, 6)
    for k in range(K):
        for i in range(16):
            expected = apply_shift((x[i].flip(-1) if flip[i, k] else x[i])[None], k, "rotation")[0]
            assert torch.equal(views[k * 16 + i], expected), "row k·B+i is image i, flipped where flip[i, k]"
    assert torch.equal(shift_views(x, "rotation", K, torch.zeros(16, K, dtype=torch.bool)),
                       stack_shifts(x, "rotation", K))


def test_view_params_are_a_pure_function_of_seed_and_key():
    keys = torch.tensor([5, 0, 2**62 + 7])
    params = draw_view_params(keys, seed=3, n_samples=N_SAMPLES, K=K)
    assert params.shape == (3, N_SAMPLES, K, VIEW_PARAMS) and params.dtype == torch.float32
    assert 0 <= params.min() and params.max() < 1
    alone = [draw_view_params(keys[i : i + 1], seed=3, n_samples=N_SAMPLES, K=K)[0] for i in range(3)]
    assert all(torch.equal(params[i], alone[i]) for i in range(3))
    assert torch.equal(draw_view_params(keys.flip(0), 3, N_SAMPLES, K), params.flip(0))
    assert not torch.equal(draw_view_params(keys, 4, N_SAMPLES, K), params)


def test_streams_are_mixed_not_added():
    """With seed + key, image 1 of seed s would replay image 0 of seed s + 1."""
    assert stream_seed(0, 1) != stream_seed(1, 0)
    assert len({stream_seed(s, k) for s in range(5) for k in range(5)}) == 25
    assert stream_seed(-1, 3) == stream_seed(-1, 3)


def _write_png(path: Path, seed: int, size: int = SIZE) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_file_key_is_the_content_not_the_name(tmp_path):
    a, b = _write_png(tmp_path / "a.png", 0), _write_png(tmp_path / "b.png", 1)
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    copy.write_bytes(a.read_bytes())
    assert file_key(a) == file_key(copy) != file_key(b)
    assert 0 <= file_key(a) < 2**63
    a.write_bytes(b.read_bytes() + b"\0")  # rewritten in place: a new key
    assert file_key(a) not in (file_key(copy), file_key(b))


def test_keyed_images_key_files_by_content_and_memory_by_index(tmp_path):
    files = [_write_png(tmp_path / f"{i}.png", i) for i in range(4)]
    on_disk = KeyedImages(FileImageDataset(files, [0, 1, 0, 1], SIZE), indices=[3, 1])
    assert len(on_disk) == 2 and on_disk[0][1] == file_key(files[3]) and on_disk[1][1] == file_key(files[1])
    image, _ = on_disk[0]
    assert image.shape == (3, SIZE, SIZE)
    in_memory = KeyedImages(TensorImageDataset(torch.zeros(4, 1, SIZE, SIZE, dtype=torch.uint8), [0, 0, 1, 1]))
    assert [key for _, key in in_memory] == [0, 1, 2, 3]


# --------------------------------------------------------------------------- extraction


def test_extract_features_matches_a_slow_loop_over_single_views():
    model, images, keys = _TinyEncoder(), _images(5), torch.tensor([9, 3, 11, 0, 2**40])
    feats = _extract(model, _batches(images, keys, batch=2), seed=7)
    assert feats.projection.shape == (5, K, 5) and feats.shift_logits.shape == (5, K, K)
    assert feats.projection.dtype == torch.float32 and feats.projection.device.type == "cpu"
    model.eval()
    for i in range(5):
        proj, logits = _one_image_reference(model, images[i], int(keys[i]), seed=7)
        _close(feats.projection[i], proj)
        _close(feats.shift_logits[i], logits)


def test_extract_features_is_the_per_image_mean_of_the_views_it_made():
    model, augment = _TinyEncoder(), _Recording()
    images = _images(7)
    loader = _batches(images, torch.arange(7), batch=3)
    feats = _extract(model, loader, augment=augment)
    model.eval()
    row = 0
    for b, (x, _) in enumerate(loader):
        seen = augment.outputs[N_SAMPLES * b : N_SAMPLES * (b + 1)]  # (K·B, 3, H, W) per sample
        for i in range(len(x)):
            for k in range(K):
                with torch.no_grad():  # the recorded views are inference tensors
                    outs = [model(view[k * len(x) + i : k * len(x) + i + 1]) for view in seen]
                _close(feats.projection[row + i, k], sum(o.projection[0] for o in outs) / N_SAMPLES)
                _close(feats.shift_logits[row + i, k], sum(o.shift_logits[0] for o in outs) / N_SAMPLES)
        row += len(x)


def test_features_do_not_depend_on_batch_size_order_or_neighbours():
    model, images, keys = _TinyEncoder(), _images(7), torch.arange(100, 107)
    reference = _extract(model, _batches(images, keys, batch=3))
    perm = torch.randperm(7, generator=make_generator(5))
    for loader, rows in ((_batches(images, keys, batch=7), torch.arange(7)),
                         (_batches(images, keys, batch=1), torch.arange(7)),
                         (_batches(images[perm], keys[perm], batch=2), perm),
                         ([(images[[5]], keys[[5]]), (images[[2]], keys[[2]])], torch.tensor([5, 2]))):
        feats = _extract(model, loader)
        _close(feats.projection, reference.projection[rows])
        _close(feats.shift_logits, reference.shift_logits[rows])


def test_features_of_is_batch_size_free_and_shards_match_the_whole(tmp_path):
    model = _TinyEncoder()
    kwargs = dict(shift_kind="rotation", n_shifts=K, n_samples=2, crop_scale=(0.54, 0.54), seed=1,
                  device=torch.device("cpu"))
    memory = TensorImageDataset(torch.randint(0, 256, (6, 3, SIZE, SIZE), dtype=torch.uint8), np.zeros(6))
    whole = features_of(model, memory, batch_size=4, **kwargs)
    _close(features_of(model, memory, batch_size=1, **kwargs).projection, whole.projection)
    shard = eval_loader(KeyedImages(memory, indices=[3, 4, 5]), batch_size=2)  # torchrun rank 1 of 2
    part = extract_features(model, shard, shift_kind="rotation", K=K, n_samples=2, seed=1, device="cpu",
                            augment=SimCLRAugment(crop_scale=(0.54, 0.54)), progress=False)
    _close(part.projection, whole.projection[3:])
    files = FileImageDataset([_write_png(tmp_path / f"{i}.png", i) for i in range(5)], np.zeros(5), SIZE)
    on_disk = features_of(model, files, batch_size=2, **kwargs)
    reordered = features_of(model, files.subset([4, 0, 2]), batch_size=3, **kwargs)
    _close(reordered.projection, on_disk.projection[[4, 0, 2]])


def test_extract_features_is_seeded_and_leaves_global_rng_alone():
    model, loader = _TinyEncoder(), _batches(_images(5), torch.arange(5), batch=2)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first, second = _extract(model, loader, seed=3), _extract(model, loader, seed=3)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    assert torch.equal(first.projection, second.projection)
    assert torch.equal(first.shift_logits, second.shift_logits)
    assert not torch.allclose(first.projection, _extract(model, loader, seed=4).projection)


def test_extract_features_uses_eval_inference_mode_and_restores_training():
    model = _TinyEncoder()
    model.train()
    _extract(model, _batches(_images(4), torch.arange(4), batch=2), n_samples=2)
    assert model.calls == [(False, True)] * 4
    assert model.training


def test_extract_features_bf16_autocast_is_close():
    model, loader = _TinyEncoder(), _batches(_images(4), torch.arange(4), batch=4)
    full = _extract(model, loader, n_samples=1)
    half = _extract(model, loader, n_samples=1, amp=True)
    assert half.projection.dtype == torch.float32
    torch.testing.assert_close(half.projection, full.projection, rtol=0.05, atol=0.1)


def test_extract_features_rejects_empty_loader_and_zero_samples():
    with pytest.raises(UserError, match="no images"):
        _extract(_TinyEncoder(), [])
    with pytest.raises(UserError, match="--ood_samples"):
        _extract(_TinyEncoder(), _batches(_images(2), torch.arange(2), batch=2), n_samples=0)
