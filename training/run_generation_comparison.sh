#!/usr/bin/env bash
# Class-conditional generators on Fashion-MNIST at one equal budget (STEPS optimiser steps of batch 64 each):
# the pixel-space DDPM U-Net baseline, a DiT in the VAE's and in the RAE's latent space, and the CRATE denoiser in
# the VAE's latent space. Needs the autoencoders first:
#   python training/train_autoencoder.py --config training/configs/autoencoder_vae.yaml
#   python training/train_autoencoder.py --config training/configs/autoencoder_rae.yaml
# RUNS="vae-dit rae-dit" picks a subset; then `python training/report_generation.py` writes
# docs/results/generation.md. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-1500}
shape=(--hidden_size 128 --num_layers 4 --num_attention_heads 4 --batch_size 64 --max_steps "$STEPS" --num_threads 1)
for name in ${RUNS:-ddpm-unet vae-dit rae-dit vae-crate}; do
  case $name in
    ddpm-unet) command=(training/train_ddpm_unet.py --config training/configs/ddpm_unet.yaml --batch_size 64
                        --max_steps "$STEPS" --num_threads 1) ;;
    vae-dit) command=(training/train_latent_flow.py --config training/configs/flow_vae_dit.yaml "${shape[@]}") ;;
    rae-dit) command=(training/train_latent_flow.py --config training/configs/flow_rae_dit.yaml "${shape[@]}") ;;
    vae-crate) command=(training/train_latent_flow.py --config training/configs/flow_vae_crate.yaml "${shape[@]}") ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
  "$PYTHON" "${command[@]}" --output_dir "runs/gen-${name}" "$@"
done
