#!/usr/bin/env bash
# "Use on your own data" end to end on a class-folder tree, as a user would run it:
# tiny DDPM -> DIA training -> eval.py (test metrics + a threshold calibrated on validation)
# -> eval.py --mode predict on the test folder (predictions.csv + a grid of the extremes).
# Sized for a CPU (about 20 min on one thread) on the Kermany chest X-rays (224 px copy:
# <DATA_ROOT>/{train,test}/{NORMAL,PNEUMONIA}/); NORMAL is the normal class.
# A DDPM already in OUT/ddpm is reused, so a rerun only retrains the classifier.
# usage: scripts/run_folder_workflow.sh DATA_ROOT [OUT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:?usage: scripts/run_folder_workflow.sh DATA_ROOT [OUT] [SEED]}"
OUT="${2:-runs/cxr_folder}"; SEED="${3:-0}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # small ops on a shared CPU: one thread is fastest
PY=.venv/bin/python

# Both CLIs name the normal folder the same way and share the data's split (--split_seed, default 0), so the
# DDPM never trains on the classifier's validation or test images; --seed only changes the DDPM's own draws.
if [ ! -d "$OUT/ddpm/best" ]; then
  "$PY" diffusion_models/train_eval_ddpm.py --mode train --dataset folder --data_root "$DATA" --normal_classes NORMAL \
    --dim 16 --dim_mults 1,2,2 --train_steps 300 --batch_size 32 --grad_accum 1 --seed "$SEED" --save_dir "$OUT/ddpm"
fi

# 64 px with the ImageNet stem: the CIFAR stem at 64 px is ~15x slower on a CPU (docs/own_data.md).
"$PY" train.py --dataset folder --data_root "$DATA" --normal_classes NORMAL --image_size 64 \
  --model resnet18_imagenet --width 16 --mode simclr_DIA --shift_trans_type diffusion_rotation \
  --diffusion_model_path "$OUT/ddpm" --batch_size 32 --epochs 10 --steps_per_epoch 20 \
  --warmup 1 --val_every 2 --seed "$SEED" --logdir "$OUT/dia"

# Scores the test split and stores the scorer + threshold next to the checkpoint (best.calib.pt).
"$PY" eval.py --mode ood_pre --ood_score CSI --load_path "$OUT/dia/best.pt" --ood_samples 10 \
  --resize_factor 0.54 --resize_fix --threshold_rule recall --target_normal_recall 0.95 --seed "$SEED" \
  --out_dir "$OUT/dia/eval_test"

# Any folder, file or glob; the training data is not read again.
"$PY" eval.py --mode predict --load_path "$OUT/dia/best.pt" --input "$DATA/test" --save_grid \
  --out_dir "$OUT/predict_test"

"$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["extra"]["threshold"], indent=2))' \
  "$OUT/dia/eval_test/report.json"
