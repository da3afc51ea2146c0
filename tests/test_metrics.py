"""Detection metrics against brute-force references written from the definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from evals import metrics
from evals.metrics import aupr, auroc, bootstrap_ci, fpr_at_tpr, score_quantiles, summarize


def _data(n_normal: int, n_anomalous: int, seed: int, gap: float = 1.0, decimals: int | None = None):
    """Normal scores ~ N(gap, 1) (higher = more normal), anomalies ~ N(0, 1); rounding makes ties."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(gap, 1.0, n_normal), rng.normal(0.0, 1.0, n_anomalous)])
    labels = np.concatenate([np.zeros(n_normal, int), np.ones(n_anomalous, int)])
    order = rng.permutation(scores.size)
    scores = scores if decimals is None else np.round(scores, decimals)
    return scores[order], labels[order]


def _pair_count_auroc(scores, labels) -> float:
    """P(normal score > anomalous score) + ½ P(tie), over every (normal, anomalous) pair."""
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    wins = sum((a < n) + 0.5 * (a == n) for n in normal for a in anomalous)
    return wins / (normal.size * anomalous.size)


def _step_average_precision(scores, labels) -> float:
    """AP = Σ_t (recall_t − recall_{t−1}) · precision_t over decreasing thresholds t on −score."""
    anomaly_score = -scores
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(anomaly_score.tolist()), reverse=True):
        flagged = anomaly_score >= t
        true_pos = int((flagged & (labels == 1)).sum())
        recall = true_pos / int((labels == 1).sum())
        ap += (recall - prev_recall) * true_pos / int(flagged.sum())
        prev_recall = recall
    return ap


def test_auroc_perfect_and_reversed():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([3.0, 2.5, 2.0, 1.0, 0.0])
    assert auroc(scores, labels) == 1.0
    assert auroc(-scores, labels) == 0.0
    assert auroc(torch.tensor(scores), torch.tensor(labels)) == 1.0


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 1), (2, 0)])
def test_auroc_matches_pair_counting(seed, decimals):
    scores, labels = _data(23, 31, seed, decimals=decimals)
    assert auroc(scores, labels) == pytest.approx(_pair_count_auroc(scores, labels), abs=1e-12)


def test_single_class_is_a_clear_value_error():
    with pytest.raises(ValueError, match="both normal and anomalous.*3 normal and 0 anomalous"):
        auroc(np.ones(3), np.zeros(3, int))
    with pytest.raises(ValueError, match="both normal and anomalous"):
        summarize(np.ones(3), np.ones(3, int))


@pytest.mark.parametrize("bad_labels,bad_scores,match", [
    ([0, 1, 2], [0.0, 1.0, 2.0], "only 0"),
    ([0, 1], [0.0, 1.0, 2.0], "equal-length"),
    ([0, 1, 1], [0.0, float("nan"), 2.0], "not finite"),
])
def test_bad_inputs_are_rejected(bad_labels, bad_scores, match):
    with pytest.raises(ValueError, match=match):
        auroc(np.array(bad_scores), np.array(bad_labels))


@pytest.mark.parametrize("seed,decimals", [(3, None), (4, 1)])
def test_aupr_matches_step_average_precision(seed, decimals):
    scores, labels = _data(20, 15, seed, decimals=decimals)
    assert aupr(scores, labels) == pytest.approx(_step_average_precision(scores, labels), abs=1e-12)
    assert aupr(np.array([2.0, 1.0, 0.0]), np.array([0, 1, 1])) == 1.0


def test_fpr_at_tpr_hand_computed():
    normal = np.arange(1.0, 21.0)  # 20 normals scored 1..20
    anomalous = np.array([0.5, 1.5, 2.5, 10.0])
    scores = np.concatenate([normal, anomalous])
    labels = np.array([0] * 20 + [1] * 4)
    # 95 % of 20 normals = 19 accepted -> threshold 2 -> anomalies 2.5 and 10 accepted.
    assert fpr_at_tpr(scores, labels) == 0.5
    # 90 % -> 18 accepted -> threshold 3 -> only 10 accepted.
    assert fpr_at_tpr(scores, labels, tpr=0.9) == 0.25
    # 100 % -> threshold 1 -> 1.5, 2.5, 10 accepted.
    assert fpr_at_tpr(scores, labels, tpr=1.0) == 0.75
    # Ties with the threshold count as accepted.
    assert fpr_at_tpr(np.array([1.0, 1, 1, 1, 1, 0]), np.array([0, 0, 0, 0, 1, 1])) == 0.5


def test_auroc_rows_matches_sklearn_per_row():
    rng = np.random.default_rng(5)
    normal = np.round(rng.normal(0.5, 1, (6, 9)), 1)
    anomalous = np.round(rng.normal(0, 1, (6, 4)), 1)
    expected = [roc_auc_score([1] * 9 + [0] * 4, np.concatenate([n, a])) for n, a in zip(normal, anomalous)]
    np.testing.assert_allclose(metrics._auroc_rows(normal, anomalous), expected, atol=1e-12)


def test_bootstrap_ci_is_the_percentile_interval_of_stratified_replicates():
    scores, labels = _data(15, 10, seed=6, decimals=1)
    low, high = bootstrap_ci(scores, labels, n_boot=200, seed=9, alpha=0.1)
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    rng = np.random.default_rng(9)  # the same draws, one replicate at a time with sklearn
    pick_n = rng.integers(0, normal.size, size=(200, normal.size))
    pick_a = rng.integers(0, anomalous.size, size=(200, anomalous.size))
    aucs = [roc_auc_score([1] * 15 + [0] * 10, np.concatenate([normal[i], anomalous[j]]))
            for i, j in zip(pick_n, pick_a)]
    assert (low, high) == pytest.approx(tuple(np.quantile(aucs, [0.05, 0.95])), abs=1e-12)


def test_bootstrap_ci_contains_the_estimate_narrows_and_is_seeded(monkeypatch):
    small, big = _data(30, 30, seed=7), _data(600, 600, seed=8)
    for scores, labels in (small, big):
        low, high = bootstrap_ci(scores, labels, n_boot=300)
        assert low < auroc(scores, labels) < high
    (low_s, high_s), (low_b, high_b) = (bootstrap_ci(*d, n_boot=300) for d in (small, big))
    assert high_b - low_b < 0.5 * (high_s - low_s)  # 20× the data: about 1/√20 of the width
    assert bootstrap_ci(*small, n_boot=50, seed=1) == bootstrap_ci(*small, n_boot=50, seed=1)
    assert bootstrap_ci(*small, n_boot=50, seed=1) != bootstrap_ci(*small, n_boot=50, seed=2)
    monkeypatch.setattr(metrics, "_BOOT_CELLS", 100)  # forces many blocks of replicates
    low, high = bootstrap_ci(*small, n_boot=50)
    assert low < auroc(*small) < high


def test_summarize_collects_the_metrics():
    scores, labels = _data(40, 25, seed=10)
    result = summarize(scores, labels, n_boot=100, seed=3)
    assert result.auroc == auroc(scores, labels)
    assert result.aupr == aupr(scores, labels)
    assert result.fpr95 == fpr_at_tpr(scores, labels, 0.95)
    assert (result.auroc_ci_low, result.auroc_ci_high) == bootstrap_ci(scores, labels, 100, 3)
    assert (result.n_normal, result.n_anomalous) == (40, 25)
    assert set(result.to_dict()) == {
        "auroc", "aupr", "fpr95", "auroc_ci_low", "auroc_ci_high", "n_normal", "n_anomalous"}


def test_score_quantiles_per_group():
    scores, labels = _data(21, 11, seed=11)
    q = score_quantiles(scores, labels)
    for name, label in (("normal", 0), ("anomalous", 1)):
        group = np.sort(scores[labels == label])
        assert q[name]["count"] == group.size
        assert q[name]["mean"] == pytest.approx(group.mean())
        assert q[name]["deciles"][0] == group[0] and q[name]["deciles"][-1] == group[-1]
        assert q[name]["deciles"][5] == pytest.approx(np.median(group))
        assert len(q[name]["deciles"]) == 11
    only_normal = score_quantiles(np.arange(3.0), np.zeros(3, int))
    assert only_normal["anomalous"] == {"count": 0, "mean": None, "std": None, "deciles": []}
