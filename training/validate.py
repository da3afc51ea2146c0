"""In-training model selection: CSI AUROC on the validation split, never test."""
from __future__ import annotations

import numpy as np
import torch

from common.config import EVAL_CROP
from common.distributed import DistContext
from datasets import OneClassSplit
from evals.metrics import auroc
from evals.pipeline import features_of, fit_scorer, normal_only

# Same crop as eval.py's default (the README's --resize_factor 0.54 --resize_fix), so the
# selected checkpoint is judged the way it will be evaluated (upstream validates with a random crop).
VAL_CROP = EVAL_CROP


def validation_auroc(model: torch.nn.Module, split: OneClassSplit, *, shift_kind: str, n_shifts: int,
                     n_samples: int, seed: int, batch_size: int, device: torch.device,
                     amp: bool = False, ctx: DistContext | None = None) -> float | None:
    """CSI AUROC on ``split.val`` with a bank of ``split.train`` normals; None if val lacks a class."""
    labels = np.asarray(split.val.is_anomaly)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    kwargs = dict(shift_kind=shift_kind, n_shifts=n_shifts, n_samples=n_samples, crop_scale=VAL_CROP,
                  batch_size=batch_size, device=device, amp=amp, ctx=ctx)
    bank = features_of(model, normal_only(split.train), seed=seed, **kwargs)
    scores = fit_scorer(bank).score(features_of(model, split.val, seed=seed + 1, **kwargs)).cpu().numpy()
    return float(auroc(scores, labels))

