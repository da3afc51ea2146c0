"""CSINet: backbone + projection head + shift head.

One forward pass gives the three outputs both training and the CSI score use:
the penultimate feature, the projection for the contrastive loss and the
shift-classification logits. The model stores its constructor values, so a
checkpoint rebuilds it from ``model.spec()`` alone (``build_model(**spec)``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from common.errors import UserError
from models.resnet import BACKBONES


class EncoderOutput(NamedTuple):
    """Typed model output. A NamedTuple (immutable) rather than a dataclass
    because torch.compile, DDP and tracing all handle tuples natively.

    features:     (B, 8·width) pooled backbone features.
    projection:   (B, proj_dim), **not** normalised; the loss and the CSI score
                  normalise or average it themselves.
    shift_logits: (B, n_shifts) raw logits of the shift classifier.
    """

    features: torch.Tensor
    projection: torch.Tensor
    shift_logits: torch.Tensor


def projection_head(in_dim: int, proj_dim: int) -> nn.Sequential:
    """SimCLR head 8w -> 8w -> proj_dim (Linear, ReLU, Linear; no BN, as upstream)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, proj_dim))


def normalize_input(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] via (x − 0.5)/0.5, done inside the model as upstream."""
    return (x - 0.5) / 0.5


class CSINet(nn.Module):
    """ResNet encoder with the CSI heads; input (B, 3, H, W) float in [0, 1]."""

    def __init__(self, name: str, width: int = 64, n_shifts: int = 4, proj_dim: int = 128) -> None:
        super().__init__()
        _check_spec(name, width, n_shifts, proj_dim)
        self.name, self.width, self.n_shifts, self.proj_dim = name, width, n_shifts, proj_dim
        self.backbone = BACKBONES[name](width)
        feat_dim = self.backbone.out_dim
        self.projection = projection_head(feat_dim, proj_dim)
        self.shift_head = nn.Linear(feat_dim, n_shifts)

    def spec(self) -> dict:
        """The constructor values, enough for ``build_model(**spec)`` to rebuild this architecture."""
        return {"name": self.name, "width": self.width, "n_shifts": self.n_shifts, "proj_dim": self.proj_dim}

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """x: (B, 3, H, W) in [0, 1] -> EncoderOutput with B rows each."""
        features = self.backbone(normalize_input(x))
        return EncoderOutput(features, self.projection(features), self.shift_head(features))


def _check_spec(name: str, width: int, n_shifts: int, proj_dim: int) -> None:
    if name not in BACKBONES:
        raise UserError(f"--model: unknown backbone {name!r}; valid: {', '.join(sorted(BACKBONES))}")
    for label, value in (("width", width), ("n_shifts", n_shifts), ("proj_dim", proj_dim)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"model {label} must be a positive integer, got {value!r}")


def build_model(name: str, width: int = 64, n_shifts: int = 4, proj_dim: int = 128) -> CSINet:
    """Build a freshly initialised CSINet; ``name`` is a key of ``BACKBONES``."""
    return CSINet(name, width=width, n_shifts=n_shifts, proj_dim=proj_dim)
