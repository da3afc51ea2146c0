#!/usr/bin/env bash
# Raw vs EMA DDPM weights with the paper's EMA (0.995 every 10 steps, weights copied for the first 100 steps,
# then the 2/3-power warm-up). Trains the quick-preset DDPM on BreastMNIST per (class, seed),
# validating every 200 steps, and prints the normal-validation eps-L1 at t in [30, 100) of both weights at
# 600 and 2,000 steps (from each run's metrics.jsonl). The seed-0 DDPMs are the ones the loss-mode
# comparison uses (same flags, same folder).
# usage: scripts/studies/measure_ema.sh [classes, default "1 0"] [seeds, default "0 1"]
source "$(dirname "$0")/../lib_repro.sh"
CLASSES=(${1:-1 0}); SEEDS=(${2:-0 1})
DIRS=()
for cls in "${CLASSES[@]}"; do
  for s in "${SEEDS[@]}"; do
    DDPM_EXTRA="--val_every 200 --seed $s"; preset quick
    DIRS+=("$cls:$s:$(ddpm breastmnist "$cls")")
  done
done
"$PY" - "${DIRS[@]}" <<'PY'
import json, sys
from pathlib import Path
print("| class | DDPM seed | step | raw eps-L1 | EMA eps-L1 | better | best step (chosen weights) |")
print("|---|---|---|---|---|---|---|")
for item in sys.argv[1:]:
    cls, seed, folder = item.split(":", 2)
    rows = {}
    for line in (Path(folder) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row  # a resumed run may repeat a step: the last record wins
    meta = json.loads((Path(folder) / "best" / "ddpm.json").read_text())
    for step in (600, 2000):
        r = rows.get(step)
        if r is None:
            print(f"| {cls} | {seed} | {step} | missing | missing | | |")
            continue
        better = "EMA" if r["ema_dissolve"] < r["raw_dissolve"] else "raw"
        print(f"| {cls} | {seed} | {step} | {r['raw_dissolve']:.4f} | {r['ema_dissolve']:.4f} | {better} | "
              f"{meta['best_step']} ({meta['preferred_weights']}) |")
PY
