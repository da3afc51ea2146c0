#!/usr/bin/env bash
# Why does DIA not clearly beat CSI? Candidates measured on VALIDATION only (no test evaluation),
# BreastMNIST class 0 (the paper's setting), quick preset (width 16, B = 32), EPOCHS (default 40) epochs with
# the upstream schedule (10 warm-up epochs), validation every 5 epochs with 2 samples.
#   usage: scripts/studies/why_dia_cpu.sh DDPM_DIR JOBS...        JOBS are VARIANT:SEED, e.g. DIA:0 noise_0.05:1
#   DDPM_DIR "auto" trains (or reuses) the DDPM of the cpu preset (scripts/lib_repro.sh) for the class.
#   variants: CSI, DIA (defaults), DIA_range_upstream (--diffusion_input_range upstream: about twice the change
#   in pixel units), DIA_t100_299 (stronger dissolving), DIA_lr0.01 and CSI_lr0.01 (--lr_init 0.01, peak lr 0.1
#   instead of 1.0: every 200-epoch run peaked at the end of warm-up), noise_0.05 (additive noise,
#   the reviewers' question), median_k3 (median blur, kernel 3), gaussian_k7.
# Writes $RESULTS/why/breastmnist_c<CLASS>/<variant>/seed<k>/ (a finished run holds DONE); then prints the table.
source "$(dirname "$0")/../lib_repro.sh"
CKPT="${1:?usage: scripts/studies/why_dia_cpu.sh DDPM_DIR JOBS...}"; shift
CLS="${CLASS:-0}"; EPOCHS="${EPOCHS:-40}"
DDPM_STEPS="${DDPM_STEPS:-1500}"  # the DDPM of the cpu preset (scripts/lib_repro.sh)
DDPM_EXTRA="${DDPM_EXTRA:---grad_accum 1 --val_every 250}"
preset quick
[ "$CKPT" = auto ] && CKPT="$(ddpm breastmnist "$CLS")"
declare -A VARIANTS=(
  [CSI]="--mode simclr_CSI --shift_trans_type rotation"
  [DIA]="--shift_trans_type diffusion_rotation"
  [DIA_range_upstream]="--shift_trans_type diffusion_rotation --diffusion_input_range upstream"
  [DIA_t100_299]="--shift_trans_type diffusion_rotation --diffusion_offset 1.0 --diffusion_upper_offset 3.0"
  [DIA_lr0.01]="--shift_trans_type diffusion_rotation --lr_init 0.01"
  [CSI_lr0.01]="--mode simclr_CSI --shift_trans_type rotation --lr_init 0.01"
  [noise_0.05]="--shift_trans_type noise_rotation --noise_std 0.05"
  [median_k3]="--shift_trans_type blurmedian_rotation --kernel_size 3"
  [gaussian_k7]="--shift_trans_type blurgaussian_rotation --kernel_size 7"
)
OUT="$RESULTS/why/breastmnist_c$CLS"
for job in "$@"; do
  variant="${job%%:*}"; seed="${job##*:}"
  [ -n "${VARIANTS[$variant]+x}" ] || { echo "error: unknown variant '$variant' in job '$job'" >&2; exit 2; }
  dir="$OUT/$variant/seed$seed"
  [ -f "$dir/DONE" ] && continue
  resume=(); [ -f "$dir/last.pt" ] && resume=(--resume_path "$dir")
  # shellcheck disable=SC2086  # the variant's flags split into words on purpose
  "$PY" "$REPO/train.py" --dataset breastmnist --data_root "$(data_root breastmnist)" --one_class_idx "$CLS" \
    --model resnet18 --seed "$seed" "${TRAIN_FLAGS[@]}" --epochs "$EPOCHS" --warmup 10 --save_step 5 \
    --mode simclr_DIA --diffusion_model_path "$CKPT" ${VARIANTS[$variant]} "${resume[@]}" --logdir "$dir"
  touch "$dir/DONE"
done
"$PY" "$REPO/scripts/studies/why_table.py" "$OUT"
