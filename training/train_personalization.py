#!/usr/bin/env python
"""Subject personalisation of the frozen text-to-image base (book §8.7): DreamBooth or Custom Diffusion on 3-5
drawings of one subject from Openclipart's *test* split, as a LoRA adapter of the U-Net that saves and reloads
through the pipeline (``pipe.load_lora_weights``).

    python training/train_personalization.py --config training/configs/personalization_dreambooth.yaml
    python training/train_personalization.py --method custom_diffusion --output_dir runs/personalization/custom
    python training/train_personalization.py ... --resume_from_checkpoint latest

Methods (the rest of the recipe is shared, as in diffusers' examples/dreambooth and examples/custom_diffusion):

* ``dreambooth``: LoRA (peft, ``init_lora_weights="gaussian"``: B = 0, so the adapter starts as a no-op) on every
  attention projection of the U-Net (``to_q, to_k, to_v, to_out.0`` of self- and cross-attention).
* ``custom_diffusion``: only the cross-attention key and value projections (``attn2.to_k``, ``attn2.to_v``), the
  paper's finding that these change most in fine-tuning, here as LoRA of the same rank.

Shared: the instance prompt ``"<identifier> <class_noun>"`` with a rare identifier that MiniLM's tokenizer keeps
as one WordPiece (`check_identifier_token`; the default ``cmll`` is one token that no Openclipart caption
contains). DreamBooth fine-tunes the text encoder too and Custom Diffusion learns the identifier's embedding; the
base's text encoder is the frozen MiniLM, so here the identifier keeps its pretrained embedding and only the
U-Net's adapter learns what it means. Prior preservation: ``num_class_images`` images of the class prompt
``class_noun`` drawn once from the frozen base with a fixed seed, kept as latents; loss per step = noise-prediction
loss on an instance batch + ``prior_loss_weight`` × the loss on a class batch (`personalization_loop`, shared with
``train_dreambooth_lora.py``). The subject: the test-split drawings whose title stem (`title_stem`) is ``subject``
(default ``blueman``: five BlueMan stick figures; note that other BlueMan drawings are in the training split, so
the base knows the series, not these drawings).

Evaluation (after training, `whitebox_hf.evaluation.personalization`): for each of the ``eval_prompts`` templates
(``{}`` = the subject's phrase) ``eval_samples_per_prompt`` images from the base (class noun) and from the adapted
pipeline (identifier + class noun), same seeds. Subject fidelity: mean cosine of EfficientNet-Lite0 features (and,
with ``lift_model``, of LIFT image embeddings) between generated and subject images (DINO-score analogue);
prompt fidelity: LIFT image–text cosine against the prompt with the identifier removed.

Outputs in ``output_dir``: ``lora/`` (``pytorch_lora_weights.safetensors`` via
``StableDiffusionPipeline.save_lora_weights``, with a model card ``README.md``), ``samples.png`` (row 1: the
subject; then per prompt: base, adapted), ``results.json``.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

import whitebox_hf  # noqa: F401
from whitebox_hf.hub.conditioning_card import conditioning_model_card
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import resume_run
from whitebox_hf.training.conditioning import (
    denoising_loss,
    encode_images,
    encode_prompts,
    image_grid,
    load_caption_images,
    load_text_to_image_base,
    personalization_loop,
    training_noise_scheduler,
)
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args, run_script
from whitebox_hf.training.run import start_run

METHODS = {
    "dreambooth": ["to_q", "to_k", "to_v", "to_out.0"],
    "custom_diffusion": ["attn2.to_k", "attn2.to_v"],
}

DEFAULTS = {
    "method": "dreambooth",  # dreambooth | custom_diffusion
    "base": "runs/text-to-image-mhsa/pipeline",
    # subject
    "data_dir": "",
    "image_size": 32,
    "subject": "blueman",  # title stem of the test-split series
    "num_instance_images": 5,
    "identifier": "cmll",
    "class_noun": "stickman",
    # prior preservation
    "with_prior_preservation": True,
    "prior_loss_weight": 1.0,
    "num_class_images": 64,
    "class_sample_steps": 25,
    "class_guidance_scale": 3.0,
    # LoRA
    "rank": 4,
    "lora_alpha": 4,
    # optimisation
    "learning_rate": 1e-4,
    "max_steps": 400,
    "batch_size": 4,  # instance images per step (and as many class images)
    "max_grad_norm": 1.0,
    # evaluation
    "eval_prompts": "a {};a red {};a blue {};a {} on a green background;a {} with a hat",
    "eval_samples_per_prompt": 4,
    "eval_inference_steps": 25,
    "eval_guidance_scale": 3.0,
    "lift_model": "runs/clip_seeds/lift-s0/model",  # a trained LIFT WhiteboxClipModel ("" = no LIFT scores)
    "output_dir": "runs/personalization/dreambooth",
    "mixed_precision": "no",
    "seed": 0,
    **RUN_DEFAULTS,
    "checkpoint_every": 100,
}


def title_stem(title: str) -> str:
    """A drawing series' name: the title lower-cased without its trailing numbers and punctuation
    (``"BlueMan#207"`` → ``"blueman"``)."""
    return re.sub(r"[\s\d._()#-]+$", "", title.lower()).strip()


def check_identifier_token(tokenizer, identifier: str) -> int:
    """The vocabulary id of ``identifier``, which must stay one whole-word piece (not split, not a ``##``
    continuation, not a special token): a split identifier would share its pieces with common words.

    Raises:
        ValueError: ``identifier`` tokenises to more or less than one ordinary token.
    """
    pieces = tokenizer.tokenize(identifier)
    if len(pieces) != 1 or pieces[0].startswith("##") or pieces[0] in tokenizer.all_special_tokens:
        raise ValueError(f"`identifier` must be a single WordPiece of the tokenizer's vocabulary, got {identifier!r} "
                         f"-> {pieces}")
    return tokenizer.convert_tokens_to_ids(pieces[0])


def parse_args(argv=None) -> dict:
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if args["method"] not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}, got {args['method']!r}")
    if not 1 <= args["num_instance_images"]:
        raise ValueError(f"`num_instance_images` must be positive, got {args['num_instance_images']}")
    if not args["class_noun"].strip():
        raise ValueError("`class_noun` must be a non-empty phrase (the subject's class, e.g. 'stickman')")
    templates = [t for t in args["eval_prompts"].split(";") if t.strip()]
    if any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"`eval_prompts` must be ';'-separated templates with one '{{}}' each, got "
                         f"{args['eval_prompts']!r}")
    return args


def subject_images(data: dict, subject: str, count: int) -> tuple[torch.Tensor, list[int]]:
    """The first ``count`` test-split drawings whose `title_stem` is ``subject``: uint8 ``(k, 3, H, W)`` and their
    indices.

    Raises:
        ValueError: no test drawing has that stem.
    """
    indices = [i for i, title in enumerate(data["test_titles"]) if title_stem(title) == subject][:count]
    if not indices:
        stems = sorted({title_stem(t) for t in data["test_titles"]})
        raise ValueError(f"`subject` must be the title stem of test drawings, got {subject!r}; stems: {stems[:20]}")
    return data["test_images"][indices], indices


@torch.no_grad()
def generate(pipe, prompts: list[str], args: dict) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` samples, the same seed for every call."""
    images = pipe(list(prompts), num_inference_steps=args["eval_inference_steps"],
                  guidance_scale=args["eval_guidance_scale"], output_type="np",
                  generator=torch.Generator().manual_seed(args["seed"] + 2)).images
    return torch.from_numpy((np.clip(images, 0, 1) * 255).round().astype(np.uint8))


def evaluate(pipe, args: dict, subject: torch.Tensor, instance_phrase: str, lift, effnet) -> tuple[dict, torch.Tensor]:
    """Subject and prompt fidelity of ``pipe`` prompted with ``instance_phrase`` in every template; the images."""
    from whitebox_hf.evaluation.personalization import (
        image_features,
        prompt_fidelity,
        subject_fidelity,
    )

    templates = [t.strip() for t in args["eval_prompts"].split(";") if t.strip()]
    per = args["eval_samples_per_prompt"]
    prompts = [t.format(instance_phrase) for t in templates for _ in range(per)]
    scored_prompts = [t.format(args["class_noun"]) for t in templates for _ in range(per)]
    images = generate(pipe, prompts, args)
    subject_hwc = subject.permute(0, 2, 3, 1).contiguous()
    scores = {"subject_fidelity_effnet": subject_fidelity(image_features(images, effnet),
                                                          image_features(subject_hwc, effnet))}
    if lift is not None:
        scores["subject_fidelity_lift"] = subject_fidelity(image_features(images, lift),
                                                           image_features(subject_hwc, lift))
        scores["prompt_fidelity_lift"] = prompt_fidelity(lift, images, scored_prompts)
    return scores, images


def save_lora(pipe, unet, folder) -> None:
    """The U-Net's LoRA adapter as ``folder/pytorch_lora_weights.safetensors`` (diffusers' LoRA format, keys
    ``unet.*``), which ``pipe.load_lora_weights(folder)`` loads into any pipeline of the base."""
    type(pipe).save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet), safe_serialization=True)


def main(argv=None, data: dict | None = None) -> dict:
    """Train; ``data`` (tests) replaces Openclipart (`whitebox_hf.training.conditioning.CAPTION_DATA_DOC`)."""
    args = parse_args(argv)
    accelerator, output_dir = start_run(args)
    output_dir.mkdir(parents=True, exist_ok=True)
    pipe = load_text_to_image_base(args["base"])
    real_dataset = data is None
    data = load_caption_images(args, data)
    check_identifier_token(pipe.tokenizer, args["identifier"])
    in_captions = sum(args["identifier"] in pipe.tokenizer.tokenize(c) for c in data["train_captions"])
    if in_captions:
        accelerator.print(f"warning: the identifier {args['identifier']!r} occurs in {in_captions} training captions")
    subject, subject_indices = subject_images(data, args["subject"], args["num_instance_images"])
    instance_phrase = f"{args['identifier']} {args['class_noun']}"
    scheduler = training_noise_scheduler(pipe)
    instance_latents = encode_images(pipe, subject)
    instance_embeds = encode_prompts(pipe, [instance_phrase])
    class_embeds = encode_prompts(pipe, [args["class_noun"]])

    start = time.time()
    class_latents = None
    if args["with_prior_preservation"]:
        # Drawn from the frozen base with a fixed seed: a resumed run redraws exactly these.
        class_latents = pipe([args["class_noun"]] * args["num_class_images"],
                             num_inference_steps=args["class_sample_steps"],
                             guidance_scale=args["class_guidance_scale"], output_type="latent",
                             generator=torch.Generator().manual_seed(args["seed"] + 1)).images.float()
    class_seconds = time.time() - start

    evaluating = args["eval_samples_per_prompt"] > 0
    lift = effnet = None
    base_scores, base_images = {}, None
    if evaluating:
        from whitebox_hf.evaluation.frechet import FrechetEffNetDistance

        effnet = FrechetEffNetDistance()
        if args["lift_model"]:
            from whitebox_hf.models.whitebox_clip import WhiteboxClipModel

            lift = WhiteboxClipModel.from_pretrained(args["lift_model"]).eval()
        # The base never saw the identifier: it is prompted with the class noun alone.
        base_scores, base_images = evaluate(pipe, args, subject, args["class_noun"], lift, effnet)

    unet = pipe.unet
    unet.add_adapter(LoraConfig(r=args["rank"], lora_alpha=args["lora_alpha"], init_lora_weights="gaussian",
                                target_modules=METHODS[args["method"]]))
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args["learning_rate"], weight_decay=0.0)
    # Not wrapped on one CPU process; prepared so that the checkpoint holds the adapter and the optimiser.
    model, optimizer = accelerator.prepare(unet, optimizer)
    progress = resume_run(accelerator, output_dir, args)
    model.train()
    start_step, batch = progress.step, args["batch_size"]

    def losses(step, generator):
        def predict_with(embeds):
            return lambda noisy, t: model(noisy, t, encoder_hidden_states=embeds.expand(len(noisy), -1, -1),
                                          return_dict=False)[0]

        index = torch.randint(0, len(instance_latents), (batch,), generator=generator)
        instance_loss = denoising_loss(predict_with(instance_embeds), instance_latents[index], scheduler, generator)
        if class_latents is None:
            return instance_loss, None
        index = torch.randint(0, len(class_latents), (batch,), generator=generator)
        return instance_loss, denoising_loss(predict_with(class_embeds), class_latents[index], scheduler, generator)

    log, train_seconds = personalization_loop(accelerator, args, progress, trainable, optimizer, losses)
    unet = accelerator.unwrap_model(model).eval()

    with atomic_directory(output_dir / "lora") as folder:  # never a half-written adapter
        save_lora(pipe, unet, folder)
    results = {
        "method": args["method"], "steps": progress.step, "start_step": start_step, "subject": args["subject"],
        "subject_indices": subject_indices, "num_instance_images": len(instance_latents),
        # Other drawings of the series in the base's training split: the base knows the series, not these drawings.
        "series_in_train_split": sum(title_stem(t) == args["subject"] for t in data["train_titles"]),
        "instance_prompt": instance_phrase, "class_prompt": args["class_noun"],
        "num_class_images": 0 if class_latents is None else len(class_latents),
        "target_modules": METHODS[args["method"]], "num_lora_parameters": sum(p.numel() for p in trainable),
        "lora_weights": str(output_dir / "lora" / "pytorch_lora_weights.safetensors"), "base": args["base"],
        "train_seconds": train_seconds, "seconds_per_step": train_seconds / max(progress.step - start_step, 1),
        "class_image_seconds": class_seconds, "final_loss": log[-1]["loss"] if log else None, "log": log,
    }
    if evaluating:
        scores, images = evaluate(pipe, args, subject, instance_phrase, lift, effnet)
        results["base_scores"], results["scores"] = base_scores, scores
        from PIL import Image

        per = args["eval_samples_per_prompt"]
        rows = [[Image.fromarray(a) for a in subject.permute(0, 2, 3, 1).numpy()]]
        for p in range(len(images) // per):
            rows.append([Image.fromarray(a) for a in base_images[p * per: (p + 1) * per].numpy()])
            rows.append([Image.fromarray(a) for a in images[p * per: (p + 1) * per].numpy()])
        image_grid(rows).save(output_dir / "samples.png")
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_card(args, results, argv, real_dataset)
    return results


def write_card(args, results, argv, real_dataset):
    metrics = {f"{key} (adapted)": value for key, value in results.get("scores", {}).items()}
    metrics.update({f"{key} (base)": value for key, value in results.get("base_scores", {}).items()})
    name = {"dreambooth": "DreamBooth", "custom_diffusion": "Custom Diffusion"}[args["method"]]
    card = conditioning_model_card(
        f"{name} LoRA for the whitebox_hf text-to-image base: subject '{args['subject']}'",
        f"A LoRA adapter (rank {args['rank']}) of the base U-Net's "
        f"{', '.join('`' + m + '`' for m in results['target_modules'])} projections, trained with {name}'s recipe "
        f"on {results['num_instance_images']} held-out drawings of one subject, prompted as "
        f"`{results['instance_prompt']}`, with prior preservation on `{results['class_prompt']}` (book §8.7).",
        metrics,
        {"steps": results["steps"], "batch size": args["batch_size"],
         "training time": f"{results['train_seconds'] / 60:.1f} min",
         "LoRA parameters": f"{results['num_lora_parameters']:,}", "learning rate": args["learning_rate"],
         "class images": results["num_class_images"], "prior loss weight": args["prior_loss_weight"]},
        args["base"], "Openclipart (test-split subject)" if real_dataset else "in-memory drawings",
        command=shlex.join(["python", "training/train_personalization.py", *(sys.argv[1:] if argv is None else argv)]),
        usage=("from diffusers import StableDiffusionPipeline\n"
               "pipe = StableDiffusionPipeline.from_pretrained(\"path/to/base\", safety_checker=None)\n"
               "pipe.load_lora_weights(\"path/to/lora\")\n"
               f"image = pipe(\"a red {results['instance_prompt']}\").images[0]"),
        tags=("lora", args["method"].replace("_", "-")),
        metrics_note=("Subject fidelity: mean cosine between image features (EfficientNet-Lite0; LIFT) of generated "
                      "and subject drawings (a DINO-score analogue). Prompt fidelity: LIFT image–text cosine, the "
                      "identifier removed from the prompt. The base is prompted with the class noun."))
    card.save(str(Path(args["output_dir"]) / "lora" / "README.md"))


if __name__ == "__main__":
    run_script(main)
