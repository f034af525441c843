#!/usr/bin/env python
"""Train an image classifier (CRATE, CRATE-α, or the ViT baseline) with Accelerate.

    python training/train_image_classification.py --config training/configs/fashion_mnist_crate.yaml
    python training/train_image_classification.py --config ... --epochs 2 --mixed_precision bf16
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 training/train_image_classification.py ...
    python training/train_image_classification.py --config ... --resume_from_checkpoint latest

Every key of the YAML file can be overridden on the command line (`--key value`). The run writes into
`output_dir`: `log.jsonl` (metrics), `loss_curve.png`, `checkpoints/checkpoint_<i>/` (`whitebox_hf.training.checkpointing`),
`metrics.json` and, at the end, `model/` (`save_pretrained` + image processor + model card).

`batch_size` is the *global* batch: with several processes each one gets an equal share of every batch
(`split_batches=True`), so a multi-process run follows the single-process trajectory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import AugmentedTensorDataset, EpochPermutationSampler, dataset_to_tensors
from whitebox_hf.data import image_classification_transforms
from whitebox_hf.data import load_image_dataset
from whitebox_hf.hub import image_classification_model_card
from whitebox_hf.training.builders import build_image_classifier, build_image_processor
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import parse_config_args, run_script
from whitebox_hf.training.optim import build_optimizer
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run


DEFAULTS = {
    # model
    "model_type": "crate",  # crate | vit
    "preset": "",  # optional CrateConfig preset name; explicit fields below override it
    "block_type": "ista",  # crate only: ista | odl (CRATE-α)
    "hidden_size": 192,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "patch_size": 4,
    "pooling": "cls",
    "mlp_ratio": 4,  # vit only
    "vit_attention": "",  # vit only: "" = whitebox_sdpa (the kernel CRATE runs) | sdpa | eager
    # data
    "dataset": "fashion-mnist",  # fashion-mnist | digits
    "data_dir": "",
    "train_subset": 0,  # >0: use only the first n training images (tests)
    "test_subset": 0,
    "crop_padding": 2,
    "horizontal_flip": True,
    "random_erasing": 0.0,  # probability of torchvision's RandomErasing per training image
    # optimisation
    "optimizer": "adamw",  # adamw | lion (needs `pip install lion-pytorch`)
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "warmup_steps": 200,
    "epochs": 10,
    "max_steps": 0,  # >0 stops early (tests)
    "batch_size": 128,
    "eval_batch_size": 500,
    "label_smoothing": 0.1,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",  # no | bf16
    "seed": 0,
    # bookkeeping
    "output_dir": "runs/fashion_mnist_crate",
    "eval_every": 0,  # steps; 0 = end of each epoch
    "log_every": 20,
    "checkpoint_every": 0,  # steps; 0 = end of each epoch
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": "",  # "" | latest | path
    "save_model": True,
    "num_threads": 0,  # >0: torch.set_num_threads
    "interrupt_after_steps": 0,  # >0: exit abruptly after this many steps, saving nothing (crash tests)
}


VIT_ATTENTIONS = ("", "whitebox_sdpa", "sdpa", "eager")


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    for key in ("random_erasing", "label_smoothing"):  # here, so a bad value is a one-line usage error (run_script)
        if not 0.0 <= args[key] <= 1.0:
            raise ValueError(f"`{key}` must be in [0, 1], got {args[key]!r}")
    if args["vit_attention"] not in VIT_ATTENTIONS:
        raise ValueError(f"`vit_attention` must be one of {VIT_ATTENTIONS}, got {args['vit_attention']!r}")
    return args


def evaluate(model, loader, accelerator) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            logits = model(pixel_values=batch["pixel_values"]).logits
            predictions, labels = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
            correct += (predictions == labels).sum().item()
            total += labels.numel()
    model.train()
    return correct / max(total, 1)


def plot_loss_curve(log_path: Path, png_path: Path) -> None:
    plot_training_curves(log_path, png_path, train_key="train_loss", train_label="train loss (label-smoothed CE)",
                         eval_key="eval_accuracy", eval_label="test accuracy")


def main(argv=None) -> dict:
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    dataset, dataset_info = load_image_dataset(args["dataset"], args["data_dir"] or None, accelerator)
    train_images, train_labels = dataset_to_tensors(dataset["train"])
    test_images, test_labels = dataset_to_tensors(dataset["test"])
    if args["train_subset"]:
        train_images, train_labels = train_images[: args["train_subset"]], train_labels[: args["train_subset"]]
    if args["test_subset"]:
        test_images, test_labels = test_images[: args["test_subset"]], test_labels[: args["test_subset"]]
    image_size = train_images.shape[-1]
    mean, std = dataset_info["image_mean"], dataset_info["image_std"]

    model = build_image_classifier(args, image_size, train_images.shape[1], dataset_info["class_names"])
    image_processor = build_image_processor(image_size, mean, std)

    train_set = AugmentedTensorDataset(
        train_images, train_labels,
        image_classification_transforms(
            image_size, mean, std, True, args["crop_padding"],
            args["horizontal_flip"] and dataset_info["horizontal_flip_ok"], args["random_erasing"],
        ),
        seed=args["seed"],
    )
    test_set = AugmentedTensorDataset(
        test_images, test_labels, image_classification_transforms(image_size, mean, std, False)
    )
    sampler = EpochPermutationSampler(len(train_set), seed=args["seed"])
    train_loader = DataLoader(train_set, batch_size=args["batch_size"], sampler=sampler, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=args["eval_batch_size"])

    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        # Norms, biases, class token and position table are not shrunk by weight decay (ViT/CRATE practice).
        (no_decay if parameter.ndim < 2 or "position_embeddings" in name or "cls_token" in name else decay).append(
            parameter
        )
    groups = [{"params": decay, "weight_decay": args["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = build_optimizer(args["optimizer"], groups, args["learning_rate"],
                                (args["adam_beta1"], args["adam_beta2"]))
    scheduler = get_cosine_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args["label_smoothing"])

    model, optimizer, train_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, test_loader, scheduler
    )
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config={k: v for k, v in args.items()})

    eval_every = args["eval_every"] or steps_per_epoch
    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    bar = tqdm(total=total_steps, initial=progress.step, disable=not accelerator.is_local_main_process,
               desc=f"{args['model_type']}/{args['block_type']}" if args["model_type"] == "crate" else "vit")
    start_time = time.time()
    running_loss, running_count = 0.0, 0
    last_accuracy = None
    model.train()
    for batch in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        logits = model(pixel_values=batch["pixel_values"]).logits
        loss = loss_fn(logits.float(), batch["labels"])
        accelerator.backward(loss)
        if args["max_grad_norm"] > 0:
            accelerator.clip_grad_norm_(model.parameters(), args["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        bar.update(1)
        running_loss += loss.item()
        running_count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            accelerator.log(
                {"train_loss": running_loss / running_count, "learning_rate": scheduler.get_last_lr()[0],
                 "epoch": progress.step / steps_per_epoch, "elapsed_s": time.time() - start_time},
                step=progress.step,
            )
            bar.set_postfix(loss=f"{running_loss / running_count:.3f}")
            running_loss, running_count = 0.0, 0
        if progress.step % eval_every == 0 or progress.step == total_steps:
            last_accuracy = evaluate(model, test_loader, accelerator)
            accelerator.log({"eval_accuracy": last_accuracy}, step=progress.step)
            accelerator.print(f"step {progress.step}: test accuracy {last_accuracy:.4f}")
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    bar.close()
    train_seconds = time.time() - start_time
    accelerator.wait_for_everyone()

    results = {
        "test_accuracy": last_accuracy,
        "steps": progress.step,
        "epochs": progress.step / steps_per_epoch,
        "train_seconds_this_run": train_seconds,
        "num_parameters": sum(p.numel() for p in accelerator.unwrap_model(model).parameters()),
        "num_processes": accelerator.num_processes,
        "world_batch_size": args["batch_size"],
        "dataset": dataset_info["name"],
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
        accelerator.end_training()
        plot_loss_curve(output_dir / "log.jsonl", output_dir / "loss_curve.png")
        if args["save_model"]:
            unwrapped = accelerator.unwrap_model(model)
            model_dir = output_dir / "model"
            with atomic_directory(model_dir) as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
                image_processor.save_pretrained(folder)
            card = image_classification_model_card(
                unwrapped.config,
                {"accuracy": last_accuracy},
                dataset_name=dataset_info["name"],
                dataset_id=dataset_info["hub_id"],
                hyperparameters={k: args[k] for k in ("optimizer", "learning_rate", "weight_decay", "batch_size",
                                                      "epochs", "warmup_steps", "label_smoothing",
                                                      "mixed_precision", "seed")},
                training_summary=(
                    f"Trained from scratch for {results['epochs']:.2f} epochs ({progress.step} steps) on the "
                    f"{dataset_info['name']} train split with `training/train_image_classification.py` "
                    f"({accelerator.num_processes} process(es), {train_seconds / 60:.1f} min for the last "
                    f"invocation)."
                ),
            )
            card.save(str(model_dir / "README.md"))
    else:
        accelerator.end_training()
    return results


if __name__ == "__main__":
    run_script(main)
