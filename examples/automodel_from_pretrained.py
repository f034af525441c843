#!/usr/bin/env python
"""`AutoModel.from_pretrained` on a saved CRATE folder: importing whitebox_hf registers CRATE with the Auto classes,
so a classifier checkpoint loads as the bare `CrateModel` backbone (its head is dropped) and gives pooled features.

    python examples/automodel_from_pretrained.py runs/fashion_mnist_crate/model
    python examples/automodel_from_pretrained.py --tiny      # a tiny random CRATE saved to a temporary folder
"""

import argparse

import torch
from tiny_models import tiny_crate_classifier
from transformers import AutoImageProcessor, AutoModel, logging

import whitebox_hf  # noqa: F401  (registers the Auto classes)

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", nargs="?", help="a saved CRATE folder (config, weights, preprocessor config)")
parser.add_argument("--tiny", action="store_true", help="build and save a tiny random CRATE instead")
args = parser.parse_args()
model_dir = tiny_crate_classifier() if args.tiny else args.model_dir or parser.error("give a model folder or --tiny")

logging.set_verbosity_error()  # else the classifier weights the backbone leaves out are reported
model = AutoModel.from_pretrained(model_dir).eval()
processor = AutoImageProcessor.from_pretrained(model_dir)
images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]  # any size; RGB or grey
with torch.no_grad():
    outputs = model(**processor(images=images, return_tensors="pt"))
print(f"{type(model).__name__}: pooled features {tuple(outputs.pooler_output.shape)}, "
      f"tokens {tuple(outputs.last_hidden_state.shape)}")
