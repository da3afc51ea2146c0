"""The validation table of scripts/studies/why_dia_cpu.sh: per variant, best and final validation AUROC per seed.

    python scripts/studies/why_table.py results/why/breastmnist_c0
Reads each finished run (a seed folder holding DONE) of <root>/<variant>/seed<k>/metrics.jsonl. Test data is
never read: these runs are for choosing, not for reporting.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from evals.aggregate import val_aurocs  # noqa: E402


def rows(root: Path) -> list[str]:
    out = ["| variant | seeds | best val AUROC per seed | best val AUROC (mean) | final val AUROC per seed | "
           "final val AUROC (mean) |", "|---|---|---|---|---|---|"]
    for variant in sorted(p.name for p in root.iterdir() if p.is_dir()):
        runs = [vals for log in sorted(root.glob(f"{variant}/seed*/metrics.jsonl"))
                if (log.parent / "DONE").exists() and (vals := val_aurocs(log))]
        if runs:
            out.append(f"| {variant} | {len(runs)} | {' / '.join(f'{max(v):.3f}' for v in runs)} | "
                       f"{statistics.fmean(max(v) for v in runs):.3f} | {' / '.join(f'{v[-1]:.3f}' for v in runs)} | "
                       f"{statistics.fmean(v[-1] for v in runs):.3f} |")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: python scripts/studies/why_table.py RESULTS/why/<dataset>_c<class>  "
                         "(a folder of runs)")
    print("\n".join(rows(Path(sys.argv[1]))))
