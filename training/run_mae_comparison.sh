#!/usr/bin/env bash
# CRATE-MAE vs ViT-MAE (same width, depths, heads, patch, recipe; training/configs/mae_fashion_mnist.yaml),
# one after the other, into runs/mae-<model>/ with a wall_time.json. Extra arguments go to both runs.
# `python training/report_ssl.py` then writes docs/results/ssl.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for model in ${MODELS:-crate vit}; do
  start=$(date +%s)
  "$PYTHON" training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model "$model" \
    --output_dir "runs/mae-${model}" "$@"
  echo "{\"run\": \"mae-${model}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/mae-${model}/wall_time.json"
done
# A check on the baseline: ViT-MAE at a 4× smaller learning rate (MAE's own recipe is lower than 1e-3).
if [[ -z ${MODELS:-} ]]; then
  start=$(date +%s)
  "$PYTHON" training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model vit --learning_rate 0.00025 \
    --output_dir runs/mae-vit-lr2.5e-4 "$@"
  echo "{\"run\": \"mae-vit-lr2.5e-4\", \"wall_seconds\": $(( $(date +%s) - start ))}" > runs/mae-vit-lr2.5e-4/wall_time.json
fi
