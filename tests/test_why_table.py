"""scripts/studies/why_table.py: finished runs only, best and final validation AUROC per seed."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "studies"))
import why_table  # noqa: E402


def run(root: Path, variant: str, seed: int, aurocs: list[float], done: bool = True) -> None:
    folder = root / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    lines = [json.dumps({"step": 1, "train/loss": 3.0})] + [json.dumps({"val/auroc": a}) for a in aurocs]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if done:
        (folder / "DONE").touch()


def test_rows_read_finished_runs_only(tmp_path):
    run(tmp_path, "CSI", 0, [0.6, 0.7, 0.5])
    run(tmp_path, "CSI", 1, [0.8, 0.6])
    run(tmp_path, "CSI", 2, [0.99], done=False)  # still training: left out
    run(tmp_path, "DIA", 0, [0.55], done=False)  # no finished seed: no row
    rows = why_table.rows(tmp_path)
    assert len(rows) == 3
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert cells == ["CSI", "2", "0.700 / 0.800", "0.750", "0.500 / 0.600", "0.550"]
