#!/usr/bin/env bash
# Every table of docs/results.md's CPU sections on DIA vs CSI (and why DIA does not clearly win), from the
# runs of scripts/paper/repro_main.sh's cpu preset: mean ± std and best validation AUROC, paired
# DIA − CSI per seed and over seeds, per-seed lines, the optimistic "upstream protocol" figure (evaluates the
# kept checkpoints the first time); then the validation-only tables of why_dia_cpu.sh.
#   usage: scripts/studies/report_why_dia.sh [RESULTS]      (default results/)
#   RUNS_JSON=docs/studies/why_dia_cpu/runs_X.json for a results root whose table names repeat the default
#   one's (merged into).
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS="${1:-results}"
PY="${PY:-.venv/bin/python}"; [ -x "$PY" ] || PY=python3
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
for table in paper_cpu chest_cpu; do
  [ -d "$RESULTS/$table" ] || continue
  echo "## $table"
  "$PY" -m evals.aggregate "$RESULTS" --table "$table"
  echo
  "$PY" scripts/studies/per_seed_table.py "$RESULTS" "$table"
  echo
  [ "${UPSTREAM:-1}" = 1 ] && "$PY" scripts/studies/upstream_protocol.py "$RESULTS/$table" && echo
done
for why in "$RESULTS"/why/*/; do  # scripts/studies/why_dia_cpu.sh's validation-only variants
  [ -d "$why" ] && echo "## why: $(basename "$why")" && "$PY" scripts/studies/why_table.py "$why" && echo
done
"$PY" scripts/studies/runs_summary.py "$RESULTS" paper_cpu chest_cpu --out "${RUNS_JSON:-docs/studies/why_dia_cpu/runs.json}"
