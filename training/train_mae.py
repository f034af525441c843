#!/usr/bin/env python
"""Masked-autoencoder pre-training: CRATE-MAE or its baseline, transformers' ViT-MAE, at matched sizes (Accelerate).

    python training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model crate
    python training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model vit
    python training/train_mae.py --config ... --resume_from_checkpoint latest

Spec ``crate_family.md`` §6 and ``ssl_and_generation.md`` §6. ``--model crate`` trains
`CrateForMaskedImageModeling` (CRATE encoder with λ = 0.5, masked patches replaced by a mask token; decoder
layers ``Y = LN(Z)·Eᵀ; Y − MSSA(LN Y)``); ``--model vit`` trains `ViTMAEForPreTraining` with the same width,
encoder depth, decoder depth and heads (its encoder drops the masked patches; MLP ratio 4). Both use the masked-
patch MSE on normalised pixels with 75 % masking and MAE's augmentation (random resized crop 0.2–1, flip).

Evaluation on the test split, identical for both models:
  * reconstruction loss: masked-patch MSE with the **same masks** for both (drawn once from ``seed``; ViT-MAE's
    masking keeps ``int(N·(1 − r))`` patches, so that count is used for both);
  * linear probe and 20-NN on frozen encoder features: the mean of the patch tokens of the final encoder
    output with nothing masked (ViT-MAE with ``mask_ratio = 0``; the mean is blind to its token shuffling);
  * a reconstruction grid PNG (original / masked input / reconstruction with visible patches pasted back).

Outputs in ``output_dir``: ``log.jsonl``, ``loss_curve.png``, ``checkpoints/``, ``evaluation.json``,
``reconstructions.png`` and ``model/`` (``save_pretrained``; loads with ``AutoModelForMaskedImageModeling``
for CRATE-MAE, ``ViTMAEForPreTraining`` for the baseline).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.transforms import v2  # noqa: E402
from transformers import (  # noqa: E402
    ViTMAEConfig,
    ViTMAEForPreTraining,
    get_cosine_schedule_with_warmup,
)

import whitebox_hf  # noqa: F401,E402  (registers the Auto classes)
from whitebox_hf.data import AugmentedTensorDataset, EpochPermutationSampler  # noqa: E402
from whitebox_hf.data import load_image_tensors, normalise_images  # noqa: E402
from whitebox_hf.evaluation import knn_accuracy, linear_probe_accuracy  # noqa: E402
from whitebox_hf.hub import write_model_card  # noqa: E402
from whitebox_hf.models.crate import CrateConfig, CrateForMaskedImageModeling  # noqa: E402
from whitebox_hf.objectives import masked_patch_loss  # noqa: E402
from whitebox_hf.training.builders import build_image_processor  # noqa: E402
from whitebox_hf.training.atomic import atomic_directory  # noqa: E402
from whitebox_hf.training.checkpointing import (  # noqa: E402
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script  # noqa: E402
from whitebox_hf.training.optim import optimizer_step  # noqa: E402
from whitebox_hf.training.plots import plot_training_curves  # noqa: E402
from whitebox_hf.training.run import start_run  # noqa: E402

MODELS = ("crate", "vit")

DEFAULTS = {
    "model": "crate",  # crate | vit
    "hidden_size": 96,
    "num_hidden_layers": 4,
    "decoder_num_hidden_layers": 2,
    "num_attention_heads": 4,
    "patch_size": 4,
    "ista_lambda": 0.5,  # crate only (CRATE-MAE's encoder value)
    "mlp_ratio": 4,  # vit only
    "mask_ratio": 0.75,
    "norm_pix_loss": False,
    "crop_scale_min": 0.2,
    # data
    "dataset": "fashion-mnist",
    "data_dir": "",
    "train_subset": 0,
    "test_subset": 0,
    "eval_train_subset": 10000,  # probes fitted on the first n (unaugmented) training images; 0 = all
    # optimisation (MAE's recipe, scaled: AdamW betas (0.9, 0.95), wd 0.05, warm-up + cosine)
    "learning_rate": 1e-3,
    "weight_decay": 0.05,
    "warmup_steps": 100,
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 128,
    "eval_batch_size": 500,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "seed": 0,
    # bookkeeping
    "output_dir": "runs/mae_fashion_mnist",
    "save_model": True,
    **RUN_DEFAULTS,
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["model"] not in MODELS:
        raise ValueError(f"`model` must be one of {MODELS}, got {args['model']!r}")
    if not 0.0 < args["mask_ratio"] < 1.0:
        raise ValueError(f"`mask_ratio` must be in (0, 1) for masked pre-training, got {args['mask_ratio']!r}")
    return args


def build_model(args: dict, image_size: int, num_channels: int) -> nn.Module:
    shape = dict(hidden_size=args["hidden_size"], num_hidden_layers=args["num_hidden_layers"],
                 num_attention_heads=args["num_attention_heads"], image_size=image_size,
                 patch_size=args["patch_size"], num_channels=num_channels, mask_ratio=args["mask_ratio"],
                 norm_pix_loss=args["norm_pix_loss"])
    if args["model"] == "crate":
        return CrateForMaskedImageModeling(CrateConfig(
            **shape, decoder_num_hidden_layers=args["decoder_num_hidden_layers"], ista_lambda=args["ista_lambda"],
            patch_embedding_type="conv"))
    intermediate = args["mlp_ratio"] * args["hidden_size"]
    model = ViTMAEForPreTraining(ViTMAEConfig(
        **shape, intermediate_size=intermediate, decoder_hidden_size=args["hidden_size"],
        decoder_num_hidden_layers=args["decoder_num_hidden_layers"],
        decoder_num_attention_heads=args["num_attention_heads"], decoder_intermediate_size=intermediate,
        layer_norm_eps=1e-6))
    return initialize_vit_mae_(model)


def initialize_vit_mae_(model: ViTMAEForPreTraining) -> ViTMAEForPreTraining:
    """Give a freshly built `ViTMAEForPreTraining` MAE's initialisation, which transformers 5.x leaves out.

    With transformers 5.23, ``ViTMAEForPreTraining(config)`` comes out with **all-zero** encoder and decoder
    position tables and all-zero class and mask tokens: ``post_init`` flags the patch projection as initialised
    before it reaches ``ViTMAEEmbeddings.initialize_weights`` (which then returns early), and
    ``ViTMAEPreTrainedModel._init_weights`` zeroes the decoder's sin-cos table and mask token after the decoder's
    own ``initialize_weights`` filled them. Without positions every mask token the decoder sees is the same
    vector, so it can only predict one value for every hidden patch: the grey-patch plateau (masked MSE ≈ the
    pixel variance, 0.915 here). This re-runs transformers' own ``initialize_weights`` of both modules (fixed
    2-D sin-cos tables, xavier patch projection, N(0, 0.02) class and mask tokens, as He et al.) after clearing
    the "already initialised" flags, and checks the tables are no longer zero.
    """
    embeddings, decoder = model.vit.embeddings, model.decoder
    tensors = (embeddings.patch_embeddings.projection, embeddings.patch_embeddings.projection.weight,
               embeddings.position_embeddings, embeddings.cls_token, decoder.decoder_pos_embed, decoder.mask_token)
    for tensor in tensors:
        tensor._is_hf_initialized = False
    embeddings.initialize_weights()
    decoder.initialize_weights(embeddings.patch_embeddings.num_patches)
    for name, table in (("vit.embeddings.position_embeddings", embeddings.position_embeddings),
                        ("decoder.decoder_pos_embed", decoder.decoder_pos_embed)):
        if not bool(table[0, 1:].abs().sum(-1).gt(0).all()):
            raise RuntimeError(f"ViT-MAE's `{name}` is still zero after initialisation: the transformers "
                               "version changed how ViTMAE initialises; check `initialize_vit_mae_`")
    return model


def evaluation_masks(num_images: int, num_patches: int, mask_ratio: float, seed: int) -> torch.Tensor:
    """Boolean ``(n, N)`` masks (True = hidden) that both models are scored with: ViT-MAE keeps the
    ``int(N·(1 − r))`` patches of lowest noise, so the same count is hidden for CRATE-MAE."""
    noise = torch.rand(num_images, num_patches, generator=torch.Generator().manual_seed(seed))
    num_kept = int(num_patches * (1 - mask_ratio))
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return ranks >= num_kept


def reconstruct(model: nn.Module, pixel_values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted patches (B, N, p²·C), masked-patch loss)`` for a given mask, for either model."""
    if isinstance(model, ViTMAEForPreTraining):
        # ViT-MAE keeps the patches of lowest noise: visible → 0, hidden → 1 (+ a tie-break) reproduces `mask`.
        noise = mask.float() + 0.5 * torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
        predicted = model(pixel_values=pixel_values, noise=noise.to(pixel_values.device)).logits
    else:
        predicted = model(pixel_values=pixel_values, bool_masked_pos=mask).logits
    target = model.patchify(pixel_values)
    loss = masked_patch_loss(predicted, target, mask.to(predicted.device), normalize_target=model.config.norm_pix_loss)
    return predicted, loss


FINAL_FEATURE = "final (LayerNorm)"


@torch.no_grad()
def layer_features(model: nn.Module, pixel_values: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """``{stage: (n, d) tensor}``: the mean of the patch tokens of the embedding, of every encoder layer and of the
    final (LayerNorm'd) encoder output (`FINAL_FEATURE`). Nothing is masked (ViT-MAE's mask ratio is 0 during the
    call and restored after it); ViT-MAE's token shuffling does not change a mean."""
    if pixel_values.ndim != 4 or pixel_values.shape[0] == 0:
        raise ValueError(f"`pixel_values` must be a non-empty (n, C, H, W) batch, got shape {tuple(pixel_values.shape)}")
    parts: dict[str, list[torch.Tensor]] = {}
    vit = isinstance(model, ViTMAEForPreTraining)
    saved_ratio = model.config.mask_ratio
    if vit:
        model.config.mask_ratio = 0.0  # ViTMAEModel masks at inference too (spec §6 gotcha)
    try:
        for batch in pixel_values.split(batch_size):
            if vit:
                outputs = model.vit(pixel_values=batch, output_hidden_states=True)
            else:
                patches = (batch.shape[-2] // model.config.patch_size) * (batch.shape[-1] // model.config.patch_size)
                outputs = model(pixel_values=batch, bool_masked_pos=torch.zeros(len(batch), patches, dtype=torch.bool),
                                output_hidden_states=True)
            hidden = outputs.hidden_states  # (embedding, layer 1, ..., layer L), without the final norm
            names = ["embedding"] + [f"layer {k}" for k in range(1, len(hidden))] + [FINAL_FEATURE]
            for name, states in zip(names, (*hidden, outputs.last_hidden_state)):
                parts.setdefault(name, []).append(states[:, 1:].mean(dim=1).float().cpu())  # drop the class token
    finally:
        model.config.mask_ratio = saved_ratio
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


@torch.no_grad()
def encoder_features(model: nn.Module, pixel_values: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean of the patch tokens of the final encoder output, nothing masked."""
    return layer_features(model, pixel_values, batch_size)[FINAL_FEATURE]


@torch.no_grad()
def evaluate(model: nn.Module, train_pixels, train_labels, test_pixels, test_labels, args: dict) -> dict:
    was_training = model.training
    model.eval()
    num_patches = (test_pixels.shape[-1] // args["patch_size"]) ** 2
    masks = evaluation_masks(len(test_pixels), num_patches, args["mask_ratio"], args["seed"])
    total, count = 0.0, 0
    for pixels, mask in zip(test_pixels.split(args["eval_batch_size"]), masks.split(args["eval_batch_size"])):
        _, loss = reconstruct(model, pixels, mask)
        total += loss.item() * len(pixels)
        count += len(pixels)
    train_features = encoder_features(model, train_pixels, args["eval_batch_size"])
    test_features = encoder_features(model, test_pixels, args["eval_batch_size"])
    model.train(was_training)
    return {
        "reconstruction_loss": total / count,
        "num_masked_patches": int(masks[0].sum()),
        "num_patches": num_patches,
        "linear_probe_accuracy": linear_probe_accuracy(train_features, train_labels, test_features, test_labels),
        "knn20_accuracy": knn_accuracy(train_features, train_labels, test_features, test_labels, k=20,
                                       temperature=0.07),
    }


@torch.no_grad()
def save_reconstruction_grid(model: nn.Module, pixel_values: torch.Tensor, mask: torch.Tensor, mean, std,
                             path: Path, title: str) -> Path:
    """Rows: original, masked input, reconstruction (visible patches pasted back, as MAE's figures do)."""
    was_training = model.training
    model.eval()
    predicted, _ = reconstruct(model, pixel_values, mask)
    model.train(was_training)
    target = model.patchify(pixel_values)
    if model.config.norm_pix_loss:  # predictions are per-patch standardised: undo with the true statistics
        mu, sigma = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6).sqrt()
        predicted = predicted * sigma + mu
    keep = (~mask).unsqueeze(-1).to(target.dtype)
    pasted = model.unpatchify(target * keep + predicted * (1 - keep))
    visible = model.unpatchify(keep.expand_as(target).contiguous())  # 1 on visible pixels, 0 on hidden ones
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    original, reconstruction = ((x * std_t + mean_t).clamp(0, 1) for x in (pixel_values, pasted))
    masked_input = original * visible + 0.5 * (1 - visible)  # hidden patches shown grey
    rows = [original, masked_input, reconstruction]
    n = pixel_values.shape[0]
    figure, axes = plt.subplots(3, n, figsize=(1.1 * n, 3.6))
    for r, (images, label) in enumerate(zip(rows, ("original", "masked", "reconstruction"))):
        for c in range(n):
            axes[r, c].imshow(images[c].permute(1, 2, 0).squeeze(-1).cpu(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:  # ViT-MAE's fixed sin-cos tables are frozen parameters
            continue
        skip = parameter.ndim < 2 or "token" in name
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main(argv=None, data: dict | None = None) -> dict:
    """Run training. ``data`` (tests) replaces the data set; see `load_image_tensors`."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)

    tensors = load_image_tensors(args, accelerator, data)
    train_images, train_labels = tensors["train_images"], tensors["train_labels"]
    test_images, test_labels = tensors["test_images"], tensors["test_labels"]
    mean, std = tensors["image_mean"], tensors["image_std"]
    image_size, num_channels = train_images.shape[-1], train_images.shape[1]

    steps = [v2.RandomResizedCrop(image_size, scale=(args["crop_scale_min"], 1.0), antialias=True)]
    if tensors["horizontal_flip_ok"]:
        steps.append(v2.RandomHorizontalFlip())
    transform = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    train_set = AugmentedTensorDataset(train_images, train_labels, transform, seed=args["seed"])
    train_loader = DataLoader(train_set, batch_size=args["batch_size"],
                              sampler=EpochPermutationSampler(len(train_set), seed=args["seed"]), drop_last=True)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training images")
    total_steps = steps_per_epoch * args["epochs"]
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])

    model = build_model(args, image_size, num_channels)
    optimizer = torch.optim.AdamW(parameter_groups(model, args["weight_decay"]), lr=args["learning_rate"],
                                  betas=(0.9, 0.95))
    scheduler = get_cosine_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config=dict(args))

    eval_train = train_images[: args["eval_train_subset"]] if args["eval_train_subset"] else train_images
    eval_train_labels = train_labels[: len(eval_train)]
    eval_train_pixels = normalise_images(eval_train, mean, std)
    test_pixels = normalise_images(test_images, mean, std)
    unwrapped = accelerator.unwrap_model(model)

    checkpoint_every = args["checkpoint_every"] or steps_per_epoch
    start_step = progress.step
    start_time = time.time()
    running, count = 0.0, 0
    model.train()
    for batch in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        loss = model(pixel_values=batch["pixel_values"]).loss
        optimizer_step(accelerator, loss, model.parameters(), optimizer, scheduler, args["max_grad_norm"], progress.step)
        progress.step += 1
        running, count = running + loss.item(), count + 1
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            accelerator.log({"train_loss": running / count, "learning_rate": scheduler.get_last_lr()[0],
                             "epoch": progress.step / steps_per_epoch, "elapsed_s": time.time() - start_time},
                            step=progress.step)
            running, count = 0.0, 0
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    train_seconds = time.time() - start_time

    evaluation = evaluate(unwrapped, eval_train_pixels, eval_train_labels, test_pixels, test_labels, args)
    accelerator.log({f"eval_{key}": value for key, value in evaluation.items()}, step=progress.step)
    accelerator.print(f"step {progress.step}: {evaluation}")
    accelerator.wait_for_everyone()
    results = {
        "model": args["model"], **evaluation,
        "steps": progress.step, "epochs": progress.step / steps_per_epoch,
        "train_seconds_this_run": train_seconds,
        "seconds_per_epoch": train_seconds / max(progress.step - start_step, 1) * steps_per_epoch,
        "num_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        "dataset": tensors["dataset_name"], "num_train_images": len(train_set), "batch_size": args["batch_size"],
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "evaluation.json").write_text(json.dumps(results, indent=2))
        accelerator.end_training()
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label="masked-patch MSE (train)")
        num_patches = (image_size // args["patch_size"]) ** 2
        grid_mask = evaluation_masks(len(test_pixels), num_patches, args["mask_ratio"], args["seed"])[:10]
        name = "CRATE-MAE" if args["model"] == "crate" else "ViT-MAE"
        save_reconstruction_grid(unwrapped, test_pixels[:10], grid_mask, mean, std, output_dir / "reconstructions.png",
                                 f"{name}: {int(grid_mask[0].sum())}/{num_patches} patches hidden (test images)")
        if args["save_model"]:
            with atomic_directory(output_dir / "model") as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
                build_image_processor(image_size, mean, std).save_pretrained(folder)
            # Card with the measured numbers of `results` (model-index) and the exact command.
            write_model_card(output_dir / "model", metrics={**results, "method": "mae"}, command=shlex.join(
                ["python", "training/train_mae.py", *(sys.argv[1:] if argv is None else argv)]))
    return results


if __name__ == "__main__":
    run_script(main)
