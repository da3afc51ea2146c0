#!/usr/bin/env bash
# Paper Table 1: DIA vs CSI.
#   usage: scripts/paper/repro_main.sh [dataset] [class] [quick|cpu|paper] [jobs...]
#   jobs: seeds (CSI and DIA each; default 0 1 2), or VARIANT:SEED items (CSI:0 DIA:2) and DDPM (the dissolver
#   only), run in the order given, so two shells can split the work:
#     EPOCHS=200 scripts/paper/repro_main.sh breastmnist 0 cpu DIA:0 CSI:1 CSI:2 &
#     EPOCHS=200 scripts/paper/repro_main.sh breastmnist 0 cpu CSI:0 DIA:1 DIA:2
#   The cpu preset (scripts/lib_repro.sh) is the setting of the CPU figures in docs/results.md; its runs go to
#   $RESULTS/paper_cpu. Data other than the shipped BreastMNIST: DATA_ROOT=<folder>, e.g. the Kermany chest X-rays
#     DATA_ROOT=path/to/chest_xray_224 scripts/paper/repro_main.sh chestxray 0 cpu DDPM DIA:0 CSI:1 CSI:2
source "$(dirname "$0")/../lib_repro.sh"
DS="${1:-breastmnist}"; CLS="${2:-1}"; preset "${3:-quick}" "$DS"; shift $(( $# < 3 ? $# : 3 ))
TABLE=main; [ "$SCALE" = cpu ] && TABLE=paper_cpu
JOBS=("$@"); [ ${#JOBS[@]} -gt 0 ] || JOBS=(0 1 2)
run_jobs "$TABLE" "$DS" "$CLS" 32 "" "${JOBS[@]}"
aggregate "$RESULTS" --table "$TABLE"
