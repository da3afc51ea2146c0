#!/usr/bin/env bash
# On a CPU: DIA vs CSI in the paper's BreastMNIST setting (class 0 = malignant as "normal",
# as the paper and upstream train it) at the paper's 200 epochs, or any class/epoch count, 3 seeds.
#   usage: scripts/paper/repro_paper_breast_cpu.sh CLASS EPOCHS JOBS...
#   JOBS are VARIANT:SEED items (CSI:0 DIA:2 ...), run in the order given, so two shells can split the work
#   (the run cache's lock makes a job that the other shell already runs wait, never train twice):
#     scripts/paper/repro_paper_breast_cpu.sh 0 200 DIA:0 DIA:1 CSI:2 &
#     scripts/paper/repro_paper_breast_cpu.sh 0 200 CSI:0 CSI:1 DIA:2
# Setting: ResNet-18 width 16 (a 2-core CPU fits width 16 at ~1.7 s per DIA step; width 64 is the GPU script's),
# B = 32, upstream lr schedule (lr_init 0.1, 10 warm-up epochs, cosine), SimCLR augmentations, validation every
# 10 epochs with 2 samples (best.pt on validation AUROC), a kept checkpoint at every validation for the
# optimistic "upstream protocol" figure (scripts/studies/upstream_protocol.py), CSI evaluation with 10 samples.
# DDPM: dim 16 (1,2,2), batch 16, no gradient accumulation, 1,500 steps, best normal-validation checkpoint.
# Results: $RESULTS (default results/) under paper_cpu/breastmnist_c<CLASS>/<variant>/seed<k>.
source "$(dirname "$0")/../lib_repro.sh"
CLS="${1:?usage: repro_paper_breast_cpu.sh CLASS EPOCHS JOBS...}"; EPOCHS="${2:?epochs}"; shift 2
export EPOCHS
DDPM_STEPS="${DDPM_STEPS:-1500}"
DDPM_EXTRA="${DDPM_EXTRA:---grad_accum 1 --val_every 250}"
TRAIN_EXTRA="--warmup 10 --save_step 10 --keep_checkpoints ${TRAIN_EXTRA:-}"
preset quick
CKPT=""  # trained (or waited for) at the first DIA job, so a shell that starts with CSI does not wait for it
for job in "$@"; do
  variant="${job%%:*}"; seed="${job##*:}"
  case "$variant" in
    CSI) run_one paper_cpu breastmnist "$CLS" CSI "$seed" --mode simclr_CSI --shift_trans_type rotation ;;
    DIA) [ -n "$CKPT" ] || CKPT="$(ddpm breastmnist "$CLS")"
         run_one paper_cpu breastmnist "$CLS" DIA "$seed" --mode simclr_DIA --shift_trans_type diffusion_rotation \
           --diffusion_model_path "$CKPT" ;;
    *) echo "error: job '$job' must be CSI:<seed> or DIA:<seed>" >&2; exit 2 ;;
  esac
done
