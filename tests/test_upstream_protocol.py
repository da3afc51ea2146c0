"""scripts/studies/upstream_protocol.py: the optimistic "max test AUROC over kept checkpoints" figure."""
import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import torch

from common.cli import build_eval_parser, build_train_parser, eval_config_from_args, train_config_from_args
from evals.run import run_eval
from training.run import run_training

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("upstream_protocol", REPO / "scripts" / "studies" / "upstream_protocol.py")
upstream_protocol = importlib.util.module_from_spec(spec)
spec.loader.exec_module(upstream_protocol)
torch.set_num_threads(1)


def test_max_over_kept_checkpoints_contains_the_honest_checkpoint_and_is_tabulated(tmp_path):
    flags = ("--dataset synthetic --model resnet18 --width 4 --batch_size 16 --steps_per_epoch 2 --warmup 0.5 "
             "--val_samples 1 --seed 0 --num_workers 0 --mode simclr_CSI --shift_trans_type rotation --epochs 3 "
             f"--keep_checkpoints --logdir {tmp_path / 'train'}")
    logdir = run_training(train_config_from_args(build_train_parser().parse_args(shlex.split(flags))),
                          show_progress=False)
    assert sorted(p.name for p in (logdir / "checkpoints").iterdir()) == ["epoch0001.pt", "epoch0002.pt",
                                                                          "epoch0003.pt"]
    seed_dir = tmp_path / "table" / "synthetic_c0" / "CSI" / "seed0"
    args = build_eval_parser().parse_args(shlex.split(
        f"--load_path {logdir / 'best.pt'} --ood_samples 2 --resize_factor 0.54 --resize_fix --n_boot 20 "
        f"--out_dir {seed_dir}"))
    run_eval(eval_config_from_args(args), show_progress=False)
    record = upstream_protocol.ensure(seed_dir / "report.json")
    by_epoch = {int(e): v for e, v in record["test_auroc_by_epoch"].items()}
    assert sorted(by_epoch) == [1, 2, 3]
    # best.pt is the kept checkpoint of its epoch, scored with the same views: the same test AUROC
    assert by_epoch[record["honest_epoch"]] == pytest.approx(record["honest_test_auroc"], abs=1e-12)
    assert record["max_test_auroc"] == max(by_epoch.values()) >= record["honest_test_auroc"]
    assert "optimistic" in record["note"]
    lines = upstream_protocol.table(tmp_path / "table", evaluate=False).splitlines()
    assert lines[2].startswith("| synthetic_c0 | CSI | 1 |") and f"{record['max_test_auroc']:.3f}" in lines[2]


def test_a_run_without_kept_checkpoints_is_named(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"checkpoint": str(tmp_path / "train" / "best.pt")}))
    with pytest.raises(SystemExit, match="--keep_checkpoints"):
        upstream_protocol.test_aurocs(report)
