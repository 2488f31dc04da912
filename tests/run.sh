#!/usr/bin/env bash
# The test command CI runs (after ./setup.sh): lint, type check, start a real local Slurm for the tests marked `slurm`
# (when this machine allows: root + apt-get; otherwise those tests skip and say why), run the whole pytest
# suite in $SALNET_TEST_WORKERS pytest-xdist workers (default 2; tests/conftest.py keeps a file's tests, and all
# Slurm tests, on one worker), stop the cluster. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy  # salnet/, configured in pyproject.toml [tool.mypy]
# Debian's chromium + chromium-driver for the TensorBoard browser test (tests/test_tensorboard_browser.py), where this
# machine allows (root + apt-get); otherwise that test skips and says why.
if [ "${SALNET_NO_BROWSER:-0}" != 1 ] && ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "[tests/run.sh] apt-get install chromium chromium-driver" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver; } >/dev/null 2>&1 || echo "[tests/run.sh] chromium install failed: the browser test will skip" >&2
fi
if [ "${SALNET_NO_SLURM:-0}" != 1 ] && out=$(tests/slurm/cluster.sh start); then
  eval "$out"  # export SLURM_CONF=...
  trap 'tests/slurm/cluster.sh stop || true' EXIT
else
  echo "[tests/run.sh] no local Slurm: the slurm-marked tests will skip" >&2
fi
# One OpenMP thread per process: two workers (and the jobs they start) share two cores, and torch's default of a
# thread per core had each spin-waiting on the other (twice the CPU time for the same tests). Slurm passes it on.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# the 15 slowest tests listed at the end
.venv/bin/python -m pytest -q --durations=15 -n "${SALNET_TEST_WORKERS:-2}" --dist loadgroup "$@"
