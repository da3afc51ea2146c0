"""One JSON of every run of some tables: test metrics, best epoch, validation curve, the optimistic upstream-protocol
figure when computed, and the exact train.py flags and eval settings (run folders are not kept between machines).

    python scripts/studies/runs_summary.py results paper_cpu chest_cpu --out docs/studies/why_dia_cpu/runs.json
An existing --out is merged into, not replaced: runs summarised on an earlier machine, whose folders are gone,
keep their entries; a run found again replaces its own.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for common
from evals.aggregate import val_aurocs  # noqa: E402
from common.atomic import atomic_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def portable(text: str) -> str:
    """Paths relative to the repository (and its sibling ../shared), not to this machine."""
    return text.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")


def summary(report: Path) -> dict:
    d = json.loads(report.read_text())
    m, run = d["metrics"], Path(d["checkpoint"]).parent.parent
    val = val_aurocs(run / "train" / "metrics.jsonl")
    upstream = report.parent / "upstream_protocol.json"
    return {"test_auroc": m["auroc"], "test_auroc_ci": [m["auroc_ci_low"], m["auroc_ci_high"]], "aupr": m["aupr"],
            "fpr95": m["fpr95"], "best_epoch": d["extra"]["epoch"], "best_val_auroc": max(val) if val else None,
            "val_auroc_curve": val,
            "upstream_protocol_max_test_auroc":
                json.loads(upstream.read_text())["max_test_auroc"] if upstream.exists() else None,
            "train_flags": portable((run / "flags.txt").read_text().strip()),
            "eval": {k: d["config"]["eval"][k] for k in ("n_samples", "crop_scale", "seed")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("tables", nargs="+")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    found = {"/".join(r.relative_to(args.root).parts[:4]): summary(r)
             for t in args.tables for r in sorted((args.root / t).glob("*/*/seed*/report.json"))}
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    kept = len(out.keys() - found.keys())
    out.update(found)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(dict(sorted(out.items())), indent=1) + "\n")
    print(f"{len(found)} runs summarised, {kept} earlier entries kept -> {args.out}")


if __name__ == "__main__":
    main()
