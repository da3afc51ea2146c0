#!/usr/bin/env bash
# Supplement Table 9 (dissolver resolution 32/64/128) at a size a 2-core CPU finishes in about 90 min:
# chest X-rays (normal = NORMAL) resized to 128 px; per resolution a DDPM of dim 8 (1,2,2), 600 steps;
# DIA with ResNet-18 width 16, B = 16, 6 epochs of 20 steps; CSI eval with 2 samples per shift.
# The 32/64 px arms and the slower 128 px arm run side by side, one thread each.
# usage: scripts/paper/repro_resolution_cpu.sh DATA_ROOT [seeds...]   (default seeds: 0 1 2)
set -euo pipefail
DATA="${1:?usage: scripts/paper/repro_resolution_cpu.sh DATA_ROOT [seeds...]}"; shift
[ -d "$DATA" ] || { echo "error: DATA_ROOT $DATA is not a folder (expected train|test/NORMAL|PNEUMONIA)" >&2; exit 2; }
DATA_ROOT="$(cd "$DATA" && pwd)"; export DATA_ROOT
cd "$(dirname "$0")/../.."
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
export RESULTS="${RESULTS:-results/quick_resolution}" EPOCHS=6 DDPM_STEPS=600 OMP_NUM_THREADS=1
export DDPM_EXTRA="--dim 8 --grad_accum 1 --val_every 200"
export TRAIN_EXTRA="--image_size 128 --batch_size 16 --steps_per_epoch 20 --warmup 1"
export EVAL_EXTRA="--ood_samples 2"
RESOLUTIONS="32 64" scripts/paper/repro_resolution.sh chestxray 0 quick "${SEEDS[@]}" > /dev/null & low=$!
RESOLUTIONS="128" scripts/paper/repro_resolution.sh chestxray 0 quick "${SEEDS[@]}" > /dev/null & high=$!
status=0; wait "$low" || status=$?; wait "$high" || status=$?  # let both arms finish before failing
[ "$status" -eq 0 ] || exit "$status"
PY="${PY:-.venv/bin/python}"; [ -x "$PY" ] || PY=python3
"$PY" -m evals.aggregate "$RESULTS" --table resolution
