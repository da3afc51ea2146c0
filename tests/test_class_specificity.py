"""scripts/diagnostics/class_specificity.py: the own-class factor separates image content from what the DDPM learnt."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "diagnostics"))
import class_specificity  # noqa: E402


def fake_run(folder: Path, steps_changes: dict[int, tuple[float, float]]) -> Path:
    """A DDPM run whose metrics.jsonl holds (normal, anomalous) mean changes at t = 50 per step."""
    folder.mkdir()
    lines = [json.dumps({"step": 1, "raw_all": 0.5})]  # a record without the diagnostic is skipped
    for step, (normal, anomalous) in steps_changes.items():
        rec = {str(t): {"normal": normal, "anomalous": anomalous, "ratio": anomalous / normal} for t in (30, 50, 99)}
        lines.append(json.dumps({"step": step, "dissolve_change": {"raw": rec}}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_content_only_gives_factor_one_and_a_learnt_class_shows(tmp_path):
    # images of class b carry 1.3x the fine detail of class a; each DDPM changes everything by its own strength.
    # Content only: DDPM_A (trained on a) sees a as normal; DDPM_B sees b as normal.
    content = {"a": 1.0, "b": 1.3}
    s = 0.8  # a class-specific DDPM changes its own class by s
    a = fake_run(tmp_path / "A", {250: (0.02 * content["a"], 0.02 * content["b"]),
                                  500: (0.02 * content["a"] * s, 0.02 * content["b"])})
    b = fake_run(tmp_path / "B", {250: (0.03 * content["b"], 0.03 * content["a"]),
                                  500: (0.03 * content["b"] * s, 0.03 * content["a"]),
                                  750: (1.0, 1.0)})  # a step only one run validated is left out
    rows = class_specificity.table(a, b)
    assert len(rows) == 2 + 2
    step250, step500 = (row.split("|") for row in rows[2:])
    assert float(step250[5]) == pytest.approx(1.0, abs=1e-3)  # ratios 1.3 and 1/1.3: content only
    assert float(step250[3]) == pytest.approx(1.3, abs=1e-3) and float(step250[4]) == pytest.approx(1 / 1.3, abs=1e-3)
    assert float(step500[5]) == pytest.approx(1 / s, abs=1e-3)


def test_a_folder_without_metrics_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        class_specificity.table(tmp_path, tmp_path)
