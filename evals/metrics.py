"""Detection metrics for CSI scores.

Conventions, fixed for the whole project:
- ``scores``: (n,) float, **higher = more normal** (the CSI score).
- ``is_anomaly``: (n,) int, 1 for anomalous and 0 for normal test images.
- AUROC takes the normal images as positives, as upstream does;
  AUPR takes the anomalies as positives, the
  usual choice when the anomalies are the class one searches for.
Test labels enter the pipeline here and nowhere earlier.
Bad inputs are programming errors, not user input, so they raise ``ValueError``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

_BOOT_CELLS = 4_000_000  # resampled scores ranked at once by the bootstrap, to bound memory
_DECILES = np.linspace(0.0, 1.0, 11)


def _as_arrays(
    scores: Any, is_anomaly: Any, *, both_classes: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) float64 scores and (n,) int64 labels, checked; accepts tensors and arrays.

    A detection metric needs both classes, hence ``both_classes``."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly).astype(np.int64)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and is_anomaly must be equal-length 1-D, got {s.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("is_anomaly must hold only 0 (normal) and 1 (anomalous)")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite")
    n_anomalous = int(y.sum())
    if both_classes and not 0 < n_anomalous < y.size:
        raise ValueError(
            f"need both normal and anomalous images, got {y.size - n_anomalous} normal and "
            f"{n_anomalous} anomalous"
        )
    return s, y


def _split(scores: Any, is_anomaly: Any) -> tuple[np.ndarray, np.ndarray]:
    """Normal and anomalous scores, both non-empty."""
    s, y = _as_arrays(scores, is_anomaly)
    return s[y == 0], s[y == 1]


def auroc(scores: Any, is_anomaly: Any) -> float:
    """Area under the ROC curve with normal images as positives: 1 when every normal
    image scores above every anomaly, 0 when the ranking is reversed, 0.5 for chance."""
    s, y = _as_arrays(scores, is_anomaly)
    return float(roc_auc_score(1 - y, s))


def aupr(scores: Any, is_anomaly: Any) -> float:
    """Average precision with anomalies as positives, ranked by −score (most anomalous first)."""
    s, y = _as_arrays(scores, is_anomaly)
    return float(average_precision_score(y, -s))


def fpr_at_tpr(scores: Any, is_anomaly: Any, tpr: float = 0.95) -> float:
    """False-positive rate at a true-positive rate of ``tpr``, normals being the positives.

    An image is accepted as normal when its score is at least a threshold τ. τ is
    the highest threshold that accepts at least ``tpr`` of the normal images
    (the ⌈tpr·n_normal⌉-th highest normal score); the result is the fraction of
    anomalies that τ also accepts. This is the "FPR at 95 % TPR" of the OOD
    literature, with in-distribution = normal. Lower is better.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    normal, anomalous = _split(scores, is_anomaly)
    n_accept = max(1, math.ceil(tpr * normal.size - 1e-9))  # tolerate 0.95·20 = 19.000…01
    threshold = np.sort(normal)[::-1][n_accept - 1]
    return float(np.mean(anomalous >= threshold))


def _auroc_rows(normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Row-wise AUROC of (R, p) normal against (R, q) anomalous scores -> (R,).

    Mann–Whitney U from average ranks: equal to roc_auc_score with ties counted 1/2.
    """
    p = normal.shape[1]
    ranks = rankdata(np.concatenate([normal, anomalous], axis=1), axis=1)
    u = ranks[:, :p].sum(axis=1) - p * (p + 1) / 2.0
    return u / (p * anomalous.shape[1])


def bootstrap_ci(
    scores: Any, is_anomaly: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval (1 − alpha) of the AUROC.

    Resampling is stratified: each replicate draws n_normal normal and
    n_anomalous anomalous scores with replacement, so every replicate keeps the
    test set's class balance and has both classes. Uses its own
    ``numpy.random.Generator(seed)``; replicates are ranked in blocks.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    normal, anomalous = _split(scores, is_anomaly)
    rng = np.random.default_rng(seed)
    block = max(1, _BOOT_CELLS // (normal.size + anomalous.size))
    aucs = []
    for start in range(0, n_boot, block):
        reps = min(block, n_boot - start)
        pick_n = rng.integers(0, normal.size, size=(reps, normal.size))
        pick_a = rng.integers(0, anomalous.size, size=(reps, anomalous.size))
        aucs.append(_auroc_rows(normal[pick_n], anomalous[pick_a]))
    low, high = np.quantile(np.concatenate(aucs), [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


@dataclass(frozen=True)
class Metrics:
    """Detection metrics of one test set; see the module docstring for the conventions."""

    auroc: float
    aupr: float
    fpr95: float
    auroc_ci_low: float
    auroc_ci_high: float
    n_normal: int
    n_anomalous: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(scores: Any, is_anomaly: Any, n_boot: int = 1000, seed: int = 0) -> Metrics:
    """All metrics of one test set, with a 95 % bootstrap interval of the AUROC."""
    normal, anomalous = _split(scores, is_anomaly)
    low, high = bootstrap_ci(scores, is_anomaly, n_boot=n_boot, seed=seed)
    return Metrics(
        auroc=auroc(scores, is_anomaly),
        aupr=aupr(scores, is_anomaly),
        fpr95=fpr_at_tpr(scores, is_anomaly, tpr=0.95),
        auroc_ci_low=low,
        auroc_ci_high=high,
        n_normal=int(normal.size),
        n_anomalous=int(anomalous.size),
    )


def _describe(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0, "mean": None, "std": None, "deciles": []}
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "deciles": [float(q) for q in np.quantile(values, _DECILES)],
    }


def score_quantiles(scores: Any, is_anomaly: Any) -> dict[str, dict[str, Any]]:
    """Count, mean, std and the 11 deciles (min, 10 %, …, max) of the normal and the
    anomalous scores, as upstream's ``--print_score`` shows them. An absent group
    has count 0, ``None`` statistics and no deciles."""
    s, y = _as_arrays(scores, is_anomaly, both_classes=False)
    return {"normal": _describe(s[y == 0]), "anomalous": _describe(s[y == 1])}


# -- paired comparison of two methods on the same test images ---------------------------------------

@dataclass(frozen=True)
class PairedDiff:
    """AUROC(variant) − AUROC(baseline) on the full test set, with its percentile bootstrap CI."""

    diff: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def auroc_rows(scores: np.ndarray, is_normal: np.ndarray) -> np.ndarray:
    """Row-wise AUROC, normal images as positives: scores (R, n), is_normal (R, n) bool -> (R,).

    Mann–Whitney U from average ranks, so ties count 1/2 as in sklearn's roc_auc_score."""
    ranks = rankdata(scores, axis=1)
    p = is_normal.sum(axis=1)
    u = (ranks * is_normal).sum(axis=1) - p * (p + 1) / 2.0
    return u / (p * (scores.shape[1] - p))


def bootstrap_indices(is_anomaly: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) int64: row r lists replicate r's images, drawn with replacement within each class
    (normals first), so that every replicate keeps the test set's class balance, as bootstrap_ci does."""
    normal, anomalous = np.flatnonzero(is_anomaly == 0), np.flatnonzero(is_anomaly == 1)
    return np.concatenate([rng.choice(normal, size=(n_boot, normal.size)),
                           rng.choice(anomalous, size=(n_boot, anomalous.size))], axis=1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, is_anomaly: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> tuple[list[PairedDiff], PairedDiff]:
    """AUROC(a) − AUROC(b) per seed and its mean over seeds, each with a paired bootstrap CI.

    a, b: (S, n) scores of S seeds on the same n images. Each replicate resamples the images once,
    with the same indices for both methods and for every seed, so the mean's CI accounts for the
    test set being shared by all seeds."""
    is_normal = is_anomaly == 0
    if not 0 < is_normal.sum() < is_normal.size:
        raise ValueError("a paired AUROC difference needs both normal and anomalous test images")
    rng, block = np.random.default_rng(seed), max(1, _BOOT_CELLS // is_anomaly.size)
    diffs = []  # (S, reps) per block
    for start in range(0, n_boot, block):
        idx = bootstrap_indices(is_anomaly, min(block, n_boot - start), rng)
        normal_rows = is_normal[idx]
        diffs.append(np.stack([auroc_rows(sa[idx], normal_rows) - auroc_rows(sb[idx], normal_rows)
                               for sa, sb in zip(a, b)]))
    boot = np.concatenate(diffs, axis=1)
    full = auroc_rows(a, np.broadcast_to(is_normal, a.shape)) - auroc_rows(b, np.broadcast_to(is_normal, b.shape))
    quantiles = [alpha / 2.0, 1.0 - alpha / 2.0]
    per_seed = [PairedDiff(float(d), *map(float, np.quantile(r, quantiles))) for d, r in zip(full, boot)]
    return per_seed, PairedDiff(float(full.mean()), *map(float, np.quantile(boot.mean(axis=0), quantiles)))
