"""CSI score and test-time feature extraction (METHOD.md §4) against slow references.

The extraction tests use stand-ins defined here (a rotation-only
``training.shifts``, a tiny model, a random augmentation), so they do not
depend on the other packages; one layout test also runs against the real
``training.shifts`` when it exists.
"""
from __future__ import annotations

import io
import math
import random
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import UserError
from common.seed import make_generator
from evals.csi_score import CSIScorer
from evals.features import Features, extract_features, shift_views

torch.set_num_threads(1)


# --------------------------------------------------------------------------- CSI score


def _random_features(n: int, K: int, d: int, seed: int) -> Features:
    g = make_generator(seed)
    logits = torch.randn(n, K, K, generator=g)
    logits[:, torch.arange(K), torch.arange(K)] += 3.0  # positive correct-shift logits, as after training
    return Features(torch.randn(n, K, d, generator=g) * 2.0, logits)


def _reference_terms(train: Features, test: Features) -> tuple[list[float], list[float]]:
    """METHOD.md §4, one image, one shift and one train image at a time, in float64."""
    K = train.K
    ztr, gtr = train.projection.double().tolist(), train.shift_logits.double().tolist()
    zte, gte = test.projection.double().tolist(), test.shift_logits.double().tolist()
    lam_sim, lam_shi, dirs = [], [], []
    for k in range(K):
        norms = [math.sqrt(sum(v * v for v in ztr[m][k])) for m in range(train.n)]
        lam_sim.append(1.0 / (sum(norms) / train.n))
        lam_shi.append(1.0 / (sum(gtr[m][k][k] for m in range(train.n)) / train.n))
        dirs.append([[v / (norms[m] + 1e-8) for v in ztr[m][k]] for m in range(train.n)])
    sims, shifts = [], []
    for i in range(test.n):
        sim = shift = 0.0
        for k in range(K):
            best = max(sum(a * b for a, b in zip(zte[i][k], dirs[k][m])) for m in range(train.n))
            sim += lam_sim[k] * best / K
            shift += lam_shi[k] * gte[i][k][k] / K
        sims.append(sim)
        shifts.append(shift)
    return sims, shifts


SHAPES = [  # (K, d, M, n, chunk): chunks smaller than both n and M, and one chunk for all
    (1, 5, 7, 9, 2),
    (4, 8, 30, 20, 3),
    (3, 16, 13, 11, 1024),
]


@pytest.mark.parametrize("K,d,M,n,chunk", SHAPES)
@pytest.mark.parametrize("kind", ["CSI", "simclr", "shift"])
def test_score_matches_reference_loop(kind, K, d, M, n, chunk):
    train, test = _random_features(M, K, d, seed=1), _random_features(n, K, d, seed=2)
    sims, shifts = _reference_terms(train, test)
    keep_sim, keep_shift = kind in ("CSI", "simclr"), kind in ("CSI", "shift")
    expected = [s * keep_sim + t * keep_shift for s, t in zip(sims, shifts)]
    scorer = CSIScorer(kind, chunk_size=chunk).fit(train)
    got = scorer.score(test)
    assert got.shape == (n,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    sim, shift = scorer.score_terms(test)
    np.testing.assert_allclose(sim.numpy(), sims, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shift.numpy(), shifts, rtol=1e-5, atol=1e-5)


def test_fitted_buffers_are_the_training_statistics():
    train = _random_features(17, 4, 6, seed=3)
    scorer = CSIScorer().fit(train)
    for k in range(4):
        z = train.projection[:, k].double()
        mean_norm = sum(float(row.norm()) for row in z) / len(z)
        mean_logit = sum(float(train.shift_logits[m, k, k]) for m in range(train.n)) / train.n
        assert float(scorer.lambda_sim[k]) == pytest.approx(1.0 / mean_norm, rel=1e-5)
        assert float(scorer.lambda_shift[k]) == pytest.approx(1.0 / mean_logit, rel=1e-5)
        for m in range(train.n):
            torch.testing.assert_close(scorer.directions[k, m].double(), z[m] / (z[m].norm() + 1e-8))
    assert scorer.directions.shape == (4, 17, 6)


def test_state_dict_round_trip_gives_identical_scores():
    train, test = _random_features(25, 4, 8, seed=4), _random_features(12, 4, 8, seed=5)
    scorer = CSIScorer("CSI", chunk_size=4).fit(train)
    assert set(scorer.state_dict()) == {"directions", "lambda_sim", "lambda_shift"}
    buffer = io.BytesIO()
    torch.save(scorer.state_dict(), buffer)
    buffer.seek(0)
    loaded = CSIScorer.from_state_dict(torch.load(buffer, weights_only=True), chunk_size=5)
    assert torch.equal(loaded.score(test), scorer.score(test))
    shift_only = CSIScorer.from_state_dict(scorer.state_dict(), score="shift")
    assert torch.equal(shift_only.score(test), scorer.score_terms(test)[1])


def test_from_state_dict_without_buffers_is_a_user_error():
    with pytest.raises(UserError, match="no fitted CSI scorer"):
        CSIScorer.from_state_dict({"lambda_sim": torch.ones(4)})


def test_score_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        CSIScorer().score(_random_features(3, 4, 8, seed=0))


def test_unknown_score_kind_lists_the_valid_names():
    with pytest.raises(UserError, match="CSI.*shift.*simclr"):
        CSIScorer("mahalanobis")


def test_mismatched_features_are_rejected():
    scorer = CSIScorer().fit(_random_features(5, 4, 8, seed=0))
    with pytest.raises(ValueError, match="K=4, d=8"):
        scorer.score(_random_features(5, 4, 6, seed=1))


def test_images_near_the_bank_score_higher():
    """Sign convention: higher = more normal."""
    g = make_generator(7)
    centre = torch.randn(4, 16, generator=g)
    bank, near_bank = (centre + 0.1 * torch.randn(n, 4, 16, generator=g) for n in (10, 6))
    logits = torch.eye(4).expand(10, 4, 4) * 5.0
    scorer = CSIScorer().fit(Features(bank, logits))
    near = scorer.score(Features(near_bank, logits[:6]))
    far = scorer.score(Features(-near_bank, torch.zeros(6, 4, 4)))
    assert near.min() > far.max()


def test_features_round_trip_and_validation():
    feats = _random_features(6, 4, 3, seed=0)
    back = Features.from_dict(feats.to_dict())
    assert torch.equal(back.projection, feats.projection)
    assert torch.equal(back.shift_logits, feats.shift_logits)
    assert (back.n, back.K) == (6, 4)
    with pytest.raises(ValueError, match=r"\(n, K, K\)"):
        Features(torch.zeros(6, 4, 3), torch.zeros(6, 4, 3))
    with pytest.raises(ValueError, match="missing"):
        Features.from_dict({"projection": feats.projection})


# --------------------------------------------------------------------------- stand-ins


def _stack_rotations(x: torch.Tensor, kind: str, K: int = 4) -> torch.Tensor:
    """Stand-in for training.shifts.stack_shifts: k-major rotations by k·90°."""
    assert kind == "rotation"
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(K)])


@pytest.fixture
def standin_shifts(monkeypatch):
    module = types.ModuleType("training.shifts")
    module.stack_shifts = _stack_rotations
    module.apply_shift = lambda x, k, kind: _stack_rotations(x, kind, k + 1)[k * x.shape[0]:]
    monkeypatch.setitem(sys.modules, "training.shifts", module)
    return module


@pytest.fixture(params=["stand-in", "real"])
def shifts_module(request, monkeypatch):
    if request.param == "real":
        return pytest.importorskip("training.shifts", reason="training.shifts is not written yet")
    return request.getfixturevalue("standin_shifts")


@dataclass(frozen=True)
class _Out:
    features: torch.Tensor
    projection: torch.Tensor
    shift_logits: torch.Tensor


class _TinyEncoder(nn.Module):
    """Conv + BN + two linear heads; records its mode and inference state per call."""

    def __init__(self, d: int = 5, K: int = 4) -> None:
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


class _RandomAugment:
    """Per-sample random brightness from the generator; remembers what it returned."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, views: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = 0.5 + torch.rand(views.shape[0], 1, 1, 1, generator=generator)
        self.outputs.append((views * scale).clone())
        return self.outputs[-1]


def _batches(n: int, batch: int, size: int = 8, seed: int = 0) -> list:
    images = torch.rand(n, 3, size, size, generator=make_generator(seed))
    return [(images[i : i + batch], torch.zeros(len(images[i : i + batch]))) for i in range(0, n, batch)]


def _extract(model, loader, seed=0, n_samples=3, augment=None, **kwargs) -> Features:
    return extract_features(
        model, loader, shift_kind="rotation", K=4, n_samples=n_samples,
        augment=augment or _RandomAugment(), generator=make_generator(seed),
        device="cpu", progress=False, **kwargs,
    )


# --------------------------------------------------------------------------- extraction


def test_shift_views_layout_and_fresh_flip_per_shift(shifts_module):
    x = torch.rand(64, 3, 6, 6, generator=make_generator(1))
    views = shift_views(x, "rotation", 4, make_generator(2))
    assert views.shape == (4 * 64, 3, 6, 6)
    plain = shifts_module.stack_shifts(x, "rotation", 4)
    flipped = shifts_module.stack_shifts(x.flip(-1), "rotation", 4)
    is_plain = (views == plain).flatten(1).all(1)
    is_flipped = (views == flipped).flatten(1).all(1)
    assert bool((is_plain | is_flipped).all()), "row k·B+i must be image i, maybe flipped, under shift k"
    assert 0.3 < is_flipped.float().mean() < 0.7
    per_image = is_flipped.view(4, 64)
    assert bool((per_image != per_image[:1]).any(0).any()), "flips must be drawn afresh per shift"


def test_extract_features_is_the_per_image_sample_mean(standin_shifts):
    model, augment = _TinyEncoder(), _RandomAugment()
    loader = _batches(7, batch=3)
    feats = _extract(model, loader, n_samples=3, augment=augment)
    assert feats.projection.shape == (7, 4, 5) and feats.shift_logits.shape == (7, 4, 4)
    assert feats.projection.dtype == torch.float32 and feats.projection.device.type == "cpu"
    model.eval()
    row = 0
    for b, (x, _) in enumerate(loader):
        seen = augment.outputs[3 * b : 3 * b + 3]  # the 3 samples of batch b, (4·B, 3, H, W) each
        for i in range(len(x)):
            for k in range(4):
                with torch.no_grad():  # the recorded views are inference tensors
                    outs = [model(view[k * len(x) + i : k * len(x) + i + 1]) for view in seen]
                proj = sum(o.projection[0] for o in outs) / 3
                logits = sum(o.shift_logits[0] for o in outs) / 3
                torch.testing.assert_close(feats.projection[row + i, k], proj, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(feats.shift_logits[row + i, k], logits, rtol=1e-5, atol=1e-5)
        row += len(x)


def test_extract_features_is_seeded_and_leaves_global_rng_alone(standin_shifts):
    model, loader = _TinyEncoder(), _batches(5, batch=2)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first, second = _extract(model, loader, seed=3), _extract(model, loader, seed=3)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    assert torch.equal(first.projection, second.projection)
    assert torch.equal(first.shift_logits, second.shift_logits)
    other = _extract(model, loader, seed=4)
    assert not torch.allclose(first.projection, other.projection)


def test_extract_features_uses_eval_inference_mode_and_restores_training(standin_shifts):
    model = _TinyEncoder()
    model.train()
    _extract(model, _batches(4, batch=2), n_samples=2)
    assert model.calls == [(False, True)] * 4
    assert model.training


def test_extract_features_bf16_autocast_is_close(standin_shifts):
    model, loader = _TinyEncoder(), _batches(4, batch=4)
    full = _extract(model, loader, n_samples=1)
    half = _extract(model, loader, n_samples=1, amp=True)
    assert half.projection.dtype == torch.float32
    torch.testing.assert_close(half.projection, full.projection, rtol=0.05, atol=0.1)


def test_extract_features_rejects_empty_loader_and_zero_samples(standin_shifts):
    with pytest.raises(UserError, match="no images"):
        _extract(_TinyEncoder(), [])
    with pytest.raises(UserError, match="--ood_samples"):
        _extract(_TinyEncoder(), _batches(2, 2), n_samples=0)
