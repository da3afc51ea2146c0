#!/usr/bin/env bash
# Upstream quirks, each measured on VALIDATION against our default (DIA, diffusion_rotation):
#   per-batch t (upstream) vs per-sample t; EMA vs the default "auto" DDPM weights (auto picks the
#   weights with the lower validation eps-loss, recorded in ddpm.json); [0,1] input range (upstream);
#   naive vs shifted_removed masking. The "best val AUROC" column of the table decides our defaults.
# usage: scripts/repro_quirks.sh DDPM_DIR [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/lib_repro.sh"
CKPT="${1:?usage: scripts/repro_quirks.sh DDPM_DIR [dataset] [class] [quick|paper] [seeds...]}"
DS="${2:-breastmnist}"; CLS="${3:-1}"; preset "${4:-quick}"; shift $(( $# < 4 ? $# : 4 )); SEEDS=(${@:-0})
# Shorter runs than the preset (QUIRK_EPOCHS, default 10): these compare variants at an equal budget.
DIA=(--mode simclr_DIA --shift_trans_type diffusion_rotation --diffusion_model_path "$CKPT"
     --epochs "${QUIRK_EPOCHS:-10}" --warmup 1)
for s in "${SEEDS[@]}"; do
  run_one quirks "$DS" "$CLS" default "$s" "${DIA[@]}"
  run_one quirks "$DS" "$CLS" t_per_batch "$s" "${DIA[@]}" --diffusion_t_granularity batch
  run_one quirks "$DS" "$CLS" weights_ema "$s" "${DIA[@]}" --diffusion_weights ema
  run_one quirks "$DS" "$CLS" input_upstream "$s" "${DIA[@]}" --diffusion_input_range upstream
  run_one quirks "$DS" "$CLS" loss_naive "$s" "${DIA[@]}" --loss_mode naive
done
"$PY" "$REPO/scripts/aggregate_results.py" "$RESULTS" --table quirks
