"""``python -m datasets``: print the one-class split table of a dataset (counts, image format, classes).

Example: ``python -m datasets --dataset breastmnist --data_root ../data --one_class_idx 1``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from common.cli import CLIParser
from common.errors import exit_on_user_error
from datasets.base import ImageDataset
from datasets.load import load_one_class_split
from datasets.specs import DATASETS, get_spec
from datasets.split import OneClassSplit


class _DeprecatedSeed(argparse.Action):
    """``--seed`` was this CLI's name for what train.py and train_eval_ddpm.py call ``--split_seed``: still read."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print("note: python -m datasets --seed is deprecated; use --split_seed", file=sys.stderr)
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    parser = CLIParser(prog="python -m datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help=f"one of: {', '.join(sorted(DATASETS))}")
    parser.add_argument("--data_root", default=None, help="folder holding the data (ignored by synthetic)")
    parser.add_argument("--one_class_idx", type=int, default=None,
                        help="index of the normal class (default: the dataset's own, where it has one)")
    parser.add_argument("--image_size", type=int, default=None, help="side of the square images (default: native)")
    parser.add_argument("--normal_classes", default=None,
                        help="folder dataset: comma-separated names of the normal class folders")
    parser.add_argument("--contamination_ratio", type=float, default=0.0,
                        help="share of anomalous images mixed into train, in [0, 1)")
    parser.add_argument("--split_seed", type=int, default=0,
                        help="seed of the validation and 7:3 splits (train.py's and train_eval_ddpm.py's --split_seed)")
    parser.add_argument("--seed", dest="split_seed", type=int, default=argparse.SUPPRESS, action=_DeprecatedSeed,
                        help=argparse.SUPPRESS)
    parser.add_argument("--download", action="store_true", help="fetch missing MedMNIST / CIFAR files")
    return parser


def _counts(ds: ImageDataset | None) -> tuple[int, int]:
    if ds is None:
        return 0, 0
    anomalous = int(ds.is_anomaly.sum())
    return len(ds) - anomalous, anomalous


def format_summary(split: OneClassSplit) -> str:
    """The split as a text table: per part, normal / anomalous / total counts, then the image format."""
    source = get_spec(split.name).source
    rows = [("train", split.train), ("val", split.val), ("test", split.test),
            ("train_anomalous", split.train_anomalous)]
    lines = [f"dataset:   {split.name}  ({source})",
             f"normal:    {', '.join(repr(n) for n in split.normal_classes)}",
             f"anomalous: {', '.join(repr(n) for n in split.anomaly_classes) or '(none)'}"]
    if len(split.train):
        image = split.train[0][0]  # decodes one image, to report the real format
        channels, height, width = image.shape
        lines.append(f"images:    {channels} channels x {height} x {width} px, {str(image.dtype).replace('torch.', '')}"
                     f" in [0, 1] (image_size {split.image_size})")
    lines += ["", f"{'split':<16}{'normal':>8}{'anomalous':>11}{'total':>8}"]
    for name, ds in rows:
        normal, anomalous = _counts(ds)
        lines.append(f"{name:<16}{normal:>8}{anomalous:>11}{normal + anomalous:>8}")
    lines.append("(train_anomalous: anomalous train images held out, never used for training)")
    return "\n".join(lines)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    split = load_one_class_split(
        args.dataset, args.data_root, args.one_class_idx, image_size=args.image_size,
        normal_classes=_names(args.normal_classes), contamination_ratio=args.contamination_ratio,
        seed=args.split_seed, download=args.download)
    print(format_summary(split))


if __name__ == "__main__":
    main()
