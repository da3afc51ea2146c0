"""Per-seed lines of one reproduction table: best validation AUROC (and its epoch), final validation AUROC,
test AUROC, read from each run's metrics.jsonl and report.json.

    python scripts/studies/per_seed_table.py results loss_mode
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def seed_rows(root: Path, table: str) -> list[str]:
    rows = []
    for group in sorted(p for p in (root / table).iterdir() if p.is_dir()):
        for report in sorted(group.glob("*/seed*/report.json")):
            records = [json.loads(line) for line in ((report.parent / "train").resolve() / "metrics.jsonl")
                       .read_text().splitlines()]
            val = [(r["val/auroc"], r["step"]) for r in records if "val/auroc" in r]
            epoch = {r["step"]: int(r["epoch/epoch"]) for r in records if "epoch/epoch" in r}
            best = max(val)
            test = json.loads(report.read_text())["metrics"]["auroc"]
            rows.append(f"| {group.name} | {report.parent.parent.name} | {report.parent.name[4:]} | "
                        f"{best[0]:.3f} ({epoch.get(best[1], '?')}) | {val[-1][0]:.3f} | {test:.3f} |")
    return rows


if __name__ == "__main__":
    root, table = Path(sys.argv[1]), sys.argv[2]
    print("| dataset | variant | seed | best val AUROC (epoch) | final val AUROC | test AUROC |\n"
          "|---|---|---|---|---|---|")
    print("\n".join(seed_rows(root, table)))
