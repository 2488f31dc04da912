#!/usr/bin/env bash
# Create .venv and install salnet with its dependencies (idempotent; reruns only what is missing).
#   ./setup.sh                 CPU machine (torch CPU wheel; no CUDA packages), extras "dev"
#   SALNET_EXTRAS= ./setup.sh  runtime only
#   TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 ./setup.sh   GPU node
# Cluster users may prefer the conda environment in environment.yml.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${SALNET_EXTRAS-dev}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip(){  # quiet pip; this machine's local package mirror prints a warning per package it does not carry
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}
# torch first and pinned: a bare "torch" requirement would pull the newest CUDA build (GBs)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then pip --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
  else pip "$TORCH_SPEC"; fi
fi
pip -e ".${EXTRAS:+[$EXTRAS]}"
.venv/bin/python -c "import salnet, torch; print(f'salnet {salnet.__version__} ready (torch {torch.__version__}, cuda={torch.cuda.is_available()})')"
