#!/usr/bin/env python
"""`transformers.pipeline("image-classification", model=folder)` with a saved CRATE classifier: no registration
beyond importing whitebox_hf; the pipeline uses the folder's `CrateImageProcessor` and the config's `id2label`.

    python examples/pipeline_image_classification.py runs/fashion_mnist_crate/model [image.png ...]
    python examples/pipeline_image_classification.py --tiny   # a tiny random CRATE saved to a temporary folder
"""

import argparse
from pathlib import Path

from tiny_models import tiny_crate_classifier
from transformers import pipeline

import whitebox_hf  # noqa: F401  (registers the Auto classes)

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "crate-image-classification"
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", nargs="?", help="a saved CRATE image-classification folder")
parser.add_argument("images", nargs="*", help="image files (default: four Fashion-MNIST test images)")
parser.add_argument("--tiny", action="store_true", help="build and save a tiny random CRATE instead")
args = parser.parse_args()
if args.tiny:  # every positional argument is then an image
    args.images, args.model_dir = [args.model_dir, *args.images] if args.model_dir else [], tiny_crate_classifier()

classifier = pipeline("image-classification", model=args.model_dir or parser.error("give a model folder or --tiny"))
for image in args.images or sorted(str(path) for path in (SPACE / "examples").glob("*.png")):
    guesses = classifier(image, top_k=2)
    print(f"{Path(image).name}: " + ", ".join(f"{guess['label']} ({guess['score']:.2f})" for guess in guesses))
