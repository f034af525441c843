#!/usr/bin/env bash
# Text-to-image (issue 17 item 1), end to end on one CPU thread: the caption VAE, the LIFT scorer on the TRAIN split
# of Openclipart + Noto emoji (in parallel with the VAE: they do not depend on each other), the text-to-image U-Net
# in the VAE's latent space, then `training/report_conditional.py` writes the "Text-to-image" section of
# docs/results/conditional.md and its picture grid. T2I_STEPS caps the U-Net's steps; extra arguments go to the
# U-Net run. Each run resumes from its last checkpoint when rerun with RESUME=1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
T2I_STEPS=${T2I_STEPS:-2000}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
resume=()
if [[ ${RESUME:-0} == 1 ]]; then resume=(--resume_from_checkpoint latest); fi

"$PYTHON" training/train_clip.py --config training/configs/clip_captions.yaml \
  --output_dir runs/clip-lift-captions "${resume[@]}" > runs/clip-lift-captions.log 2>&1 &
lift_pid=$!
"$PYTHON" training/train_autoencoder.py --config training/configs/autoencoder_vae_captions.yaml \
  --output_dir runs/autoencoder-vae-captions "${resume[@]}"
"$PYTHON" training/train_text_to_image.py --config training/configs/text_to_image.yaml \
  --vae runs/autoencoder-vae-captions/autoencoder --output_dir runs/text-to-image --max_steps "$T2I_STEPS" \
  "${resume[@]}" "$@"
wait "$lift_pid"
"$PYTHON" training/report_conditional.py --pipeline runs/text-to-image/pipeline --lift runs/clip-lift-captions/model \
  --vae_metrics runs/autoencoder-vae-captions/metrics.json --output docs/results/conditional.md \
  --evaluation_json runs/text-to-image/conditional_evaluation.json
