"""DataConfig -> OneClassSplit (the only place the training side reads data flags)."""
from __future__ import annotations

from common.config import DataConfig
from datasets import OneClassSplit, load_one_class_split


def load_split(cfg: DataConfig) -> OneClassSplit:
    return load_one_class_split(
        cfg.dataset, cfg.data_root, cfg.one_class_idx, image_size=cfg.image_size,
        normal_classes=cfg.normal_classes, contamination_ratio=cfg.contamination_ratio,
        seed=cfg.split_seed, download=cfg.download)
