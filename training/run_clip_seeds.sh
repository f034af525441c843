#!/usr/bin/env bash
# LIFT vs CLIP over seeds 0-2 (docs/results/multimodal.md, "Several seeds"): on Openclipart and on the Noto emoji
# captions, each arm at equal steps (10 epochs) and LIFT trained longer (16 epochs, within CLIP's training time).
# One CPU thread per run, one run at a time (about 50 min for Openclipart and 20 min for emoji on an idle core).
#   bash training/run_clip_seeds.sh && python training/report_multimodal.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
CONFIG=training/configs/clip_openclipart.yaml
for dataset in openclipart emoji; do
  out=runs/clip_seeds; [[ $dataset == emoji ]] && out=runs/clip_seeds_emoji
  for seed in 0 1 2; do
    for arm in lift clip; do
      "$PY" training/train_clip.py --config $CONFIG --dataset $dataset --text_tower $arm --seed $seed \
        --output_dir $out/$arm-s$seed
    done
    "$PY" training/train_clip.py --config $CONFIG --dataset $dataset --text_tower lift --epochs 16 --seed $seed \
      --output_dir $out/lift-long-s$seed
  done
done
