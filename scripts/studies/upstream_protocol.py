"""The "upstream protocol" figure: the maximum *test* AUROC over a run's kept checkpoints.

Upstream picks its best checkpoint by test AUROC, so the paper's figures are optimistic by construction.
Beside each honest figure (best.pt chosen on validation, test AUROC computed once) we show this one,
computed after everything is chosen, labelled optimistic, and used for nothing. It separates "our method
is weaker" from "our protocol is stricter" when comparing with the paper.

Needs runs trained with ``--keep_checkpoints`` (checkpoints/epochNNNN.pt at every validation). Each
checkpoint is evaluated with the exact eval settings of the run's report.json (same samples, crop, seed).

    python scripts/studies/upstream_protocol.py results/paper_cpu           # evaluate what is missing, print the table
    python scripts/studies/upstream_protocol.py results/paper_cpu --no_eval # only print
Writes ``upstream_protocol.json`` next to each report.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from common.atomic import json_dump_atomic  # noqa: E402
from common.config import DataConfig, EvalConfig  # noqa: E402
from evals.metrics import auroc  # noqa: E402

OUT_NAME = "upstream_protocol.json"
NOTE = ("optimistic: the maximum test AUROC over the kept checkpoints (upstream's model selection); "
        "computed after everything was chosen, selects nothing")


def eval_config(report: dict, checkpoint: Path) -> EvalConfig:
    """The run's own eval settings, for another checkpoint."""
    ev = report["config"]["eval"]
    data = DataConfig(**{**ev["data"], "normal_classes": tuple(ev["data"]["normal_classes"] or ()) or None}) \
        if ev.get("data") else None
    return EvalConfig(load_path=str(checkpoint), data=data, score=ev["score"], shift_kind=ev["shift_kind"],
                      n_samples=ev["n_samples"], crop_scale=tuple(ev["crop_scale"]), batch_size=ev["batch_size"],
                      seed=ev["seed"], device=ev.get("device"), amp=ev.get("amp", False))


def test_aurocs(report_path: Path) -> dict[int, float]:
    """Epoch -> test AUROC of every kept checkpoint of the run behind ``report_path``."""
    from evals.run import BANK_SEED_OFFSET, prepare  # deferred: the table alone needs no torch

    report = json.loads(report_path.read_text())
    checkpoints = sorted((Path(report["checkpoint"]).parent / "checkpoints").glob("epoch*.pt"))
    if not checkpoints:
        raise SystemExit(f"error: {report_path}: no checkpoints/epoch*.pt beside {report['checkpoint']} "
                         "(train with --keep_checkpoints)")
    result = {}
    for ckpt in checkpoints:
        cfg = eval_config(report, ckpt)
        setup = prepare(cfg, progress=False)
        scorer = setup.bank_scorer(cfg.score, seed=cfg.seed + BANK_SEED_OFFSET)
        test = setup.split.test
        result[int(setup.ckpt["epoch"])] = auroc(setup.scores(scorer, test), np.asarray(test.is_anomaly))
    return result


def ensure(report_path: Path) -> dict:
    """upstream_protocol.json beside report.json, computed once."""
    out = report_path.parent / OUT_NAME
    if out.exists():
        return json.loads(out.read_text())
    by_epoch = test_aurocs(report_path)
    best_epoch = max(by_epoch, key=by_epoch.get)
    honest = json.loads(report_path.read_text())
    record = {"note": NOTE, "max_test_auroc": by_epoch[best_epoch], "max_at_epoch": best_epoch,
              "honest_test_auroc": honest["metrics"]["auroc"], "honest_epoch": honest["extra"].get("epoch"),
              "test_auroc_by_epoch": {str(e): v for e, v in sorted(by_epoch.items())}}
    json_dump_atomic(record, out)
    return record


def table(root: Path, evaluate: bool) -> str:
    """Markdown: per dataset and variant, honest test AUROC and the optimistic figure, mean ± std over seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for report in sorted(root.glob("*/*/seed*/report.json")):
        if evaluate or (report.parent / OUT_NAME).exists():
            groups.setdefault((report.parts[-4], report.parts[-3]), []).append(ensure(report))
    lines = ["| dataset | variant | seeds | test AUROC, best.pt on validation | upstream protocol: max test AUROC "
             "over checkpoints (optimistic) |", "|---|---|---|---|---|"]
    for (dataset, variant), records in groups.items():
        def cell(key: str) -> str:
            values = [r[key] for r in records]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.fmean(values):.3f} ± {spread:.3f}"
        lines.append(f"| {dataset} | {variant} | {len(records)} | {cell('honest_test_auroc')} | "
                     f"{cell('max_test_auroc')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="a table folder: <root>/<dataset>/<variant>/seed<k>/report.json")
    p.add_argument("--no_eval", action="store_true", help="only tabulate runs already evaluated")
    args = p.parse_args(argv)
    print(table(args.root, evaluate=not args.no_eval))


if __name__ == "__main__":
    main()
