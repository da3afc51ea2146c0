#!/usr/bin/env bash
# One command installs everything into a virtual environment (.venv by default).
# Usage: bash scripts/install.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
"$VENV/bin/python" -c "import torch, torchvision, diffusers, kornia, medmnist; print('installed: torch', torch.__version__, '| cuda', torch.cuda.is_available())"
