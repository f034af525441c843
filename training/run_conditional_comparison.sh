#!/usr/bin/env bash
# Text-to-image (issue 17 item 1), end to end on one CPU thread per run: the caption VAE, the LIFT scorer on the TRAIN
# split of Openclipart + Noto emoji (in parallel with the VAE: they do not depend on each other), then the two
# text-to-image U-Nets in the VAE's latent space, side by side with the same data and budget: diffusers' attention
# (MHSA) and the white-box variant whose every attention is MSSA (`--attention mssa`). Then
# `training/report_conditional.py` writes the "Text-to-image" section of docs/results/conditional.md and its
# picture grid. T2I_STEPS caps the U-Nets' steps; extra arguments go to both U-Net runs. Each run resumes from its
# last checkpoint when rerun with RESUME=1 (the U-Nets' learning rate is constant after warm-up, so a larger
# T2I_STEPS continues a finished run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
T2I_STEPS=${T2I_STEPS:-8000}
VAE_DIR=runs/autoencoder-vae-captions-l1
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
resume=()
if [[ ${RESUME:-0} == 1 ]]; then resume=(--resume_from_checkpoint latest); fi

"$PYTHON" training/train_clip.py --config training/configs/clip_captions.yaml \
  --output_dir runs/clip-lift-captions "${resume[@]}" > runs/clip-lift-captions.log 2>&1 &
lift_pid=$!
"$PYTHON" training/train_autoencoder.py --config training/configs/autoencoder_vae_captions.yaml \
  --output_dir "$VAE_DIR" --fd_reference_cache runs/fd_effnet_reference "${resume[@]}"
for attention in mhsa mssa; do
  "$PYTHON" training/train_text_to_image.py --config training/configs/text_to_image.yaml --attention "$attention" \
    --vae "$VAE_DIR/autoencoder" --output_dir "runs/text-to-image-$attention" --max_steps "$T2I_STEPS" \
    "${resume[@]}" "$@" > "runs/text-to-image-$attention.log" 2>&1 &
done
wait
"$PYTHON" training/report_conditional.py --pipeline runs/text-to-image-mhsa/pipeline \
  --mssa_pipeline runs/text-to-image-mssa/pipeline --lift runs/clip-lift-captions/model \
  --vae_metrics "$VAE_DIR/metrics.json" --output docs/results/conditional.md \
  --evaluation_json runs/text-to-image-mhsa/conditional_evaluation.json
