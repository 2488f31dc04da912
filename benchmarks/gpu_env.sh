# Sourced by gpu_check.sh and gpu_osie.sh: sets PY (a Python whose torch sees CUDA; any torch when DRY=1) and
# PYTHONPATH (the checkout, and a temporary folder holding what salnet needs and that Python lacks: from ./.whl when
# present, else from the package index; only the missing packages, each with --no-deps so that nothing the machine
# has, numpy or scipy, is shadowed). Needs DRY (0 or 1) and TAG (the log prefix); exits 1 when no such Python
# is found (with a row in $SUMMARY when set), through the sourcing script's `finish` when it has one (so that its log
# tee is flushed before the device call returns $OUT). Every phase has a time cap; GPU_ENV_WORST_S is their sum, what
# this can take at worst before the caller's steps start (gpu_check.py --plan checks the budget with it).

PROBE_S=20    # one candidate Python's `import torch`
SETUP_S=${GPU_ENV_SETUP_S:-90}      # ./setup.sh with the CUDA index, only when no Python has a CUDA torch
INSTALL_S=${GPU_ENV_INSTALL_S:-60}  # the missing packages, from ./.whl or the index
CANDIDATES=("${PYTHON:-}" .venv/bin/python python3 python)
export GPU_ENV_WORST_S=$(( ${#CANDIDATES[@]} * PROBE_S + SETUP_S + INSTALL_S ))

has_torch() {  # $1 python; with CUDA unless dry
  [ -n "$1" ] && command -v "$1" >/dev/null 2>&1 || return 1
  if [ $DRY = 1 ]; then timeout $PROBE_S "$1" -c "import torch" 2>/dev/null
  else timeout $PROBE_S "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; fi
}
PY=""
for cand in "${CANDIDATES[@]}"; do
  if has_torch "$cand"; then PY=$(command -v "$cand"); break; fi
done
if [ -z "$PY" ] && [ $DRY = 0 ]; then
  # torch unpinned: the newest build the CUDA index has for this Python (setup.sh's CPU pin may not exist there);
  # one retry and short timeouts, so that a machine without a registry gives up within the cap
  echo "$TAG: no Python with a CUDA torch; trying ./setup.sh with the CUDA index for at most $SETUP_S s"
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128} TORCH_SPEC=${TORCH_SPEC:-torch} \
    SALNET_EXTRAS= PIP_RETRIES=1 PIP_DEFAULT_TIMEOUT=15 \
    timeout $SETUP_S ./setup.sh && has_torch .venv/bin/python && PY=$(pwd)/.venv/bin/python
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
need = {"webdataset": "webdataset", "braceexpand": "braceexpand", "ot": "POT", "cffi": "cffi",
        "pycparser": "pycparser", "yaml": "pyyaml", "scipy": "scipy", "PIL": "pillow", "tqdm": "tqdm",
        "pytest": "pytest", "pluggy": "pluggy", "iniconfig": "iniconfig", "packaging": "packaging"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
wheel_of() {  # $1 a package name: its wheel in .whl (names compared as pip does: case and -/_ alike)
  local want whl
  want=$(echo "$1" | tr 'A-Z-' 'a-z_')
  for whl in .whl/*.whl; do
    [ -e "$whl" ] || continue
    [[ "$(basename "$whl" | tr 'A-Z' 'a-z')" == "${want}-"* ]] && { echo "$whl"; return; }
  done
}
if [ -n "$missing" ]; then
  echo "$TAG: installing $missing into $SITE (--no-deps; at most $INSTALL_S s)"
  wheels=() from_index=()
  for pkg in $missing; do
    whl=$(wheel_of "$pkg")
    if [ -n "$whl" ]; then wheels+=("$whl"); else from_index+=("$pkg"); fi
  done
  if [ ${#wheels[@]} -gt 0 ] && ! timeout $INSTALL_S "$PY" -m pip install --quiet --no-index --no-deps --no-compile \
      --target "$SITE" "${wheels[@]}"; then
    echo "$TAG: pip failed; unpacking the wheels instead (a wheel is a zip of importable files)"
    for whl in "${wheels[@]}"; do "$PY" -m zipfile -e "$whl" "$SITE"; done
  fi
  if [ ${#from_index[@]} -gt 0 ]; then
    PIP_RETRIES=1 PIP_DEFAULT_TIMEOUT=15 timeout $INSTALL_S "$PY" -m pip install --quiet --no-deps --no-compile \
      --target "$SITE" "${from_index[@]}" \
      || echo "$TAG: ${from_index[*]}: not in .whl and the index failed (no registry? benchmarks/gpu_check.sh" \
              "--fetch-wheels elsewhere, then carry .whl)"
  fi
fi
