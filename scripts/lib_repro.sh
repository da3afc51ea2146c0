#!/usr/bin/env bash
# Shared pieces of the reproduction scripts: presets and one "train + eval" run.
# Source it; do not run it. Every run trains once into a cache keyed by its exact train.py flags,
#   $RESULTS/_runs/<dataset>_c<class>/<key>/seed<k>/{report.json, train/...}
# and each table that uses it gets $RESULTS/<table>/<dataset>_c<class>/<variant>/seed<k>/report.json (a copy)
# plus a `train` link. So CSI and DIA, trained for the main table, are not trained again for the batch,
# loss-mode or contamination tables. A half-finished run resumes from its last.pt.
# Overrides: EPOCHS=<n> (shorter ablations), DDPM_STEPS=<n>, FAST=0 (the classifier in fp32), extra flags TRAIN_EXTRA="...", DDPM_EXTRA="...",
# EVAL_EXTRA="..." (appended, so they win), RESULTS=<dir>, DDPM_DIR=<dir>, DATA_ROOT=<dir>, PY=<python>.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# absolute, so the tables' `train` links and the DDPM paths recorded in checkpoints work from anywhere
RESULTS="$(mkdir -p "${RESULTS:-$REPO/results}" && cd "${RESULTS:-$REPO/results}" && pwd)"
DDPM_DIR="$(mkdir -p "${DDPM_DIR:-$REPO/runs/ddpm}" && cd "${DDPM_DIR:-$REPO/runs/ddpm}" && pwd)"

# preset <quick|cpu|paper> [dataset]: sets the scale knobs.
#   quick  a 2-core CPU, about 6 min per model (one thread each; run two scripts side by side);
#   cpu    the setting of the CPU figures in docs/results.md: the paper's epochs (200; EPOCHS=<n> for fewer) at
#          ResNet-18 width 16 with the upstream schedule, validation every 10 epochs with a kept checkpoint each
#          time (for the optimistic "upstream protocol" figure), a dim-16 DDPM of 1,500 steps; chestxray at 64 px,
#          15 epochs of at most 20 steps. Its tables go to $RESULTS/paper_cpu;
#   paper  the paper's setting (GPU).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # small tensors: one thread per job beats two on 2 cores
preset() {
  case "$1" in
    quick)
      DDPM_FLAGS=(--dim 16 --dim_mults 1,2,2 --train_steps 2000 --batch_size 16)
      TRAIN_FLAGS=(--width 16 --epochs 20 --batch_size 32 --warmup 2 --save_step 2 --val_samples 2)
      EVAL_FLAGS=(--ood_samples 10 --resize_factor 0.54 --resize_fix) ;;
    cpu)
      DDPM_FLAGS=(--dim 16 --dim_mults 1,2,2 --train_steps 1500 --batch_size 16 --grad_accum 1 --val_every 250)
      if [ "${2:-}" = chestxray ]; then
        TRAIN_FLAGS=(--width 16 --epochs 15 --batch_size 32 --image_size 64 --steps_per_epoch 20 --warmup 2
                     --save_step 3 --val_samples 2 --keep_checkpoints)
      else
        TRAIN_FLAGS=(--width 16 --epochs 200 --batch_size 32 --warmup 10 --save_step 10 --val_samples 2
                     --keep_checkpoints)
      fi
      EVAL_FLAGS=(--ood_samples 10 --resize_factor 0.54 --resize_fix) ;;
    paper)
      DDPM_FLAGS=(--dim 64 --dim_mults 1,2,4,8 --train_steps 25000 --batch_size 64)
      TRAIN_FLAGS=(--width 64 --epochs 200 --batch_size 32 --warmup 10 --save_step 1 --val_samples 2)
      EVAL_FLAGS=(--ood_samples 10 --resize_factor 0.54 --resize_fix) ;;
    *) echo "error: scale must be quick, cpu or paper, got '$1'" >&2; exit 2 ;;
  esac
  # The classifier's fast path (docs/speed.md): bf16 autocast + channels_last where the device computes bf16
  # natively (CUDA, AVX512-BF16/AMX CPUs; elsewhere train.py says so in one line and runs fp32). FAST=0: fp32, as
  # every table made before this default.
  if [ "${FAST:-1}" != 0 ]; then TRAIN_FLAGS+=(--amp --channels_last); fi
  if [ -n "${EPOCHS:-}" ]; then TRAIN_FLAGS+=(--epochs "$EPOCHS"); fi
  if [ -n "${DDPM_STEPS:-}" ]; then DDPM_FLAGS+=(--train_steps "$DDPM_STEPS"); fi
  # shellcheck disable=SC2206  # word splitting of the *_EXTRA strings is intended
  TRAIN_FLAGS+=(${TRAIN_EXTRA:-}); DDPM_FLAGS+=(${DDPM_EXTRA:-}); EVAL_FLAGS+=(${EVAL_EXTRA:-})
  SCALE="$1"
}

# run_key <train.py flags...>: the run's cache key (training/run_key.py), the same whatever the flags' order.
run_key() { (cd "$REPO" && "$PY" -m training.run_key "$@"); }

# aggregate <results dir> [--table T ...]: the table with the paired DIA - CSI differences (python -m evals.aggregate).
aggregate() { (cd "$REPO" && "$PY" -m evals.aggregate "$@"); }

# data_root <dataset>: where each dataset lives (override with DATA_ROOT=...).
data_root() {
  if [ -n "${DATA_ROOT:-}" ]; then
    [ -d "$DATA_ROOT" ] || { echo "error: DATA_ROOT $DATA_ROOT is not a folder" >&2; exit 2; }
    (cd "$DATA_ROOT" && pwd); return  # absolute: the DDPM and the runs record it
  fi
  case "$1" in
    breastmnist) echo "$REPO/datasets/builtin" ;;
    *) echo "$REPO/data/$1" ;;
  esac
}

# model_for <dataset>: the CIFAR stem for 28/32 px data, the ImageNet stem for 224 px.
model_for() {
  case "$1" in
    *mnist|cifar10|cifar100|synthetic) echo resnet18 ;;
    *) echo resnet18_imagenet ;;
  esac
}

# ddpm <dataset> <class> [resolution]: train the DDPM once per (dataset, class, resolution, scale).
ddpm() {
  local ds="$1" cls="$2" res="${3:-32}"
  local dir="$DDPM_DIR/${SCALE}/${ds}_c${cls}_r${res}"
  # a DDPM trained with overridden flags gets its own folder, so it never stands in for the preset's one
  if [ -n "${DDPM_STEPS:-}${DDPM_EXTRA:-}" ]; then dir="${dir}_$(run_key "${DDPM_FLAGS[@]}")"; fi
  mkdir -p "$(dirname "$dir")"
  (
    # two scripts that need the same DDPM wait for each other instead of both training it
    if command -v flock >/dev/null; then flock 9; fi
    if [ ! -f "$dir/best/ddpm.json" ]; then
      local resume=()
      [ -d "$dir/last" ] && resume=(--resume)
      "$PY" "$REPO/diffusion_models/train_eval_ddpm.py" --mode train --dataset "$ds" --data_root "$(data_root "$ds")" \
        --one_class_idx "$cls" --image_size "$res" "${DDPM_FLAGS[@]}" --save_dir "$dir" "${resume[@]}" >&2
    fi
  ) 9>"$dir.lock"
  echo "$dir"
}

# run_jobs <table> <dataset> <class> <ddpm resolution> <DIA flags> <items...>: each item is a seed (CSI and DIA),
# VARIANT:SEED (CSI:0, DIA:2) or DDPM (train the dissolver only), run in the order given, so two shells can split
# the work; the run cache's lock makes a job the other shell already runs wait, never train twice. The DDPM is
# trained (or waited for) at the first job that needs it, so a shell that starts with CSI does not wait for it.
run_jobs() {
  local table="$1" ds="$2" cls="$3" res="$4" dia_flags="$5" ckpt="" item variant seed jobs=(); shift 5
  for item in "$@"; do  # a plain seed is its two jobs
    if [[ "$item" =~ ^[0-9]+$ ]]; then jobs+=("CSI:$item" "DIA:$item"); else jobs+=("$item"); fi
  done
  for item in "${jobs[@]}"; do
    case "$item" in
      DDPM) ckpt="$(ddpm "$ds" "$cls" "$res")"; continue ;;
      *:*) variant="${item%%:*}"; seed="${item##*:}" ;;
      *) echo "error: job '$item' must be a seed, CSI:<seed>, DIA:<seed> or DDPM" >&2; exit 2 ;;
    esac
    [[ "$seed" =~ ^[0-9]+$ ]] || { echo "error: job '$item': the seed must be a number" >&2; exit 2; }
    case "$variant" in
      CSI) run_one "$table" "$ds" "$cls" CSI "$seed" --mode simclr_CSI --shift_trans_type rotation ;;
      DIA) [ -n "$ckpt" ] || ckpt="$(ddpm "$ds" "$cls" "$res")"
           # shellcheck disable=SC2086  # the extra DIA flags split into words on purpose
           run_one "$table" "$ds" "$cls" DIA "$seed" --mode simclr_DIA --shift_trans_type diffusion_rotation \
             --diffusion_model_path "$ckpt" $dia_flags ;;
      *) echo "error: job '$item' must be a seed, CSI:<seed>, DIA:<seed> or DDPM" >&2; exit 2 ;;
    esac
  done
}

# run_one <table> <dataset> <class> <variant> <seed> [train.py flags...]: train, then evaluate best.pt on test.
run_one() {
  local table="$1" ds="$2" cls="$3" variant="$4" seed="$5"; shift 5
  local out="$RESULTS/$table/${ds}_c${cls}/$variant/seed$seed"
  if [ -f "$out/report.json" ]; then echo "skip (done): $out"; return; fi
  local flags=(--dataset "$ds" --data_root "$(data_root "$ds")" --one_class_idx "$cls" --model "$(model_for "$ds")"
               --seed "$seed" "${TRAIN_FLAGS[@]}" "$@")
  local key_args=("${flags[@]}")  # the preset's eval flags are fixed; changed ones (EVAL_EXTRA) join the key
  [ -n "${EVAL_EXTRA:-}" ] && key_args+=(--eval_flags "eval: ${EVAL_FLAGS[*]}")
  local run="$RESULTS/_runs/${ds}_c${cls}/$(run_key "${key_args[@]}")/seed$seed"
  mkdir -p "$run" "$out"
  (
    # two scripts side by side wait for each other instead of training the same run twice (util-linux flock)
    if command -v flock >/dev/null; then flock 9; fi
    if [ ! -f "$run/report.json" ]; then
      local resume=()
      [ -f "$run/train/last.pt" ] && resume=(--resume_path "$run/train")
      printf '%q ' "${flags[@]}" > "$run/flags.txt"
      echo "== $table/$variant seed $seed -> $run" >&2
      "$PY" "$REPO/train.py" "${flags[@]}" "${resume[@]}" --logdir "$run/train"
      "$PY" "$REPO/eval.py" --mode ood_pre --ood_score CSI --load_path "$run/train/best.pt" "${EVAL_FLAGS[@]}" \
        --seed "$seed" --out_dir "$run"
    fi
    # publish under the lock too: two tables finishing the same run at once must not share the temp file.
    # scores.csv (per-image scores, for the paired statistics) first: report.json marks the folder done.
    ln -sfn "$run/train" "$out/train"
    cp "$run/scores.csv" "$out/scores.csv.tmp.$$" && mv "$out/scores.csv.tmp.$$" "$out/scores.csv"
    cp "$run/report.json" "$out/report.json.tmp.$$" && mv "$out/report.json.tmp.$$" "$out/report.json"
  ) 9>"$run/.lock"
}
