#!/usr/bin/env bash
# Supplement Table 7: heuristic dissolvers by kernel size.   usage: scripts/paper/repro_kernels.sh [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
for s in "${SEEDS[@]}"; do
  for k in 3 7 11; do
    run_one kernel "$DS" "$CLS" "gaussian_k$k" "$s" --mode simclr_DIA --shift_trans_type blurgaussian_rotation --kernel_size "$k"
    run_one kernel "$DS" "$CLS" "median_k$k" "$s" --mode simclr_DIA --shift_trans_type blurmedian_rotation --kernel_size "$k"
  done
done
aggregate "$RESULTS" --table kernel
