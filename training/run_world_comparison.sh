#!/usr/bin/env bash
# The runs behind docs/results/conditional_world.md (issue 17, items 4 and 5), then the report. Each run resumes
# with `--resume_from_checkpoint latest` if killed. The two world-model runs and the image stage ran side by side
# (nohup, one thread each) on a shared 2-core machine; the temporal stage needs the image stage's unet/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
for model in diffusion regressor; do
    $PY training/train_world_model.py --config training/configs/world_model.yaml --model "$model" \
        --output_dir "runs/world/$model"
done
# Ablation: the same diffusion model with ε-prediction (the default is x0, prediction_type: sample).
$PY training/train_world_model.py --config training/configs/world_model.yaml --model diffusion \
    --prediction_type epsilon --output_dir runs/world/diffusion_epsilon
$PY training/train_video_inflation.py --config training/configs/video_inflation.yaml --stage image \
    --output_dir runs/world/video_image
$PY training/train_video_inflation.py --config training/configs/video_inflation.yaml --stage temporal \
    --image_model runs/world/video_image/unet --batch_size 2 --max_steps 300 --checkpoint_every 50 \
    --output_dir runs/world/video_temporal
$PY training/report_world_model.py --runs runs/world --out docs/results/conditional_world.md
