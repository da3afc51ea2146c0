#!/usr/bin/env bash
# Does training the DDPM only on the timesteps the dissolver uses (t <= 200) reach a good dissolver
# sooner than full-range training? Two quick DDPMs (dim 16 (1,2,2), batch 16, no gradient accumulation, the
# same seed and data), side by side, one thread each; validated every 250 steps on normal-validation eps-L1 at
# t in [30, 100) and on the dissolver diagnostic (mean |x - x0_hat| on anomalous / normal validation images).
# Both runs do the same work per step (same UNet and batch), so per step is also per second.
#   usage: scripts/studies/measure_t_train_max.sh [CLASS] [STEPS]      (default: 0 1500)
#   TMAX="200" trains only that arm (e.g. when the full-range run already exists as $RESULTS/t_train_max/.../tmax999).
source "$(dirname "$0")/../lib_repro.sh"
CLS="${1:-0}"; STEPS="${2:-1500}"
OUT="$RESULTS/t_train_max/breastmnist_c$CLS"
mkdir -p "$OUT"
train() {  # train (or resume) one DDPM; DONE marks a finished run
  local tmax="$1" dir="$OUT/tmax$1" resume=()
  [ -f "$dir/DONE" ] && return
  [ -d "$dir/last" ] && resume=(--resume)
  "$PY" "$REPO/diffusion_models/train_eval_ddpm.py" --mode train --dataset breastmnist --data_root "$(data_root breastmnist)" \
    --one_class_idx "$CLS" --dim 16 --dim_mults 1,2,2 --batch_size 16 --grad_accum 1 --train_steps "$STEPS" \
    --val_every 250 --save_every 250 --t_train_max "$tmax" --save_dir "$dir" "${resume[@]}" > "$dir.log" 2>&1
  touch "$dir/DONE"
}
for tmax in ${TMAX:-999 200}; do train "$tmax" & done
wait
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
print("| t_train_max | step | val eps-L1 t in [30,100), raw | EMA | change ratio anomalous/normal at t=50, raw | EMA |")
print("|---|---|---|---|---|---|")
for run in sorted((p for p in root.glob("tmax*") if p.is_dir()), key=lambda p: -int(p.name[4:])):
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        ch = r.get("dissolve_change", {})
        ratio = lambda w: f"{ch[w]['50']['ratio']:.3f}" if w in ch and ch[w]["50"]["ratio"] else "-"
        print(f"| {run.name[4:]} | {r['step']} | {r['raw_dissolve']:.4f} | {r['ema_dissolve']:.4f} | "
              f"{ratio('raw')} | {ratio('ema')} |")
PY
