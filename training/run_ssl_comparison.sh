#!/usr/bin/env bash
# SimDINO vs DINO on Fashion-MNIST at one equal, full budget (training/configs/ssl_fashion_mnist.yaml): all 60,000
# training images, EPOCHS epochs (default 30), the teacher scored with the 20-NN / linear probe fitted on all 60,000
# (unaugmented) training images and the 10,000 test images: the setting of the raw-pixel baseline of issue 18.
# CRATE starts from DINO's N(0, 0.02) class token and positions (see docs/results/ssl_diagnosis.md).
#
# RUNS picks the arms (default: the CRATE and ViT pairs); the stability pair (an 8-layer CRATE) is
# RUNS="simdino-crate-deep dino-crate-deep". Each run goes to runs/ssl-<name>/ with a wall_time.json and
# checkpoints every epoch (`--resume_from_checkpoint latest` continues a killed run exactly).
# Wall time, one thread on an uncontended core (the 6-epoch/10k runs of docs/results/ssl.md, scaled by steps):
# CRATE about 6 min per 60k epoch (3 h at 30 epochs), ViT 15-40 min per epoch (8-20 h); run two side by side.
# `python training/report_ssl.py` then writes docs/results/ssl.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-30}
WARMUP_STEPS=${WARMUP_STEPS:-936}  # 2 epochs of 468 steps (60,000 images, batch 128)
for name in ${RUNS:-simdino-crate dino-crate simdino-vit dino-vit}; do
  method=${name%%-*}
  rest=${name#*-}
  backbone=${rest%%-*}
  extra=()
  [[ $rest == *-deep ]] && extra=(--num_hidden_layers 8)
  start=$(date +%s)
  "$PYTHON" training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method "$method" \
    --backbone "$backbone" --train_subset 0 --eval_train_subset 0 --test_subset 0 --epochs "$EPOCHS" \
    --warmup_steps "$WARMUP_STEPS" --eval_every_epoch false --output_dir "runs/ssl-${name}" "${extra[@]}" "$@"
  echo "{\"run\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "runs/ssl-${name}/wall_time.json"
done
