# Sourced by gpu_check.sh and gpu_osie.sh: sets PY (a Python whose torch sees CUDA; any torch when DRY=1) and
# PYTHONPATH (the checkout, and a temporary folder holding what salnet needs and that Python lacks: from ./.whl when
# present, else from the package index). Needs DRY (0 or 1) and TAG (the log prefix); exits 1 when no such Python
# is found (with a row in $SUMMARY when set), through the sourcing script's `finish` when it has one (so that its log
# tee is flushed before the device call returns $OUT).

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
  echo "$TAG: no Python with a CUDA torch; trying ./setup.sh with the CUDA index (may be unreachable)"
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128} SALNET_EXTRAS= \
    timeout 240 ./setup.sh && has_torch .venv/bin/python && PY=$(pwd)/.venv/bin/python
fi
if [ -z "$PY" ]; then
  echo "$TAG: FAILED: no Python with torch$([ $DRY = 0 ] && echo ' and CUDA') found"
  [ -n "${SUMMARY:-}" ] && printf 'step         status  result\nenvironment  FAILED  no Python with a CUDA torch\n' \
    | tee "$SUMMARY"
  if declare -F finish >/dev/null; then finish 1; fi
  exit 1
fi
echo "$TAG: python $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'))"

SITE=$(mktemp -d "${TMPDIR:-/tmp}/salnet_gpu.XXXXXX")  # installed packages: not outputs
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
  echo "$TAG: installing $missing into $SITE"
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    if ! "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl; then
      echo "$TAG: pip failed; unpacking the wheels instead (a wheel is a zip of importable files)"
      for whl in .whl/*.whl; do "$PY" -m zipfile -e "$whl" "$SITE"; done
    fi
  else
    timeout 120 "$PY" -m pip install --quiet --no-compile --target "$SITE" $missing \
      || echo "$TAG: install from the index failed (no registry? benchmarks/gpu_check.sh --fetch-wheels elsewhere," \
              "then carry .whl)"
  fi
fi

