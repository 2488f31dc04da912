#!/usr/bin/env bash
# The test command CI runs (after ./setup.sh): lint, start a real local Slurm for the tests marked `slurm`
# (when this machine allows: root + apt-get; otherwise those tests skip and say why), run the whole pytest
# suite, stop the cluster. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
if [ "${SALNET_NO_SLURM:-0}" != 1 ] && out=$(tests/slurm/cluster.sh start); then
  eval "$out"  # export SLURM_CONF=...
  trap 'tests/slurm/cluster.sh stop || true' EXIT
else
  echo "[tests/run.sh] no local Slurm: the slurm-marked tests will skip" >&2
fi
.venv/bin/python -m pytest -q "$@"
