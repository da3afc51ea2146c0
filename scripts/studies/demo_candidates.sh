#!/usr/bin/env bash
# Candidates for the demo's quick preset, compared on VALIDATION AUROC only (no test evaluation).
# The demo's DDPM (dim 8, 600 steps) once, then DIA and CSI with the demo's training flags at upstream's
# lr_init 0.1 and at 0.01, seed 0. Prints the scripts/studies/why_table.py table.
#   usage: scripts/studies/demo_candidates.sh [CLASS]      (default 1, the demo's class)
#   Writes $RESULTS (default results/)/demo_cand/c<CLASS>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PY:-.venv/bin/python}"; DATA=datasets/builtin; CLS="${1:-1}"
R="${RESULTS:-results}/demo_cand/c$CLS"
FAST_FLAGS=(--amp --channels_last); [ "${FAST:-1}" = 0 ] && FAST_FLAGS=()  # as scripts/demo.sh
DDPM=(--dim 8 --dim_mults 1,2,2 --train_steps 600 --batch_size 16 --grad_accum 1 --val_every 200)  # scripts/demo.sh quick
DIA=(--width 16 --epochs 15 --warmup 2 --save_step 3 --val_samples 2 "${FAST_FLAGS[@]}")
[ -f "$R/ddpm/DONE" ] || { "$PY" diffusion_models/train_eval_ddpm.py --mode train --dataset breastmnist \
  --data_root "$DATA" --one_class_idx "$CLS" "${DDPM[@]}" --save_dir "$R/ddpm" && touch "$R/ddpm/DONE"; }
run() {
  local d="$R/why/$1/seed0"; shift
  [ -f "$d/DONE" ] && return
  "$PY" train.py --data_root "$DATA" --dataset breastmnist --model resnet18 --diff_resolution 32 --batch_size 32 \
    --one_class_idx "$CLS" --diffusion_model_path "$R/ddpm" "${DIA[@]}" "$@" --logdir "$d" && touch "$d/DONE"
}
run DIA --mode simclr_DIA --shift_trans_type diffusion_rotation
run DIA_lr0.01 --mode simclr_DIA --shift_trans_type diffusion_rotation --lr_init 0.01
run CSI --mode simclr_CSI --shift_trans_type rotation
run CSI_lr0.01 --mode simclr_CSI --shift_trans_type rotation --lr_init 0.01
"$PY" scripts/studies/why_table.py "$R/why"
