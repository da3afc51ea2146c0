"""The folder workflow's last step: eval.py calibrates and stores a threshold, then
``eval.py --mode predict`` scores image files with it (evals/predict.py, evals/run.py).

The checkpoint is a randomly initialised tiny model saved in the training format, so these
tests depend on the checkpoint contract only, not on the training loop.
"""
import csv
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.checkpoint import save_checkpoint
from common.cli import build_eval_parser, config_from_eval_args
from common.config import (DataConfig, EvalConfig, ModelConfig, PredictConfig, RunConfig, ThresholdConfig,
                           TrainConfig)
from common.errors import UserError
from datasets import load_one_class_split, make_synthetic
from evals.calibrate import calibration_path, recall_threshold
from evals.predict import expand_inputs, run_predict
from evals.run import run_eval
from models import build_model

REPO = Path(__file__).resolve().parents[1]
SIZE = 16


def write_png(path: Path, image: torch.Tensor) -> None:
    """uint8 (3, H, W) -> an RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def write_classes(folder: Path, images: torch.Tensor, is_anomaly: np.ndarray, prefix: str) -> None:
    for i, (image, bad) in enumerate(zip(images, is_anomaly)):
        write_png(folder / ("abnormal" if bad else "normal") / f"{prefix}{i:03d}.png", image)


def make_folder(root: Path, with_anomalies: bool) -> Path:
    """A user tree from the synthetic lesion data: train/{normal,abnormal}/ + test/{normal,abnormal}/
    (72 + 12 and 10 + 10 images), or a bare normal/ folder of 40 (the normal-only case)."""
    data = make_synthetic(n_train=60, n_val=24, n_test=20, image_size=SIZE, seed=0)
    if not with_anomalies:
        write_classes(root, data.train.images[:40], np.zeros(40, dtype=int), "n")
        return root
    write_classes(root / "train", data.train.images, data.train.is_anomaly, "n")
    write_classes(root / "train", data.val.images, data.val.is_anomaly, "v")
    write_classes(root / "test", data.test.images, data.test.is_anomaly, "t")
    return root


def make_checkpoint(logdir: Path, data_root: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet18", width=4, n_shifts=4, proj_dim=128)
    cfg = TrainConfig(data=DataConfig(dataset="folder", data_root=str(data_root), image_size=SIZE),
                      run=RunConfig(logdir=str(logdir)),
                      model=ModelConfig(width=4))
    path = logdir / "best.pt"
    save_checkpoint(path, {"config": cfg.to_dict(), "model_spec": model.spec(), "model": model.state_dict(),
                           "epoch": 1, "step": 1, "image_size": SIZE, "normal_classes": ["normal"]})
    return path


EVAL = dict(n_samples=2, batch_size=8, n_boot=20)  # 8: several batches, whose make-up must not matter


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(data root, checkpoint, eval.py's output) on a folder with anomalies in train and test."""
    tmp = tmp_path_factory.mktemp("folder")
    root = make_folder(tmp / "data", with_anomalies=True)
    ckpt = make_checkpoint(tmp / "run", root)
    out = run_eval(EvalConfig(load_path=str(ckpt), out_dir=str(tmp / "eval"), **EVAL), show_progress=False)
    return root, ckpt, out


def predict(ckpt: Path, inputs, out_dir: Path, **kwargs):
    return run_predict(PredictConfig(load_path=str(ckpt), inputs=tuple(map(str, inputs)), out_dir=str(out_dir),
                                     **kwargs), show_progress=False)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def stored(ckpt: Path) -> dict:
    return torch.load(calibration_path(ckpt), weights_only=True)


def test_predict_on_the_test_folder_gives_eval_scores(evaluated, tmp_path):
    root, ckpt, out = evaluated
    pred = predict(ckpt, [root / "test" / "normal", root / "test" / "abnormal"], tmp_path)  # eval.py's order
    eval_rows = read_rows(Path(out["out_dir"]) / "scores.csv")
    assert [Path(p).resolve() for p in pred.paths] == [Path(r["path"]).resolve() for r in eval_rows]
    np.testing.assert_allclose(pred.csi_scores, out["scores"], rtol=0, atol=1e-5)
    rows = read_rows(tmp_path / "predictions.csv")
    assert list(rows[0]) == ["path", "csi_score", "anomaly_score", "is_anomaly"]
    np.testing.assert_allclose([float(r["csi_score"]) for r in rows], out["scores"], rtol=0, atol=1e-5)


def test_a_file_scores_as_in_eval_alone_in_any_folder_order_and_batch_size(evaluated, tmp_path):
    """Each image has its own stream of views (evals/view_keys.py): its neighbours change nothing."""
    root, ckpt, out = evaluated
    eval_score = {Path(r["path"]).resolve(): float(r["score"])
                  for r in read_rows(Path(out["out_dir"]) / "scores.csv")}
    files = sorted((root / "test").rglob("*.png"))
    picked = [files[3], files[17], files[0], files[9], files[12]]
    alone = predict(ckpt, [picked[0]], tmp_path / "alone").csi_scores
    few = predict(ckpt, picked[::-1], tmp_path / "few", batch_size=3)
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    copy.write_bytes(picked[0].read_bytes())
    mixed = predict(ckpt, [copy, *files[5:8]], tmp_path / "mixed", batch_size=1).csi_scores
    np.testing.assert_allclose(alone, [eval_score[picked[0].resolve()]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(few.csi_scores, [eval_score[Path(p).resolve()] for p in few.paths], rtol=0, atol=1e-5)
    np.testing.assert_allclose(mixed[0], alone[0], rtol=0, atol=1e-5)  # same bytes, other name and neighbours


def test_predict_never_reads_the_training_data(evaluated, tmp_path, monkeypatch):
    root, ckpt, _ = evaluated

    def forbidden(*args, **kwargs):
        raise AssertionError("predict loaded a dataset split")

    monkeypatch.setattr("evals.run.load_split", forbidden)
    monkeypatch.setattr("datasets.load.LOADERS", {})
    assert len(predict(ckpt, [root / "test" / "abnormal"], tmp_path).paths) > 0


def add_odd_files(folder: Path, sources: list[Path]) -> list[Path]:
    """Readable images of other sizes and modes (gray, RGBA, 16-bit, JPEG, nested), a corrupt PNG and
    a text file; returns the readable image files."""
    folder.mkdir(parents=True)
    rgb = [Image.open(p).convert("RGB") for p in sources[:4]]
    odd = {"gray.png": rgb[0].convert("L").resize((40, 30)), "rgba.png": rgb[1].convert("RGBA").resize((20, 20)),
           "deep.png": Image.fromarray((np.asarray(rgb[2].convert("L"), dtype=np.uint16) * 257)),
           "sub/photo.jpg": rgb[3].resize((64, 48))}
    for name, image in odd.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / name)
    for src in sources[4:7]:
        shutil.copy(src, folder / src.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg") and p.name != "broken.png")


def test_predict_on_a_folder_scores_every_image_skips_the_corrupt_one_and_follows_the_threshold(evaluated, tmp_path,
                                                                                                capsys):
    root, ckpt, _ = evaluated
    readable = add_odd_files(tmp_path / "in", sorted((root / "test" / "normal").glob("*.png")))
    out = tmp_path / "out"
    run_predict(PredictConfig(load_path=str(ckpt), inputs=(str(tmp_path / "in"),), out_dir=str(out), save_grid=True,
                              top_k=3), show_progress=True)
    printed = capsys.readouterr().out
    rows = read_rows(out / "predictions.csv")
    assert sorted(Path(r["path"]) for r in rows) == readable
    skipped = read_rows(out / "skipped.csv")
    assert [Path(r["path"]).name for r in skipped] == ["broken.png"] and "broken.png" in printed
    cal = stored(ckpt)["calibration"]
    tau, scale = cal["threshold"], cal["scale"]
    for r in rows:
        score = float(r["csi_score"])
        assert int(r["is_anomaly"]) == int(score < tau)
        assert float(r["anomaly_score"]) == pytest.approx((tau - score) / scale)
    assert (out / "predictions_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "predict.json").read_text())
    assert summary["n_scored"] == len(readable) and summary["n_skipped"] == 1


def test_calibration_reaches_the_target_normal_recall_on_validation(tmp_path):
    root = make_folder(tmp_path / "data", with_anomalies=True)
    ckpt = make_checkpoint(tmp_path / "run", root)
    target = 0.8
    run_eval(EvalConfig(load_path=str(ckpt), calibrate_only=True, threshold=ThresholdConfig("recall", target),
                        **EVAL), show_progress=False)
    raw = stored(ckpt)
    labels = raw["val_is_anomaly"].numpy()
    val = load_one_class_split("folder", root, image_size=SIZE).val  # the validation files, in eval.py's order
    assert labels.tolist() == val.is_anomaly.tolist() and 0 < labels.sum() < len(labels)
    rescored = predict(ckpt, val.paths, tmp_path / "out").csi_scores  # scored again, from the files
    np.testing.assert_allclose(rescored, raw["val_scores"].numpy(), rtol=0, atol=1e-5)
    tau = raw["calibration"]["threshold"]
    normal = rescored[labels == 0]
    assert np.mean(normal >= tau) >= target
    assert not any(np.mean(normal >= t) >= target for t in normal[normal > tau + 1e-6])


def test_eval_report_holds_the_test_decisions_at_the_stored_threshold(evaluated):
    _, ckpt, out = evaluated
    report = json.loads((Path(out["out_dir"]) / "report.json").read_text())["extra"]["threshold"]
    tau = stored(ckpt)["calibration"]["threshold"]
    assert report["threshold"] == tau and report["rule"] == "recall"
    tp = tn = fp = fn = 0
    for score, label in zip(out["scores"], out["is_anomaly"]):
        tp, fn = tp + (score < tau and label == 1), fn + (score >= tau and label == 1)
        tn, fp = tn + (score >= tau and label == 0), fp + (score < tau and label == 0)
    at = report["at_threshold"]
    assert at["accuracy"] == pytest.approx((tp + tn) / (tp + tn + fp + fn))
    assert at["sensitivity"] == pytest.approx(tp / (tp + fn)) and at["specificity"] == pytest.approx(tn / (tn + fp))
    assert set(report["by_rule"]) == {"recall", "f1"}


def test_predict_can_recalibrate_from_the_stored_validation_scores(evaluated, tmp_path):
    _, ckpt, _ = evaluated
    raw = stored(ckpt)
    glob_input = str(evaluated[0] / "test" / "*" / "*.png")
    pred = predict(ckpt, [glob_input], tmp_path, threshold=ThresholdConfig("recall", 0.5))
    normal_val = raw["val_scores"].numpy()[raw["val_is_anomaly"].numpy() == 0]
    assert pred.calibration.threshold == recall_threshold(normal_val, 0.5)
    assert len(pred.paths) == 20
    assert predict(ckpt, [glob_input], tmp_path, threshold=ThresholdConfig("f1")).calibration.threshold == \
        raw["calibration"]["thresholds"]["f1"]


def test_normal_only_folder_trains_evaluates_and_falls_back_to_the_recall_rule(tmp_path):
    root = make_folder(tmp_path / "data", with_anomalies=False)
    ckpt = make_checkpoint(tmp_path / "run", root)
    out = run_eval(EvalConfig(load_path=str(ckpt), threshold=ThresholdConfig("f1"), **EVAL), show_progress=False)
    assert out["metrics"] is None and (out["is_anomaly"] == 0).all()  # test holds normals only: no AUROC
    cal = stored(ckpt)["calibration"]
    assert (cal["rule"], cal["requested_rule"], cal["thresholds"]["f1"]) == ("recall", "f1", None)
    pred = predict(ckpt, [root / "normal"], tmp_path / "out")
    assert len(pred.paths) == 40


def test_missing_or_stale_calibration_says_how_to_make_one(evaluated, tmp_path):
    root, ckpt, _ = evaluated
    bare = make_checkpoint(tmp_path / "bare", root)
    with pytest.raises(UserError, match=r"no calibrated threshold.*eval\.py --mode ood_pre"):
        predict(bare, [root / "test"], tmp_path / "a")
    shutil.copy(calibration_path(ckpt), calibration_path(bare))
    state = torch.load(bare, weights_only=False)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(bare, {k: v for k, v in state.items() if k != "format_version"})
    with pytest.raises(UserError, match="other weights"):
        predict(bare, [root / "test"], tmp_path / "b")


def test_inputs_expand_to_image_files_and_bad_inputs_are_user_errors(tmp_path):
    write_png(tmp_path / "a" / "x.png", torch.zeros(3, 4, 4, dtype=torch.uint8))
    write_png(tmp_path / "a" / "deeper" / "y.png", torch.zeros(3, 4, 4, dtype=torch.uint8))
    (tmp_path / "a" / "readme.txt").write_text("-")
    one = tmp_path / "a" / "x.png"
    assert expand_inputs([str(tmp_path / "a"), str(one)]) == [tmp_path / "a" / "deeper" / "y.png", one]
    assert expand_inputs([str(tmp_path / "a" / "*.png")]) == [one]
    with pytest.raises(UserError, match="--input"):
        expand_inputs([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        expand_inputs([str(tmp_path / "empty")])


def parse(cmd: str):
    return config_from_eval_args(build_eval_parser().parse_args(shlex.split(cmd)))


def test_cli_translates_predict_and_threshold_flags():
    cfg = parse("--mode predict --load_path r/best.pt --input a.png dir --save_grid --top_k 3")
    assert isinstance(cfg, PredictConfig) and cfg.inputs == ("a.png", "dir") and cfg.threshold is None
    assert cfg.save_grid and cfg.top_k == 3 and cfg.batch_size is None
    with_rule = parse("--mode predict --load_path r --input d --threshold_rule f1")
    assert with_rule.threshold == ThresholdConfig("f1", 0.95)
    ev = parse("--load_path r --target_normal_recall 0.9 --calibrate_only")
    assert isinstance(ev, EvalConfig) and ev.threshold == ThresholdConfig("recall", 0.9) and ev.calibrate_only
    assert ev.batch_size == 128 and parse("--load_path r").threshold == ThresholdConfig()
    for bad, flag in (("--mode predict --load_path r", "--input"), ("--load_path r --input x", "--input"),
                      ("--mode predict --load_path r --input x --dataset folder", "--dataset"),
                      ("--load_path r --target_normal_recall 1.5", "--target_normal_recall")):
        with pytest.raises(UserError, match=flag):
            parse(bad)


def test_eval_py_predict_fails_with_one_line_without_a_calibration(evaluated, tmp_path):
    root, _, _ = evaluated
    bare = make_checkpoint(tmp_path / "bare", root)
    proc = subprocess.run([sys.executable, "eval.py", "--mode", "predict", "--load_path", str(bare), "--input",
                           str(root / "test")], cwd=REPO, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "eval.py --mode ood_pre" in lines[0]
