#!/usr/bin/env bash
# Trains the models of docs/results/cupid.md with training/train_cupid_flow.py — (a) Cupid stage 1
# (training/configs/cupid_flow.yaml), (a′) the same with the dense UV cube (--dense_uv true), (a″) the same
# with the frozen encoder of a pose regressor trained first (pose_encoder), and (c) the direct pose-regression baseline
# (training/configs/cupid_pose_regression.yaml), the same data, steps and batch; then stage 2 with pose-aligned
# conditioning and without it (Table 8.14's baseline, row (b)), both from training/configs/cupid_appearance.yaml —
# one after the other on one thread, then writes the report (training/report_cupid.py: the test split, every number
# computed):
#
#   bash training/run_cupid_comparison.sh                                    # both runs and the report
#   RUNS=/tmp/cupid bash training/run_cupid_comparison.sh --max_steps 5      # extra args go to every training run
#   REPORT_ARGS="--num_items 16" OUTPUT=/tmp/cupid/cupid.md bash training/run_cupid_comparison.sh
#
# Outputs: $RUNS/flow/, $RUNS/flow_dense/, $RUNS/pose_encoder/, $RUNS/flow_pose_encoder/, $RUNS/pose_regression/, $RUNS/appearance/, $RUNS/appearance_global/ (logs $RUNS/<run>.log; RUNS=runs/cupid) and $OUTPUT
# (docs/results/cupid.md, with cupid.json and cupid_examples.png beside it). A run that wrote metrics.json is
# skipped (FORCE=1 retrains it); an interrupted one resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs/cupid}
OUTPUT=${OUTPUT:-docs/results/cupid.md}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$RUNS"

run_one() {
  local name=$1 config=$2; shift 2
  local out="$RUNS/$name"
  if [ -f "$out/metrics.json" ] && [ -z "${FORCE:-}" ]; then
    echo "skip $name: $out/metrics.json exists (FORCE=1 retrains)"
    return 0
  fi
  local resume=latest
  if [ -n "${FORCE:-}" ]; then resume=""; fi
  echo "start $name → $out (log: $RUNS/$name.log)"
  "$PYTHON" training/train_cupid_flow.py --config "$config" --num_threads 1 --output_dir "$out" \
    ${resume:+--resume_from_checkpoint $resume} "$@" > "$RUNS/$name.log" 2>&1 \
    || { echo "$name failed: see $RUNS/$name.log" >&2; return 1; }
  echo "done $name"
}

run_one flow training/configs/cupid_flow.yaml "$@"
run_one flow_dense training/configs/cupid_flow.yaml --dense_uv true "$@"
run_one pose_regression training/configs/cupid_pose_regression.yaml "$@"
# (a″): the encoder of a pose regressor trained its full 10 epochs (the step cap of the config lifted), frozen in stage 1.
run_one pose_encoder training/configs/cupid_pose_regression.yaml --max_steps 4000 "$@"
run_one flow_pose_encoder training/configs/cupid_flow.yaml --image_encoder "$RUNS/pose_encoder/model" \
  --freeze_image_encoder true "$@"
run_one appearance training/configs/cupid_appearance.yaml "$@"
run_one appearance_global training/configs/cupid_appearance.yaml --pose_aligned false "$@"
# shellcheck disable=SC2086
"$PYTHON" training/report_cupid.py --runs_dir "$RUNS" --output "$OUTPUT" --num_threads 1 ${REPORT_ARGS:-}
