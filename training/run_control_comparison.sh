#!/usr/bin/env bash
# ControlNet and personalisation on the text-to-image base (book §8.7), then the results page.
#   BASE=runs/text-to-image-mhsa/pipeline RUNS=runs/control-v2 bash training/run_control_comparison.sh
# Each run resumes from its last checkpoint when started again (--resume_from_checkpoint latest).
set -euo pipefail
BASE=${BASE:-runs/text-to-image-mhsa/pipeline}
RUNS=${RUNS:-runs/control-v2}
PYTHON=${PYTHON:-python}

$PYTHON training/train_controlnet.py --config training/configs/controlnet_canny.yaml --base "$BASE" \
    --output_dir "$RUNS/controlnet" --resume_from_checkpoint latest
for method in dreambooth custom_diffusion; do
    $PYTHON training/train_personalization.py --config "training/configs/personalization_$method.yaml" \
        --base "$BASE" --output_dir "$RUNS/personalization/$method" --resume_from_checkpoint latest
done
$PYTHON training/report_control.py --runs "$RUNS"
