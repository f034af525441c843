#!/usr/bin/env bash
# Trains the text/image-to-3D diffusion variants of docs/results/shape_generation.md (training/train_shape_diffusion.py
# with training/configs/shape_diffusion_text.yaml: equal steps for every variant) in the latent spaces of the SITA-VAE
# runs of training/run_shapes_comparison.sh, then writes the report:
#
#   bash training/run_shape_generation_comparison.sh                          # the five variants two at a time, the report
#   VARIANTS="aligned unaligned" bash training/run_shape_generation_comparison.sh --max_steps 500   # extra args → every run
#   PARALLEL=3 REPORT_ARGS="--shapes_per_prompt 8" bash training/run_shape_generation_comparison.sh
#
# Variants (each changes one thing from aligned): aligned (text, in the aligned SITA-VAE's space $RUNS/sita_vae),
# unaligned (the same in the unaligned VAE's space $RUNS/no_alignment: the book's 3DS2V-like baseline),
# cross_attention (--conditioning cross_attention), crate (--block_type crate: MSSA + ISTA blocks), image (--condition
# image: the LIFT image tower's tokens of the renders, $RUNS/shape_lift). Each run is one process on one thread;
# PARALLEL runs go side by side (default 2). Outputs: $RUNS/diffusion_<variant>/ (log $RUNS/diffusion_<variant>.log;
# RUNS=runs/shapes) and the report docs/results/shape_generation.md. A run that wrote metrics.json is skipped (FORCE=1
# retrains it); an interrupted one resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VARIANTS=${VARIANTS:-"aligned unaligned cross_attention crate image"}
PARALLEL=${PARALLEL:-2}
RUNS=${RUNS:-runs/shapes}
CONFIG=${CONFIG:-training/configs/shape_diffusion_text.yaml}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$RUNS"

for needed in sita_vae no_alignment shape_lift; do
  if [ ! -f "$RUNS/$needed/model/config.json" ]; then
    echo "missing $RUNS/$needed/model: run training/run_shapes_comparison.sh first" >&2
    exit 1
  fi
done

variant_args() {
  case $1 in
    aligned) echo "--vae_model $RUNS/sita_vae/model" ;;
    unaligned) echo "--vae_model $RUNS/no_alignment/model" ;;
    cross_attention) echo "--vae_model $RUNS/sita_vae/model --conditioning cross_attention" ;;
    crate) echo "--vae_model $RUNS/sita_vae/model --block_type crate" ;;
    image) echo "--vae_model $RUNS/sita_vae/model --condition image" ;;
    *) echo "unknown variant $1" >&2; return 2 ;;
  esac
}

run_one() {
  local variant=$1; shift
  local out="$RUNS/diffusion_$variant"
  if [ -f "$out/metrics.json" ] && [ -z "${FORCE:-}" ]; then
    echo "skip $variant: $out/metrics.json exists (FORCE=1 retrains)"
    return 0
  fi
  local resume=latest
  if [ -n "${FORCE:-}" ]; then resume=""; fi
  local args
  args=$(variant_args "$variant") || return 2
  echo "start $variant → $out (log: $RUNS/diffusion_$variant.log)"
  # shellcheck disable=SC2086
  "$PYTHON" training/train_shape_diffusion.py --config "$CONFIG" --alignment_model "$RUNS/shape_lift/model" \
    $args --output_dir "$out" ${resume:+--resume_from_checkpoint $resume} "$@" > "$RUNS/diffusion_$variant.log" 2>&1
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
[ "$status" -eq 0 ] || { echo "a run failed: see $RUNS/diffusion_*.log" >&2; exit 1; }
# shellcheck disable=SC2086
"$PYTHON" training/report_shape_generation.py --runs_dir "$RUNS" --output docs/results/shape_generation.md \
  --vae_model "$RUNS/sita_vae/model" ${REPORT_ARGS:-}
