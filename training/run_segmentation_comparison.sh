#!/usr/bin/env bash
# The four backbones of docs/results/segmentation.md at one small equal budget per pair, sized for a shared 2-core
# CPU: supervised CRATE and ViT (training/configs/fashion_mnist_{crate,vit}.yaml, STEPS_SUPERVISED=60 steps of
# batch 128, warm-up 20, fp32) and SimDINO-CRATE / SimDINO-ViT (training/configs/ssl_fashion_mnist.yaml, STEPS_SSL=20
# steps of batch 128 with 2+6 crops, warm-up 5). Test accuracy / 20-NN are scored on 2,000 images to save time.
# Each run goes to runs/seg-<name>/ with a wall_time.json; RUNS="vit simdino-vit" picks a subset; LONG=1 runs
# one full epoch instead (runs/seg-<name>-epoch). Then `python training/report_segmentation.py` writes
# docs/results/segmentation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for name in ${RUNS:-crate vit simdino-crate simdino-vit}; do
  start=$(date +%s)
  if [[ -n ${LONG:-} ]]; then
    out="runs/seg-${name}-epoch"; budget=(--epochs 1)
  elif [[ $name == simdino-* ]]; then
    out="runs/seg-${name}"; budget=(--max_steps "${STEPS_SSL:-20}" --warmup_steps 5 --eval_train_subset 2000 --test_subset 2000)
  else
    out="runs/seg-${name}"; budget=(--max_steps "${STEPS_SUPERVISED:-60}" --warmup_steps 20 --test_subset 2000)
  fi
  case $name in
    simdino-*)
      "$PYTHON" training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method simdino \
        --backbone "${name#simdino-}" --output_dir "$out" "${budget[@]}" "$@" ;;
    *)
      "$PYTHON" training/train_image_classification.py --config "training/configs/fashion_mnist_${name}.yaml" \
        --mixed_precision no --output_dir "$out" "${budget[@]}" "$@" ;;
  esac
  echo "{\"run\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "$out/wall_time.json"
done
