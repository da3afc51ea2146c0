"""``eval.py --mode predict``: which of these images look abnormal?

Image files (a file, a folder searched recursively, or a glob) are scored with a checkpoint and
the calibration ``eval.py`` stored next to it (evals/calibrate.py). That calibration holds the
fitted scorer, i.e. the feature bank's directions and λ weights, so no training image is read
again. Each file is decoded as the folder datasets decode theirs (any size, gray or RGB or
16-bit -> RGB, resized to the bank's side S) and sees the test-time views eval.py drew for it:
the same seed and the file's content as the key of its own view stream (evals/view_keys.py).
So a file's score is the one eval.py gave it in a folder dataset's split, alone or among any
other files, in any order and batch size. An unreadable file is reported and skipped; the run goes on.

The output folder holds:
- ``predictions.csv``: path, csi_score (higher = more normal), anomaly_score ((τ − csi_score) /
  scale: 0 at the threshold, > 0 = flagged, in units of about one σ of normal validation
  scores), is_anomaly (1 = flagged);
- ``skipped.csv``: path, reason, when some files could not be read;
- ``predict.json``: the checkpoint, the calibration used and the counts;
- ``predictions_grid.png`` with ``--save_grid``: the top-k most anomalous and most normal images.
"""
from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from common.atomic import atomic_path, json_dump_atomic
from common.augment import SimCLRAugment
from common.checkpoint import load_checkpoint, resolve_checkpoint
from common.config import PredictConfig
from common.device import default_device
from common.errors import UserError
from datasets import load_image_file
from datasets.base import IMAGE_EXTENSIONS
from datasets.folder import images_in
from evals.calibrate import Calibration, StoredCalibration, anomaly_scores, flag, load_calibration
from evals.features import extract_features
from evals.run import load_model
from evals.view_keys import file_key

SHOWN_SKIPPED = 5  # unreadable files named in the printed summary; skipped.csv lists them all


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """The image files of every input, in order and without repeats: a file as given (any
    extension), a folder's images (recursive and sorted, as the folder datasets list them),
    the image files a glob matches (sorted; ``**`` recurses)."""
    found: dict[str, Path] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = images_in(path)
        else:
            files = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))
                     if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS]
            if not files:
                raise UserError(f"--input {item}: no such file or folder, and no image file matches it as a glob")
        for file in files:
            found.setdefault(str(file.resolve()), file)  # one row per file, however it was named
    if not found:
        raise UserError(f"--input {' '.join(inputs)}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return list(found.values())


class ImageBatches:
    """Batches ``(x (B, 3, S, S) float in [0, 1], keys (B,) int64)`` of the readable ``files``, in
    order, each image with its content key (evals/view_keys.py), so that its views, and so its
    score, do not depend on the other files or the batch size. Unreadable files are skipped;
    ``paths`` (read) and ``skipped`` ((path, reason)) fill during one iteration."""

    def __init__(self, files: Sequence[Path], image_size: int, batch_size: int) -> None:
        self.files, self.image_size, self.batch_size = list(files), image_size, batch_size
        self.paths: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images: list[torch.Tensor] = []
        keys: list[int] = []
        for file in self.files:
            try:
                images.append(load_image_file(file, self.image_size))
            except UserError as err:
                self.skipped.append((str(file), str(err)))
                continue
            keys.append(file_key(file))
            self.paths.append(str(file))
            if len(images) == self.batch_size:
                yield torch.stack(images), torch.tensor(keys, dtype=torch.int64)
                images, keys = [], []
        if images:
            yield torch.stack(images), torch.tensor(keys, dtype=torch.int64)


@dataclass(frozen=True)
class Predictions:
    """One entry per readable file. csi_scores (n,) float32, higher = more normal;
    anomaly_scores (n,) float64, > 0 exactly where is_anomaly (n,) int64 is 1."""

    paths: list[str]
    csi_scores: np.ndarray
    anomaly_scores: np.ndarray
    is_anomaly: np.ndarray
    skipped: list[tuple[str, str]]
    calibration: Calibration
    out_dir: Path


def score_files(model: torch.nn.Module, stored: StoredCalibration, files: Sequence[Path], *,
                batch_size: int | None, device: torch.device, amp: bool,
                progress: bool) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(read paths, their CSI scores (n,) float32, skipped (path, reason)) with eval.py's views.
    ``batch_size`` (None: eval.py's) sets the memory used, not the scores."""
    views = stored.views
    batches = ImageBatches(files, views.image_size, batch_size or views.batch_size)
    augment = SimCLRAugment(crop_scale=views.crop_scale).to(device)
    try:
        feats = extract_features(model, batches, shift_kind=views.shift_kind, K=views.n_shifts,
                                 n_samples=views.n_samples, augment=augment, seed=views.seed,
                                 device=device, amp=amp, progress=progress)
    except UserError:
        if batches.paths:
            raise
        raise UserError(f"none of the {len(files)} --input files could be read; "
                        f"first: {batches.skipped[0][1]}") from None
    return batches.paths, stored.scorer().score(feats).numpy(), batches.skipped


def write_outputs(pred: Predictions, checkpoint: Path) -> None:
    """predictions.csv, predict.json and, when files were skipped, skipped.csv; all atomic."""
    pred.out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(pred.out_dir / "predictions.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "csi_score", "anomaly_score", "is_anomaly"])
        for row in zip(pred.paths, pred.csi_scores, pred.anomaly_scores, pred.is_anomaly):
            writer.writerow([row[0], repr(float(row[1])), repr(float(row[2])), int(row[3])])
    if pred.skipped:
        with atomic_path(pred.out_dir / "skipped.csv") as tmp, tmp.open("w", newline="") as handle:
            csv.writer(handle).writerows([("path", "reason"), *pred.skipped])
    json_dump_atomic({"checkpoint": str(checkpoint), "calibration": pred.calibration.to_dict(),
                      "n_scored": len(pred.paths), "n_flagged": int(pred.is_anomaly.sum()),
                      "n_skipped": len(pred.skipped)}, pred.out_dir / "predict.json")


def save_grid(path: Path, pred: Predictions, image_size: int, top_k: int) -> None:
    """Top row: the ``top_k`` most anomalous images; bottom row: the most normal; titled with
    the anomaly score (red: flagged) and the CSI score, as the model saw them (side S)."""
    order = np.argsort(-pred.anomaly_scores, kind="stable")
    k = min(top_k, len(order))
    fig = Figure(figsize=(1.7 * k + 0.6, 4.2))
    axes = fig.subplots(2, k, squeeze=False)
    for row, (label, picks) in enumerate((("most anomalous", order[:k]), ("most normal", order[::-1][:k]))):
        for ax, i in zip(axes[row], picks):
            ax.imshow(load_image_file(pred.paths[i], image_size).permute(1, 2, 0).numpy())
            ax.set_title(f"{pred.anomaly_scores[i]:+.2f} (csi {pred.csi_scores[i]:.3g})\n"
                         f"{Path(pred.paths[i]).name[:20]}", fontsize=7,
                         color="tab:red" if pred.is_anomaly[i] else "tab:blue")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(label)
    fig.suptitle(f"anomaly score, > 0 = flagged (τ = {pred.calibration.threshold:.4g}, "
                 f"{pred.calibration.rule} rule)", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def format_summary(pred: Predictions) -> str:
    """A few lines for the terminal: counts, the threshold and its rule, unreadable files, the output."""
    c = pred.calibration
    rule = f"{c.rule} rule" + (f", {c.target_normal_recall:.0%} of normal validation kept"
                               if c.rule == "recall" else "")
    skipped = f", skipped {len(pred.skipped)} unreadable" if pred.skipped else ""
    lines = [f"scored     {len(pred.paths)} images{skipped}",
             f"flagged    {int(pred.is_anomaly.sum())} as anomalous ({pred.is_anomaly.mean():.1%}) at "
             f"τ = {c.threshold:.6g} ({rule})"]
    lines += [f"skipped    {reason}" for _, reason in pred.skipped[:SHOWN_SKIPPED]]  # the reason names the file
    if len(pred.skipped) > SHOWN_SKIPPED:
        lines.append(f"skipped    ... {len(pred.skipped) - SHOWN_SKIPPED} more in skipped.csv")
    if c.note:
        lines.append(f"note: {c.note}")
    lines.append(f"output     {pred.out_dir / 'predictions.csv'}")
    return "\n".join(lines)


def run_predict(cfg: PredictConfig, *, show_progress: bool = True) -> Predictions:
    """Score ``cfg.inputs`` and flag them at the stored (or ``cfg.threshold``'s) threshold."""
    device = default_device(cfg.device)
    ckpt_path = resolve_checkpoint(cfg.load_path)
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    stored = load_calibration(ckpt_path, ckpt["model"])
    files = expand_inputs(cfg.inputs)
    calib = stored.calibration if cfg.threshold is None else stored.recalibrated(
        cfg.threshold.rule, cfg.threshold.target_normal_recall)
    paths, scores, skipped = score_files(load_model(ckpt, device), stored, files, batch_size=cfg.batch_size,
                                         device=device, amp=cfg.amp, progress=show_progress)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else ckpt_path.parent / f"predict_{ckpt_path.stem}"
    pred = Predictions(paths=paths, csi_scores=scores,
                       anomaly_scores=anomaly_scores(scores, calib.threshold, calib.scale),
                       is_anomaly=flag(scores, calib.threshold), skipped=skipped, calibration=calib, out_dir=out_dir)
    write_outputs(pred, ckpt_path)
    if cfg.save_grid:
        save_grid(out_dir / "predictions_grid.png", pred, stored.views.image_size, cfg.top_k)
    if show_progress:
        print(format_summary(pred))
    return pred
