#!/usr/bin/env bash
# CRATE-MAE vs ViT-MAE (same width, depths, heads, patch, recipe; training/configs/mae_fashion_mnist.yaml) at one
# equal, full budget: all 60,000 training images, EPOCHS epochs (default 30), probes fitted on all 60,000
# (unaugmented) training images and scored on the 10,000 test images. ViT-MAE now starts from MAE's sin-cos
# positions and N(0, 0.02) tokens (`train_mae.initialize_vit_mae_`; transformers 5.x left them at zero, the
# grey-patch plateau of the earlier table: see docs/results/ssl_diagnosis.md).
# One run after the other into runs/mae-<model>/ with a wall_time.json; MODELS="vit" picks one; extra arguments go
# to both runs. Wall time, one uncontended thread (the 6-epoch/20k runs of docs/results/ssl.md scaled by steps):
# about 9 min per 60k epoch for either model, 4.5 h each at 30 epochs.
# `python training/report_ssl.py` then writes docs/results/ssl.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-30}
WARMUP_STEPS=${WARMUP_STEPS:-936}  # 2 epochs of 468 steps
for model in ${MODELS:-crate vit}; do
  start=$(date +%s)
  "$PYTHON" training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model "$model" \
    --train_subset 0 --eval_train_subset 0 --test_subset 0 --epochs "$EPOCHS" --warmup_steps "$WARMUP_STEPS" \
    --output_dir "runs/mae-${model}" "$@"
  echo "{\"run\": \"mae-${model}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/mae-${model}/wall_time.json"
done
