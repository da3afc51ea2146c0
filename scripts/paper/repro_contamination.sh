#!/usr/bin/env bash
# Supplement Table 10: anomalies mixed into training, lambda = 0/10/20 %.   usage: scripts/paper/repro_contamination.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
CKPT="$(ddpm "$DS" "$CLS")"
for s in "${SEEDS[@]}"; do
  # lambda 0 is the main table's DIA run (same flags, so the run is shared)
  run_one contamination "$DS" "$CLS" lambda0 "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
    --diffusion_model_path "$CKPT"
  for pct in 10 20; do
    run_one contamination "$DS" "$CLS" "lambda$pct" "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
      --diffusion_model_path "$CKPT" --contamination_ratio "0.$pct"
  done
done
aggregate "$RESULTS" --table contamination
