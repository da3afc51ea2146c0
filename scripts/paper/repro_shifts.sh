#!/usr/bin/env bash
# Supplement Table 8: rotation vs cut-permutation, for each dissolver (blurs at kernel 7, shared with Table 7).
# At 32 px the DDPM dissolves at its own resolution, so "resize only" (blurnone) is the identity there.
#   usage: scripts/paper/repro_shifts.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
CKPT="$(ddpm "$DS" "$CLS")"
for s in "${SEEDS[@]}"; do
  for shift_kind in rotation cutperm; do
    run_one shift "$DS" "$CLS" "blurnone_$shift_kind" "$s" --mode simclr_DIA --shift_trans_type "blurnone_$shift_kind"
    run_one shift "$DS" "$CLS" "blurgaussian_$shift_kind" "$s" --mode simclr_DIA --shift_trans_type "blurgaussian_$shift_kind" \
      --kernel_size 7
    run_one shift "$DS" "$CLS" "blurmedian_$shift_kind" "$s" --mode simclr_DIA --shift_trans_type "blurmedian_$shift_kind" \
      --kernel_size 7
    run_one shift "$DS" "$CLS" "diffusion_$shift_kind" "$s" --mode simclr_DIA --shift_trans_type "diffusion_$shift_kind" \
      --diffusion_model_path "$CKPT"
  done
done
aggregate "$RESULTS" --table shift
