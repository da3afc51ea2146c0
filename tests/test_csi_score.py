"""The CSI score against a slow reference loop; the features it reads.

Feature extraction is tested in tests/test_features.py.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from common.errors import UserError
from common.seed import make_generator
from evals.csi_score import CSIScorer
from evals.features import Features

torch.set_num_threads(1)


def _random_features(n: int, K: int, d: int, seed: int) -> Features:
    g = make_generator(seed)
    logits = torch.randn(n, K, K, generator=g)
    logits[:, torch.arange(K), torch.arange(K)] += 3.0  # positive correct-shift logits, as after training
    return Features(torch.randn(n, K, d, generator=g) * 2.0, logits)


def _reference_terms(train: Features, test: Features) -> tuple[list[float], list[float]]:
    """The CSI score, one image, one shift and one train image at a time, in float64."""
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
