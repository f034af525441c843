#!/usr/bin/env bash
# Trains the SITA-VAE variants of docs/results/shapes.md on the procedural shapes (training/configs/sita_vae_shapes.yaml:
# the CPU preset, 1,024 shapes of 8 families, equal steps for every variant), after the alignment model they share
# (LIFT with a CRATE image tower on the shapes' renders and the frozen MiniLM on their captions), then writes the report:
#
#   bash training/run_shapes_comparison.sh                         # LIFT, the four variants two at a time, the report
#   VARIANTS="sita_vae crate" bash training/run_shapes_comparison.sh --max_steps 500   # extra args → every SITA-VAE run
#   PARALLEL=4 REPORT_ARGS="--grid_depth 5" bash training/run_shapes_comparison.sh       # as for docs/results/shapes.md
#
# Variants (each changes one thing from sita_vae): sita_vae (L_con on, KL on, transformer blocks), no_alignment
# (contrastive_weight 0; the alignment model still scores its retrieval), no_kl (kl_weight 0 and the posterior mean
# decoded: a plain autoencoder), crate (block_type crate: MSSA + ISTA blocks). Each run is one process on one thread;
# PARALLEL runs go side by side (default 2). Outputs: $RUNS/<variant>/ (log $RUNS/<variant>.log; RUNS=runs/shapes),
# $RUNS/shape_lift/, and the report docs/results/shapes.md. A run that wrote evaluation.json is skipped (FORCE=1
# retrains it); an interrupted one resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VARIANTS=${VARIANTS:-"sita_vae no_alignment no_kl crate"}
PARALLEL=${PARALLEL:-2}
RUNS=${RUNS:-runs/shapes}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$RUNS"

if [ ! -f "$RUNS/shape_lift/model/config.json" ]; then
  "$PYTHON" training/train_clip.py --config training/configs/shape_lift.yaml --output_dir "$RUNS/shape_lift" \
    --resume_from_checkpoint latest > "$RUNS/shape_lift.log" 2>&1
fi

variant_args() {
  case $1 in
    sita_vae) echo "" ;;
    no_alignment) echo "--contrastive_weight 0" ;;
    no_kl) echo "--kl_weight 0" ;;
    crate) echo "--block_type crate" ;;
    *) echo "unknown variant $1" >&2; return 2 ;;
  esac
}

run_one() {
  local variant=$1; shift
  local out="$RUNS/$variant"
  if [ -f "$out/evaluation.json" ] && [ -z "${FORCE:-}" ]; then
    echo "skip $variant: $out/evaluation.json exists (FORCE=1 retrains)"
    return 0
  fi
  local resume=latest
  if [ -n "${FORCE:-}" ]; then resume=""; fi
  echo "start $variant → $out (log: $RUNS/$variant.log)"
  # shellcheck disable=SC2046
  "$PYTHON" training/train_sita_vae.py --config training/configs/sita_vae_shapes.yaml \
    --alignment_model "$RUNS/shape_lift/model" $(variant_args "$variant") --output_dir "$out" \
    ${resume:+--resume_from_checkpoint $resume} "$@" > "$RUNS/$variant.log" 2>&1
  echo "done $variant"
}

pids=()
for variant in $VARIANTS; do
  run_one "$variant" "$@" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do sleep 5; done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" -eq 0 ] || { echo "a run failed: see $RUNS/*.log" >&2; exit 1; }
# shellcheck disable=SC2086
"$PYTHON" training/report_shapes.py --runs_dir "$RUNS" --output docs/results/shapes.md ${REPORT_ARGS:-}
