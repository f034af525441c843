#!/usr/bin/env python
"""ControlNet (book §8.7) on the frozen text-to-image base, conditioned on Canny edge maps of the 32-pixel
Openclipart drawings; inference through diffusers' own `StableDiffusionControlNetPipeline`.

    python training/train_controlnet.py --config training/configs/controlnet_canny.yaml
    python training/train_controlnet.py --base runs/text-to-image-mhsa/pipeline --output_dir runs/control/controlnet
    python training/train_controlnet.py ... --resume_from_checkpoint latest

Recipe (diffusers' examples/controlnet/train_controlnet.py, at CPU scale):

* ``ControlNetModel.from_unet(base.unet)`` (`whitebox_hf.pipelines.control.controlnet_from_base`): the U-Net's
  encoder copied, zero convolutions on every output, so training starts from the base exactly. The base U-Net,
  VAE and text encoder stay frozen; only the ControlNet trains (AdamW, constant learning rate after warm-up).
* Conditioning: Canny edges (`skimage.feature.canny`, ``canny_sigma``) of each training image, white on black.
  Latents (posterior mode) and prompt embeddings are computed once with the frozen VAE and text encoder.
  ``proportion_empty_prompts`` of the captions are replaced by the empty prompt (the ControlNet paper uses 50 %,
  so the network learns to read the edges rather than lean on the caption).
* Loss: the base's own noise-prediction objective (`whitebox_hf.training.conditioning.denoising_loss`, its
  scheduler's schedule and prediction type) with the ControlNet's residuals added to the frozen U-Net.
* Every ``eval_every`` steps (and at step 0, where the pipeline *is* the base): edge agreement
  (`whitebox_hf.evaluation.edges.edge_agreement`, F1 with ``edge_tolerance`` pixels) between the control edges
  of ``eval_num_images`` held-out test drawings and the Canny edges of the images generated from them and their
  captions, logged next to the training loss, so the curve shows or refutes the "sudden convergence" the
  ControlNet paper reports. At the end the same score on ``final_eval_num_images`` test drawings, with and
  without the control (the base on the same prompts and seeds).
* Checkpoints ``output_dir/checkpoints/checkpoint_<i>`` (ControlNet, optimiser, LR schedule, RNG, step) and
  ``--resume_from_checkpoint latest``: a step's batch, prompt dropout, noise and timesteps are seeded by
  ``(seed, step)``, so a resumed run continues the exact trajectory.

Outputs in ``output_dir``: ``controlnet/`` (``ControlNetModel.save_pretrained``, safetensors, with a model card
``README.md`` of the measured scores), ``log.jsonl`` (``train_loss`` and ``edge_f1`` per step), ``curve.png``,
``triples.png`` (rows: test drawing, its control edges, generated with control, the base without it) and
``results.json``. Load with ``control_pipeline(base_folder, output_dir / "controlnet")``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import numpy as np
import torch
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, TensorDataset

import whitebox_hf  # noqa: F401
from whitebox_hf.data import EpochPermutationSampler
from whitebox_hf.evaluation.edges import edge_agreement
from whitebox_hf.hub.conditioning_card import conditioning_model_card
from whitebox_hf.pipelines.control import (
    canny_control_images,
    canny_edges,
    control_pipeline,
    controlnet_from_base,
)
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resumable_batches,
    resume_run,
    save_checkpoint_if_due,
)
from whitebox_hf.training.conditioning import (
    denoising_loss,
    encode_images,
    encode_prompts,
    image_grid,
    load_caption_images,
    load_text_to_image_base,
    training_noise_scheduler,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.optim import optimizer_step
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run

DEFAULTS = {
    "base": "runs/text-to-image-mhsa/pipeline",  # a StableDiffusionPipeline folder (the text-to-image base)
    # data
    "data_dir": "",  # Openclipart SVG root ("" = /usr/share/openclipart/svg)
    "image_size": 32,
    "train_subset": 0,
    "canny_sigma": 1.0,
    "proportion_empty_prompts": 0.5,
    # optimisation
    "learning_rate": 1e-4,
    "adam_weight_decay": 1e-2,
    "lr_scheduler": "constant_with_warmup",
    "lr_warmup_steps": 50,
    "max_steps": 2000,
    "batch_size": 32,
    "max_grad_norm": 1.0,
    # edge agreement during and after training
    "eval_every": 100,
    "eval_num_images": 8,
    "final_eval_num_images": 64,
    "eval_inference_steps": 20,
    "eval_guidance_scale": 3.0,
    "edge_tolerance": 1,
    "output_dir": "runs/control/controlnet",
    "mixed_precision": "no",
    "seed": 0,
    **RUN_DEFAULTS,
    "checkpoint_every": 200,
}


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if not 0.0 <= args["proportion_empty_prompts"] <= 1.0:
        raise ValueError(f"`proportion_empty_prompts` must lie in [0, 1], got {args['proportion_empty_prompts']}")
    for key in ("max_steps", "batch_size", "eval_inference_steps"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be positive, got {args[key]}")
    return args


def control_tensors(edges: np.ndarray) -> torch.Tensor:
    """Bool ``(n, H, W)`` edges as the ControlNet's conditioning: float ``(n, 3, H, W)`` in {0, 1}, as diffusers'
    control image processor turns the white-on-black RGB edge maps into."""
    return torch.from_numpy(edges).float()[:, None].expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def generate(pipe, prompts, control, args, seed):
    """uint8 ``(n, H, W, 3)`` images from ``pipe`` (controlled when ``control`` is given), seeded per call."""
    kwargs = {} if control is None else {"image": control}
    images = pipe(list(prompts), num_inference_steps=args["eval_inference_steps"],
                  guidance_scale=args["eval_guidance_scale"], output_type="np",
                  generator=torch.Generator().manual_seed(seed), **kwargs).images
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def main(argv=None, data: dict | None = None) -> dict:
    """Train; ``data`` (tests) replaces Openclipart (`whitebox_hf.training.conditioning.CAPTION_DATA_DOC`)."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    output_dir.mkdir(parents=True, exist_ok=True)

    base = load_text_to_image_base(args["base"])
    real_dataset = data is None
    data = load_caption_images(args, data)
    scheduler = training_noise_scheduler(base)
    start = time.time()
    latents = encode_images(base, data["train_images"])
    prompt_embeds = encode_prompts(base, data["train_captions"])
    empty_embeds = encode_prompts(base, [""])
    train_edges = canny_edges(data["train_images"].permute(0, 2, 3, 1), sigma=args["canny_sigma"])
    control = control_tensors(train_edges)
    accelerator.print(f"encoded {len(latents)} training drawings (latents {tuple(latents.shape[1:])}, edges) in "
                      f"{time.time() - start:.1f} s")

    eval_count = min(max(args["eval_num_images"], args["final_eval_num_images"]), len(data["test_images"]))
    test_pixels = data["test_images"][:eval_count].permute(0, 2, 3, 1).contiguous()
    test_edges = canny_edges(test_pixels, sigma=args["canny_sigma"])
    test_controls = canny_control_images(test_pixels, sigma=args["canny_sigma"])
    test_prompts = data["test_captions"][:eval_count]

    controlnet = controlnet_from_base(base)
    controlnet.train()
    pipe = control_pipeline(base, controlnet)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=args["learning_rate"],
                                  weight_decay=args["adam_weight_decay"])
    lr_scheduler = get_scheduler(args["lr_scheduler"], optimizer, num_warmup_steps=args["lr_warmup_steps"],
                                 num_training_steps=args["max_steps"])
    train_set = TensorDataset(torch.arange(len(latents)))
    loader = DataLoader(train_set, batch_size=args["batch_size"],
                        sampler=EpochPermutationSampler(len(train_set), seed=args["seed"]), drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training drawings")
    model, optimizer, loader, lr_scheduler = accelerator.prepare(controlnet, optimizer, loader, lr_scheduler)
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config=dict(args))
    unet = base.unet

    def evaluate(step: int) -> dict:
        n = min(args["eval_num_images"], eval_count)
        model.eval()
        images = generate(pipe, test_prompts[:n], test_controls[:n], args, args["seed"] + 7)
        model.train()
        scores = edge_agreement(test_edges[:n], images, tolerance=args["edge_tolerance"], sigma=args["canny_sigma"])
        entry = {"edge_f1": scores["f1"], "edge_precision": scores["precision"], "edge_recall": scores["recall"]}
        accelerator.log(entry, step=step)
        accelerator.print(f"step {step}: edge F1 {scores['f1']:.3f} on {n} held-out drawings")
        return entry

    if progress.step == 0 and args["eval_every"] > 0 and args["eval_num_images"] > 0:
        evaluate(0)
    start_step, earlier_seconds, start = progress.step, progress.train_seconds, time.time()
    loss_sum, count = 0.0, 0
    for (index,) in resumable_batches(accelerator, loader, progress.step, args["max_steps"], seed=args["seed"]):
        generator = torch.Generator().manual_seed(args["seed"] * 1_000_003 + progress.step)
        drop = torch.rand(len(index), generator=generator) < args["proportion_empty_prompts"]
        text = torch.where(drop[:, None, None], empty_embeds, prompt_embeds[index])
        cond = control[index]

        def predict(noisy, timesteps, text=text, cond=cond):
            down, mid = model(noisy, timesteps, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
            return unet(noisy, timesteps, encoder_hidden_states=text, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid, return_dict=False)[0]

        with accelerator.autocast():
            loss = denoising_loss(predict, latents[index], scheduler, generator)
        optimizer_step(accelerator, loss, model.parameters(), optimizer, lr_scheduler, args["max_grad_norm"],
                       progress.step)
        progress.step += 1
        loss_sum, count = loss_sum + loss.item(), count + 1
        if progress.step % args["log_every"] == 0 or progress.step == args["max_steps"]:
            accelerator.log({"train_loss": loss_sum / count, "learning_rate": lr_scheduler.get_last_lr()[0]},
                            step=progress.step)
            accelerator.print(f"step {progress.step}/{args['max_steps']} loss {loss_sum / count:.4f}")
            loss_sum, count = 0.0, 0
        if args["eval_every"] > 0 and args["eval_num_images"] > 0 and progress.step % args["eval_every"] == 0:
            evaluate(progress.step)
        progress.train_seconds = earlier_seconds + time.time() - start
        save_checkpoint_if_due(accelerator, progress.step, args["checkpoint_every"] or args["max_steps"],
                               args["max_steps"], at_end=True, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
    train_seconds = time.time() - start
    accelerator.end_training()
    controlnet = accelerator.unwrap_model(model).eval()

    with atomic_directory(output_dir / "controlnet") as folder:  # never a half-written model
        controlnet.save_pretrained(folder)
    results = {
        "steps": progress.step, "start_step": start_step, "batch_size": args["batch_size"],
        "train_seconds_this_run": train_seconds, "train_seconds_total": earlier_seconds + train_seconds,
        "seconds_per_step": train_seconds / max(progress.step - start_step, 1),
        "num_trainable_parameters": sum(p.numel() for p in controlnet.parameters()),
        "num_train_images": len(latents), "controlnet": str(output_dir / "controlnet"), "base": args["base"],
    }
    n = min(args["final_eval_num_images"], eval_count)
    if n > 0:
        start = time.time()
        controlled = generate(pipe, test_prompts[:n], test_controls[:n], args, args["seed"] + 11)
        uncontrolled = generate(base, test_prompts[:n], None, args, args["seed"] + 11)
        with_control = edge_agreement(test_edges[:n], controlled, args["edge_tolerance"], args["canny_sigma"])
        without = edge_agreement(test_edges[:n], uncontrolled, args["edge_tolerance"], args["canny_sigma"])
        results.update(final_eval_num_images=n, eval_seconds=time.time() - start,
                       edge_f1_with_control=with_control["f1"], edge_precision_with_control=with_control["precision"],
                       edge_recall_with_control=with_control["recall"], edge_f1_without_control=without["f1"],
                       edge_precision_without_control=without["precision"],
                       edge_recall_without_control=without["recall"])
        from PIL import Image

        shown = min(n, 8)
        image_grid([[Image.fromarray(a) for a in test_pixels[:shown].numpy()], test_controls[:shown],
                    [Image.fromarray(a) for a in controlled[:shown]],
                    [Image.fromarray(a) for a in uncontrolled[:shown]]]).save(output_dir / "triples.png")
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_card(args, results, argv, real_dataset=real_dataset)

    plot_training_curves(output_dir / "log.jsonl", output_dir / "curve.png", train_key="train_loss",
                         eval_key="edge_f1", eval_label="edge F1 (held-out)", title="ControlNet training")
    return results


def write_card(args, results, argv, real_dataset: bool):
    metrics = {key: results[key] for key in ("edge_f1_with_control", "edge_f1_without_control") if key in results}
    card = conditioning_model_card(
        "ControlNet (Canny edges) for the whitebox_hf text-to-image base",
        "A diffusers `ControlNetModel` made with `ControlNetModel.from_unet` on the base's U-Net (zero "
        "convolutions) and trained on Canny edge maps of 32-pixel Openclipart drawings, the base frozen (book §8.7).",
        metrics,
        {"steps": results["steps"], "batch size": args["batch_size"],
         "training time": f"{results['train_seconds_total'] / 60:.1f} min",
         "trainable parameters": f"{results['num_trainable_parameters']:,}",
         "learning rate": args["learning_rate"], "empty-prompt share": args["proportion_empty_prompts"],
         "Canny sigma": args["canny_sigma"]},
        args["base"], "Openclipart" if real_dataset else "in-memory drawings",
        command=shlex.join(["python", "training/train_controlnet.py", *(sys.argv[1:] if argv is None else argv)]),
        usage=("from whitebox_hf.pipelines.control import canny_control_images, control_pipeline, "
               "generate_with_control\n"
               "pipe = control_pipeline(\"path/to/base\", \"path/to/controlnet\")\n"
               "edges = canny_control_images(drawings)  # uint8 (n, 32, 32, 3)\n"
               "image = generate_with_control(pipe, \"Apple. Keywords: fruit\", edges[:1]).images[0]"),
        tags=("controlnet", "canny"),
        metrics_note=(f"Edge F1 (tolerance {args['edge_tolerance']} px) between the Canny edges of held-out test "
                      f"drawings and those of images generated from them, with the control and without it (the "
                      f"base on the same prompts and seeds), on {results.get('final_eval_num_images', 0)} drawings."))
    card.save(str(results["controlnet"] + "/README.md"))


if __name__ == "__main__":
    run_script(main)
