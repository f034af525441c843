#!/usr/bin/env python
"""DreamBooth-style LoRA personalisation of a trained `WhiteboxFlowPipeline` (book §8.7) on a few images of one
class, with prior preservation.

    python training/train_dreambooth_lora.py --pipeline runs/flow_vae_dit/pipeline --instance_class 7 \
        --num_instance_images 5 --output_dir runs/dreambooth_sneaker

Recipe (diffusers' examples/dreambooth/train_dreambooth_lora.py, adapted to a class-conditional denoiser):

* LoRA adapters (peft `LoraConfig`, ``init_lora_weights="gaussian"`` so the adapter starts as a no-op) on the
  attention projections — ``to_q, to_k, to_v, to_out.0`` of a DiT, ``subspace_projection, output_projection``
  of a CRATE denoiser (``--target_modules auto``) — injected with `WhiteboxFlowPipeline.add_lora_adapter`; the
  base weights stay frozen.
* Instance data: the first ``num_instance_images`` training images of ``instance_class`` (after
  ``instance_offset``), encoded once with the pipeline's autoencoder.
* Prior preservation: ``num_class_images`` samples of the *same* class drawn from the frozen base pipeline
  (kept as latents: decoding and re-encoding them would only add autoencoder error). Loss per step =
  flow-matching loss on an instance batch + ``prior_loss_weight`` × the loss on a class batch.
  Deviation: DreamBooth's instance prompt carries a rare identifier token ("a sks dog") that the class prompt
  lacks; a class-conditional model has no such token, so instance and prior batches share the class label and
  ``prior_loss_weight`` sets the trade-off between fitting the instances and keeping the class's diversity.
* The same rectified-flow objective as ``train_latent_flow.py`` (`whitebox_hf.training.generative.flow_matching_loss`),
  the scheduler's shift.
* Checkpoints ``output_dir/checkpoints/checkpoint_<i>`` every ``checkpoint_every`` steps (adapter, optimiser, RNG,
  step) and ``--resume_from_checkpoint latest``: a step's batches and noise are seeded by ``(seed, step)`` and the
  class images are redrawn identically from the frozen base, so a resumed run continues the exact trajectory.

Outputs in ``output_dir``: ``lora/`` (`WhiteboxFlowPipeline.save_lora_weights`: ``pytorch_lora_weights.safetensors``
+ ``adapter_config.json``; load with ``pipe.load_lora_weights(output_dir/"lora")``), ``comparison.png`` (row 1:
instance images, row 2: base samples, row 3: the same seeds with the adapter) and ``results.json``.
"""

from __future__ import annotations

import json
import time

import torch
from peft import LoraConfig

import whitebox_hf  # noqa: F401
from whitebox_hf.models.denoisers import (
    CrateDenoiserTransformer,
    disable_builtin_label_dropout,
)
from whitebox_hf.pipelines import WhiteboxFlowPipeline
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import resume_run
from whitebox_hf.training.conditioning import image_grid, personalization_loop
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.generative import flow_matching_loss, load_training_images
from whitebox_hf.training.run import start_run

DEFAULTS = {
    "pipeline": "runs/flow_vae_dit/pipeline",  # the base WhiteboxFlowPipeline folder
    "instance_class": 7,
    "num_instance_images": 5,
    "instance_offset": 0,
    "with_prior_preservation": True,
    "prior_loss_weight": 1.0,
    "num_class_images": 64,
    "class_sample_steps": 25,
    "class_guidance_scale": 2.0,
    # LoRA
    "rank": 4,
    "lora_alpha": 4,
    "target_modules": "auto",  # or a comma-separated list of module-name suffixes
    # optimisation
    "learning_rate": 1e-4,
    "max_steps": 200,
    "batch_size": 4,  # instance images per step (and as many class images)
    "max_grad_norm": 1.0,
    "weighting_scheme": "logit_normal",
    "logit_mean": 0.0,
    "logit_std": 1.0,
    "mode_scale": 1.29,
    # data
    "dataset": "fashion-mnist",
    "data_dir": "",
    "train_subset": 0,
    # outputs
    "comparison_samples": 8,
    "comparison_steps": 25,
    "output_dir": "runs/dreambooth_lora",
    "mixed_precision": "no",
    "seed": 0,
    **RUN_DEFAULTS,
    "checkpoint_every": 50,  # steps (no epochs here)
}


def lora_target_modules(transformer, spec: str) -> list[str]:
    """``spec`` as a list; ``"auto"``: the attention projections of the transformer's family."""
    if spec != "auto":
        return [name.strip() for name in spec.split(",") if name.strip()]
    if isinstance(transformer, CrateDenoiserTransformer):
        return ["subspace_projection", "output_projection"]
    return ["to_q", "to_k", "to_v", "to_out.0"]


def main(argv=None, data: dict | None = None) -> dict:
    """Fine-tune; ``data`` (tests) replaces the data set (see
    `whitebox_hf.training.generative.load_training_images`)."""
    args = parse_config_args(DEFAULTS, argv, __doc__)
    accelerator, output_dir = start_run(args)
    output_dir.mkdir(parents=True, exist_ok=True)

    pipe = WhiteboxFlowPipeline.from_pretrained(args["pipeline"])
    pipe.set_progress_bar_config(disable=True)
    transformer = disable_builtin_label_dropout(pipe.transformer)  # loading rebuilt DiT's embedders with p = 0.1
    transformer.requires_grad_(False)
    if pipe.autoencoder is not None:
        pipe.autoencoder.requires_grad_(False)
    num_classes, c = pipe.config.num_classes, args["instance_class"]
    if not 0 <= c < num_classes:
        raise ValueError(f"`instance_class` must lie in [0, {num_classes - 1}], got {c}")

    pixels, labels, _ = load_training_images(args, accelerator, data)
    instance_pixels = pixels[labels == c][args["instance_offset"]: args["instance_offset"] + args["num_instance_images"]]
    if len(instance_pixels) == 0:
        raise ValueError(f"no training image of class {c} at offset {args['instance_offset']}")
    with torch.no_grad():
        instance_latents = pipe.encode(instance_pixels).float()

    start = time.time()
    class_latents = None
    if args["with_prior_preservation"]:
        # Drawn from the frozen base with a fixed seed: a resumed run redraws exactly these.
        class_latents = pipe([c] * args["num_class_images"], num_inference_steps=args["class_sample_steps"],
                             guidance_scale=args["class_guidance_scale"], output_type="latent",
                             generator=torch.Generator().manual_seed(args["seed"] + 1)).images.float()
    class_seconds = time.time() - start

    comparison_seed = torch.Generator().manual_seed(args["seed"] + 2)
    comparison_noise = torch.randn((args["comparison_samples"], *pipe.latent_shape), generator=comparison_seed)

    def comparison_samples():
        return pipe([c] * args["comparison_samples"], num_inference_steps=args["comparison_steps"],
                    guidance_scale=args["class_guidance_scale"], latents=comparison_noise).images

    base_images = comparison_samples() if args["comparison_samples"] else []

    pipe.add_lora_adapter(LoraConfig(r=args["rank"], lora_alpha=args["lora_alpha"], init_lora_weights="gaussian",
                                     target_modules=lora_target_modules(transformer, args["target_modules"])))
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args["learning_rate"], weight_decay=0.0)
    # Not wrapped on one CPU process; prepared so that the checkpoint holds the adapter and the optimiser.
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    progress = resume_run(accelerator, output_dir, args)
    flow_args = {**args, "flow_shift": float(pipe.scheduler.config.get("shift", 1.0))}
    transformer.train()
    start_step = progress.step

    def losses(step, generator):
        index = torch.randint(0, len(instance_latents), (args["batch_size"],), generator=generator)
        y = torch.full((args["batch_size"],), c, dtype=torch.long)
        instance_loss = flow_matching_loss(transformer, instance_latents[index], y, flow_args, generator)
        if class_latents is None:
            return instance_loss, None
        index = torch.randint(0, len(class_latents), (args["batch_size"],), generator=generator)
        return instance_loss, flow_matching_loss(transformer, class_latents[index], y, flow_args, generator)

    log, train_seconds = personalization_loop(accelerator, args, progress, trainable, optimizer, losses)
    transformer.eval()

    with atomic_directory(output_dir / "lora") as folder:  # never a half-written adapter
        lora_path = output_dir / "lora" / pipe.save_lora_weights(folder).name
    if args["comparison_samples"]:
        instance_images = pipe.image_processor.postprocess(instance_pixels, output_type="pil")
        image_grid([instance_images, base_images, comparison_samples()], mode="L").save(output_dir / "comparison.png")
    results = {
        "steps": progress.step, "start_step": start_step, "instance_class": c,
        "num_instance_images": len(instance_latents),
        "num_class_images": 0 if class_latents is None else len(class_latents),
        "num_lora_parameters": sum(p.numel() for p in trainable), "lora_weights": str(lora_path),
        "train_seconds": train_seconds, "seconds_per_step": train_seconds / max(progress.step - start_step, 1),
        "class_image_seconds": class_seconds, "final_loss": log[-1]["loss"] if log else None, "log": log,
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_script(main)
