"""``eval.py --mode ood_pre`` without the CLI: rebuild the model from its
checkpoint, score a split with the CSI score and write the report."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import load_checkpoint, resolve_checkpoint
from common.config import DataConfig, EvalConfig, TrainConfig
from common.device import default_device
from evals.metrics import score_quantiles, summarize
from evals.pipeline import features_of, fit_scorer, normal_only
from evals.report import format_summary, write_report
from models import build_model
from training.data import load_split


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


def run_eval(cfg: EvalConfig, *, show_progress: bool = True) -> dict:
    """Evaluate ``cfg.load_path`` on ``cfg.split``; returns the report dict (also written as report.json)."""
    t0 = time.time()
    device = default_device(cfg.device)
    ckpt_path = resolve_checkpoint(cfg.load_path)
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    trained = TrainConfig.from_dict(ckpt["config"])
    data_cfg = merged_data_config(trained.data, cfg.data)
    split = load_split(data_cfg)
    model = load_model(ckpt, device)
    shift_kind = cfg.shift_kind or trained.shift.kind
    kwargs = dict(shift_kind=shift_kind, n_shifts=trained.shift.n_shifts, n_samples=cfg.n_samples,
                  crop_scale=cfg.crop_scale, batch_size=cfg.batch_size, device=device, amp=cfg.amp,
                  num_workers=data_cfg.num_workers, progress=show_progress)
    bank = features_of(model, normal_only(split.train), seed=cfg.seed, **kwargs)
    target = split.test if cfg.split == "test" else split.val
    scores = fit_scorer(bank, cfg.score).score(features_of(model, target, seed=cfg.seed + 1, **kwargs))
    scores = scores.cpu().numpy()
    labels = np.asarray(target.is_anomaly)
    metrics = summarize(scores, labels, n_boot=cfg.n_boot, seed=cfg.seed)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else ckpt_path.parent / f"eval_{cfg.split}_{ckpt_path.stem}"
    extra = {"split": cfg.split, "score": cfg.score, "shift": shift_kind, "n_samples": cfg.n_samples,
             "crop_scale": list(cfg.crop_scale), "epoch": ckpt.get("epoch"), "seconds": time.time() - t0,
             "device": str(device), "data": dataclasses.asdict(data_cfg)}
    write_report(out_dir, metrics=metrics, scores=scores, is_anomaly=labels, paths=getattr(target, "paths", None),
                 config={"train": ckpt["config"], "eval": dataclasses.asdict(cfg)}, checkpoint=str(ckpt_path),
                 extra=extra)
    if show_progress:
        print(format_summary(metrics))
        print(f"report: {out_dir / 'report.json'} ({time.time() - t0:.1f}s)")
    if cfg.print_score:
        for name, q in score_quantiles(scores, labels).items():
            print(name, q)
    return {"metrics": metrics.to_dict(), "out_dir": str(out_dir), "scores": scores, "is_anomaly": labels}
