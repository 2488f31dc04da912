#!/usr/bin/env bash
# One prepared GPU check, start to finish in <= 8 minutes on one GPU machine from a fresh checkout.
#
#   benchmarks/gpu_check.sh --fetch-wheels   # on a machine with PyPI: wheels of what a GPU image may lack -> .whl/
#   benchmarks/gpu_check.sh                  # on the GPU machine; OUT=folder (default outputs/gpu_check)
#   benchmarks/gpu_check.sh --dry            # on any CPU: every step at tiny sizes, in about two minutes (CI tests it)
#   GPU_CHECK_STEPS=metrics,osie benchmarks/gpu_check.sh   # only those steps (ids: benchmarks/gpu_check.py)
#
# It picks a Python whose torch sees CUDA ($PYTHON, .venv/bin/python, python3; GPU images ship one), else tries
# ./setup.sh with the CUDA index; installs what salnet needs and that Python lacks (webdataset, POT, ...) into a
# temporary folder, from ./.whl when present (GPU machines without a registry: fetch the wheels first and carry
# the folder), else from the package index; then runs benchmarks/gpu_check.py: each step in its own process with
# a time cap, a failing step reported in the summary table, not stopping the others. Everything it writes goes
# under $OUT: gpu_check.log (all output), summary.txt (the table), summary.json (every figure), steps.tar.gz (each
# step's whole log and figures) and osie/ (the recipe's own outputs). Before the steps it prints the budget plan at
# worst (every setup phase and step at its cap; a dry run exits 1 when it does not fit the budget) and which wheels
# of $DEPS .whl lacks. The OSIE step needs ../shared (GPU_CHECK_SHARED=DIR: elsewhere) and is
# skipped without it; the exit status is 1 only when a step that ran did not end ok.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-480}  # seconds for the whole script
MODE=${1:-}
# salnet's needs that GPU images lack (pyproject.toml has the rest); POT 0.9.5's wheel is 0.9 MB, 0.9.7's 33 MB:
# what a device call carries is limited (64 MiB with the checkout)
# cffi and pycparser bind the C kernels (salnet.native)
DEPS="webdataset==1.0.2 braceexpand==0.1.7 POT==0.9.5 cffi==1.17.1 pycparser==2.22"
PY_TAG=${GPU_CHECK_PY:-3.12}       # the GPU image's Python, for --fetch-wheels

if [ "$MODE" = "--fetch-wheels" ]; then
  mkdir -p .whl .git/info
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  for dep in $DEPS; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_TAG" --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl "$dep" 2>&1 | grep -v "^WARNING: Location" || true
  done
  ls -l .whl
  exit 0
fi

OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE=$!
finish() {  # exit $1 once tee has written the whole log (a device call returns $OUT as the command ends)
  exec >&- 2>&-
  wait "$TEE" 2>/dev/null
  exit "$1"
}
DRY=0
[ "$MODE" = "--dry" ] && DRY=1
echo "gpu_check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), out $OUT, dry $DRY"

TAG=gpu_check SUMMARY="$OUT/summary.txt"
source benchmarks/gpu_env.sh

SHARED_ARGS=()
[ -n "${GPU_CHECK_SHARED:-}" ] && SHARED_ARGS=(--shared "$GPU_CHECK_SHARED")
# the plan of a GPU run at worst (a dry run stops here when it does not fit), and whether .whl holds the wheels a
# machine without a registry needs (benchmarks/gpu_check.sh --fetch-wheels)
"$PY" -m benchmarks.gpu_check --plan --budget "$BUDGET" --setup-worst "$GPU_ENV_WORST_S" "${SHARED_ARGS[@]}"
plan_rc=$?
lacking=""
for dep in $DEPS; do
  [ -n "$(wheel_of "${dep%%==*}")" ] || lacking="$lacking ${dep%%==*}"
done
echo "gpu_check: wheels for a machine without a registry: ${lacking:+not in .whl:}${lacking:-all in .whl}"
if [ $DRY = 1 ] && [ $plan_rc != 0 ]; then
  echo "gpu_check: FAILED: the budget plan does not fit in $BUDGET s"
  finish 1
fi

LEFT=$(( BUDGET - ($(date +%s) - START) - 10 ))
ARGS=(--out "$OUT" --budget "$LEFT" "${SHARED_ARGS[@]}")
[ $DRY = 1 ] && ARGS+=(--dry)
[ -n "${OSIE_RECIPE:-}" ] && ARGS+=(--osie-recipe "$OSIE_RECIPE")
[ -n "${GPU_CHECK_STEPS:-}" ] && ARGS+=(--steps "$GPU_CHECK_STEPS")  # e.g. pytest_gpu,osie: only those
"$PY" -m benchmarks.gpu_check "${ARGS[@]}"
rc=$?
# few files back from a device machine: the step logs and figures as one archive (summary.json has the figures)
tar czf "$OUT/steps.tar.gz" -C "$OUT" steps && rm -rf "$OUT/steps"
echo "gpu_check: done in $(( $(date +%s) - START )) s (budget $BUDGET s), exit $rc"
finish $rc
