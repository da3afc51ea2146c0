"""``eval.py --mode ood_pre`` without the CLI: rebuild the model from its checkpoint, fit the CSI
scorer on the normal training images, calibrate the normal/anomalous threshold on the validation
split and store it with the scorer next to the checkpoint (evals/calibrate.py), then score a split
and write the report, with the flags at the stored threshold."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import load_checkpoint, resolve_checkpoint
from common.config import DataConfig, EvalConfig, TrainConfig
from common.device import default_device, resolve_amp
from common.distributed import DistContext, init_distributed, shutdown
from datasets import ImageDataset, OneClassSplit
from datasets.from_config import load_split
from evals.calibrate import (StoredCalibration, ViewSettings, calibrate, calibration_path, decisions,
                             save_calibration, weights_fingerprint)
from evals.csi_score import CSIScorer
from evals.metrics import Metrics, score_quantiles, summarize
from evals.pipeline import features_of, fit_scorer, normal_only, score_dataset
from evals.report import format_summary, write_report
from models import build_model

# View seeds are --seed plus these: the bank and the scored splits draw independent views.
BANK_SEED_OFFSET, SCORED_SEED_OFFSET = 0, 1


def merged_data_config(trained: DataConfig, given: DataConfig | None) -> DataConfig:
    """The checkpoint's data, overridden by the data flags the user gave. The bank is never contaminated."""
    base = dataclasses.replace(trained, contamination_ratio=0.0)
    if given is None:
        return base
    overrides = {f.name: getattr(given, f.name) for f in dataclasses.fields(DataConfig)
                 if f.name in ("dataset", "data_root", "one_class_idx", "image_size", "normal_classes")
                 and getattr(given, f.name) is not None}
    overrides["download"] = given.download
    overrides["num_workers"] = given.num_workers
    return dataclasses.replace(base, **overrides)


def load_model(ckpt: dict, device: torch.device) -> torch.nn.Module:
    model = build_model(**ckpt["model_spec"]).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval()


@dataclass(frozen=True)
class EvalSetup:
    """One evaluation's inputs: the checkpoint, its data, the model and the test-time views."""

    ckpt_path: Path
    ckpt: dict
    data: DataConfig
    split: OneClassSplit
    model: torch.nn.Module
    views: ViewSettings
    feature_kwargs: dict  # evals.pipeline.features_of's arguments besides the seed

    def bank_scorer(self, score: str, seed: int) -> CSIScorer:
        """The scorer fitted on the normal training images (the feature bank)."""
        bank = features_of(self.model, normal_only(self.split.train), seed=seed, **self.feature_kwargs)
        return fit_scorer(bank, score)

    def scores(self, scorer: CSIScorer, dataset: ImageDataset) -> np.ndarray:
        """CSI scores (n,) float32 of a split, higher = more normal, with the scored splits' views."""
        return score_dataset(self.model, scorer, dataset, seed=self.views.seed, **self.feature_kwargs)


def prepare(cfg: EvalConfig, progress: bool, ctx: DistContext = DistContext(),
            device: torch.device | None = None) -> EvalSetup:
    """Under torchrun (``ctx``) features are extracted in shards and gathered on every process."""
    device = device or default_device(cfg.device)
    ckpt_path = resolve_checkpoint(cfg.load_path)
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    trained = TrainConfig.from_dict(ckpt["config"])
    data_cfg = merged_data_config(trained.data, cfg.data)
    split = load_split(data_cfg)
    views = ViewSettings(shift_kind=cfg.shift_kind or trained.shift.kind, n_shifts=trained.shift.n_shifts,
                         n_samples=cfg.n_samples, crop_scale=tuple(cfg.crop_scale),
                         seed=cfg.seed + SCORED_SEED_OFFSET, batch_size=cfg.batch_size,
                         image_size=split.image_size)
    kwargs = dict(shift_kind=views.shift_kind, n_shifts=views.n_shifts, n_samples=views.n_samples,
                  crop_scale=views.crop_scale, batch_size=views.batch_size, device=device,
                  amp=resolve_amp(cfg.amp, device),
                  num_workers=data_cfg.num_workers, progress=progress, ctx=ctx)
    return EvalSetup(ckpt_path, ckpt, data_cfg, split, load_model(ckpt, device), views, kwargs)


def calibrate_checkpoint(setup: EvalSetup, scorer: CSIScorer, cfg: EvalConfig, write: bool = True) -> StoredCalibration:
    """Score the validation split, choose τ there (never on test) and store it, with the scorer,
    next to the checkpoint, so that predicting needs neither training nor validation images."""
    val_scores = setup.scores(scorer, setup.split.val)
    labels = np.asarray(setup.split.val.is_anomaly, dtype=np.int64)
    stored = StoredCalibration(
        scorer_state={name: t.detach().cpu() for name, t in scorer.state_dict().items()}, score_kind=cfg.score,
        views=setup.views, calibration=calibrate(val_scores, labels, cfg.threshold.rule,
                                                 cfg.threshold.target_normal_recall),
        val_scores=torch.from_numpy(np.asarray(val_scores)), val_is_anomaly=torch.from_numpy(labels),
        fingerprint=weights_fingerprint(setup.ckpt["model"]))
    if write:
        save_calibration(calibration_path(setup.ckpt_path), stored)
    return stored


def describe_calibration(stored: StoredCalibration, path: Path) -> str:
    c = stored.calibration
    goal = f"keep {c.target_normal_recall:.0%} of normal validation images" if c.rule == "recall" else "best F1"
    val = c.val
    lines = [f"threshold  {c.threshold:.6g} ({c.rule} rule: {goal}; validation {val.n_normal} normal, "
             f"{val.n_anomalous} anomalous) -> {path}"]
    if c.note:
        lines.append(f"note: {c.note}")
    return "\n".join(lines)


def threshold_report(stored: StoredCalibration, path: Path, scores: np.ndarray, labels: np.ndarray) -> dict:
    """The stored calibration and the flags each rule's τ gives on the scored split."""
    cal = stored.calibration
    by_rule = {rule: decisions(scores, labels, tau).to_dict() for rule, tau in cal.thresholds.items()
               if tau is not None}
    return {"calibration_file": str(path), **cal.to_dict(), "at_threshold": by_rule[cal.rule], "by_rule": by_rule}


def format_decisions(d: dict) -> str:
    rates = " ".join(f"{name} {d[name]:.4f}" for name in ("accuracy", "sensitivity", "specificity")
                     if d[name] is not None)
    return f"at τ       {rates}  ({d['n_flagged']} of {d['n_normal'] + d['n_anomalous']} flagged)"


def write_eval_report(cfg: EvalConfig, setup: EvalSetup, stored: StoredCalibration, target: ImageDataset,
                      scores: np.ndarray, started: float) -> tuple[Path, Metrics, dict]:
    """report.json (with the flags at the stored threshold), scores.csv and the plots (evals/report.py)."""
    labels = np.asarray(target.is_anomaly)
    metrics = summarize(scores, labels, n_boot=cfg.n_boot, seed=cfg.seed)
    ckpt_path = setup.ckpt_path
    out_dir = Path(cfg.out_dir) if cfg.out_dir else ckpt_path.parent / f"eval_{cfg.split}_{ckpt_path.stem}"
    threshold = threshold_report(stored, calibration_path(ckpt_path), scores, labels)
    views = setup.views
    extra = {"split": cfg.split, "score": cfg.score, "shift": views.shift_kind, "n_samples": views.n_samples,
             "crop_scale": list(views.crop_scale), "epoch": setup.ckpt.get("epoch"),
             "seconds": time.time() - started, "device": str(setup.feature_kwargs["device"]),
             "data": dataclasses.asdict(setup.data), "threshold": threshold}
    write_report(out_dir, metrics=metrics, scores=scores, is_anomaly=labels, paths=getattr(target, "paths", None),
                 config={"train": setup.ckpt["config"], "eval": dataclasses.asdict(cfg)},
                 checkpoint=str(ckpt_path), extra=extra)
    return out_dir, metrics, threshold


def run_eval(cfg: EvalConfig, *, show_progress: bool = True) -> dict:
    """Evaluate ``cfg.load_path`` on ``cfg.split``; returns the report dict (also written as report.json).

    Every run also (re)writes ``<checkpoint stem>.calib.pt``; ``metrics`` is None when only
    calibrating, or when the scored split lacks a class (AUROC is then undefined).
    """
    t0 = time.time()
    ctx, device = init_distributed(None, cfg.device)
    try:
        return _evaluate(cfg, show_progress and ctx.is_main, ctx, device, t0)
    finally:
        shutdown(ctx)


def _evaluate(cfg: EvalConfig, show_progress: bool, ctx: DistContext, device: torch.device | None,
              t0: float) -> dict:
    """Every process extracts its shard of the features; only rank 0 writes files."""
    setup = prepare(cfg, show_progress, ctx, device)
    scorer = setup.bank_scorer(cfg.score, seed=cfg.seed + BANK_SEED_OFFSET)
    stored = calibrate_checkpoint(setup, scorer, cfg, write=ctx.is_main)
    calib_file = calibration_path(setup.ckpt_path)
    if show_progress:
        print(describe_calibration(stored, calib_file))
    target = setup.split.val if cfg.calibrate_only or cfg.split == "val" else setup.split.test
    scores = stored.val_scores.numpy() if target is setup.split.val else setup.scores(scorer, target)
    labels = np.asarray(target.is_anomaly)
    result = {"metrics": None, "out_dir": None, "scores": scores, "is_anomaly": labels,
              "calibration": str(calib_file)}
    if cfg.calibrate_only or not ctx.is_main:
        return result
    if labels.min(initial=0) == labels.max(initial=0):
        if show_progress:
            print(f"note: the {cfg.split} split holds one class only, so AUROC is undefined; no report written")
        return result
    out_dir, metrics, threshold = write_eval_report(cfg, setup, stored, target, scores, started=t0)
    if show_progress:
        print(format_summary(metrics))
        print(format_decisions(threshold["at_threshold"]))
        print(f"report: {out_dir / 'report.json'} ({time.time() - t0:.1f}s)")
    if cfg.print_score:
        for name, q in score_quantiles(scores, labels).items():
            print(name, q)
    return {**result, "metrics": metrics.to_dict(), "out_dir": str(out_dir)}
