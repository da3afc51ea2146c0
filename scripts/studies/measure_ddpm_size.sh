#!/usr/bin/env bash
# DDPM quality: is the DDPM's dissolving specific to the class it was trained on, and does that grow
# with the DDPM's size? Trains (or reuses) the DDPM of the cpu preset (scripts/lib_repro.sh) (1,500 steps,
# batch 16, validated every 250 steps) on BreastMNIST class 0 AND class 1 at the given size, then prints, per
# validated step, each DDPM's anomalous/normal change ratio and the own-class factor (scripts/diagnostics/class_specificity.py:
# 1.00 = the change follows image content only, whichever class the DDPM saw). Validation images only.
#   usage: scripts/studies/measure_ddpm_size.sh [DIM] [DIM_MULTS]        (default: 16 1,2,2, the CPU preset's size)
#   JOBS=2 trains the two classes side by side (one thread each); default one after the other.
source "$(dirname "$0")/../lib_repro.sh"
DIM="${1:-16}"; MULTS="${2:-1,2,2}"
DDPM_STEPS="${DDPM_STEPS:-1500}"
DDPM_EXTRA="--grad_accum 1 --val_every 250"
# the preset's own size keeps the repro scripts' folder (reused, not retrained); another size gets its own
[ "$DIM $MULTS" = "16 1,2,2" ] || DDPM_EXTRA+=" --dim $DIM --dim_mults $MULTS"
preset quick
if [ "${JOBS:-1}" = 2 ]; then
  ddpm breastmnist 0 > "$DDPM_DIR/.size_c0.$$" & ddpm breastmnist 1 > "$DDPM_DIR/.size_c1.$$"; wait
  C0="$(cat "$DDPM_DIR/.size_c0.$$")"; C1="$(cat "$DDPM_DIR/.size_c1.$$")"; rm -f "$DDPM_DIR"/.size_c?.$$
else
  C0="$(ddpm breastmnist 0)"; C1="$(ddpm breastmnist 1)"
fi
echo "DDPM dim $DIM ($MULTS): A = class 0 ($C0), B = class 1 ($C1)"
"$PY" "$REPO/scripts/diagnostics/class_specificity.py" "$C0" "$C1"
