"""One training engine for every mode.

CSI, DIA and the blur variants differ only in the view maker and the loss
object passed in; the step reads like the method:
``views = make_views(x)`` -> ``out = model(views.images)`` -> ``loss_fn(out, views)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from common.logging import RunLogger
from training.optim import LRSchedule
from training.views import ViewBatch


@dataclass(frozen=True)
class EpochResult:
    step: int  # global step after the epoch
    metrics: dict[str, float]  # means over the epoch's steps
    first_views: ViewBatch | None  # the views of the run's first step, for the image grid


def train_one_epoch(*, model: torch.nn.Module, batches: Iterable, steps: int,
                    make_views: Callable[[torch.Tensor], ViewBatch], loss_fn: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, lr_schedule: LRSchedule,
                    step: int, device: torch.device, amp: bool = False, logger: RunLogger | None = None,
                    desc: str = "train", show_progress: bool = True) -> EpochResult:
    """Run ``steps`` iterations over ``batches`` (yielding (x, is_anomaly), x in [0, 1], or
    (x, is_anomaly, index) with the dataset rows, which ``make_views`` then receives as ``index``).

    The lr is a pure function of the global step and is written before each
    update (stepped per iteration). bf16 autocast, when
    asked, covers the encoder only; the loss is computed in fp32.
    """
    model.train()
    sums: dict[str, float] = {}
    first_views = None
    done = 0  # counted here: a disabled tqdm bar does not count its updates
    bar = tqdm(total=steps, desc=desc, leave=False, disable=not show_progress)
    for batch in batches:
        if done >= steps:
            break
        lr = lr_schedule.apply(optimizer, step)
        x = batch[0].to(device, non_blocking=True)
        views = make_views(x) if len(batch) < 3 else make_views(x, index=batch[2])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(views.images)
        try:
            terms = loss_fn(out.projection.float(), out.shift_logits.float(), views.shift_labels)
        except FloatingPointError as err:  # say where; the caller decides what it means for the run
            raise FloatingPointError(f"step {step}: {err}") from None
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        values = {**terms.to_dict(), "lr": lr}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        if logger is not None:
            logger.scalars(step, values, prefix="train/")
        if step == 0:
            first_views = views
        step += 1
        done += 1
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.3g}")
    bar.close()
    n = max(done, 1)
    return EpochResult(step=step, metrics={k: v / n for k, v in sums.items()}, first_views=first_views)
