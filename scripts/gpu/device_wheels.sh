#!/usr/bin/env bash
# Download, on a machine with pip and a package index, the wheels that the GPU machine lacks
# (Python 3.12, manylinux x86-64, no network) into .whl/ (git-ignored), and print
# their size: wheels and data travel together and must stay under 64 MiB. scripts/gpu/gpu_paper.sh installs
# them there offline (pip install --no-index --no-deps --target DIR .whl/*.whl + PYTHONPATH). docs/gpu.md.
#   bash scripts/gpu/device_wheels.sh                  # pinned to requirements.txt's versions
#   PYTHON_VERSION=3.11 bash scripts/gpu/device_wheels.sh   # another target interpreter
# The list: what the project imports that the GPU machine's package list lacks (diffusers, kornia, medmnist)
# and what those need that it lacks too (kornia_rs for kornia; fire, and termcolor for fire, for medmnist).
# tests/test_device_wheels.py checks that this list plus the GPU machine's package list covers every
# third-party import.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-}"
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
WHEELS=(diffusers==0.42.1 kornia==0.9.0 kornia_rs==0.2.0 medmnist==3.0.2 fire==0.7.1 termcolor==3.3.0)
DEST="${DEST:-.whl}"
mkdir -p "$DEST"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${WHEELS[@]}"
ls -l "$DEST"/*.whl
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
data=$( (du -cb datasets/builtin device_data 2>/dev/null || true) | tail -1 | cut -f1)
total=$(( wheels + data ))
echo "wheels $(( wheels / 1024 )) KiB + data $(( data / 1024 )) KiB = $(( total / 1024 )) KiB (limit 65536 KiB)"
if [ "$total" -ge $(( 64 * 1024 * 1024 )) ]; then echo "error: wheels and data exceed 64 MiB" >&2; exit 1; fi
