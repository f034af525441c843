#!/usr/bin/env bash
# Trains the motion-prior runs of docs/results/motion.md (issue 16, item 8) on the real BVH clips
# (training/configs/motion_prior.yaml: the CPU preset, CMU 01_03 for training, 01_01 and the boxing clip held out,
# equal steps for every run), then writes the report (which adds the nearest-neighbour and mean-pose baselines and
# the guidance row):
#
#   bash training/run_motion_comparison.sh                               # every run, one at a time, then the report
#   RUNS=/tmp/motion bash training/run_motion_comparison.sh --max_steps 2 --eval_max_windows 2   # a smoke test
#   VARIANTS="ours absolute" PARALLEL=2 bash training/run_motion_comparison.sh --max_steps 800
#
# Extra arguments go to every training run. Runs (each changes one thing from ours): ours (per-timestep invariant
# head conditioning, floor height on, 64-frame windows), absolute_relative, absolute_global_deltas,
# sequence_canonical, absolute (Table 8.15), no_floor (--floor_height off, Table 8.16), window32, window128, and
# regression (baseline (e): the same network regressing the body in one pass). Each run is one process on one
# thread; PARALLEL runs go side by side (default 1). Outputs: $RUNS/<run>/ (log $RUNS/<run>.log; RUNS=runs/motion)
# and the report ($OUTPUT, default docs/results/motion.md; REPORT_ARGS go to it, e.g. "--guidance off"). A run that
# wrote metrics.json is skipped (FORCE=1 retrains it); an interrupted one resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VARIANTS=${VARIANTS:-"ours absolute_relative absolute_global_deltas sequence_canonical absolute no_floor window32 window128 regression"}
PARALLEL=${PARALLEL:-1}
RUNS=${RUNS:-runs/motion}
OUTPUT=${OUTPUT:-docs/results/motion.md}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"

variant_args() {
  case $1 in
    ours) echo "" ;;
    absolute_relative|absolute_global_deltas|sequence_canonical|absolute) echo "--head_conditioning $1" ;;
    no_floor) echo "--floor_height off" ;;
    window32) echo "--window 32" ;;
    window128) echo "--window 128" ;;
    regression) echo "--objective regression" ;;
    *) echo "unknown run $1" >&2; return 2 ;;
  esac
}

run_one() {
  local variant=$1; shift
  local out="$RUNS/$variant"
  if [ -f "$out/metrics.json" ] && [ -z "${FORCE:-}" ]; then
    echo "skip $variant: $out/metrics.json exists (FORCE=1 retrains)"
    return 0
  fi
  local resume=latest
  if [ -n "${FORCE:-}" ]; then resume=""; fi
  local extra
  extra=$(variant_args "$variant")
  echo "start $variant → $out (log: $RUNS/$variant.log)"
  # shellcheck disable=SC2086
  "$PYTHON" training/train_motion_prior.py --config training/configs/motion_prior.yaml $extra \
    --output_dir "$out" ${resume:+--resume_from_checkpoint $resume} "$@" > "$RUNS/$variant.log" 2>&1
  echo "done $variant"
}

pids=()
for variant in $VARIANTS; do
  variant_args "$variant" > /dev/null
  run_one "$variant" "$@" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do sleep 2; done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" -eq 0 ] || { echo "a run failed: see $RUNS/*.log" >&2; exit 1; }
# shellcheck disable=SC2086
"$PYTHON" training/report_motion.py --runs_dir "$RUNS" --output "$OUTPUT" ${REPORT_ARGS:-}
