#!/usr/bin/env bash
# SimDINO vs DINO on Fashion-MNIST at one equal budget (training/configs/ssl_fashion_mnist.yaml, 6 epochs):
# the CRATE and ViT arms, then the stability study (an 8-layer CRATE, twice as deep, under DINO's default settings
# vs SimDINO; 3 epochs, to fit the CPU budget). RUNS="simdino-crate dino-vit" picks a subset; each run goes to runs/ssl-<name>/ with a
# wall_time.json. `python training/report_ssl.py` then writes docs/results/ssl.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for name in ${RUNS:-simdino-crate dino-crate simdino-vit dino-vit simdino-crate-deep dino-crate-deep}; do
  method=${name%%-*}
  rest=${name#*-}
  backbone=${rest%%-*}
  extra=()
  [[ $rest == *-deep ]] && extra=(--num_hidden_layers 8 --epochs 3)
  start=$(date +%s)
  "$PYTHON" training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method "$method" \
    --backbone "$backbone" --epochs 6 --output_dir "runs/ssl-${name}" "${extra[@]}" "$@"
  echo "{\"run\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/ssl-${name}/wall_time.json"
done
