#!/usr/bin/env python
"""The main job (`make demo`): fetch Fashion-MNIST, train a small CRATE for a few minutes, save it, reload it
with `AutoModelForImageClassification.from_pretrained` in a fresh process, report test accuracy, and write a
saliency-map PNG and the model card.

    python examples/demo_fashion_mnist.py [--epochs 2] [--output_dir runs/demo]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--output_dir", default="runs/demo")
    args = parser.parse_args()

    from whitebox_hf.data import DataUnavailableError, load_fashion_mnist

    dataset = "fashion-mnist"
    try:
        load_fashion_mnist()
        print("[demo] Fashion-MNIST is ready (60 000 train / 10 000 test images).")
    except DataUnavailableError as error:
        print(f"[demo] {error}")
        print("[demo] FALLING BACK to scikit-learn's bundled 8x8 digits (1 797 images, upsampled to 16x16).\n"
              "[demo] The numbers below are NOT Fashion-MNIST results.")
        dataset = "digits"

    train = [sys.executable, str(ROOT / "training" / "train_image_classification.py"),
             "--config", str(ROOT / "training" / "configs" / "demo.yaml"),
             "--dataset", dataset, "--output_dir", args.output_dir]
    if args.epochs is not None:
        train += ["--epochs", str(args.epochs)]
    print("[demo] training:", " ".join(train))
    subprocess.run(train, check=True)

    model_dir = Path(args.output_dir) / "model"
    reload = [sys.executable, str(ROOT / "examples" / "evaluate_image_classifier.py"), str(model_dir),
              "--dataset", dataset, "--saliency_png", str(Path(args.output_dir) / "saliency.png")]
    print("[demo] reloading in a fresh process:", " ".join(reload))
    subprocess.run(reload, check=True)
    print(f"[demo] model card: {model_dir / 'README.md'}")
    print(f"[demo] loss curve: {Path(args.output_dir) / 'loss_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
