#!/usr/bin/env bash
# Supplement Tables 12-13: the similarity-matrix design (--loss_mode), with CSI for reference.
# usage: scripts/paper/repro_loss_mode.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
CKPT="$(ddpm "$DS" "$CLS")"
for s in "${SEEDS[@]}"; do
  run_one loss_mode "$DS" "$CLS" CSI "$s" --mode simclr_CSI --shift_trans_type rotation
  # naive (DIA-(a), the paper's main Table 1 and our default) and shifted_removed (DIA-(b), the ablation),
  # each named explicitly so a cached run never stands in for the other default
  run_one loss_mode "$DS" "$CLS" naive "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
    --diffusion_model_path "$CKPT" --loss_mode naive
  run_one loss_mode "$DS" "$CLS" shifted_removed "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
    --diffusion_model_path "$CKPT" --loss_mode shifted_removed
done
aggregate "$RESULTS" --table loss_mode
