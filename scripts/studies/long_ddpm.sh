#!/usr/bin/env bash
# A DDPM trained far past its validation minimum, every 250 steps kept: the dissolver along its training.
# Usage: bash scripts/studies/long_ddpm.sh CLASS [STEPS] [T_TRAIN_MAX] [DIM]
#   CLASS        BreastMNIST normal class (0 = malignant, the paper's setting; 1 = normal+benign)
#   STEPS        optimiser steps of 32 images (default 6000: ~1,300 passes over class 0, ~480 over class 1)
#   T_TRAIN_MAX  train on t <= this (default 200; 999 = the full range)
#   DIM          UNet base width, multipliers (1,2,4,8) (default 32: 15.8M parameters)
# Interrupted? Run the same command again: it resumes from <run>/last. One torch thread per job, so two
# classes train side by side on a 2-core machine. Read the curves with scripts/studies/ddpm_curves.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLASS="${1:?usage: long_ddpm.sh CLASS [STEPS] [T_TRAIN_MAX] [DIM]}"
STEPS="${2:-6000}"
TMAX="${3:-200}"
DIM="${4:-32}"
PY="${PY:-.venv/bin/python}"
RUN="${RUNS:-runs/long_ddpm}/breastmnist-c${CLASS}-d${DIM}-t${TMAX}"
RESUME=()
[ -d "$RUN/last" ] && RESUME=(--resume)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$PY" diffusion_models/train_eval_ddpm.py --mode train \
  --dataset breastmnist --data_root "${DATA_ROOT:-datasets/builtin}" --one_class_idx "$CLASS" \
  --dim "$DIM" --dim_mults 1,2,4,8 --batch_size 32 --grad_accum 1 --t_train_max "$TMAX" --amp \
  --train_steps "$STEPS" --val_every 250 --save_every 250 --keep_checkpoints --save_dir "$RUN" "${RESUME[@]}"
