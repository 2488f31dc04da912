#!/usr/bin/env bash
# The SalGAN recipe on OSIE (jobs/osie_recipe.py) on a lent GPU machine, whose calls carry at most 64 MiB: OSIE's
# release (43 MB) and the encoder weights (29 MB) travel in two calls that follow each other while the machine is
# warm; it keeps STATE (default /tmp/salnet-osie) between them. The sequence: docs/benchmarks.md.
#
#   benchmarks/gpu_osie.sh stage                 # here: ../shared's OSIE and weights copied into .device/ (ignored)
#   benchmarks/gpu_osie.sh pack                  # there, carrying .device/osie (and .whl): OSIE -> STATE/shards,
#                                                # then probe: the PASSES that fit a train call, from 10 timed steps
#   benchmarks/gpu_osie.sh train [PASSES [OVERRIDES...]]
#                                                # there, carrying .device/weights (and .whl): the recipe (default
#                                                # 21 passes: the released 15 + 15 epochs) into STATE/run, stopped
#                                                # with a checkpoint before BUDGET s (default 480); again: resumes
#   benchmarks/gpu_osie.sh train --dry [PASSES]  # any CPU: train on STATE/shards at tiny sizes (CI tests it)
#   benchmarks/gpu_osie.sh probe --dry           # any CPU: the probe at tiny sizes (CI tests it)
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
  # ../shared is read-only: the copies get ordinary modes, so that rm -rf .device works
  cp -r --no-preserve=mode "$SHARED/data/osie/." .device/osie/ \
    && cp --no-preserve=mode "$SHARED/weights/$WEIGHTS_NAME" .device/weights/ || exit 1
  du -sh .device/osie .device/weights
  exit 0
fi
if [ "$VERB" != "pack" ] && [ "$VERB" != "train" ] && [ "$VERB" != "probe" ]; then
  echo "usage: $0 stage | pack | probe [--dry] | train [--dry] [PASSES [OVERRIDES...]]"
  exit 2
fi

OUT=${OUT:-outputs/gpu_osie}
mkdir -p "$OUT" "$STATE"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/osie.log") 2>&1
TEE=$!
finish() {  # exit $1 once tee has written the whole log (a device call returns $OUT as the command ends)
  exec >&- 2>&-
  wait "$TEE" 2>/dev/null
  exit "$1"
}
echo "gpu_osie $VERB: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), state $STATE"
TAG=gpu_osie SUMMARY=""
source benchmarks/gpu_env.sh

probe() {  # the recipe's steps/s from 10 timed adversarial steps, and the PASSES that fit train calls
  local batch=32 bench=(--device cuda --steps 10 --warmup 3)
  [ $DRY = 1 ] && batch=2 bench=(--device cpu --size 64 96 --width 0.0625 --steps 1 --warmup 1 --matmul-n 256)
  "$PY" -m benchmarks.train_bench --bf16 --channels-last --batch $batch "${bench[@]}" --json "$STATE/speed.json" \
    >/dev/null || return 1
  "$PY" - "$STATE/speed.json" $batch <<'PYEOF'
import json
import sys

loop_steps_s = json.load(open(sys.argv[1]))["loop_img_s"] / int(sys.argv[2])  # updates/s: D, G on alternate batches
per_pass = 3 * 15 * 15  # bootstrap, BCE/4 alone, GAN/4: 15 epochs of 15 steps per pass over the 480 images
overhead = 150  # start, the readout, 45 validations, the final scoring: seconds, estimated
for budget in (300, 480):
    passes = min(21, int((budget - overhead) * loop_steps_s / per_pass))
    fits = f"fits PASSES={passes}" if passes >= 1 else "does not fit PASSES=1"
    print(f"gpu_osie: at {loop_steps_s:.3g} steps/s, BUDGET={budget} {fits} "
          f"({per_pass * 21 / loop_steps_s / 60:.0f} min for the default 21 passes)")
PYEOF
}

if [ "$VERB" = "probe" ]; then
  probe
  finish $?
fi
if [ "$VERB" = "pack" ]; then
  [ -d .device/osie/data ] || { echo "gpu_osie: no .device/osie here: carry it (stage first)"; finish 1; }
  "$PY" jobs/pack.py osie --root .device/osie --out "$STATE/shards" --splits train val --shard-size 64 \
    --workers "$(nproc)" --no-progress || finish 1
  du -sh "$STATE/shards"
  probe
  finish $?
fi

if [ ! -f "$STATE/shards/manifest.json" ]; then
  echo "gpu_osie: no $STATE/shards: this machine is not the one pack ran on (given back in between?); run pack," \
       "then train within 30 s of its end"
  finish 1
fi
mkdir -p "$STATE/weights"
[ -f ".device/weights/$WEIGHTS_NAME" ] && cp ".device/weights/$WEIGHTS_NAME" "$STATE/weights/"
WEIGHTS=${OSIE_WEIGHTS:-$STATE/weights/$WEIGHTS_NAME}
[ "$WEIGHTS" = none ] || [ -f "$WEIGHTS" ] || { echo "gpu_osie: no $WEIGHTS: carry .device/weights"; finish 1; }
PASSES=${1:-21}
shift || true
BUDGET=${BUDGET:-480}
ARGS=(--out "$STATE/run" --shards "$STATE/shards" --weights "$WEIGHTS" --passes "$PASSES")
if [ $DRY = 1 ]; then
  ARGS+=(--bootstrap-epochs 1 --epochs 1 --readout-epochs 2 --device cpu model.width=0.0625 "data.input_size=[32, 48]"
         data.batch_size=4 data.workers=0 train.bf16=false)
else
  ARGS+=(--device cuda "data.workers=$(( $(nproc) > 6 ? $(nproc) - 4 : 2 ))")  # cores for the main process, metrics
fi
LEFT=$(( BUDGET - ($(date +%s) - START) ))
[ "$LEFT" -ge 30 ] || { echo "gpu_osie: $LEFT s left of BUDGET=$BUDGET: too little to train"; finish 1; }
# SIGUSR2 at the budget, to the recipe alone (not its loader workers): the stage in progress checkpoints, none
# starts after it, and the recipe exits 3; the next call resumes. KILL 60 s later if it has not ended.
PYTHONUNBUFFERED=1 timeout --foreground --preserve-status --signal=USR2 --kill-after=60 "$LEFT" \
  "$PY" jobs/osie_recipe.py "${ARGS[@]}" "$@"
rc=$?
[ $rc = 0 ] && cp "$STATE/run/sweep/summary.md" "$STATE/run/sweep/evaluation.json" "$OUT/"
(cd "$STATE/run" 2>/dev/null && find . -name config.yaml -o -name metrics.jsonl -o -name 'final*.json' \
  | tar czf "$OUT/runs.tar.gz" -T -)
case $rc in
  0) echo "gpu_osie: finished in $(( $(date +%s) - START )) s: $OUT/summary.md" ;;
  3) echo "gpu_osie: stopped with a checkpoint at BUDGET=$BUDGET s; train again to resume" ;;
  137) echo "gpu_osie: killed 60 s after the budget; train again resumes from the last checkpoint" ;;
  *) echo "gpu_osie: the recipe failed (exit $rc, above)" ;;
esac
finish $rc
