#!/usr/bin/env bash
# The four backbones of docs/results/segmentation.md at one small equal budget, for CPU: supervised CRATE and ViT
# (training/configs/fashion_mnist_{crate,vit}.yaml, 1 epoch on the 60k training images, fp32) and SimDINO-CRATE /
# SimDINO-ViT (training/configs/ssl_fashion_mnist.yaml, 1 epoch on its 10k-image subset). Each run goes to
# runs/seg-<name>/ with a wall_time.json; RUNS="vit simdino-vit" picks a subset. Then
# `python training/report_segmentation.py` writes docs/results/segmentation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for name in ${RUNS:-crate vit simdino-crate simdino-vit}; do
  start=$(date +%s)
  case $name in
    simdino-*)
      "$PYTHON" training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method simdino \
        --backbone "${name#simdino-}" --epochs 1 --output_dir "runs/seg-${name}" "$@" ;;
    *)
      "$PYTHON" training/train_image_classification.py --config "training/configs/fashion_mnist_${name}.yaml" \
        --epochs 1 --mixed_precision no --output_dir "runs/seg-${name}" "$@" ;;
  esac
  echo "{\"run\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/seg-${name}/wall_time.json"
done
