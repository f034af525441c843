#!/usr/bin/env bash
# Trains CRATE, ViT (same width/depth/heads/patch/recipe) and CRATE-α on Fashion-MNIST, one after the other,
# into runs/ (MODELS="crate vit" picks a subset; several chains may run side by side). Then
# `python training/report_fashion_mnist.py` evaluates them and writes docs/results/fashion_mnist.md. Extra arguments are passed to every training run (e.g. --epochs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for name in ${MODELS:-crate vit crate_alpha}; do
  start=$(date +%s)
  "$PYTHON" training/train_image_classification.py --config "training/configs/fashion_mnist_${name}.yaml" "$@"
  echo "{\"model\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/fashion_mnist_${name}/wall_time.json"
done
