#!/usr/bin/env python
"""`transformers.Trainer` + PEFT LoRA on a saved CRATE classifier: adapt only the MSSA projections (and train the
head) for a few steps on a Fashion-MNIST subset, save the adapter (a few kB) and report the test accuracy.  Usage:
    python examples/trainer_peft_finetuning.py runs/fashion_mnist_crate/model --steps 50
    python examples/trainer_peft_finetuning.py --tiny   # tiny random CRATE (sklearn digits if Fashion-MNIST is absent)
"""

import argparse
import tempfile

from peft import get_peft_model
from tiny_models import tiny_crate_classifier
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

from whitebox_hf.data import DataUnavailableError, load_fashion_mnist, load_sklearn_digits
from whitebox_hf.finetuning import collate_image_classification, crate_lora_config, image_transform

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", nargs="?", help="a saved CRATE image-classification folder")
parser.add_argument("--tiny", action="store_true", help="build and save a tiny random CRATE instead")
parser.add_argument("--steps", type=int, default=20)
args = parser.parse_args()
model_dir = tiny_crate_classifier() if args.tiny else args.model_dir or parser.error("give a model folder or --tiny")
try:  # --tiny: only a cached Fashion-MNIST, never a download; else scikit-learn's bundled digits
    data = load_fashion_mnist(fetch=not args.tiny)
except DataUnavailableError:
    data = load_sklearn_digits()
transform = image_transform(AutoImageProcessor.from_pretrained(model_dir))
train, test = (data[split].shuffle(seed=0).select(range(n)).with_transform(transform) for split, n in
               (("train", 2000), ("test", 300)))
model = get_peft_model(AutoModelForImageClassification.from_pretrained(model_dir), crate_lora_config(r=4))
arguments = TrainingArguments(tempfile.mkdtemp(prefix="crate_lora_"), max_steps=args.steps, learning_rate=2e-3,
                              per_device_train_batch_size=32, remove_unused_columns=False, use_cpu=True,
                              save_strategy="no", logging_steps=10)
trainer = Trainer(model, arguments, train_dataset=train, data_collator=collate_image_classification,
                  compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
print(f"train loss {trainer.train().training_loss:.3f}, test accuracy {trainer.evaluate(test)['eval_accuracy']:.3f}")
trainer.save_model()  # the LoRA adapter and the head only, in a temporary folder
print(f"adapter saved to {arguments.output_dir}")
