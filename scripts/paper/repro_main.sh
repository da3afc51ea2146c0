#!/usr/bin/env bash
# Paper Table 1: DIA vs CSI.   usage: scripts/paper/repro_main.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
CKPT="$(ddpm "$DS" "$CLS")"
for s in "${SEEDS[@]}"; do
  run_one main "$DS" "$CLS" CSI "$s" --mode simclr_CSI --shift_trans_type rotation
  run_one main "$DS" "$CLS" DIA "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation --diffusion_model_path "$CKPT"
done
aggregate "$RESULTS" --table main
