"""Data layer: one table of dataset facts and honest one-class splits (docs/ARCHITECTURE.md).

Importing builds the spec table only (its MedMNIST rows, and medmnist itself, on first use);
nothing is read until ``load_one_class_split``.
"""
from datasets.base import FileImageDataset, ImageDataset, TensorImageDataset, load_image_file
from datasets.load import load_one_class_split
from datasets.specs import DATASETS, DatasetSpec, get_spec
from datasets.split import OneClassSplit
from datasets.synthetic import make_synthetic

__all__ = ["DATASETS", "DatasetSpec", "FileImageDataset", "ImageDataset", "OneClassSplit", "TensorImageDataset",
           "get_spec", "load_image_file", "load_one_class_split", "make_synthetic"]
