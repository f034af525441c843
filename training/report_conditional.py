#!/usr/bin/env python
"""Write the "Text-to-image" section of ``docs/results/conditional.md`` from a trained text-to-image pipeline and
the LIFT scorer (rerunnable; every number comes from the run outputs and the evaluation done here).

    python training/report_conditional.py --pipeline runs/text-to-image-mhsa/pipeline \
        --lift runs/clip-lift-captions/model --output docs/results/conditional.md

On the first ``num_prompts`` distinct held-out captions (test split of Openclipart + Noto emoji, never seen by the
U-Net, the VAE or the LIFT scorer) it generates one image per caption at each guidance scale of ``guidance_scales``
(same seeds for every scale) and measures: the LIFT score (mean cosine between the generated image's LIFT
embedding and the caption's MiniLM embedding: a CLIP-score analogue), R@1 / R@5 of the true caption among the
``num_prompts`` held-out captions (chance shown), and FD-EffNet of the generations against the held-out images of
those captions. The same scores of the real held-out images are the reference row. A picture grid
(``docs/results/conditional_text_to_image.png``: prompts in rows, the real image then one sample per guidance
scale) goes next to the page. Other sections of an existing page (ControlNet, personalisation, video, world model)
are kept: only the part between the section's heading and the next ``## `` heading is replaced.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

SECTION = "## Text-to-image"
PAGE_TITLE = "# Conditional generation and control (book §8.7)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="runs/text-to-image-mhsa/pipeline")
    parser.add_argument("--mssa_pipeline", default="",
                        help="also evaluate the white-box U-Net (train_text_to_image.py --attention mssa)")
    parser.add_argument("--lift", default="runs/clip-lift-captions/model")
    parser.add_argument("--output", default="docs/results/conditional.md")
    parser.add_argument("--grid", default="", help="picture grid path (default: next to --output)")
    parser.add_argument("--num_prompts", type=int, default=100)
    parser.add_argument("--guidance_scales", default="1,2,4,7")
    parser.add_argument("--num_inference_steps", type=int, default=20)
    parser.add_argument("--grid_prompts", type=int, default=8)
    parser.add_argument("--fd_image_size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", default="openclipart,emoji")
    parser.add_argument("--vae_metrics", default="runs/autoencoder-vae-captions-l1/metrics.json",
                        help="the VAE run's metrics.json, for the training-time table ('' to leave it out)")
    parser.add_argument("--evaluation_json", default="", help="also write the measured numbers here")
    args = parser.parse_args(argv)
    if args.num_prompts < 2:
        parser.error(f"--num_prompts must be at least 2, got {args.num_prompts}")
    return args


def held_out_pairs(sources: list[str], num_prompts: int, data: dict | None = None):
    """The first ``num_prompts`` distinct test captions and, for each, its first test image (uint8 HWC)."""
    if data is None:
        from whitebox_hf.data import load_caption_images

        test = load_caption_images(sources, image_size=32)["test"]
        # Interleave the sources so both are in the first prompts (the test split lists Openclipart first).
        order = sorted(range(len(test)), key=lambda i: (i % 7, i))
        captions, images = [test[i]["caption"] for i in order], None
        keep = {}
        for rank, caption in enumerate(captions):
            if caption not in keep:
                keep[caption] = order[rank]
            if len(keep) == num_prompts:
                break
        chosen = list(keep.values())
        pixels = test.select(chosen).select_columns(["image"]).with_format("numpy", dtype=np.uint8)[:]["image"]
        images = torch.from_numpy(pixels)
        return list(keep), images, [test[i]["source"] for i in chosen]
    return data["captions"][:num_prompts], data["images"][:num_prompts], data["sources"][:num_prompts]


def save_grid(rows: list[torch.Tensor], path: Path, scale: int = 3) -> None:
    """``rows``: per column a uint8 (n, H, W, 3) tensor; saved as n rows × len(rows) columns."""
    from PIL import Image

    n, height, width, _ = rows[0].shape
    grid = Image.new("RGB", (len(rows) * (width + 2), n * (height + 2)), "white")
    for column, images in enumerate(rows):
        for row, image in enumerate(images.numpy()):
            grid.paste(Image.fromarray(image), (column * (width + 2), row * (height + 2)))
    grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(path)


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def render_section(evaluation: dict, grid_name: str) -> str:
    rows = evaluation["rows"]
    real = evaluation["real"]
    train = evaluation.get("training", {})
    lines = [SECTION, "",
             "A small `UNet2DConditionModel` cross-attending to the frozen all-MiniLM-L6-v2 token embeddings, in the "
             "4×8×8 latent space of a small `AutoencoderKL`, loaded and sampled through plain diffusers' "
             "`StableDiffusionPipeline` (DPM-Solver++, classifier-free guidance with the empty prompt). "
             "Evaluated on held-out captions of Openclipart + Noto emoji that neither the U-Net, the VAE nor the "
             "LIFT scorer saw. LIFT score: mean cosine between the LIFT embedding of an image and the MiniLM "
             "embedding of its caption (a CLIP-score analogue, not comparable to published CLIP scores). "
             "Retrieval: rank of the true caption among all the held-out captions of the table (chance shown). "
             "FD-EffNet: Fréchet distance of EfficientNet-Lite0 features against the held-out images of the same "
             "captions (not FID; with this few images it is biased upwards and only compares rows).", ""]
    mssa = evaluation.get("mssa")
    if mssa:
        lines += ["Two U-Nets of the same layout, data and budget: diffusers' multi-head attention (MHSA), and the "
                  "white-box variant in which every attention is CRATE's MSSA (`--attention mssa`: query = key = "
                  "value in each subspace; in cross-attention the text tokens are projected onto the same subspace "
                  "coordinates and serve as keys and values).", ""]
    lines += ["| images | U-Net attention | guidance | LIFT score | R@1 | R@5 | chance R@1 | FD-EffNet |",
              "|---|---|---|---|---|---|---|---|",
              f"| real held-out images | – | – | {_fmt(real['lift_score'])} | {_fmt(real['r@1'])} | "
              f"{_fmt(real['r@5'])} | {_fmt(real['chance_r@1'])} | – |"]
    for name, variant_rows in (("MHSA", rows), ("MSSA", mssa["rows"] if mssa else [])):
        for row in variant_rows:
            lines.append(f"| generated | {name} | {row['guidance_scale']:g} | {_fmt(row['lift_score'])} | "
                         f"{_fmt(row['r@1'])} | {_fmt(row['r@5'])} | {_fmt(row['chance_r@1'])} | "
                         f"{row['fd_effnet']:.1f} |")
    lines += ["", f"{evaluation['num_prompts']} held-out captions ({evaluation['num_emoji']} emoji, "
              f"{evaluation['num_prompts'] - evaluation['num_emoji']} Openclipart), one image each, "
              f"{evaluation['num_inference_steps']} sampler steps, seed {evaluation['seed']}, FD-EffNet on "
              f"{evaluation['fd_image_size']} px inputs; evaluation took "
              f"{evaluation['eval_seconds'] / 60:.1f} min.", ""]
    if train:
        lines += ["| run | steps | batch | training time (min) | trained parameters | held-out |",
                  "|---|---|---|---|---|---|"]
        for name, info in (("U-Net (MHSA)", train), ("U-Net (MSSA)", (mssa or {}).get("training"))):
            if info:
                lines.append(f"| {name} | {info['steps']} | {info['batch_size']} | "
                             f"{info['train_seconds_total'] / 60:.1f} | {info['num_parameters']:,} | denoising MSE "
                             f"{info['test_denoising_mse']:.4f} |")
        for name, key in (("VAE", "vae"), ("LIFT scorer", "lift")):
            info = evaluation.get(key)
            if info:
                held_out = f"PSNR {info['test_psnr']:.2f} dB" if "test_psnr" in info else "–"
                lines.append(f"| {name} | {info['steps']} | {info['batch_size']} | "
                             f"{info['train_seconds'] / 60:.1f} | {info['num_parameters']:,} | {held_out} |")
        lines.append("")
        lift = evaluation.get("lift", {})
        if "image_to_text_R@1" in lift:
            lines += [f"The LIFT scorer itself, on the held-out pairs: image→text R@1 "
                      f"{lift['image_to_text_R@1']:.3f} among {lift['retrieval_pairs']} distinct test captions "
                      f"(chance {lift['retrieval_chance_R@1']:.4f}).", ""]
    lines += [f"![prompts → samples]({grid_name})", "",
              f"Rows: the first {evaluation['grid_prompts']} held-out captions (listed below); columns: the real "
              "held-out image, then one sample per guidance scale of the table, left to right"
              + (" (the MHSA U-Net's, then the MSSA U-Net's)." if mssa else "."), ""]
    lines += [f"{i + 1}. {caption}" for i, caption in enumerate(evaluation["grid_captions"])]
    return "\n".join(lines) + "\n"


def write_page(path: Path, section: str) -> None:
    """Replace (or append) the section in the page, keeping the other sections."""
    text = path.read_text() if path.is_file() else PAGE_TITLE + "\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + \
        section
    path.write_text(text.rstrip("\n") + "\n")


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


TRAINING_KEYS = ("steps", "batch_size", "train_seconds_total", "num_parameters", "test_denoising_mse")


def training_facts(results_path: Path) -> dict:
    """The training run's steps, batch, time, parameters and held-out MSE from its ``results.json`` ({} if any is
    missing)."""
    results = _json(results_path)
    return {key: results[key] for key in TRAINING_KEYS} if set(TRAINING_KEYS) <= set(results) else {}


def main(argv=None, data: dict | None = None) -> dict:
    """Evaluate and write the page; ``data`` (tests) replaces the held-out pairs: ``{"captions", "images" uint8
    (n, H, W, 3), "sources"}``."""
    from diffusers import StableDiffusionPipeline
    from transformers import AutoModel

    from whitebox_hf.evaluation import FrechetEffNetDistance, frechet_distance, text_image_scores
    from whitebox_hf.pipelines.text_to_image import generate_images

    args = parse_args(argv)
    start = time.time()
    scales = [float(s) for s in args.guidance_scales.split(",") if s.strip()]
    lift = AutoModel.from_pretrained(args.lift).eval()
    captions, real_images, sources = held_out_pairs(args.sources.split(","), args.num_prompts, data)
    metric = FrechetEffNetDistance(image_size=args.fd_image_size)
    real_features = metric.features(real_images.permute(0, 3, 1, 2).contiguous())
    real = text_image_scores(lift, real_images, captions, gallery=captions)

    def evaluate(pipeline_path: str):
        pipeline = StableDiffusionPipeline.from_pretrained(pipeline_path)
        rows, samples = [], []
        for scale in scales:
            images = generate_images(pipeline, captions, guidance_scale=scale,
                                     num_inference_steps=args.num_inference_steps, seed=args.seed)
            scores = text_image_scores(lift, images, captions, gallery=captions)
            scores.update(guidance_scale=scale, fd_effnet=frechet_distance(
                real_features, metric.features(images.permute(0, 3, 1, 2).contiguous())))
            rows.append(scores)
            samples.append(images)
        return rows, samples, training_facts(Path(pipeline_path).parent / "results.json")

    rows, samples, training = evaluate(args.pipeline)
    mssa = None
    if args.mssa_pipeline:
        mssa_rows, mssa_samples, mssa_training = evaluate(args.mssa_pipeline)
        mssa = {"rows": mssa_rows, "training": mssa_training}
        samples += mssa_samples
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    grid = Path(args.grid) if args.grid else output.with_name(output.stem + "_text_to_image.png")
    k = min(args.grid_prompts, len(captions))
    save_grid([real_images[:k]] + [s[:k] for s in samples], grid)
    evaluation = {"rows": rows, "real": real, "num_prompts": len(captions),
                  "num_emoji": sum(s == "emoji" for s in sources), "num_inference_steps": args.num_inference_steps,
                  "seed": args.seed, "fd_image_size": args.fd_image_size, "grid_prompts": k, "grid_captions": captions[:k],
                  "eval_seconds": time.time() - start, "training": training}
    if mssa:
        evaluation["mssa"] = mssa
    vae_metrics = _json(Path(args.vae_metrics)) if args.vae_metrics else {}
    if {"steps", "batch_size", "train_seconds", "num_parameters"} <= set(vae_metrics):
        evaluation["vae"] = {key: vae_metrics[key] for key in ("steps", "batch_size", "train_seconds",
                                                               "num_parameters", "test_psnr")}
    lift_metrics = _json(Path(args.lift).parent / "metrics.json")
    if {"steps", "batch_size", "train_seconds"} <= set(lift_metrics):
        evaluation["lift"] = {"steps": lift_metrics["steps"], "batch_size": lift_metrics["batch_size"],
                              "train_seconds": lift_metrics["train_seconds"],
                              "num_parameters": lift_metrics.get("trainable_parameters", 0),
                              **{key: lift_metrics[key] for key in ("image_to_text_R@1", "retrieval_chance_R@1",
                                                                    "retrieval_pairs") if key in lift_metrics}}
    write_page(output, render_section(evaluation, grid.name))
    if args.evaluation_json:
        Path(args.evaluation_json).write_text(json.dumps(evaluation, indent=2))
    print(json.dumps({"rows": [{k: r[k] for k in ("guidance_scale", "lift_score", "r@1", "fd_effnet")}
                               for r in rows], "real_lift_score": real["lift_score"]}))
    return evaluation


if __name__ == "__main__":
    main()
