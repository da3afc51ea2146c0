"""DataConfig -> OneClassSplit: the one place the data flags become ``load_one_class_split``'s
values, shared by training and evaluation."""
from __future__ import annotations

from common.config import DataConfig
from datasets.load import load_one_class_split
from datasets.split import OneClassSplit


def load_split(cfg: DataConfig) -> OneClassSplit:
    return load_one_class_split(
        cfg.dataset, cfg.data_root, cfg.one_class_idx, image_size=cfg.image_size,
        normal_classes=cfg.normal_classes, contamination_ratio=cfg.contamination_ratio,
        seed=cfg.split_seed, download=cfg.download)
