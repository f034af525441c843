#!/usr/bin/env bash
# The short diagnosis runs of docs/results/ssl_diagnosis.md, into runs/ssl_diagnosis/<name>/ with a wall_time.json:
# SimDINO-CRATE before/after the class-token initialisation fix (120 steps on the first 10k training images), and
# CRATE-MAE vs ViT-MAE with its MAE initialisation restored (150 steps on the first 20k). All scored on the first
# 10k training / 2k test images; `python training/report_ssl_diagnosis.py` then writes the page.
# RUNS="mae-vit" picks a subset. Two at a time fit the 2 cores: `RUNS=... bash ... &` twice.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=runs/ssl_diagnosis
SCORE=(--test_subset 2000 --eval_train_subset 10000 --save_model false --checkpoint_every 100000)
SSL=(training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method simdino --backbone crate
     --epochs 2 --max_steps 120 --warmup_steps 20 --eval_every_epoch false)
MAE=(training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --epochs 1 --max_steps 150 --warmup_steps 20)
for name in ${RUNS:-simdino-crate-init1 simdino-crate-init0.02 mae-crate mae-vit}; do
  case $name in
    simdino-crate-init1) command=("${SSL[@]}" --position_embedding_init_std 1.0) ;;
    simdino-crate-init0.02) command=("${SSL[@]}" --position_embedding_init_std 0.02) ;;
    mae-crate) command=("${MAE[@]}" --model crate) ;;
    mae-vit) command=("${MAE[@]}" --model vit) ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  "$PYTHON" "${command[@]}" "${SCORE[@]}" --output_dir "$OUT/$name"
  echo "{\"run\": \"${name}\", \"wall_seconds\": $(( $(date +%s) - start ))}" > "$OUT/$name/wall_time.json"
done
