"""Threshold calibration (evals/calibrate.py) against brute-force references written from the definitions."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from common.errors import UserError
from evals.calibrate import (Calibration, StoredCalibration, ViewSettings, anomaly_scores, calibrate,
                             calibration_path, decisions, f1_threshold, flag, load_calibration, recall_threshold,
                             robust_scale, save_calibration, weights_fingerprint)
from evals.csi_score import CSIScorer
from evals.features import Features


def labelled(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scores (normal higher on average) and 0/1 labels; ``ties`` rounds scores so many coincide."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    y[:2] = [0, 1]
    s = rng.normal(size=n) - 1.2 * y
    return (np.round(s, 1) if ties else s), y


def brute_recall_threshold(normal: np.ndarray, r: float) -> float:
    """The largest candidate τ (a normal score) whose kept fraction mean(normal >= τ) reaches r."""
    return max(t for t in normal if np.mean(normal >= t) >= r - 1e-12)


@pytest.mark.parametrize("n", [1, 7, 20, 101])
@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_recall_threshold_reaches_the_target_and_is_the_highest_that_does(n, target, ties):
    normal = np.random.default_rng(n).normal(size=n)
    normal = np.round(normal, 1) if ties else normal
    tau = recall_threshold(normal, target)
    assert np.mean(normal >= tau) >= target
    assert not np.any([np.mean(normal >= t) >= target for t in normal[normal > tau]])
    assert tau == brute_recall_threshold(normal, target)


def test_recall_threshold_keeps_exactly_nineteen_of_twenty_at_95_percent():
    normal = np.arange(20, dtype=np.float64)
    assert recall_threshold(normal, 0.95) == 1.0  # keeps 1..19, flags 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_f1_threshold_matches_an_exhaustive_search(seed, ties):
    s, y = labelled(40, seed, ties)
    candidates = sorted(set(s.tolist())) + [math.inf]  # "score < τ" for every distinct cut
    f1s = [f1_score(y, (s < t).astype(int), zero_division=0) for t in candidates]
    best = max(f1s)
    tau = f1_threshold(s, y)
    assert f1_score(y, flag(s, tau)) == pytest.approx(best)
    first_best = candidates[next(i for i, f in enumerate(f1s) if f == pytest.approx(best))]
    assert np.array_equal(flag(s, tau), flag(s, first_best))  # the cut flagging the fewest images


def test_f1_threshold_can_flag_everything():
    s, y = np.array([0.0, 1.0, 2.0]), np.array([1, 1, 1])
    s, y = np.append(s, 3.0), np.append(y, 0)  # the one normal scores highest: flag the three below it
    assert flag(s, f1_threshold(s, y)).tolist() == [1, 1, 1, 0]
    s2, y2 = np.array([0.0, 1.0]), np.array([0, 1])  # reversed: best F1 flags both
    assert flag(s2, f1_threshold(s2, y2)).tolist() == [1, 1]


def test_robust_scale_is_iqr_over_1349_with_fallbacks():
    x = np.random.default_rng(0).normal(size=50)
    q25, q75 = np.percentile(x, [25, 75])
    assert robust_scale(x) == pytest.approx((q75 - q25) / 1.349)
    spiky = np.array([0.0] * 7 + [8.0])  # IQR 0 -> std
    assert robust_scale(spiky) == pytest.approx(np.std(spiky))
    assert robust_scale(np.full(4, 3.0)) == 1.0


def test_anomaly_score_is_positive_exactly_when_flagged():
    s = np.array([-2.0, 0.5, 1.0, 1.0 + 1e-12, 4.0])
    a = anomaly_scores(s, threshold=1.0, scale=0.5)
    np.testing.assert_allclose(a, [(1.0 - v) / 0.5 for v in s])
    assert ((a > 0).astype(int) == flag(s, 1.0)).all() and flag(s, 1.0).tolist() == [1, 1, 0, 0, 0]


def test_decisions_match_a_per_image_count():
    s, y = labelled(30, seed=3)
    tau = 0.1
    tp = fp = tn = fn = 0
    for score, label in zip(s, y):
        flagged = score < tau
        tp, fp = tp + (flagged and label == 1), fp + (flagged and label == 0)
        tn, fn = tn + (not flagged and label == 0), fn + (not flagged and label == 1)
    d = decisions(s, y, tau)
    assert d.accuracy == pytest.approx((tp + tn) / 30)
    assert d.sensitivity == pytest.approx(tp / (tp + fn)) and d.specificity == pytest.approx(tn / (tn + fp))
    assert d.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn)) and d.n_flagged == tp + fp
    only_normal = decisions(s[y == 0], y[y == 0], tau)
    assert only_normal.sensitivity is None and only_normal.specificity == pytest.approx(tn / (tn + fp))


def test_calibrate_uses_the_requested_rule_and_records_both():
    s, y = labelled(60, seed=5)
    for rule in ("recall", "f1"):
        cal = calibrate(s, y, rule=rule, target_normal_recall=0.9)
        assert cal.rule == cal.requested_rule == rule and cal.note == ""
        assert cal.threshold == cal.thresholds[rule] and cal.val.threshold == cal.threshold
    assert calibrate(s, y, "recall", 0.9).thresholds == {"recall": recall_threshold(s[y == 0], 0.9),
                                                         "f1": f1_threshold(s, y)}
    assert calibrate(s, y).scale == pytest.approx(robust_scale(s[y == 0]))


def test_f1_without_anomalous_validation_falls_back_to_recall():
    s = np.random.default_rng(1).normal(size=25)
    cal = calibrate(s, np.zeros(25, dtype=int), rule="f1", target_normal_recall=0.8)
    assert (cal.rule, cal.requested_rule, cal.thresholds["f1"]) == ("recall", "f1", None)
    assert cal.threshold == recall_threshold(s, 0.8) and "no anomalous" in cal.note
    assert np.mean(s >= cal.threshold) >= 0.8


def test_calibrate_without_normal_images_is_a_user_error():
    with pytest.raises(UserError, match="no normal images"):
        calibrate(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(UserError, match="--threshold_rule"):
        calibrate(np.array([0.1, 0.2]), np.array([0, 1]), rule="youden")


def test_calibration_dict_round_trip():
    s, y = labelled(30, seed=2)
    cal = calibrate(s, y, "f1")
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_fingerprint_sees_any_weight_change():
    state = {"w": torch.randn(3, 4), "n": torch.tensor(7), "h": torch.randn(2, dtype=torch.bfloat16)}
    base = weights_fingerprint(state)
    assert weights_fingerprint({k: v.clone() for k, v in state.items()}) == base
    for key in state:
        changed = dict(state)
        changed[key] = state[key].clone().reshape(-1)
        changed[key][0] += 1
        assert weights_fingerprint({**changed, key: changed[key].reshape(state[key].shape)}) != base


def test_stored_calibration_round_trip_rebuilds_the_scorer(tmp_path):
    gen = torch.Generator().manual_seed(0)
    bank = Features(torch.randn(12, 4, 8, generator=gen), torch.randn(12, 4, 4, generator=gen) + 3)
    test = Features(torch.randn(5, 4, 8, generator=gen), torch.randn(5, 4, 4, generator=gen))
    scorer = CSIScorer().fit(bank)
    s, y = labelled(20, seed=4)
    weights = {"w": torch.randn(3)}
    stored = StoredCalibration(
        scorer_state=dict(scorer.state_dict()), score_kind="CSI",
        views=ViewSettings("rotation", 4, 2, (0.54, 0.54), 1, 8, 16), calibration=calibrate(s, y),
        val_scores=torch.from_numpy(s), val_is_anomaly=torch.from_numpy(y), fingerprint=weights_fingerprint(weights))
    ckpt = tmp_path / "best.pt"
    save_calibration(calibration_path(ckpt), stored)
    assert calibration_path(ckpt).name == "best.calib.pt"
    loaded = load_calibration(ckpt, weights)
    assert loaded.views == stored.views and loaded.calibration == stored.calibration
    torch.testing.assert_close(loaded.scorer().score(test), scorer.score(test), rtol=0, atol=0)
    assert loaded.recalibrated("recall", 0.5).threshold == recall_threshold(s[y == 0], 0.5)
    with pytest.raises(UserError, match="other weights"):
        load_calibration(ckpt, {"w": weights["w"] + 1})
    with pytest.raises(UserError, match="eval.py --mode ood_pre"):
        load_calibration(tmp_path / "last.pt", weights)
