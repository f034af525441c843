#!/usr/bin/env python
"""Reload a saved image classifier with the Auto classes and measure it on a held-out test split.

    python examples/evaluate_image_classifier.py runs/demo/model [--dataset fashion-mnist] [--saliency_png out.png]
    (the accuracy part is also `whitebox-hf eval runs/demo/model`)

Images go through the saved image processor exactly as a user's would (PIL image in, logits out).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

import whitebox_hf  # noqa: F401  (registers CRATE with the Auto classes)
from whitebox_hf.data import load_image_dataset
from whitebox_hf.evaluation import attention_saliency, save_saliency_grid
from whitebox_hf.evaluation.image_classifier import (
    evaluate_saved_image_classifier,
    load_saved_image_classifier,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--saliency_png", default="")
    args = parser.parse_args()

    model, processor = load_saved_image_classifier(args.model_dir)
    result = evaluate_saved_image_classifier(args.model_dir, args.dataset, batch_size=args.batch_size, model=model,
                                             processor=processor)
    print(f"[reload] {result['model_class']} from {args.model_dir}: test accuracy {result['accuracy']:.4f} "
          f"on {result['num_examples']} held-out images")

    if args.saliency_png:
        test = load_image_dataset(args.dataset)[0]["test"]
        examples = test[:8]
        pixels = processor(images=examples["image"], return_tensors="pt")["pixel_values"]
        maps = attention_saliency(model, pixels)
        with torch.inference_mode():
            predicted = model(pixel_values=pixels).logits.argmax(-1).tolist()
        names = model.config.id2label
        titles = [f"{names[p]}" + ("" if p == t else f" (true: {names[t]})")
                  for p, t in zip(predicted, examples["label"])]
        images = torch.from_numpy(np.stack([np.asarray(image) for image in examples["image"]]))
        images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
        save_saliency_grid(images, maps, args.saliency_png, titles=titles)
        print(f"[reload] saliency maps (last-layer cls attention, mean over heads): {args.saliency_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
