"""The normal/anomalous decision, calibrated on validation (thresholds use the
validation split, never test).

CSI scores are higher = more normal, so an image is flagged when its score falls below τ:

    is_anomaly = score < τ

In both rules τ is the lowest validation score still called normal:

- ``recall``: the highest τ that keeps at least r = ``target_normal_recall`` of the normal
  validation images, i.e. the ⌈r·n⌉-th highest normal score (the convention of FPR@95TPR in
  ``evals.metrics``). It needs normal images only, so it also works for a folder of normal
  images alone.
- ``f1``: the τ with the best F1 on validation, anomalies being the positives. It needs
  anomalous validation images; without them F1 is undefined and the recall rule is used
  instead (the *fallback rule*, recorded in ``Calibration.note``).

The normalised anomaly score puts a score on the threshold's scale:

    anomaly_score = (τ − score) / scale,   scale = IQR(normal validation scores) / 1.349

so 0 is the threshold, > 0 exactly when the image is flagged, and one unit is about one
standard deviation of the normal validation scores (IQR / 1.349 is σ for a Gaussian, and
unlike σ it ignores the odd outlier a small validation split holds).

``eval.py`` stores the result next to the checkpoint (``best.pt`` -> ``best.calib.pt``) with
the fitted scorer, the feature bank's directions and λ weights, so that predicting never
re-reads the training data (:class:`StoredCalibration`).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from common.atomic import torch_save_atomic
from common.errors import UserError
from evals.csi_score import CSIScorer

IQR_PER_SIGMA = 1.349


def _normal_and_labels(scores: Any, is_anomaly: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_anomaly).astype(np.int64).reshape(-1)
    if s.shape != y.shape or not np.isfinite(s).all() or not np.isin(y, (0, 1)).all():
        raise ValueError("scores must be finite and is_anomaly 0/1, one of each per image")
    return s, y


def recall_threshold(normal_scores: Any, target_recall: float) -> float:
    """The highest τ with mean(normal_scores >= τ) >= target_recall: the ⌈r·n⌉-th highest score."""
    normal = np.sort(np.asarray(normal_scores, dtype=np.float64).reshape(-1))[::-1]
    if normal.size == 0:
        raise UserError("the validation split has no normal images: no threshold can be calibrated")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    n_keep = max(1, math.ceil(target_recall * normal.size - 1e-9))  # 0.95·20 = 19.000…01 keeps 19
    return float(normal[n_keep - 1])


def f1_threshold(scores: Any, is_anomaly: Any) -> float:
    """The τ with the best F1 of ``score < τ`` against ``is_anomaly`` (the smallest τ on ties).

    Every distinct way to cut the sorted scores is tried at once: flagging the i+1 lowest
    distinct values uses τ = the next distinct value, and flagging all uses τ just above the max.
    """
    s, y = _normal_and_labels(scores, is_anomaly)
    if not 0 < y.sum() < y.size:
        raise ValueError("f1_threshold needs both normal and anomalous scores")
    values, inverse = np.unique(s, return_inverse=True)  # ascending distinct scores
    true_pos = np.cumsum(np.bincount(inverse, weights=y, minlength=values.size))
    flagged = np.cumsum(np.bincount(inverse, minlength=values.size))
    f1 = 2 * true_pos / (flagged + y.sum())  # 2TP / (2TP + FP + FN)
    best = int(np.argmax(f1))
    return float(values[best + 1]) if best + 1 < values.size else float(np.nextafter(values[-1], np.inf))


def robust_scale(normal_scores: Any) -> float:
    """IQR / 1.349 of the normal scores; their std if the IQR is 0; 1 if both are (see module doc)."""
    normal = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    q25, q75 = np.quantile(normal, [0.25, 0.75])
    for scale in ((q75 - q25) / IQR_PER_SIGMA, normal.std()):
        if scale > 0:
            return float(scale)
    return 1.0


def anomaly_scores(scores: Any, threshold: float, scale: float) -> np.ndarray:
    """(τ − score) / scale, (n,) float64: 0 at the threshold, > 0 exactly when ``score < τ``."""
    return (threshold - np.asarray(scores, dtype=np.float64)) / scale


def flag(scores: Any, threshold: float) -> np.ndarray:
    """is_anomaly (n,) int64: 1 where the CSI score is below τ."""
    return (np.asarray(scores, dtype=np.float64) < threshold).astype(np.int64)


@dataclass(frozen=True)
class Decisions:
    """How the flags at one threshold compare with labels; a rate without its class is None.

    sensitivity: anomalies flagged / anomalies; specificity: normals kept / normals.
    """

    threshold: float
    accuracy: float
    sensitivity: float | None
    specificity: float | None
    precision: float | None
    f1: float | None
    n_normal: int
    n_anomalous: int
    n_flagged: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def decisions(scores: Any, is_anomaly: Any, threshold: float) -> Decisions:
    s, y = _normal_and_labels(scores, is_anomaly)
    pred = flag(s, threshold)
    tp, fp = int((pred & y).sum()), int((pred & (1 - y)).sum())
    n_anom = int(y.sum())
    return Decisions(threshold=float(threshold), accuracy=float((pred == y).mean()),
                     sensitivity=_ratio(tp, n_anom), specificity=_ratio(int(y.size - n_anom - fp), y.size - n_anom),
                     precision=_ratio(tp, tp + fp), f1=_ratio(2 * tp, 2 * tp + fp + (n_anom - tp)),
                     n_normal=int(y.size - n_anom), n_anomalous=n_anom, n_flagged=int(pred.sum()))


@dataclass(frozen=True)
class Calibration:
    """The threshold chosen on validation and what a reader needs to trust it.

    rule: the rule used; ``requested_rule`` differs only after the F1 → recall fallback.
    thresholds: τ of each rule (``f1``: None without anomalous validation images).
    val: the decisions at τ on the validation split it was chosen on.
    """

    rule: str
    requested_rule: str
    target_normal_recall: float
    threshold: float
    thresholds: dict[str, float | None]
    scale: float
    val: Decisions
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "val": self.val.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(**{**d, "val": Decisions(**d["val"])})


FALLBACK_NOTE = ("the validation split has no anomalous images, so F1 is undefined: "
                 "the recall rule (--target_normal_recall) is used instead")

# --threshold_rule -> τ from validation (scores, is_anomaly, target_normal_recall).
RULES: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "recall": lambda s, y, r: recall_threshold(s[y == 0], r),
    "f1": lambda s, y, r: f1_threshold(s, y),
}


def calibrate(scores: Any, is_anomaly: Any, rule: str = "recall", target_normal_recall: float = 0.95) -> Calibration:
    """Choose τ on validation scores (higher = more normal) with ``rule`` (see module doc)."""
    if rule not in RULES:
        raise UserError(f"--threshold_rule {rule!r} is not one of {', '.join(RULES)}")
    s, y = _normal_and_labels(scores, is_anomaly)
    has_anomalies = bool(y.any())
    thresholds = {name: fn(s, y, target_normal_recall) if has_anomalies or name == "recall" else None
                  for name, fn in RULES.items()}
    used = rule if thresholds[rule] is not None else "recall"
    return Calibration(rule=used, requested_rule=rule, target_normal_recall=float(target_normal_recall),
                       threshold=thresholds[used], thresholds=thresholds, scale=robust_scale(s[y == 0]),
                       val=decisions(s, y, thresholds[used]), note="" if used == rule else FALLBACK_NOTE)


# -- stored next to the checkpoint ---------------------------------------------------------

CALIBRATION_FORMAT = 1


def calibration_path(checkpoint: str | Path) -> Path:
    """``<dir>/best.pt`` -> ``<dir>/best.calib.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.calib.pt")


def weights_fingerprint(state_dict: dict[str, Tensor]) -> str:
    """SHA-256 of the weights' bytes, so a calibration is never used with weights it was not made for."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass(frozen=True)
class ViewSettings:
    """The test-time views eval.py drew for the splits it scored; predict draws the same.

    seed: the view seed of a scored split (the bank has its own); with each image's key it fixes
    that image's views (evals/view_keys.py). batch_size: eval.py's loader batch, predict's
    default; it changes memory use, not scores. image_size: the side S images are resized to,
    the size the bank was extracted at.
    """

    shift_kind: str
    n_shifts: int
    n_samples: int
    crop_scale: tuple[float, float]
    seed: int
    batch_size: int
    image_size: int


@dataclass(frozen=True)
class StoredCalibration:
    """What predict needs besides the checkpoint: the fitted scorer state (directions (K, M, d),
    λ weights (K,)), the view settings, the calibration, and the validation scores (n,) with
    their labels, from which another rule or target can be calibrated without any image."""

    scorer_state: dict[str, Tensor]
    score_kind: str
    views: ViewSettings
    calibration: Calibration
    val_scores: Tensor
    val_is_anomaly: Tensor
    fingerprint: str

    def scorer(self) -> CSIScorer:
        return CSIScorer.from_state_dict(self.scorer_state, self.score_kind)

    def recalibrated(self, rule: str, target_normal_recall: float) -> Calibration:
        return calibrate(self.val_scores.numpy(), self.val_is_anomaly.numpy(), rule, target_normal_recall)


def save_calibration(path: str | Path, stored: StoredCalibration) -> None:
    """Atomically; plain tensors and builtins only, so loading needs no pickled code."""
    torch_save_atomic({"format_version": CALIBRATION_FORMAT, "scorer_state": stored.scorer_state,
                       "score_kind": stored.score_kind, "views": asdict(stored.views),
                       "calibration": stored.calibration.to_dict(), "val_scores": stored.val_scores,
                       "val_is_anomaly": stored.val_is_anomaly, "fingerprint": stored.fingerprint}, path)


def load_calibration(checkpoint: str | Path, weights: dict[str, Tensor]) -> StoredCalibration:
    """The calibration of ``checkpoint`` whose model weights are ``weights``; one-line errors
    that say how to make one when it is missing or was made for other weights."""
    path, remedy = calibration_path(checkpoint), f"run `python eval.py --mode ood_pre --load_path {checkpoint}`"
    if not path.is_file():
        raise UserError(f"{checkpoint} has no calibrated threshold ({path.name} is missing): {remedy} "
                        "first (--calibrate_only skips the test split)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        if raw["format_version"] > CALIBRATION_FORMAT:
            raise ValueError("written by newer code")
        views = raw["views"]
        stored = StoredCalibration(
            scorer_state=raw["scorer_state"], score_kind=raw["score_kind"],
            views=ViewSettings(**{**views, "crop_scale": tuple(views["crop_scale"])}),
            calibration=Calibration.from_dict(raw["calibration"]), val_scores=raw["val_scores"],
            val_is_anomaly=raw["val_is_anomaly"], fingerprint=raw["fingerprint"])
    except Exception as err:  # truncated, foreign or from a newer format
        raise UserError(f"{path}: not a readable calibration ({type(err).__name__}): {remedy}") from None
    if stored.fingerprint != weights_fingerprint(weights):
        raise UserError(f"{path} was calibrated for other weights than {checkpoint} (retrained?): {remedy}")
    return stored
