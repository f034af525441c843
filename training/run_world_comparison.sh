#!/usr/bin/env bash
# The runs behind docs/results/conditional_world.md (issue 17, items 4 and 5), in the order they were run, then
# the report. Each run resumes with `--resume_from_checkpoint latest` if killed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1
$PY training/train_world_model.py --config training/configs/world_model.yaml --model diffusion \
    --output_dir runs/world/diffusion "$@"
$PY training/train_world_model.py --config training/configs/world_model.yaml --model regressor \
    --output_dir runs/world/regressor "$@"
$PY training/report_world_model.py --runs runs/world --out docs/results/conditional_world.md
