#!/usr/bin/env bash
# Upstream quirks, each measured on VALIDATION against our default (DIA, diffusion_rotation), at an
# equal, short budget (QUIRK_EPOCHS, default 6); the best validation AUROC decides our defaults.
#   t per batch (upstream) vs per sample; EMA vs "auto" DDPM weights (auto = the weights with the lower
#   validation eps-loss in ddpm.json); [0,1] input range (upstream); shifted_removed (DIA-(b)) vs the
#   default naive masking (DIA-(a), the paper's main table).
# usage: scripts/paper/repro_quirks.sh DDPM_DIR [dataset] [class] [quick|paper] [seeds...]
source "$(dirname "$0")/../lib_repro.sh"
CKPT="${1:?usage: scripts/paper/repro_quirks.sh DDPM_DIR [dataset] [class] [quick|paper] [seeds...]}"
DS="${2:-breastmnist}"; CLS="${3:-1}"; preset "${4:-quick}"; shift $(( $# < 4 ? $# : 4 )); SEEDS=(${@:-0})
OUT="$RESULTS/quirks/${DS}_c${CLS}"
declare -A VARIANTS=(
  [default]=""
  [t_per_batch]="--diffusion_t_granularity batch"
  [weights_ema]="--diffusion_weights ema"
  [input_upstream]="--diffusion_input_range upstream"
  [loss_shifted_removed]="--loss_mode shifted_removed"
)
for s in "${SEEDS[@]}"; do
  for v in default t_per_batch weights_ema input_upstream loss_shifted_removed; do
    dir="$OUT/$v/seed$s"
    [ -f "$dir/last.pt" ] && continue
    "$PY" "$REPO/train.py" --dataset "$DS" --data_root "$(data_root "$DS")" --one_class_idx "$CLS" \
      --model "$(model_for "$DS")" --seed "$s" "${TRAIN_FLAGS[@]}" --epochs "${QUIRK_EPOCHS:-6}" --warmup 1 \
      --save_step 1 --mode simclr_DIA --shift_trans_type diffusion_rotation --diffusion_model_path "$CKPT" \
      ${VARIANTS[$v]} --logdir "$dir"
  done
done
"$PY" - "$OUT" "$REPO" <<'PY'
import statistics, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from evals.aggregate import val_aurocs
root = Path(sys.argv[1])
print("| variant | seeds | best val AUROC (mean) | final val AUROC (mean) |\n|---|---|---|---|")
for variant in sorted(p.name for p in root.iterdir() if p.is_dir()):
    runs = [vals for log in sorted(root.glob(f"{variant}/seed*/metrics.jsonl")) if (vals := val_aurocs(log))]
    if runs:
        print(f"| {variant} | {len(runs)} | {statistics.fmean(max(v) for v in runs):.3f} | "
              f"{statistics.fmean(v[-1] for v in runs):.3f} |")
PY
