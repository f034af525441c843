#!/usr/bin/env bash
# A short-budget image-conditioned ShapeGenerationPipeline of the documented architecture (width 256, 2 + 1 + 2
# blocks) for benchmarks/bench_shape_generation.py, whose timings do not depend on how well it trained:
#
#   bash training/run_shape_bench_pipeline.sh        # ~40 min on one CPU thread → runs/shapes_bench/diffusion_image/pipeline
#   .venv/bin/python benchmarks/bench_shape_generation.py --pipeline runs/shapes_bench/diffusion_image/pipeline \
#       --output docs/results/benchmark_shape_generation.md
#
# LIFT (shape_lift.yaml) for 30 epochs, the SITA-VAE (sita_vae_shapes.yaml) for 500 steps in fp32 (its bf16 autocast
# is ~12x slower on a CPU without native bf16), the denoiser (shape_diffusion_text.yaml, --condition image) for 300
# steps. The quality runs of docs/results/shape_generation.md are run_shapes_comparison.sh and
# run_shape_generation_comparison.sh. A finished stage is skipped; an interrupted one resumes from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs/shapes_bench}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$RUNS"
if [ ! -f "$RUNS/shape_lift/model/config.json" ]; then
  "$PYTHON" training/train_clip.py --config training/configs/shape_lift.yaml --output_dir "$RUNS/shape_lift" \
    --epochs 30 --resume_from_checkpoint latest > "$RUNS/shape_lift.log" 2>&1
fi
echo "LIFT: $RUNS/shape_lift/model"
if [ ! -f "$RUNS/sita_vae/model/config.json" ]; then
  "$PYTHON" training/train_sita_vae.py --config training/configs/sita_vae_shapes.yaml \
    --alignment_model "$RUNS/shape_lift/model" --output_dir "$RUNS/sita_vae" --max_steps 500 --mixed_precision no \
    --resume_from_checkpoint latest > "$RUNS/sita_vae.log" 2>&1
fi
echo "SITA-VAE: $RUNS/sita_vae/model"
if [ ! -f "$RUNS/diffusion_image/pipeline/model_index.json" ]; then
  "$PYTHON" training/train_shape_diffusion.py --config training/configs/shape_diffusion_text.yaml --condition image \
    --vae_model "$RUNS/sita_vae/model" --alignment_model "$RUNS/shape_lift/model" \
    --output_dir "$RUNS/diffusion_image" --max_steps 300 --resume_from_checkpoint latest > "$RUNS/diffusion_image.log" 2>&1
fi
echo "pipeline: $RUNS/diffusion_image/pipeline"
