"""Does a DDPM dissolve the class it was NOT trained on more, once image content is factored out?

The dissolver diagnostic's ratio (mean |x − x̂₀| on anomalous / on normal validation images) mixes two things: how
much fine detail each group of images carries (a median blur changes them by different amounts too, with no
training at all), and what DIA relies on, that the DDPM has learnt the normal class and so changes other images
more. On a binary dataset the two can be separated: train one DDPM on each class and validate both on the same
images, with the roles swapped. If the change is content c(group) × strength(DDPM) × s for the DDPM's own class, then
    ratio_A = c(b) / (c(a) · s),   ratio_B = c(a) / (c(b) · s),   so   √(ratio_A · ratio_B) = 1 / s:
the **own-class factor**. 1.00 means the DDPM changes images by their content alone, whichever class it saw;
above 1 it changes the class it did not see more, which is DIA's premise.

    python scripts/diagnostics/class_specificity.py DDPM_TRAINED_ON_CLASS_A DDPM_TRAINED_ON_CLASS_B
Reads each run's metrics.jsonl (written at every DDPM validation); prints a row per common step.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from diffusion_models.along_training import own_class_factor  # noqa: E402


def change_by_step(run: Path) -> dict[int, dict]:
    """step -> the run's dissolve_change record ({weights: {t: {normal, anomalous, ratio}}})."""
    log = run / "metrics.jsonl"
    if not log.is_file():
        raise SystemExit(f"error: {log} not found: pass a DDPM run folder (train_eval_ddpm.py --save_dir)")
    rows = (json.loads(line) for line in log.read_text().splitlines() if line.strip())
    return {r["step"]: r["dissolve_change"] for r in rows if r.get("dissolve_change")}


def table(run_a: Path, run_b: Path, t: str = "50") -> list[str]:
    a, b = change_by_step(run_a), change_by_step(run_b)
    steps = sorted(a.keys() & b.keys())
    if not steps:
        raise SystemExit(f"error: {run_a} and {run_b} share no validated step with a dissolve_change record")
    lines = [f"| step | weights | ratio, DDPM on A | ratio, DDPM on B | own-class factor √(product), t={t} |",
             "|---|---|---|---|---|"]
    for step in steps:
        for weights in ("raw", "ema"):
            if weights in a[step] and weights in b[step]:
                ra, rb = a[step][weights][t]["ratio"], b[step][weights][t]["ratio"]
                lines.append(f"| {step} | {weights} | {ra:.3f} | {rb:.3f} | {own_class_factor(ra, rb):.3f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, help="DDPM run trained on one class")
    p.add_argument("run_b", type=Path, help="DDPM run trained on the other class (same dataset and split)")
    p.add_argument("--t", default="50", choices=["30", "50", "99"])
    args = p.parse_args(argv)
    print("\n".join(table(args.run_a, args.run_b, args.t)))


if __name__ == "__main__":
    sys.exit(main())
