#!/usr/bin/env bash
# BreastMNIST (normal = class 1) on a CPU budget of about 10 minutes per model:
# DIA (diffusion_rotation) and the CSI baseline, narrow ResNet-18 (width 16), then the README's CSI eval.
# usage: scripts/paper/run_breast_cpu.sh DDPM_DIR [DATA_ROOT] [OUT] [EPOCHS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/../.."
DDPM="${1:?usage: scripts/paper/run_breast_cpu.sh DDPM_DIR [DATA_ROOT] [OUT] [EPOCHS] [SEED]}"
DATA="${2:-datasets/builtin}"; OUT="${3:-runs/breast_cpu}"; EPOCHS="${4:-30}"; SEED="${5:-0}"
PY=.venv/bin/python
COMMON=(--data_root "$DATA" --dataset breastmnist --model resnet18 --width 16 --batch_size 32 --one_class_idx 1
        --epochs "$EPOCHS" --warmup 3 --save_step 2 --seed "$SEED")
EVAL=(--mode ood_pre --ood_score CSI --ood_samples 10 --resize_factor 0.54 --resize_fix --print_score --seed "$SEED")
"$PY" train.py "${COMMON[@]}" --mode simclr_DIA --shift_trans_type diffusion_rotation --diff_resolution 32 \
  --diffusion_model_path "$DDPM" --logdir "$OUT/dia"
"$PY" eval.py "${EVAL[@]}" --load_path "$OUT/dia/best.pt" --out_dir "$OUT/dia/eval_test"
"$PY" train.py "${COMMON[@]}" --mode simclr_CSI --shift_trans_type rotation --logdir "$OUT/csi"
"$PY" eval.py "${EVAL[@]}" --load_path "$OUT/csi/best.pt" --out_dir "$OUT/csi/eval_test"
