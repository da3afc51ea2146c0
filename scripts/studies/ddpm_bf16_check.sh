#!/usr/bin/env bash
# Does bf16 autocast hold the DDPM's normal-validation eps-loss? fp32 and bf16 runs of the same DDPM, same seed,
# same batches, on BreastMNIST class 0, at two sizes; prints the eps-loss of both at every validated step.
# Usage: bash scripts/studies/ddpm_bf16_check.sh [STEPS_DIM16] [STEPS_DIM32]   (defaults 1000 and 750)
# The dim-32 bf16 run is the long-DDPM study's (scripts/studies/long_ddpm.sh 0), so only its fp32 twin trains here.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-.venv/bin/python}"
RUNS="${RUNS:-runs/bf16_check}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
train() {  # train <dim> <mults> <steps> <name> [--amp]
  local dir="$RUNS/$4"
  [ -f "$dir/last/ddpm.json" ] && "$PY" -c "import json,sys; sys.exit(json.load(open('$dir/last/ddpm.json'))['step'] < $3)" \
    && return
  local resume=(); [ -d "$dir/last" ] && resume=(--resume)
  "$PY" diffusion_models/train_eval_ddpm.py --mode train --dataset breastmnist --data_root datasets/builtin \
    --one_class_idx 0 --dim "$1" --dim_mults "$2" --batch_size 32 --grad_accum 1 --t_train_max 200 \
    --train_steps "$3" --val_every 250 --save_every 250 --save_dir "$dir" "${resume[@]}" "${@:5}" >/dev/null 2>&1
}
train 16 1,2,2 "${1:-1000}" d16_fp32
train 16 1,2,2 "${1:-1000}" d16_bf16 --amp
train 32 1,2,4,8 "${2:-750}" d32_fp32
"$PY" - "$RUNS" "${LONG_RUN:-runs/long_ddpm/breastmnist-c0-d32-t200}" <<'PY'
import json, sys
from pathlib import Path
runs, long_run = Path(sys.argv[1]), Path(sys.argv[2])
def curve(run):
    return {r["step"]: r["raw_dissolve"] for r in map(json.loads, (run / "metrics.jsonl").open())}
print("| UNet | step | fp32 eps-L1 | bf16 eps-L1 | bf16 - fp32 |\n|---|---|---|---|---|")
for name, fp32, bf16 in (("dim 16 (1,2,2)", runs / "d16_fp32", runs / "d16_bf16"),
                         ("dim 32 (1,2,4,8)", runs / "d32_fp32", long_run)):
    a, b = curve(fp32), curve(bf16)
    for step in sorted(a.keys() & b.keys()):
        print(f"| {name} | {step} | {a[step]:.4f} | {b[step]:.4f} | {b[step] - a[step]:+.4f} |")
PY
