#!/usr/bin/env bash
# Supplement Table 9: dissolver resolution 32/64/128 (224-px datasets; MedMNIST dissolves at 32 only).
# usage: scripts/paper/repro_resolution.sh [dataset] [class] [quick|paper] [seeds...]
# RESOLUTIONS="128" runs a subset (default "32 64 128"), e.g. to spread the arms over two shells.
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-chestxray}"; CLS="${2:-0}"; preset "${3:-quick}"; shift $(( $# < 3 ? $# : 3 )); SEEDS=(${@:-0 1 2})
for res in ${RESOLUTIONS:-32 64 128}; do
  CKPT="$(ddpm "$DS" "$CLS" "$res")"
  for s in "${SEEDS[@]}"; do
    run_one resolution "$DS" "$CLS" "res$res" "$s" --mode simclr_DIA --shift_trans_type diffusion_rotation \
      --diff_resolution "$res" --diffusion_model_path "$CKPT"
  done
done
aggregate "$RESULTS" --table resolution
