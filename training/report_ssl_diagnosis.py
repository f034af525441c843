#!/usr/bin/env python
"""Write docs/results/ssl_diagnosis.md: why SimDINO/DINO-CRATE features and ViT-MAE did not beat raw pixels.

    bash training/run_ssl_diagnosis.sh        # short runs into runs/ssl_diagnosis/<name>/ (see that script)
    python training/report_ssl_diagnosis.py   # measures the baselines, reads the runs, writes the page

Measured here, on the same subsets the short runs are scored on (the first ``--eval_train`` training images as
the k-NN memory / probe training set, the first ``--eval_test`` test images):

* raw pixels (normalised, flattened) with the package's 20-NN (T = 0.07) and linear probe;
* the class-token feature at initialisation of the SSL backbones (CRATE with the supervised N(0, 1) class token
  and positions, with DINO's N(0, 0.02), CRATE's mean-pooled feature, transformers' ViT): feature std,
  effective rank, 20-NN;
* transformers' ViT-MAE as built by ``ViTMAEForPreTraining(config)`` and after ``initialize_vit_mae_``: the size
  of its position tables, and the masked-patch MSE of the two position-blind predictors (zero, i.e. the data mean,
  and each image's mean of its hidden patches) on the evaluation masks.

Read from the runs: each ``evaluation.json`` (teacher backbone or MAE encoder), ``wall_time.json`` and the last
logged training values of ``log.jsonl``. A missing run is listed as missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import torch

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import load_image_tensors, normalise_images
from whitebox_hf.evaluation import effective_rank, feature_std, knn_accuracy, linear_probe_accuracy

ROOT = Path(__file__).resolve().parent.parent
SSL_RUNS = [  # (run, description)
    ("simdino-crate-init1", "SimDINO-CRATE, class token and positions ~ N(0, 1) (before)"),
    ("simdino-crate-init0.02", "SimDINO-CRATE, class token and positions ~ N(0, 0.02) (after)"),
]
MAE_RUNS = [("mae-crate", "CRATE-MAE"), ("mae-vit", "ViT-MAE (transformers, MAE init restored)")]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def read_run(runs: Path, name: str) -> dict | None:
    folder = runs / name
    if not (folder / "evaluation.json").is_file():
        return None
    result = json.loads((folder / "evaluation.json").read_text())
    wall = folder / "wall_time.json"
    result["wall_seconds"] = (json.loads(wall.read_text())["wall_seconds"] if wall.is_file()
                              else result.get("train_seconds_this_run"))
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    result["config"] = next((r["config"] for r in records if r.get("type") == "config"), {})
    metrics = [r for r in records if "train_loss" in r]
    result["last"] = metrics[-1] if metrics else {}
    result["first"] = metrics[0] if metrics else {}
    return result


def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def number(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def minutes(seconds) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def ssl_reading(before: dict, after: dict, pixels_knn: float) -> str:
    """The short SimDINO runs' verdict, from the values: does the fix raise 20-NN, and is it above pixels yet?"""
    trend = "rises" if after["knn20_accuracy"] > before["knn20_accuracy"] else "does not rise"
    beats = "above" if after["knn20_accuracy"] > pixels_knn else "still below"
    spread = "more" if after["feature_std"] > before["feature_std"] else "less"
    return (f"At equal steps the 20-NN accuracy {trend} with the fix ({percent(before['knn20_accuracy'])} → "
            f"{percent(after['knn20_accuracy'])}) and the trained feature is {spread} spread (std "
            f"{number(before['feature_std'])} → {number(after['feature_std'])}); after {after['steps']} steps it is "
            f"{beats} raw pixels ({percent(pixels_knn)}). Only the full-budget runs can say whether it ends above.")


def mae_reading(vit: dict, crate: dict | None, plateau: float, pixels_probe: float) -> str:
    """ViT-MAE's verdict, from the values: below the position-blind plateau? probe vs pixels and vs CRATE-MAE?"""
    below = "below" if vit["reconstruction_loss"] < plateau else "not below"
    probe = "above" if vit["linear_probe_accuracy"] > pixels_probe else "below"
    text = (f"ViT-MAE's test masked MSE {number(vit['reconstruction_loss'])} is {below} the position-blind "
            f"optimum {number(plateau)}; its linear probe {percent(vit['linear_probe_accuracy'])} is {probe} raw "
            f"pixels' {percent(pixels_probe)}.")
    if crate is not None:
        lower = "ViT-MAE" if vit["reconstruction_loss"] < crate["reconstruction_loss"] else "CRATE-MAE"
        better = "ViT-MAE" if vit["linear_probe_accuracy"] > crate["linear_probe_accuracy"] else "CRATE-MAE"
        text += (f" At equal steps {lower} has the lower masked MSE and {better} the better linear probe "
                 f"({percent(vit['linear_probe_accuracy'])} ViT-MAE, {percent(crate['linear_probe_accuracy'])} "
                 "CRATE-MAE).")
    return text


def scores(train_features, train_labels, test_features, test_labels, probe: bool = True) -> dict:
    out = {"knn20": knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07),
           "feature_std": feature_std(test_features), "effective_rank": effective_rank(test_features),
           "dim": int(test_features.shape[1])}
    out["linear_probe"] = (linear_probe_accuracy(train_features, train_labels, test_features, test_labels)
                           if probe else None)
    return out


@torch.no_grad()
def init_diagnostics(train_ssl, train_pixels, train_labels, test_pixels, test_labels) -> list[dict]:
    """Feature spread and 20-NN of the SSL backbones' evaluated feature before any training (seed 0)."""
    args = train_ssl.parse_args(["--config", str(ROOT / "training/configs/ssl_fashion_mnist.yaml")])
    variants = [("CRATE, class token, N(0, 1) class token and positions (supervised default)", "crate", 1.0, "cls"),
                ("CRATE, class token, N(0, 0.02) (the SSL setting now)", "crate", 0.02, "cls"),
                ("CRATE, mean of all tokens, N(0, 1)", "crate", 1.0, "mean"),
                ("ViT (transformers), class token after the final LayerNorm", "vit", 0.02, "cls")]
    rows = []
    for label, backbone_name, init_std, pooling in variants:
        torch.manual_seed(0)
        backbone = train_ssl.build_backbone({**args, "backbone": backbone_name, "position_embedding_init_std": init_std,
                                             "pooling": pooling}, 28, 1).eval()
        features = [torch.cat([train_ssl.backbone_features(backbone, x) for x in pixels.split(1000)])
                    for pixels in (train_pixels, test_pixels)]
        rows.append({"label": label, **scores(features[0], train_labels, features[1], test_labels, probe=False)})
    return rows


@torch.no_grad()
def vit_mae_diagnostics(train_mae, test_pixels) -> dict:
    """Position tables of ViT-MAE as transformers builds it and after `initialize_vit_mae_`, and the masked MSE of
    the two position-blind predictors on the evaluation masks (the plateau the broken model sat on)."""
    from transformers import ViTMAEForPreTraining

    args = train_mae.parse_args(["--config", str(ROOT / "training/configs/mae_fashion_mnist.yaml"), "--model", "vit"])
    torch.manual_seed(0)
    fixed = train_mae.build_model(args, 28, 1)
    torch.manual_seed(0)
    raw = ViTMAEForPreTraining(fixed.config)  # what transformers alone gives
    table = lambda m: float(m.vit.embeddings.position_embeddings.abs().mean())  # noqa: E731
    decoder_table = lambda m: float(m.decoder.decoder_pos_embed.abs().mean())  # noqa: E731
    num_patches = (test_pixels.shape[-1] // args["patch_size"]) ** 2
    mask = train_mae.evaluation_masks(len(test_pixels), num_patches, args["mask_ratio"], args["seed"])
    target = fixed.patchify(test_pixels)
    hidden = mask.unsqueeze(-1).to(target.dtype)
    per_image = (target * hidden).sum((1, 2), keepdim=True) / (hidden.sum((1, 2), keepdim=True) * target.shape[-1])
    masked_mse = lambda prediction: float((((target - prediction) ** 2).mean(-1) * mask).sum() / mask.sum())  # noqa: E731
    return {"raw_encoder_table": table(raw), "raw_decoder_table": decoder_table(raw),
            "fixed_encoder_table": table(fixed), "fixed_decoder_table": decoder_table(fixed),
            "mse_predict_zero": masked_mse(torch.zeros_like(target)), "mse_predict_image_mean": masked_mse(per_image),
            "num_masked": int(mask[0].sum()), "num_patches": int(mask.shape[1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ssl_diagnosis"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "ssl_diagnosis.md"))
    parser.add_argument("--eval_train", type=int, default=10000)
    parser.add_argument("--eval_test", type=int, default=2000)
    parser.add_argument("--remeasure", action="store_true", help="recompute the baselines and init measurements")
    args = parser.parse_args(argv)
    runs, output = Path(args.runs), Path(args.output)
    torch.set_num_threads(1)

    # The report's own measurements (deterministic: seed 0, fixed subsets) are kept in `measured.json` beside the
    # runs and reused unless --remeasure or the subsets changed.
    cache = runs / "measured.json"
    measured = json.loads(cache.read_text()) if cache.is_file() and not args.remeasure else {}
    if measured.get("subsets") != [args.eval_train, args.eval_test]:
        started = time.time()
        tensors = load_image_tensors({"dataset": "fashion-mnist", "data_dir": ""})
        mean, std = tensors["image_mean"], tensors["image_std"]
        train_pixels = normalise_images(tensors["train_images"][: args.eval_train], mean, std)
        train_labels = tensors["train_labels"][: args.eval_train]
        test_pixels = normalise_images(tensors["test_images"][: args.eval_test], mean, std)
        test_labels = tensors["test_labels"][: args.eval_test]
        train_ssl, train_mae = load_script("train_ssl"), load_script("train_mae")
        measured = {
            "subsets": [args.eval_train, args.eval_test],
            "pixels": scores(train_pixels.flatten(1), train_labels, test_pixels.flatten(1), test_labels),
            "init_rows": init_diagnostics(train_ssl, train_pixels, train_labels, test_pixels, test_labels),
            "mae_init": vit_mae_diagnostics(train_mae, test_pixels),
        }
        measured["seconds"] = time.time() - started
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(measured, indent=2))
    pixels, init_rows, mae_init = measured["pixels"], measured["init_rows"], measured["mae_init"]
    measure_seconds = measured["seconds"]

    ssl = {name: read_run(runs, name) for name, _ in SSL_RUNS}
    mae = {name: read_run(runs, name) for name, _ in MAE_RUNS}
    for name, run in {**ssl, **mae}.items():  # every run must be scored on the baselines' subsets
        if run is not None:
            config = run["config"]
            if (config.get("eval_train_subset"), config.get("test_subset")) != (args.eval_train, args.eval_test):
                raise ValueError(f"run {name} is scored on eval_train_subset={config.get('eval_train_subset')}, "
                                 f"test_subset={config.get('test_subset')}, not on the report's "
                                 f"{args.eval_train}/{args.eval_test}")

    lines = [
        "# SSL diagnosis: why the self-supervised features did not beat raw pixels, and the fixes",
        "",
        "Generated by `python training/report_ssl_diagnosis.py` from the short runs of "
        "`training/run_ssl_diagnosis.sh` (their `evaluation.json`, `wall_time.json`, `log.jsonl`); the raw-pixel "
        "baselines and the initialisation measurements are computed by the report itself on the same subsets. "
        f"Evaluation subset: the first {args.eval_train:,} training images (k-NN memory / probe training set) and "
        f"the first {args.eval_test:,} test images of Fashion-MNIST; 20-NN with T = 0.07, logistic-regression "
        "probe, collapse measures of `whitebox_hf.evaluation.collapse` on the test features.",
        "",
        "The machine: 2 CPU cores shared with other agents' jobs (load far above 2 during these runs), one thread "
        "per run; wall times are therefore upper bounds, several times the uncontended time.",
        "",
        "## Raw pixels on the same subset",
        "",
        "| feature | dim | 20-NN | linear probe | feature std (uniform: 1/√dim) | effective rank |",
        "|---|---:|---:|---:|---:|---:|",
        f"| raw pixels (normalised) | {pixels['dim']} | {percent(pixels['knn20'])} | {percent(pixels['linear_probe'])} "
        f"| {number(pixels['feature_std'])} ({number(pixels['dim'] ** -0.5)}) | {pixels['effective_rank']:.1f} |",
        "",
        "## 1. SimDINO/DINO-CRATE: the class token is the same for every image at initialisation",
        "",
        "The evaluated feature is the one the head reads (`test_probes_score_the_feature_the_head_reads`): CRATE's "
        "`pooler_output`, the final LayerNorm of the class token, before the projection head. At initialisation:",
        "",
        f"| backbone, feature (seed 0, untrained) | feature std (uniform {number(init_rows[0]['dim'] ** -0.5, 3)}) "
        f"| effective rank (of {init_rows[0]['dim']}) | 20-NN |",
        "|---|---:|---:|---:|",
    ]
    for row in init_rows:
        lines.append(f"| {row['label']} | {number(row['feature_std'])} | {row['effective_rank']:.1f} | "
                     f"{percent(row['knn20'])} |")
    crate_before, crate_after = init_rows[0], init_rows[1]
    lines += [
        "",
        f"**Cause.** `CrateConfig` draws the class token and the position table from N(0, 1) (the authors' "
        "supervised CRATE). Every patch token and every MSSA projection is small next to that constant (the "
        "projections are N(0, 0.02)), so what the attention writes into the class token is a small perturbation of "
        "a vector shared by all images; ISTA then replaces the token by a non-negative code of that almost "
        "constant input, and the final LayerNorm keeps the shared direction. Hence a feature std of "
        f"{number(crate_before['feature_std'])} at initialisation, and SimDINO's coding-rate term, which acts on "
        "the head's output, starts from an almost rank-deficient input. It is neither the pooling's LayerNorm nor "
        "the head nor the teacher temperature (SimDINO has none): the mean of all tokens is spread already "
        "(second-to-last row). DINO's ViT (and transformers' ViT) draw the class token and positions from "
        f"N(0, 0.02); with that, the CRATE class token's spread rises to {number(crate_after['feature_std'])}.",
        "",
        "**Fix.** `training/train_ssl.py` option `position_embedding_init_std` (default 0.02, also in "
        "`training/configs/ssl_fashion_mnist.yaml`; supervised CRATE keeps N(0, 1)); `pooling` is exposed too. "
        "Test: `tests/training/test_train_ssl.py::test_crate_class_token_is_spread_at_initialisation`.",
        "",
        "### Short SimDINO-CRATE runs, before and after",
        "",
        "| run | steps | train images | 20-NN | linear probe | feature std | effective rank | expansion (first → last log) "
        "| alignment (last log) | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in SSL_RUNS:
        run = ssl[name]
        if run is None:
            lines.append(f"| {label} | missing: `runs/ssl_diagnosis/{name}` | | | | | | | | |")
            continue
        lines.append(
            f"| {label} | {run['steps']} | {run['num_train_images']:,} | {percent(run['knn20_accuracy'])} | "
            f"{percent(run['linear_probe_accuracy'])} | {number(run['feature_std'])} | {run['effective_rank']:.1f} | "
            f"{number(run['first'].get('train_expansion'), 1)} → {number(run['last'].get('train_expansion'), 1)} | "
            f"{number(run['last'].get('train_alignment'), 3)} | {minutes(run['wall_seconds'])} |")
    before, after = ssl[SSL_RUNS[0][0]], ssl[SSL_RUNS[1][0]]
    if before is not None and after is not None:
        lines += ["", ssl_reading(before, after, pixels["knn20"])]

    lines += [
        "",
        "## 2. ViT-MAE: transformers builds it with zero position tables",
        "",
        "| ViT-MAE (config of `mae_fashion_mnist.yaml`) | mean abs. encoder positions | mean abs. decoder positions |",
        "|---|---:|---:|",
        f"| `ViTMAEForPreTraining(config)` (transformers 5.x) | {number(mae_init['raw_encoder_table'])} | "
        f"{number(mae_init['raw_decoder_table'])} |",
        f"| after `initialize_vit_mae_` (train_mae.py) | {number(mae_init['fixed_encoder_table'])} | "
        f"{number(mae_init['fixed_decoder_table'])} |",
        "",
        "**Cause.** With all-zero position tables (and zero class and mask tokens) every mask token entering the "
        "decoder is the same vector, so the decoder predicts one value for every hidden patch of an image: the "
        "grey-patch plateau. On the evaluation masks "
        f"({mae_init['num_masked']} of {mae_init['num_patches']} patches hidden) predicting the data mean gives masked MSE "
        f"{number(mae_init['mse_predict_zero'])}, and the best position-blind predictor (each image's mean of its "
        f"hidden patches) {number(mae_init['mse_predict_image_mean'])}. transformers' `post_init` marks the patch "
        "projection initialised before `ViTMAEEmbeddings.initialize_weights` runs (which then returns early), and "
        "`ViTMAEPreTrainedModel._init_weights` zeroes the decoder's table and mask token after the decoder filled "
        "them. Masking ratio, decoder width, warm-up and learning rate were not the cause.",
        "",
        "**Fix.** `train_mae.initialize_vit_mae_` re-runs transformers' own `initialize_weights` of the encoder "
        "embeddings and the decoder after clearing the flags, and raises if a table is still zero. Tests: "
        "`tests/training/test_train_mae.py::test_vit_mae_starts_with_mae_initialisation` and "
        "`::test_vit_mae_beats_the_position_blind_plateau_on_a_fixed_batch` (both fail without the fix).",
        "",
        "### Short CRATE-MAE vs ViT-MAE runs at equal steps",
        "",
        "| model | steps | train images | train masked MSE (first → last log) | test masked MSE | linear probe "
        "| 20-NN | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in MAE_RUNS:
        run = mae[name]
        if run is None:
            lines.append(f"| {label} | missing: `runs/ssl_diagnosis/{name}` | | | | | | |")
            continue
        lines.append(
            f"| {label} | {run['steps']} | {run['num_train_images']:,} | {number(run['first'].get('train_loss'))} → "
            f"{number(run['last'].get('train_loss'))} | {number(run['reconstruction_loss'])} | "
            f"{percent(run['linear_probe_accuracy'])} | {percent(run['knn20_accuracy'])} | "
            f"{minutes(run['wall_seconds'])} |")
    lines.append(f"| raw pixels | | | | | {percent(pixels['linear_probe'])} | {percent(pixels['knn20'])} | |")
    vit = mae["mae-vit"]
    if vit is not None:
        lines += ["", mae_reading(vit, mae.get("mae-crate"), mae_init["mse_predict_image_mean"], pixels["linear_probe"])
                  + " Reconstructions (rows: original, masked input, reconstruction with the visible patches "
                  "pasted back):"]
    figures = output.parent
    for name, label in MAE_RUNS:
        source = runs / name / "reconstructions.png"
        if source.is_file():
            target = figures / f"ssl_diagnosis_reconstructions_{name.replace('-', '_')}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            lines += ["", f"![{label}]({target.name})"]

    lines += [
        "",
        "## Full-budget commands",
        "",
        "```bash",
        "bash training/run_ssl_comparison.sh   # SimDINO and DINO, CRATE and ViT, full 60k, EPOCHS (default 30)",
        "bash training/run_mae_comparison.sh   # CRATE-MAE vs ViT-MAE, full 60k, EPOCHS (default 30)",
        "```",
        "",
        "Estimated wall time per run on this machine, scaled from the short runs' measured seconds per step "
        "(contended: an upper bound) to 30 epochs of the 60,000 images at batch 128:",
        "",
        "| run | measured s/step (short run) | steps at 30 epochs | estimate |",
        "|---|---:|---:|---:|",
    ]
    full_steps = 30 * (60000 // 128)
    for name, run in [*ssl.items(), *mae.items()]:
        if run is not None and run.get("train_seconds_this_run"):
            per_step = run["train_seconds_this_run"] / run["steps"]
            lines.append(f"| {name} | {per_step:.2f} | {full_steps:,} | {per_step * full_steps / 3600:.1f} h |")
    lines += ["", f"(The report's own measurements took {minutes(measure_seconds)}; cached in "
                  "`runs/ssl_diagnosis/measured.json`, `--remeasure` redoes them.)", ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
