#!/usr/bin/env bash
# Supplement Table 11: is DIA just a bigger batch? CSI (B=32), CSI-1.5 (B=48), DIA (B=32).
# usage: scripts/paper/repro_batch.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
CKPT="$(ddpm "$DS" "$CLS")"
for s in "${SEEDS[@]}"; do
  run_one batch "$DS" "$CLS" CSI "$s" --mode simclr_CSI --shift_trans_type rotation
  run_one batch "$DS" "$CLS" CSI-1.5 "$s" --mode simclr_CSI --shift_trans_type rotation --batch_size 48
  run_one batch "$DS" "$CLS" DIA "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
    --diffusion_model_path "$CKPT"
done
aggregate "$RESULTS" --table batch
