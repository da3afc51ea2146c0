"""Run logging: TensorBoard scalars and images, plus a plain ``metrics.jsonl``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch


class RunLogger:
    """Writes scalars to TensorBoard and appends them to ``metrics.jsonl``.

    ``enabled=False`` (non-zero ranks under torchrun) makes every call a no-op.
    """

    def __init__(self, logdir: str | Path, enabled: bool = True) -> None:
        self.logdir = Path(logdir)
        self.enabled = enabled
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.logdir / "tb"))
            self._jsonl = open(self.logdir / "metrics.jsonl", "a")

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        values = {f"{prefix}{k}": float(v) for k, v in values.items()}
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        self._jsonl.flush()

    def images(self, tag: str, images: torch.Tensor, step: int, nrow: int = 8) -> None:
        """images: (M, 3, H, W) in [0, 1]."""
        if not self.enabled:
            return
        from torchvision.utils import make_grid

        self._writer.add_image(tag, make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow), step)

    def close(self) -> None:
        if self.enabled:
            self._writer.close()
            self._jsonl.close()
