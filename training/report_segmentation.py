#!/usr/bin/env python
"""Write docs/results/segmentation.md: emergent segmentation of CRATE and ViT (book §8.2.5, Table 8.6).

    bash training/run_segmentation_comparison.sh   # supervised CRATE / ViT, SimDINO-CRATE / SimDINO-ViT, 1 epoch each
    python training/report_segmentation.py         # scores them (and the bundled checkpoints), writes the page

For each backbone, on the first ``--num_images`` Fashion-MNIST test images, per layer and per head
(`whitebox_hf.evaluation.segmentation`): the share of the class token's attention on the object's patches, the IoU of
its top-60%-mass patches with the object, and the IoU of a normalised cut of the layer's patch features. The object
mask is pixel > 0.1 (of 1), a patch counting as object when half its pixels are. Openclipart is not scored: the
loader renders RGB without the alpha channel, so it has no mask. Every number comes from this run; the scores are
also written beside the page (``segmentation.json``), and a later run keeps the entries of runs no longer on disk.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import dataset_to_tensors, load_image_dataset, normalise_images
from whitebox_hf.evaluation.segmentation import (
    mask_iou,
    normalized_cut_mask,
    patch_object_masks,
    random_mass_masks,
    segmentation_scores,
)
from whitebox_hf.hub import bundled_checkpoint

ROOT = Path(__file__).resolve().parent.parent
MASS, TAU, PIXEL_THRESHOLD, PATCH_FRACTION = 0.6, 0.15, 0.1, 0.5
# (key, label, backbone family, training, where the model is relative to runs/ or a bundled name)
MODELS = [
    ("crate", "CRATE, supervised", "CRATE", "supervised", "seg-crate/model"),
    ("vit", "ViT, supervised", "ViT", "supervised", "seg-vit/model"),
    ("simdino-crate", "SimDINO-CRATE", "CRATE", "SimDINO", "seg-simdino-crate/teacher_backbone"),
    ("simdino-vit", "SimDINO-ViT", "ViT", "SimDINO", "seg-simdino-vit/teacher_backbone"),
    # One epoch of each (LONG=1 bash training/run_segmentation_comparison.sh): the same pairs at a longer budget.
    ("crate-epoch", "CRATE, supervised, 1 epoch", "CRATE", "supervised", "seg-crate-epoch/model"),
    ("vit-epoch", "ViT, supervised, 1 epoch", "ViT", "supervised", "seg-vit-epoch/model"),
    ("simdino-crate-epoch", "SimDINO-CRATE, 1 epoch", "CRATE", "SimDINO", "seg-simdino-crate-epoch/teacher_backbone"),
    ("simdino-vit-epoch", "SimDINO-ViT, 1 epoch", "ViT", "SimDINO", "seg-simdino-vit-epoch/teacher_backbone"),
    # The Fashion-MNIST xl pair (report_fashion_mnist_xl.py): CRATE 26 epochs and ViT 14 epochs, about the same wall
    # time side by side; trained to ~90 % test accuracy, the best-trained supervised pair here.
    ("crate-xl", "CRATE, supervised, 26 epochs (xl)", "CRATE", "supervised", "fashion_mnist_crate_xl/model"),
    ("vit-xl", "ViT, supervised, 14 epochs (xl)", "ViT", "supervised", "fashion_mnist_vit_xl/model"),
    ("bundled-crate", "CRATE, supervised (bundled)", "CRATE", "supervised", "bundled:fashion-mnist-crate"),
    ("bundled-simdino-crate", "SimDINO-CRATE (bundled)", "CRATE", "SimDINO", "bundled:fashion-mnist-simdino-crate"),
]
BUNDLED_BUDGETS = {
    "bundled-crate": "bundled checkpoint (fashion_mnist_crate_long.yaml)",
    "bundled-simdino-crate": "bundled checkpoint (6 epochs of 10k images)",
}


def budget(key: str, facts: dict) -> str:
    """The training budget as the run recorded it (steps × global batch, and the images it drew from)."""
    if key in BUNDLED_BUDGETS:
        return BUNDLED_BUDGETS[key]
    if "steps" not in facts:
        return "n/a"
    batch = facts.get("world_batch_size", facts.get("batch_size"))
    images = facts.get("num_train_images")
    crops = ", 2+6 crops" if "knn20_accuracy" in facts else ""
    return f"{facts['steps']:,} steps × batch {batch}{crops} ({facts['epochs']:.2f} epochs" + (
        f" of {images:,} images)" if images else " of 60,000 images)")


def locate(runs: Path, where: str) -> Path | None:
    if where.startswith("bundled:"):
        return bundled_checkpoint(where.split(":", 1)[1])
    folder = runs / where
    return folder if (folder / "config.json").is_file() else None


def run_facts(runs: Path, where: str) -> dict:
    """Wall time and the run's own quality number (test accuracy or 20-NN), from its files."""
    if where.startswith("bundled:"):
        return {}
    run = runs / where.split("/")[0]
    facts = {}
    for name in ("metrics.json", "evaluation.json", "wall_time.json"):
        if (run / name).is_file():
            facts.update(json.loads((run / name).read_text()))
    if "wall_seconds" not in facts and "train_seconds_this_run" in facts:  # a run of its own, not of the .sh
        facts["wall_seconds"] = round(facts["train_seconds_this_run"])
    return facts


def load_backbone(folder: Path):
    config = AutoConfig.from_pretrained(folder)
    kwargs = {"attn_implementation": "eager"} if config.model_type == "vit" else {}
    model = AutoModel.from_pretrained(folder, **kwargs).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    return model, processor


def score_models(runs: Path, num_images: int, previous: dict | None = None) -> dict:
    """Scores of every model of `MODELS` whose folder exists; a model whose run is gone keeps its entry of
    ``previous`` (the scores JSON an earlier run committed, when it scored as many images), marked ``cached``."""
    dataset, _ = load_image_dataset("fashion-mnist")
    images, _ = dataset_to_tensors(dataset["test"].select(range(num_images)))
    results = {"num_images": num_images, "models": {}}
    masks_by_patch = {}
    for key, label, family, training, where in MODELS:
        folder = locate(runs, where)
        if folder is None:
            kept = (previous or {}).get("models", {}).get(key)
            usable = kept is not None and (previous or {}).get("num_images") == num_images
            results["models"][key] = {**kept, "label": label, "cached": True} if usable else None
            continue
        model, processor = load_backbone(folder)
        patch = model.config.patch_size
        if patch not in masks_by_patch:
            masks_by_patch[patch] = patch_object_masks(images, patch, PIXEL_THRESHOLD, PATCH_FRACTION)
        masks = masks_by_patch[patch]
        pixels = normalise_images(images, processor.image_mean, processor.image_std)
        scores = segmentation_scores(model, pixels, masks, mass=MASS, tau=TAU)
        results["models"][key] = {"label": label, "family": family, "training": training, "patch_size": patch,
                                  "facts": run_facts(runs, where), **scores}
    patch = next(iter(masks_by_patch), 4)
    masks = masks_by_patch.get(patch, patch_object_masks(images, patch, PIXEL_THRESHOLD, PATCH_FRACTION))
    grid = images.shape[-1] // patch
    raw = images.float().reshape(num_images, 1, grid, patch, grid, patch).permute(0, 2, 4, 1, 3, 5)
    raw = raw.reshape(num_images, grid * grid, -1) / 255.0
    chance = random_mass_masks(masks, MASS, generator=torch.Generator().manual_seed(0))
    results["chance"] = {
        "share": masks.float().mean().item(),  # uniform attention puts |M|/N on the object
        "iou": mask_iou(chance, masks).mean().item(),
        "pixel_ncut_iou": mask_iou(normalized_cut_mask(raw, grid, grid, TAU), masks).mean().item(),
        "object_fraction": masks.float().mean().item(),
    }
    return results


def best(values: list[float]) -> tuple[int, float]:
    index = max(range(len(values)), key=lambda i: values[i])
    return index, values[index]


def best_head(matrix: list[list[float]]) -> tuple[int, int, float]:
    return max(((l, h, v) for l, row in enumerate(matrix) for h, v in enumerate(row)), key=lambda t: t[2])


# The equal-budget CRATE / ViT pairs of the verdict: (name, CRATE key, ViT key).
PAIRS = (("supervised", "crate", "vit"), ("SimDINO", "simdino-crate", "simdino-vit"),
         ("supervised, 1 epoch", "crate-epoch", "vit-epoch"), ("SimDINO, 1 epoch", "simdino-crate-epoch", "simdino-vit-epoch"),
         ("supervised, xl (about equal wall time, ~90 % test accuracy)", "crate-xl", "vit-xl"))
METRICS = [("share_mean_head", "attention share (last layer)", "last"),
           ("iou_mean_head", "top-60% IoU (best layer)", "best"),
           ("ncut_iou", "normalised-cut IoU (best layer)", "best")]


def metric_value(scores: dict, key: str, which: str) -> float:
    values = scores[key]
    return values[-1] if which == "last" else best(values)[1]


def crate_vs_vit(models: dict) -> str:
    """The verdict on "CRATE's attention segments better than ViT's", from the values: per training regime, which
    of the three metrics CRATE wins."""
    lines, wins, comparisons = [], 0, 0
    for training, crate_key, vit_key in PAIRS:
        crate, vit = models.get(crate_key), models.get(vit_key)
        if crate is None or vit is None:
            lines.append(f"- {training}: not compared (a run is missing).")
            continue
        parts = []
        for key, name, which in METRICS:
            c, v = metric_value(crate, key, which), metric_value(vit, key, which)
            comparisons += 1
            wins += c > v
            parts.append(f"{name} CRATE {c:.3f} {'>' if c > v else '≤'} ViT {v:.3f}")
        lines.append(f"- {training}: " + "; ".join(parts) + ".")
    if comparisons == 0:
        verdict = "**not tested**: no CRATE/ViT pair was scored"
    elif wins == comparisons:
        verdict = f"**holds**: CRATE above ViT on all {comparisons} comparisons"
    elif wins == 0:
        verdict = f"**does not hold**: CRATE above ViT on none of the {comparisons} comparisons"
    else:
        verdict = f"**holds in part**: CRATE above ViT on {wins} of {comparisons} comparisons"
    return "\n".join([f"Claim \"CRATE above ViT\" at these budgets: {verdict}.", "", *lines])


def fmt(value: float) -> str:
    return f"{value:.3f}"


def write_page(results: dict, path: Path) -> None:
    models, chance = results["models"], results["chance"]
    out = [
        "# Emergent segmentation: CRATE vs ViT on Fashion-MNIST",
        "",
        "Written by `training/report_segmentation.py` from the runs of `training/run_segmentation_comparison.sh` and "
        "the bundled checkpoints; do not edit by hand.",
        "",
        f"Book §8.2.5 (Table 8.6): CRATE's class token attends to the object where ViT's does not. Scored on the first "
        f"{results['num_images']} Fashion-MNIST test images. Object mask: pixel > {PIXEL_THRESHOLD} (of 1), a patch "
        f"(4×4 pixels, 7×7 grid) is object when at least {PATCH_FRACTION:.0%} of its pixels are; on average "
        f"{chance['object_fraction']:.1%} of the patches are object. Openclipart is not scored: `load_openclipart` "
        "renders RGB without the alpha channel, so there is no mask.",
        "",
        "- **share**: of the class token's attention to the patches (renormalised over the patches), the part on the "
        "object. Uniform attention gives the object's share of the grid.",
        f"- **top-60% IoU**: the highest patches holding {MASS:.0%} of the attention (DINO's threshold), IoU with the "
        "object. Chance: uniform attention with random ties (a random set of the same size).",
        f"- **normalised cut**: MaskCut-style: affinity 1 where the cosine of two patch features (the layer's output "
        f"tokens) is at least {TAU}, else 1e-5; second-smallest eigenvector of the normalised Laplacian, split at its "
        "mean; foreground = the side with fewer border patches (\"border\") or the side the class token attends more "
        "(\"attn\"). Baseline: the same cut on the raw pixels of the patches.",
        "- *mean head*: the head-averaged map (what a saliency figure shows); *best head*: the best single "
        "(layer, head).",
        "",
        "## Summary",
        "",
        "| model | training budget | wall time (s) | run's own score | share, last layer | share, best layer | "
        "top-60% IoU, last layer | top-60% IoU, best layer | best head IoU (layer, head) | ncut IoU border, best "
        "layer | ncut IoU attn, best layer |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label, *_ in MODELS:
        scores = models.get(key)
        if scores is None:
            out.append(f"| {label} | not run | missing | not run | | | | | | | |")
            continue
        facts = scores["facts"]
        wall = f"{facts['wall_seconds']:,}" if "wall_seconds" in facts else "n/a"
        if scores.get("cached"):
            label = label + " †"
        if "test_accuracy" in facts:
            own = f"test accuracy {facts['test_accuracy']:.2%}"
        elif "knn20_accuracy" in facts:
            own = f"20-NN {facts['knn20_accuracy']:.2%}"
        else:
            own = "n/a"
        share_layer, share_best = best(scores["share_mean_head"])
        iou_layer, iou_best = best(scores["iou_mean_head"])
        head_layer, head, head_iou = best_head(scores["iou"])
        cut_layer, cut_best = best(scores["ncut_iou"])
        attn_layer, attn_best = best(scores["ncut_iou_attention"])
        out.append(
            f"| {label} | {budget(key, facts)} | {wall} | {own} | {fmt(scores['share_mean_head'][-1])} | "
            f"{fmt(share_best)} (layer {share_layer + 1}) | {fmt(scores['iou_mean_head'][-1])} | {fmt(iou_best)} "
            f"(layer {iou_layer + 1}) | {fmt(head_iou)} ({head_layer + 1}, {head + 1}) | {fmt(cut_best)} (layer "
            f"{cut_layer + 1}) | {fmt(attn_best)} (layer {attn_layer + 1}) |")
    out.append(f"| chance / raw pixels | | | | {fmt(chance['share'])} | {fmt(chance['share'])} | {fmt(chance['iou'])} "
               f"| {fmt(chance['iou'])} | {fmt(chance['iou'])} | {fmt(chance['pixel_ncut_iou'])} (pixels) | |")
    out += ["", "Budgets and scores are read from each run's own files (`metrics.json` / `evaluation.json`, "
            "`wall_time.json`). Each pair has one budget: the short pairs (their own scores on the first 2,000 test "
            "images), one epoch of each (`LONG=1 bash training/run_segmentation_comparison.sh`, scores on all 10,000) "
            "and the xl pair below. The bundled CRATE backbones have no ViT counterpart and are not in the verdict. "
            "The xl pair (`docs/results/fashion_mnist_xl.md`) trained side by side for about the same wall time; its "
            "own scores are on all 10,000 test images.",
            *(["", "† scores kept from the committed `segmentation.json` of an earlier run of this report (the run "
               "folder is not on this machine); they were computed by this script, not typed."]
              if any(m and m.get("cached") for m in models.values()) else []),
            "", "## Verdict", "", crate_vs_vit(models), "", "## Per layer (mean head)", ""]
    for key, label, *_ in MODELS:
        scores = models.get(key)
        if scores is None:
            continue
        out += [f"### {label}", "", "| layer | share | top-60% IoU | ncut IoU border | ncut IoU attn |",
                "|---:|---:|---:|---:|---:|"]
        for layer in range(len(scores["share_mean_head"])):
            out.append(f"| {layer + 1} | {fmt(scores['share_mean_head'][layer])} | "
                       f"{fmt(scores['iou_mean_head'][layer])} | {fmt(scores['ncut_iou'][layer])} | "
                       f"{fmt(scores['ncut_iou_attention'][layer])} |")
        out.append("")
    out += ["## Per head", "", "Rows are layers, columns heads; each cell is share / top-60% IoU.", ""]
    for key, label, *_ in MODELS:
        scores = models.get(key)
        if scores is None:
            continue
        heads = len(scores["share"][0])
        out += [f"### {label}", "", "| layer | " + " | ".join(f"head {h + 1}" for h in range(heads)) + " |",
                "|---:|" + "---:|" * heads]
        for layer, (shares, ious) in enumerate(zip(scores["share"], scores["iou"])):
            out.append(f"| {layer + 1} | " + " | ".join(f"{fmt(s)} / {fmt(i)}" for s, i in zip(shares, ious)) + " |")
        out.append("")
    path.write_text("\n".join(out).rstrip() + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--num_images", type=int, default=1000)
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "segmentation.md"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    scores_path = Path(args.output).with_suffix(".json")
    previous = json.loads(scores_path.read_text()) if scores_path.is_file() else None
    results = score_models(Path(args.runs), args.num_images, previous)
    scores_path.write_text(json.dumps(results, indent=1))
    write_page(results, Path(args.output))
    print(f"wrote {args.output} and {scores_path}")


if __name__ == "__main__":
    main()
