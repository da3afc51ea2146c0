#!/usr/bin/env bash
# On a CPU: DIA vs CSI on the real Kermany chest X-rays (normal = NORMAL; 624 test images, the set
# with enough test images for a tight paired CI), 3 seeds.
#   usage: scripts/paper/repro_chest_cpu.sh DATA_ROOT JOBS...     JOBS are VARIANT:SEED items (CSI:0 DIA:2 ...)
#     scripts/paper/repro_chest_cpu.sh ../shared/data/chest_xray_224 DDPM DIA:0 CSI:1 CSI:2 &
#     scripts/paper/repro_chest_cpu.sh ../shared/data/chest_xray_224 CSI:0 DIA:1 DIA:2
#   (the job DDPM only trains the dissolver; a DIA job trains it too, or waits for the shell training it)
# Setting, chosen for a 2-core budget of about 25 min per shell: images at 64 px, ResNet-18 with the ImageNet
# stem at width 16, B = 32, 15 epochs of at most 20 steps, warm-up 2, validation every 3 epochs (2 samples) with
# a kept checkpoint each time, CSI evaluation with 10 samples. Dissolving at 32 px (paper Table 9's best) with a
# DDPM of dim 16 (1,2,2), batch 16, 1,500 steps, best normal-validation checkpoint.
# Results: $RESULTS (default results/) under chest_cpu/chestxray_c0/<variant>/seed<k>.
DATA="${1:?usage: scripts/paper/repro_chest_cpu.sh DATA_ROOT JOBS...}"; shift
[ -d "$DATA/train/NORMAL" ] || { echo "error: DATA_ROOT $DATA has no train/NORMAL folder (Kermany layout)" >&2; exit 2; }
DATA_ROOT="$(cd "$DATA" && pwd)"; export DATA_ROOT
source "$(dirname "$0")/../lib_repro.sh"
export EPOCHS=15
DDPM_STEPS="${DDPM_STEPS:-1500}"
DDPM_EXTRA="${DDPM_EXTRA:---grad_accum 1 --val_every 250}"
TRAIN_EXTRA="--image_size 64 --steps_per_epoch 20 --warmup 2 --save_step 3 --keep_checkpoints ${TRAIN_EXTRA:-}"
preset quick
CKPT=""
for job in "$@"; do
  variant="${job%%:*}"; seed="${job##*:}"
  case "$variant" in
    DDPM) CKPT="$(ddpm chestxray 0)" ;;
    CSI) run_one chest_cpu chestxray 0 CSI "$seed" --mode simclr_CSI --shift_trans_type rotation ;;
    DIA) [ -n "$CKPT" ] || CKPT="$(ddpm chestxray 0)"
         run_one chest_cpu chestxray 0 DIA "$seed" --mode simclr_DIA --shift_trans_type diffusion_rotation \
           --diffusion_model_path "$CKPT" ;;
    *) echo "error: job '$job' must be DDPM, CSI:<seed> or DIA:<seed>" >&2; exit 2 ;;
  esac
done
