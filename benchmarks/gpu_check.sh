#!/usr/bin/env bash
# One prepared GPU check, start to finish in <= 8 minutes on one GPU machine from a fresh checkout.
#
#   benchmarks/gpu_check.sh                  # on the GPU machine; OUT=folder (default outputs/gpu_check)
#   benchmarks/gpu_check.sh --dry            # on any CPU: every step at tiny sizes, in about a minute (CI tests it)
#   benchmarks/gpu_check.sh --fetch-wheels   # on a machine with PyPI: wheels of what a GPU image may lack -> .whl/
#
# It picks a Python whose torch sees CUDA ($PYTHON, .venv/bin/python, python3; GPU images ship one), else tries
# ./setup.sh with the CUDA index; installs what salnet needs and that Python lacks (webdataset, POT, ...) into a
# temporary folder, from ./.whl when present (GPU machines without a registry: fetch the wheels first and carry
# the folder), else from the package index; then runs benchmarks/gpu_check.py: each step in its own process with
# a time cap, a failing step reported in the summary table, not stopping the others. Everything it writes goes
# under $OUT: gpu_check.log (all output), summary.txt (the table), summary.json (every figure), steps.tar.gz (each
# step's whole log and figures) and osie/ (the recipe's own outputs).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-480}  # seconds for the whole script
MODE=${1:-}
# salnet's needs that GPU images lack (pyproject.toml has the rest); POT 0.9.5's wheel is 0.9 MB, 0.9.7's 33 MB:
# what a device call carries is limited (64 MiB with the checkout)
DEPS="webdataset==1.0.2 braceexpand==0.1.7 POT==0.9.5"
PY_TAG=${GPU_CHECK_PY:-3.12}       # the GPU image's Python, for --fetch-wheels

if [ "$MODE" = "--fetch-wheels" ]; then
  mkdir -p .whl
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
DRY=0
[ "$MODE" = "--dry" ] && DRY=1
echo "gpu_check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), out $OUT, dry $DRY"

has_torch() {  # $1 python; with CUDA unless dry
  [ -n "$1" ] && command -v "$1" >/dev/null 2>&1 || return 1
  if [ $DRY = 1 ]; then "$1" -c "import torch" 2>/dev/null
  else "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; fi
}
PY=""
for cand in "${PYTHON:-}" .venv/bin/python python3 python; do
  if has_torch "$cand"; then PY=$(command -v "$cand"); break; fi
done
if [ -z "$PY" ] && [ $DRY = 0 ]; then
  echo "gpu_check: no Python with a CUDA torch; trying ./setup.sh with the CUDA index (may be unreachable)"
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128} SALNET_EXTRAS= \
    timeout 240 ./setup.sh && has_torch .venv/bin/python && PY=$(pwd)/.venv/bin/python
fi
if [ -z "$PY" ]; then
  echo "gpu_check: FAILED: no Python with torch$([ $DRY = 0 ] && echo ' and CUDA') found"
  printf 'step         status  result\nenvironment  FAILED  no Python with a CUDA torch\n' | tee "$OUT/summary.txt"
  exit 1
fi
echo "gpu_check: python $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'))"

SITE=$(mktemp -d "${TMPDIR:-/tmp}/salnet_gpu_check.XXXXXX")  # installed packages: not outputs
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$(pwd):$SITE${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"webdataset": "webdataset", "braceexpand": "braceexpand", "ot": "POT", "yaml": "pyyaml", "scipy": "scipy",
        "PIL": "pillow", "tqdm": "tqdm", "pytest": "pytest"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "gpu_check: installing $missing into $SITE"
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    if ! "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl; then
      echo "gpu_check: pip failed; unpacking the wheels instead (a wheel is a zip of importable files)"
      for whl in .whl/*.whl; do "$PY" -m zipfile -e "$whl" "$SITE"; done
    fi
  else
    timeout 120 "$PY" -m pip install --quiet --no-compile --target "$SITE" $missing \
      || echo "gpu_check: install from the index failed (no registry? run --fetch-wheels elsewhere and carry .whl)"
  fi
fi

LEFT=$(( BUDGET - ($(date +%s) - START) - 10 ))
ARGS=(--out "$OUT" --budget "$LEFT")
[ $DRY = 1 ] && ARGS+=(--dry)
[ -n "${OSIE_RECIPE:-}" ] && ARGS+=(--osie-recipe "$OSIE_RECIPE")
"$PY" benchmarks/gpu_check.py "${ARGS[@]}"
rc=$?
# few files back from a device machine: the step logs and figures as one archive (summary.json has the figures)
tar czf "$OUT/steps.tar.gz" -C "$OUT" steps && rm -rf "$OUT/steps"
echo "gpu_check: done in $(( $(date +%s) - START )) s (budget $BUDGET s), exit $rc"
exit $rc
