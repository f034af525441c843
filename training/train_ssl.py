#!/usr/bin/env python
"""Self-supervised pre-training of a CRATE or ViT backbone with SimDINO or its DINO baseline (Accelerate).

    python training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method simdino --backbone crate
    python training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method dino --backbone vit
    python training/train_ssl.py --config ... --resume_from_checkpoint latest

Spec ``ssl_and_generation.md`` §1. Student = backbone + head; the teacher is a copy that never receives
gradients and follows the student by EMA after every optimiser step, with a cosine momentum schedule from
``teacher_momentum`` to 1. All ``2 + L`` multi-crop views go through the student, the 2 global views through the
teacher. SimDINO's head stops at the l2-normalised bottleneck (loss: −alignment − γ·expansion, eps 0.05); DINO's
head adds a weight-normalised prototype layer (loss: cross-entropy against the centred, sharpened teacher).

Deviations from the papers, for 28×28 Fashion-MNIST on CPU: multi-crop at 28/12 px, drawn per image but
computed per batch (`whitebox_hf.data.BatchMultiCrop`, the recipe of `MultiCropTransform` at ~1/20 of its
cost); DINO with ``num_prototypes`` = 4096 instead of 65536 and a head of width ``head_hidden_dim`` (512)
instead of 2048; single process (SimDINO's coding rate uses the local batch).

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``evaluation.json`` (20-NN and
linear-probe test accuracy of the *teacher* backbone, feature std and effective rank) and
``teacher_backbone/`` (``save_pretrained``: loads with ``AutoModel.from_pretrained``) with ``head.safetensors``.
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import ViTConfig, ViTModel, get_cosine_schedule_with_warmup

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import load_image_tensors, normalise_images
from whitebox_hf.hub import write_model_card
from whitebox_hf.data import AugmentedTensorDataset, BatchMultiCrop, EpochPermutationSampler
from whitebox_hf.evaluation import effective_rank, extract_features, feature_std, knn_accuracy, linear_probe_accuracy
from whitebox_hf.models.crate import CrateConfig, CrateModel
from whitebox_hf.objectives import DINOHead, DINOLoss, cosine_momentum, ema_update_, simdino_loss
from whitebox_hf.training.builders import build_image_processor
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run

METHODS = ("simdino", "dino")
BACKBONES = ("crate", "vit")

DEFAULTS = {
    "method": "simdino",  # simdino | dino
    "backbone": "crate",  # crate | vit
    # backbone
    "hidden_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "patch_size": 4,
    "mlp_ratio": 4,  # vit only
    # crate only. The authors' CRATE draws the class token and position table from N(0, 1) (CrateConfig's
    # default, kept for supervised CRATE); at width 96 that constant token is far larger than what an MSSA update
    # (0.02-std projections) writes into it, so every image's class token starts at nearly the same point and the
    # SimDINO/DINO feature stays concentrated (docs/results/ssl_diagnosis.md). DINO's ViT draws both from
    # N(0, 0.02), as transformers' ViT does: the same here.
    "position_embedding_init_std": 0.02,
    "pooling": "cls",  # crate only: "cls" (DINO's feature) or "mean" of every token
    # head
    "head_hidden_dim": 512,  # 2048 in the papers
    "head_bottleneck_dim": 128,  # 256 in the papers
    "num_prototypes": 4096,  # dino only; 65536 in the paper (deviation for CPU)
    "norm_last_layer": True,  # dino only
    "freeze_last_layer_epochs": 1,  # dino only: prototype-layer gradients dropped for this many epochs
    # losses
    "simdino_eps": 0.05,
    "simdino_coeff": 1.0,
    "student_temperature": 0.1,
    "teacher_temperature": 0.04,
    "warmup_teacher_temperature": 0.04,
    "warmup_teacher_temperature_epochs": 0,
    "center_momentum": 0.9,
    "teacher_momentum": 0.996,  # start of the cosine schedule to 1.0
    # multi-crop
    "num_local_crops": 6,
    "local_crop_size": 12,
    "global_scale_min": 0.4,
    "local_scale_max": 0.4,
    # data
    "dataset": "fashion-mnist",
    "data_dir": "",
    "train_subset": 0,  # >0: first n training images
    "test_subset": 0,
    "eval_train_subset": 0,  # >0: k-NN / probe fitted on the first n (unaugmented) training images
    # optimisation
    "learning_rate": 5e-4,
    "min_learning_rate": 0.0,  # unused by the transformers cosine schedule (decays to 0); kept for YAML parity
    "weight_decay": 0.04,
    "weight_decay_end": 0.4,  # cosine schedule of the weight decay, as DINO
    "warmup_steps": 100,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 128,
    "eval_batch_size": 500,
    "max_grad_norm": 3.0,
    "mixed_precision": "no",
    "seed": 0,
    # bookkeeping
    "output_dir": "runs/ssl_fashion_mnist",
    "eval_every_epoch": True,  # False: evaluate only at the end
    "save_model": True,
    **RUN_DEFAULTS,
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["method"] not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {args['method']!r}")
    if args["backbone"] not in BACKBONES:
        raise ValueError(f"`backbone` must be one of {BACKBONES}, got {args['backbone']!r}")
    return args


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


def build_backbone(args: dict, image_size: int, num_channels: int) -> nn.Module:
    """A fresh `CrateModel` or `ViTModel` (without its tanh pooler) of the configured shape."""
    shape = dict(hidden_size=args["hidden_size"], num_hidden_layers=args["num_hidden_layers"],
                 num_attention_heads=args["num_attention_heads"], image_size=image_size,
                 patch_size=args["patch_size"], num_channels=num_channels)
    if args["backbone"] == "crate":
        return CrateModel(CrateConfig(**shape, position_embedding_init_std=args["position_embedding_init_std"],
                                      pooling=args["pooling"]))
    if args["backbone"] == "vit":
        config = ViTConfig(**shape, intermediate_size=args["mlp_ratio"] * args["hidden_size"], layer_norm_eps=1e-6)
        return ViTModel(config, add_pooling_layer=False)
    raise ValueError(f"`backbone` must be one of {BACKBONES}, got {args['backbone']!r}")


def backbone_features(backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The representation DINO reads: CRATE's ``pooler_output`` (LN of the class token), ViT's class token of
    ``last_hidden_state`` (after the final LayerNorm; the tanh pooler is not part of DINO)."""
    if isinstance(backbone, ViTModel):
        # Local crops are smaller than the configured image: ViT needs to be told to interpolate positions.
        interpolate = pixel_values.shape[-1] != backbone.config.image_size
        return backbone(pixel_values=pixel_values, interpolate_pos_encoding=interpolate).last_hidden_state[:, 0]
    return backbone(pixel_values=pixel_values).pooler_output


class BackboneWithHead(nn.Module):
    """Backbone + projection head over a list of views. Views of equal resolution run as one batch (DINO's
    ``MultiCropWrapper``), so the 2 global and the L local views cost two forward passes."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            features = backbone_features(self.backbone, torch.cat(views[start:end]))
            outputs += list(self.head(features).chunk(end - start))
            start = end
        return outputs


def build_student_and_teacher(args: dict, image_size: int, num_channels: int) -> tuple[nn.Module, nn.Module]:
    """Student (backbone + head) and its teacher, a frozen deep copy."""
    backbone = build_backbone(args, image_size, num_channels)
    num_prototypes = args["num_prototypes"] if args["method"] == "dino" else 0
    head = DINOHead(args["hidden_size"], num_prototypes=num_prototypes, hidden_dim=args["head_hidden_dim"],
                    bottleneck_dim=args["head_bottleneck_dim"], norm_last_layer=args["norm_last_layer"])
    student = BackboneWithHead(backbone, head)
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return student, teacher


def build_loss(args: dict, steps_per_epoch: int) -> nn.Module | None:
    """`DINOLoss` for DINO (holds the centre, so it is checkpointed); None for SimDINO (stateless)."""
    if args["method"] != "dino":
        return None
    return DINOLoss(args["num_prototypes"], args["student_temperature"], args["teacher_temperature"],
                    args["warmup_teacher_temperature"], args["warmup_teacher_temperature_epochs"] * steps_per_epoch,
                    args["center_momentum"])


def compute_loss(args: dict, student, teacher, dino_loss, views: list[torch.Tensor], step: int) -> dict:
    """``{"loss": tensor, ...logged floats}`` for one batch of multi-crop views."""
    student_outputs = student(views)
    with torch.no_grad():
        teacher_outputs = teacher(views[:2])
    if args["method"] == "simdino":
        output = simdino_loss([o.float() for o in student_outputs], [o.float() for o in teacher_outputs],
                              eps=args["simdino_eps"], coeff=args["simdino_coeff"])
        return {"loss": output.loss, "alignment": output.alignment.item(), "expansion": output.expansion.item(),
                "gamma": output.gamma}
    loss = dino_loss(student_outputs, teacher_outputs, step)
    return {"loss": loss, "teacher_temperature": dino_loss.teacher_temperature_at(step)}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # the fixed weight-norm gain of `norm_last_layer`
            continue
        # Norms, biases, class token and position table are not decayed (DINO's `get_params_groups`).
        skip = parameter.ndim < 2 or "position_embeddings" in name or "cls_token" in name
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay, "decay": True},
            {"params": no_decay, "weight_decay": 0.0, "decay": False}]


def training_step(args: dict, accelerator, student, teacher, dino_loss, optimizer, scheduler, batch: dict,
                  step: int, total_steps: int, steps_per_epoch: int) -> dict:
    """One optimiser step followed by the teacher's EMA update; returns the logged values."""
    decay = args["weight_decay_end"] + (args["weight_decay"] - args["weight_decay_end"]) * (
        1 + torch.cos(torch.tensor(torch.pi * step / total_steps)).item()) / 2
    for group in optimizer.param_groups:
        if group.get("decay"):
            group["weight_decay"] = decay
    out = compute_loss(args, student, teacher, dino_loss, batch["pixel_values"], step)
    if not torch.isfinite(out["loss"]):
        raise FloatingPointError(f"non-finite loss {out['loss'].item()} at step {step}")
    accelerator.backward(out["loss"])
    if args["max_grad_norm"] > 0:
        accelerator.clip_grad_norm_(student.parameters(), args["max_grad_norm"])
    if args["method"] == "dino" and step < args["freeze_last_layer_epochs"] * steps_per_epoch:
        # DINO's `cancel_gradients_last_layer`: the prototypes stay put while the backbone warms up.
        last_layer = accelerator.unwrap_model(student).head.last_layer
        for parameter in last_layer.parameters():
            parameter.grad = None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    momentum = cosine_momentum(step, total_steps, base=args["teacher_momentum"])
    ema_update_(teacher, accelerator.unwrap_model(student), momentum)
    out["loss"] = out["loss"].item()
    out.update(teacher_momentum=momentum, weight_decay=decay, learning_rate=scheduler.get_last_lr()[0])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_teacher(teacher_backbone, train_pixels, train_labels, test_pixels, test_labels,
                     batch_size: int) -> dict:
    """20-NN (T = 0.07) and linear-probe test accuracy of the frozen teacher backbone, plus collapse
    diagnostics of its test features."""
    train_features = extract_features(teacher_backbone, train_pixels, batch_size=batch_size)
    test_features = extract_features(teacher_backbone, test_pixels, batch_size=batch_size)
    return {
        "knn20_accuracy": knn_accuracy(train_features, train_labels, test_features, test_labels, k=20,
                                       temperature=0.07),
        "linear_probe_accuracy": linear_probe_accuracy(train_features, train_labels, test_features, test_labels),
        "feature_std": feature_std(test_features),
        "feature_std_uniform": float(test_features.shape[1]) ** -0.5,  # the value for uniform spread
        "effective_rank": effective_rank(test_features),
        "feature_dim": int(test_features.shape[1]),
    }


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def main(argv=None, data: dict | None = None) -> dict:
    """Run training. ``data`` (tests) replaces the data set: ``{"train_images", "train_labels", "test_images",
    "test_labels", "image_mean", "image_std"}`` with uint8 ``(n, C, H, W)`` images."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    tensors = load_image_tensors(args, accelerator, data)
    train_images, train_labels = tensors["train_images"], tensors["train_labels"]
    test_images, test_labels = tensors["test_images"], tensors["test_labels"]
    mean, std, dataset_name = tensors["image_mean"], tensors["image_std"], tensors["dataset_name"]
    flip_ok = tensors["horizontal_flip_ok"]
    image_size, num_channels = train_images.shape[-1], train_images.shape[1]

    multi_crop = BatchMultiCrop(
        global_size=image_size, local_size=args["local_crop_size"], num_local=args["num_local_crops"],
        global_scale=(args["global_scale_min"], 1.0), local_scale=(0.05, args["local_scale_max"]),
        image_mean=mean, image_std=std, horizontal_flip=flip_ok,
    )
    # The loader hands out uint8 images; the views are drawn per batch, after `resumable_batches` has seeded
    # the global RNG from (seed, step, process), so a resumed run draws the same views.
    train_set = AugmentedTensorDataset(train_images, train_labels, transform=None, seed=args["seed"])
    sampler = EpochPermutationSampler(len(train_set), seed=args["seed"])
    train_loader = DataLoader(train_set, batch_size=args["batch_size"], sampler=sampler, drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training images")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    student, teacher = build_student_and_teacher(args, image_size, num_channels)
    dino_loss = build_loss(args, steps_per_epoch)
    optimizer = torch.optim.AdamW(parameter_groups(student, args["weight_decay"]), lr=args["learning_rate"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps)
    student, optimizer, train_loader, scheduler = accelerator.prepare(student, optimizer, train_loader, scheduler)
    teacher.to(accelerator.device)
    if dino_loss is not None:
        dino_loss.to(accelerator.device)
    # The teacher and DINO's centre are state outside the optimiser: a resumed run must restore them too.
    progress = resume_run(accelerator, output_dir, args, teacher, *([dino_loss] if dino_loss is not None else []))
    accelerator.init_trackers("log", config=dict(args))

    eval_train = train_images[: args["eval_train_subset"]] if args["eval_train_subset"] else train_images
    eval_train_labels = train_labels[: len(eval_train)]
    eval_train_pixels = normalise_images(eval_train, mean, std)
    test_pixels = normalise_images(test_images, mean, std)

    def evaluate() -> dict:
        return evaluate_teacher(teacher.backbone, eval_train_pixels, eval_train_labels, test_pixels, test_labels,
                                args["eval_batch_size"])

    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    start_step = progress.step
    start_time = time.time()
    sums: dict[str, float] = {}
    count = 0
    evaluation = None
    student.train()
    teacher.train()  # no dropout/batch-norm here; keeps the two forward passes identical in kind
    for batch in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        batch = {**batch, "pixel_values": multi_crop(batch["pixel_values"])}
        out = training_step(args, accelerator, student, teacher, dino_loss, optimizer, scheduler, batch,
                            progress.step, total_steps, steps_per_epoch)
        progress.step += 1
        for key in ("loss", "alignment", "expansion"):
            if key in out:
                sums[key] = sums.get(key, 0.0) + out[key]
        count += 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            record = {f"train_{key}": value / count for key, value in sums.items()}
            record.update({key: out[key] for key in ("learning_rate", "weight_decay", "teacher_momentum",
                                                     "teacher_temperature") if key in out})
            record.update(epoch=progress.step / steps_per_epoch, elapsed_s=time.time() - start_time)
            accelerator.log(record, step=progress.step)
            sums, count = {}, 0
        end_of_epoch = progress.step % steps_per_epoch == 0
        if progress.step == total_steps or (args["eval_every_epoch"] and end_of_epoch):
            evaluation = evaluate()
            accelerator.log({f"eval_{key}": value for key, value in evaluation.items()}, step=progress.step)
            accelerator.print(f"step {progress.step}: {evaluation}")
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    train_seconds = time.time() - start_time
    if evaluation is None:  # resumed at the very end: nothing trained, still report
        evaluation = evaluate()
    accelerator.wait_for_everyone()

    results = {
        "method": args["method"], "backbone": args["backbone"], **evaluation,
        "steps": progress.step, "epochs": progress.step / steps_per_epoch,
        "train_seconds_this_run": train_seconds,
        "seconds_per_epoch": train_seconds / max(progress.step - start_step, 1) * steps_per_epoch,
        "num_backbone_parameters": sum(p.numel() for p in teacher.backbone.parameters()),
        "dataset": dataset_name, "num_train_images": len(train_set), "batch_size": args["batch_size"],
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
        accelerator.end_training()
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label=f"{args['method']} loss", eval_key="eval_knn20_accuracy",
                             eval_label="teacher 20-NN accuracy")
        if args["save_model"]:
            model_dir = output_dir / "teacher_backbone"
            head_config = {k: args[k] for k in ("method", "head_hidden_dim", "head_bottleneck_dim", "norm_last_layer")}
            head_config.update(in_dim=args["hidden_size"],
                               num_prototypes=args["num_prototypes"] if args["method"] == "dino" else 0)
            with atomic_directory(model_dir) as folder:  # never a half-written model
                teacher.backbone.save_pretrained(folder)
                build_image_processor(image_size, mean, std).save_pretrained(folder)
                head_state = {k: v.contiguous() for k, v in teacher.head.state_dict().items()}
                save_file(head_state, folder / "head.safetensors")
                (folder / "head_config.json").write_text(json.dumps(head_config, indent=2))
            # Card with the measured numbers of `results` (model-index) and the exact command.
            write_model_card(model_dir, metrics=results, command=shlex.join(
                ["python", "training/train_ssl.py", *(sys.argv[1:] if argv is None else argv)]))
    else:
        accelerator.end_training()
    return results


if __name__ == "__main__":
    run_script(main)
