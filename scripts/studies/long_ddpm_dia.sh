#!/usr/bin/env bash
# DIA with a DDPM trained far past its validation minimum, against DIA with the same DDPM's best/ checkpoint
# and against CSI: BreastMNIST, 3 seeds each, paired on the same test images (docs/studies/long_ddpm.md).
# Usage: bash scripts/studies/long_ddpm_dia.sh CLASS STEP JOBS...
#   CLASS  BreastMNIST normal class (0 = the paper's setting)
#   STEP   the DDPM step chosen on validation (the rule in docs/studies/long_ddpm.md), kept by long_ddpm.sh
#   JOBS   VARIANT:SEED with VARIANT in CSI, DIA_best, DIA_long; two shells can split them (a lock makes a job
#          the other shell already runs wait, never train twice):
#     bash scripts/studies/long_ddpm_dia.sh 0 4000 DIA_long:0 DIA_best:1 CSI:2 DIA_long:1 &
#     bash scripts/studies/long_ddpm_dia.sh 0 4000 CSI:0 DIA_best:0 CSI:1 DIA_long:2 DIA_best:2
# Setting: the quick preset's ResNet-18 width 16, B = 32, EPOCHS (default 50) with 10 warm-up epochs, bf16 autocast
# where the CPU has it (--amp; every arm alike), validation every 10 epochs (best.pt on validation AUROC), CSI
# evaluation with 10 samples. The dissolver is the long_ddpm.sh DDPM (dim 32, t <= 200), its UNet in bf16,
# every (image, flip, t) precomputed once (--dissolve_cache). Results: $RESULTS/long_ddpm/breastmnist_c<CLASS>/.
# Read them with: python -m evals.aggregate "$RESULTS" --table long_ddpm (paired DIA - CSI over seeds).
source "$(dirname "$0")/../lib_repro.sh"
CLS="${1:?usage: long_ddpm_dia.sh CLASS STEP JOBS...}"; STEP="${2:?step}"; shift 2
EPOCHS="${EPOCHS:-50}"; export EPOCHS
TRAIN_EXTRA="--warmup 10 --save_step 10 --amp ${TRAIN_EXTRA:-}"
FAST=0  # the flags these results were made with: --amp above, no channels_last
preset quick
DDPM="${LONG_DDPM:-$REPO/runs/long_ddpm/breastmnist-c${CLS}-d32-t200}"
[ -d "$DDPM/steps" ] || { echo "error: $DDPM has no kept steps: run scripts/studies/long_ddpm.sh $CLS first" >&2; exit 2; }
DIA=(--mode simclr_DIA --shift_trans_type diffusion_rotation --diffusion_model_path "$DDPM" --diffusion_weights raw --dissolve_cache
     --dissolve_dtype bf16)
for job in "$@"; do
  variant="${job%%:*}"; seed="${job##*:}"
  case "$variant" in
    CSI) run_one long_ddpm breastmnist "$CLS" CSI "$seed" --mode simclr_CSI --shift_trans_type rotation ;;
    DIA_best) run_one long_ddpm breastmnist "$CLS" DIA_best "$seed" "${DIA[@]}" --diffusion_checkpoint best ;;
    DIA_long) run_one long_ddpm breastmnist "$CLS" DIA_long "$seed" "${DIA[@]}" --diffusion_checkpoint "$STEP" ;;
    *) echo "error: job '$job' must be CSI:<seed>, DIA_best:<seed> or DIA_long:<seed>" >&2; exit 2 ;;
  esac
done
