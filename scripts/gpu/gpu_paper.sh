#!/usr/bin/env bash
export GPU_PAPER_T0="$(date +%s.%N)"  # the budget counts from here, wheel installation included
# Paper scale in one GPU command (docs/gpu.md): DIA vs CSI on BreastMNIST classes 0 and 1 (plus class 0 of any
# other <name>mnist.npz in device_data/), 3 seeds, one table; then the GPU tests and the training benchmark.
#   bash scripts/gpu/gpu_paper.sh --preflight  # first, < 1 minute: wheels, imports, versions, torch.compile, the card
#   bash scripts/gpu/gpu_paper.sh              # one CUDA device; <= 9 minutes by the H100 figures; results in $OUT or results/gpu/
#   bash scripts/gpu/gpu_paper.sh --smoke      # the identical script on CPU at toy size (tests/test_gpu_paper.py)
# Wheels: when diffusers, kornia or medmnist cannot be imported and .whl/ holds wheels (scripts/gpu/device_wheels.sh),
# they are installed offline into $WHEEL_SITE (default /tmp/dia_site) and put on PYTHONPATH first.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-}"
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
MISSING='import importlib.util as u, sys; sys.exit(all(u.find_spec(m) for m in ("diffusers", "kornia", "medmnist")))'
if "$PY" -c "$MISSING" && compgen -G ".whl/*.whl" >/dev/null; then
  SITE="${WHEEL_SITE:-/tmp/dia_site}"
  echo "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE (offline)"
  "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" scripts/gpu/gpu_paper.py "$@"
