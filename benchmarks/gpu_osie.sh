#!/usr/bin/env bash
# The SalGAN recipe on OSIE (jobs/osie_recipe.py) on a lent GPU machine, whose calls carry at most 64 MiB: OSIE's
# release (43 MB) and the encoder weights (29 MB) travel in two calls that follow each other while the machine is
# warm; it keeps STATE (default /tmp/salnet-osie) between them. The sequence: docs/benchmarks.md.
#
#   benchmarks/gpu_osie.sh stage                 # here: ../shared's OSIE and weights copied into .device/ (ignored)
#   benchmarks/gpu_osie.sh pack                  # there, carrying .device/osie (and .whl): OSIE -> STATE/shards
#   benchmarks/gpu_osie.sh train [PASSES [OVERRIDES...]]
#                                                # there, carrying .device/weights (and .whl): the recipe (default
#                                                # 21 passes: the released 15 + 15 epochs) into STATE/run, stopped
#                                                # with a checkpoint before BUDGET s (default 480); again: resumes
#   benchmarks/gpu_osie.sh train --dry [PASSES]  # any CPU: the same on STATE/shards at tiny sizes (CI tests it)
#
# Under $OUT (default outputs/gpu_osie): osie.log, summary.md and evaluation.json (when the recipe finished) and
# runs.tar.gz (every stage's config.yaml, metrics.jsonl, final.json): few files, as a device call returns.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
VERB=${1:-}
shift || true
DRY=0
[ "${1:-}" = "--dry" ] && { DRY=1; shift; }
STATE=${STATE:-/tmp/salnet-osie}
WEIGHTS_NAME=vgg16_features_hed_bsds500_fp16.pth

if [ "$VERB" = "stage" ]; then
  SHARED=${SHARED:-../shared}
  mkdir -p .device/osie .device/weights
  grep -qx "/.device/" .git/info/exclude 2>/dev/null || echo "/.device/" >> .git/info/exclude
  cp -a "$SHARED/data/osie/." .device/osie/ && cp "$SHARED/weights/$WEIGHTS_NAME" .device/weights/ || exit 1
  du -sh .device/osie .device/weights
  exit 0
fi
if [ "$VERB" != "pack" ] && [ "$VERB" != "train" ]; then
  echo "usage: $0 stage | pack | train [--dry] [PASSES [OVERRIDES...]]"
  exit 2
fi

OUT=${OUT:-outputs/gpu_osie}
mkdir -p "$OUT" "$STATE"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/osie.log") 2>&1
echo "gpu_osie $VERB: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), state $STATE"
TAG=gpu_osie SUMMARY=""
source benchmarks/gpu_env.sh

if [ "$VERB" = "pack" ]; then
  [ -d .device/osie/data ] || { echo "gpu_osie: no .device/osie here: carry it (stage first)"; exit 1; }
  "$PY" jobs/pack.py osie --root .device/osie --out "$STATE/shards" --splits train val --shard-size 64 \
    --workers "$(nproc)" --no-progress || exit 1
  du -sh "$STATE/shards"
  exit 0
fi

[ -f "$STATE/shards/manifest.json" ] || { echo "gpu_osie: no $STATE/shards/manifest.json: run pack first"; exit 1; }
mkdir -p "$STATE/weights"
[ -f ".device/weights/$WEIGHTS_NAME" ] && cp ".device/weights/$WEIGHTS_NAME" "$STATE/weights/"
WEIGHTS=${OSIE_WEIGHTS:-$STATE/weights/$WEIGHTS_NAME}
[ "$WEIGHTS" = none ] || [ -f "$WEIGHTS" ] || { echo "gpu_osie: no $WEIGHTS: carry .device/weights"; exit 1; }
PASSES=${1:-21}
shift || true
BUDGET=${BUDGET:-480}
ARGS=(--out "$STATE/run" --shards "$STATE/shards" --weights "$WEIGHTS" --passes "$PASSES")
if [ $DRY = 1 ]; then
  ARGS+=(--bootstrap-epochs 1 --epochs 1 --readout-epochs 2 --device cpu model.width=0.0625 "data.input_size=[32, 48]"
         data.batch_size=4 data.workers=0 train.bf16=false)
else
  ARGS+=(--device cuda "data.workers=$(( $(nproc) / 2 ))")
fi
LEFT=$(( BUDGET - ($(date +%s) - START) ))
[ "$LEFT" -ge 30 ] || { echo "gpu_osie: $LEFT s left of BUDGET=$BUDGET: too little to train"; exit 1; }
# SIGUSR2 at the budget: the run in progress checkpoints and stops (the recipe resumes on the next call)
PYTHONUNBUFFERED=1 timeout --signal=USR2 --kill-after=60 "$LEFT" "$PY" jobs/osie_recipe.py "${ARGS[@]}" "$@"
rc=$?
[ $rc = 0 ] && cp "$STATE/run/sweep/summary.md" "$STATE/run/sweep/evaluation.json" "$OUT/"
(cd "$STATE/run" 2>/dev/null && find . -name config.yaml -o -name metrics.jsonl -o -name 'final*.json' \
  | tar czf "$OUT/runs.tar.gz" -T -)
case $rc in
  0) echo "gpu_osie: finished in $(( $(date +%s) - START )) s: $OUT/summary.md" ;;
  124|3) echo "gpu_osie: stopped with a checkpoint (budget $BUDGET s, or a signal); train again to resume" ;;
  *) echo "gpu_osie: the recipe failed (exit $rc, above)" ;;
esac
exit $rc
