"""Optimisers and the learning-rate schedule.

LARS is a plain-PyTorch reimplementation of torchlars' semantics (upstream's
optimiser; torchlars itself is a CUDA-only extension that often fails to
build). ``lr_at`` is a pure function of the global step, so a resumed run
continues on exactly the same schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

import torch

from common.errors import UserError

OptimizerKind = Literal["sgd", "lars"]


def lars_scaled_grads(
    params: list[torch.Tensor], grads: list[torch.Tensor], weight_decay: float, trust_coef: float, eps: float
) -> list[torch.Tensor]:
    """torchlars' step direction per tensor: local_lr · (g + wd·w).

    local_lr = trust·‖w‖ / (‖g‖ + wd·‖w‖ + eps) when ‖w‖ > 0 and ‖g‖ > 0, else 1
    (a freshly zeroed bias or an unused head gets the plain gradient).
    Norms stay on the device (no sync); foreach ops keep it a few kernels.
    """
    w_norm = torch.stack([n.float() for n in torch._foreach_norm(params)])
    g_norm = torch.stack([n.float() for n in torch._foreach_norm(grads)])
    adaptive = trust_coef * w_norm / (g_norm + weight_decay * w_norm + eps)
    local_lr = torch.where((w_norm > 0) & (g_norm > 0), adaptive, torch.ones_like(w_norm))
    scaled = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(scaled, [lr.to(s.dtype) for lr, s in zip(local_lr.unbind(), scaled)])
    return scaled


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with torchlars semantics, on every parameter tensor.

    Per tensor with a gradient: d = local_lr·(g + wd·w) (see ``lars_scaled_grads``),
    then SGD momentum without weight decay of its own: buf = d on the first
    step, else buf = momentum·buf + d; w ← w − lr·buf. Biases and BN parameters
    are included, as upstream. Tensors whose grad is None are skipped.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coef: float = 1e-3,
        eps: float = 1e-8,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coef <= 0 or eps < 0:
            raise ValueError(
                f"LARS needs lr, momentum, weight_decay, eps >= 0 and trust_coef > 0; got lr={lr}, "
                f"momentum={momentum}, weight_decay={weight_decay}, trust_coef={trust_coef}, eps={eps}"
            )
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coef=trust_coef, eps=eps)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            scaled = lars_scaled_grads(params, grads, group["weight_decay"], group["trust_coef"], group["eps"])
            buffers = self._momentum_buffers(params, scaled, group["momentum"])
            torch._foreach_add_(params, buffers, alpha=-group["lr"])
        return loss

    def _momentum_buffers(
        self, params: list[torch.Tensor], scaled: list[torch.Tensor], momentum: float
    ) -> list[torch.Tensor]:
        """buf ← momentum·buf + d, with buf = d the first time a tensor is updated (as torch SGD)."""
        old_bufs, old_updates, buffers = [], [], []
        for p, d in zip(params, scaled):
            state = self.state[p]
            if "momentum_buffer" in state:
                old_bufs.append(state["momentum_buffer"])
                old_updates.append(d)
            else:
                state["momentum_buffer"] = d  # d is a fresh tensor, safe to keep
            buffers.append(state["momentum_buffer"])
        if old_bufs:
            torch._foreach_mul_(old_bufs, momentum)
            torch._foreach_add_(old_bufs, old_updates)
        return buffers


def _sgd(params: Iterable, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _lars(params: Iterable, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": _sgd, "lars": _lars}


def build_optimizer(
    params: Iterable, kind: OptimizerKind, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6
) -> torch.optim.Optimizer:
    """``kind`` is a key of ``OPTIMIZERS`` (upstream ``--optimizer``; its default is LARS)."""
    if kind not in OPTIMIZERS:
        raise UserError(f"--optimizer: unknown optimizer {kind!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[kind](params, lr, momentum, weight_decay)


def lr_at(
    step: int, steps_per_epoch: int, lr_init: float, warmup_epochs: float, epochs: int, multiplier: float = 10.0
) -> float:
    """Learning rate for the update at global ``step`` (0-based, the first update uses step 0).

    With x = step / steps_per_epoch (fractional epoch):
    - x ≤ warmup: linear warm-up lr_init·(1 + (multiplier − 1)·x/warmup), i.e.
      0.1 → 1.0 over 10 epochs at the defaults (GradualWarmupScheduler);
    - after: peak·(1 + cos(π·(x − warmup)/(epochs − warmup)))/2 with
      peak = multiplier·lr_init, reaching 0 at x = epochs. Upstream's cosine uses
      T_max = epochs and so ends near 3e-4 instead of 0; we fix that.
    - warmup = 0: no warm-up and no multiplier, a pure cosine from peak = lr_init.
    """
    x = step / steps_per_epoch
    if warmup_epochs > 0 and x <= warmup_epochs:
        return lr_init * (1.0 + (multiplier - 1.0) * x / warmup_epochs)
    peak = lr_init * multiplier if warmup_epochs > 0 else lr_init
    progress = min(1.0, (x - warmup_epochs) / (epochs - warmup_epochs))
    return peak * (1.0 + math.cos(math.pi * progress)) / 2.0


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group (the schedule is applied per iteration)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class LRSchedule:
    """``lr_at`` with its settings validated once; ``schedule(step)`` -> lr, ``apply`` also sets it."""

    steps_per_epoch: int
    lr_init: float = 0.1
    warmup_epochs: float = 10.0
    epochs: int = 1000
    multiplier: float = 10.0

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise UserError(f"steps per epoch must be >= 1, got {self.steps_per_epoch} (empty training set?)")
        if self.lr_init <= 0:
            raise UserError(f"--lr_init must be > 0, got {self.lr_init}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"--warmup must be in [0, --epochs), got {self.warmup_epochs} with --epochs {self.epochs}")
        if self.multiplier < 1:
            raise UserError(f"warm-up multiplier must be >= 1, got {self.multiplier}")

    def __call__(self, step: int) -> float:
        return lr_at(step, self.steps_per_epoch, self.lr_init, self.warmup_epochs, self.epochs, self.multiplier)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the lr of ``step`` on ``optimizer`` and return it (for logging)."""
        lr = self(step)
        set_lr(optimizer, lr)
        return lr
