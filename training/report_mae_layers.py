#!/usr/bin/env python
"""Write docs/results/mae_layers.md (+ mae_layers.json): how well each encoder layer of the MAE models of
``ssl_full.md`` probes, against raw pixels (issue 18 item 2: find out why ViT-MAE's feature stays below pixels).

    # the runs (the same commands as ssl_full.md's 12-epoch rows; one thread each, side by side):
    python training/train_mae.py --config training/configs/mae_fashion_mnist.yaml --model vit \\
        --train_subset 0 --eval_train_subset 0 --test_subset 0 --epochs 12 --warmup_steps 936 \\
        --checkpoint_every 468 --output_dir runs/mae-vit-12ep     # and --model crate --output_dir runs/mae-crate-12ep
    python training/report_ssl_full.py      # first: this page reads the raw-pixel row and the wall times there
    python training/report_mae_layers.py

``ssl_full.md`` scores one feature per model: the mean of the patch tokens of the *final* encoder output (after
the encoder's last LayerNorm), nothing masked. MAE's encoder is trained only to feed a decoder that paints pixels,
and He et al. (2022, §4) note that its last layers are specialised to reconstruction when the decoder is shallow
(ours has 2 layers), which costs linear separability. This report reads every layer instead, with the same
protocol as ``ssl_full.md`` (20-NN with T = 0.07 on all 60,000 training images, logistic-regression probe fitted on
all 60,000, both scored on the 10,000 test images):

* ``embedding``: the patch embedding plus positions, before any layer (a learned linear map of the pixels);
* ``layer k``: the mean of the patch tokens after encoder layer k (no final norm);
* ``final (LayerNorm)``: the ``ssl_full.md`` feature, recomputed here (it must equal the run's own score);
* ``layers 1-L concatenated``: the per-layer means side by side, as DINO's linear evaluation concatenates the
  last four blocks' tokens for ViT-S (Caron et al., 2021, appendix); the encoders here have four layers.

Every number is computed by this script from the saved models; the raw-pixel row and the training times are
``ssl_full.json``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedImageModeling, ViTMAEForPreTraining

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import dataset_to_tensors, load_image_dataset, normalise_images
from whitebox_hf.evaluation import knn_accuracy, linear_probe_accuracy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))  # train_mae's unmasked stage features
import train_mae  # noqa: E402

RUNS = [("mae-crate-12ep", "CRATE-MAE"), ("mae-vit-12ep", "ViT-MAE (transformers)")]  # (run folder, label)
FINAL, CONCATENATED = train_mae.FINAL_FEATURE, "layers concatenated"


def load_mae_model(folder: Path | str) -> torch.nn.Module:
    """A saved CRATE-MAE (`AutoModelForMaskedImageModeling`) or ViT-MAE (`ViTMAEForPreTraining`) folder, in eval
    mode. ViT-MAE has no masked-image-modeling Auto mapping in transformers, so its model type picks the class."""
    config = json.loads((Path(folder) / "config.json").read_text())
    model_class = ViTMAEForPreTraining if config.get("model_type") == "vit_mae" else AutoModelForMaskedImageModeling
    return model_class.from_pretrained(folder).eval()


@torch.no_grad()
def layer_features(model: torch.nn.Module, pixel_values: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """``{feature name: (n, d) tensor}``: train_mae's stage features (the mean of the patch tokens of the embedding,
    of every encoder layer, of the final LayerNorm'd output: the feature the training script probes) and the layer
    means concatenated."""
    features = train_mae.layer_features(model, pixel_values, batch_size)
    layers = [name for name in features if name.startswith("layer ")]
    features[CONCATENATED] = torch.cat([features[name] for name in layers], dim=1)
    return features


def score_features(train: dict, train_labels, test: dict, test_labels) -> list[dict]:
    """One row per feature: 20-NN (T = 0.07) and linear probe accuracy, width, and the seconds the scoring took."""
    rows = []
    for name in train:
        start = time.time()
        rows.append({"feature": name, "dim": int(train[name].shape[1]),
                     "knn20_accuracy": knn_accuracy(train[name], train_labels, test[name], test_labels, k=20,
                                                    temperature=0.07),
                     "linear_probe_accuracy": linear_probe_accuracy(train[name], train_labels, test[name], test_labels),
                     "seconds": time.time() - start})
    return rows


def percent(value) -> str:
    return f"{100 * value:.2f} %"


def best(rows: list[dict], key: str) -> dict:
    return max(rows, key=lambda row: row[key])


def findings(results: dict, pixels: dict) -> list[str]:
    """Sentences read from the rows: the best layer of each model, and where each model's features stand
    against the pixels (the issue's target is the linear probe above the pixels')."""
    lines = []
    for name, label in RUNS:
        result = results.get(name)
        if result is None:
            continue
        rows = result["rows"]
        final = next(row for row in rows if row["feature"] == FINAL)
        top = best([row for row in rows if row["feature"] != CONCATENATED], "linear_probe_accuracy")
        concatenated = next(row for row in rows if row["feature"] == CONCATENATED)
        above = [row["feature"] for row in rows if row["linear_probe_accuracy"] > pixels["linear_probe_accuracy"]]
        lines.append(
            f"- {label}: the best single feature for the probe is `{top['feature']}` "
            f"({percent(top['linear_probe_accuracy'])}, against {percent(final['linear_probe_accuracy'])} for the "
            f"final output); the layers concatenated give {percent(concatenated['linear_probe_accuracy'])}. "
            + (f"Above the pixels' probe ({percent(pixels['linear_probe_accuracy'])}): "
               + ", ".join(f"`{feature}`" for feature in above) + "." if above else
               f"No feature is above the pixels' probe ({percent(pixels['linear_probe_accuracy'])})."))
    return lines


def render(results: dict, pixels: dict) -> str:
    lines = [
        "# MAE encoders layer by layer, against raw pixels (Fashion-MNIST)",
        "",
        "Written by `python training/report_mae_layers.py` from the saved models of the runs named below (commands in "
        "the script's docstring). Do not edit by hand.",
        "",
        "- **Data:** real data, Fashion-MNIST: the models were trained on all 60,000 training images (no labels); "
        "features of the 60,000 (memory and probe fit) and of the 10,000 test images (scores).",
        "- **Protocol:** as `ssl_full.md`: 20-NN (T = 0.07), logistic-regression probe (standardised features, "
        "L-BFGS, 200 iterations). Each feature is the mean of the patch tokens (nothing masked) of the named "
        "encoder stage; `final (LayerNorm)` is the feature `ssl_full.md` scores; `layers concatenated` puts the "
        "layer means side by side (DINO's linear evaluation concatenates the last four blocks).",
        "- **Models:** the 12-epoch runs of `ssl_full.md` (width 96, 4 encoder + 2 decoder layers, patch 4, 75 % "
        "masking, 5,616 steps × 128).",
        f"- **Raw pixels** (normalised, {pixels['feature_dim']}-d, from `ssl_full.json`): 20-NN "
        f"{percent(pixels['knn20_accuracy'])}, linear probe {percent(pixels['linear_probe_accuracy'])}.",
        "",
    ]
    for name, label in RUNS:
        result = results.get(name)
        if result is None:
            lines += [f"## {label}", "", f"`runs/{name}/model` is not there: not measured.", ""]
            continue
        lines += [f"## {label} (`runs/{name}`, {result['steps']:,} steps, trained {result['train_minutes']:.1f} min)",
                  "", "| feature | width | 20-NN | linear probe | probe − pixels' probe |", "|---|---:|---:|---:|---:|"]
        for row in result["rows"]:
            gap = 100 * (row["linear_probe_accuracy"] - pixels["linear_probe_accuracy"])
            lines.append(f"| {row['feature']} | {row['dim']} | {percent(row['knn20_accuracy'])} | "
                         f"{percent(row['linear_probe_accuracy'])} | {gap:+.2f} pt |")
        if result.get("run_linear_probe_accuracy") is not None:  # the same feature, scored by the training run
            lines += ["", f"The run's own `evaluation.json` scored the final feature's probe at "
                      f"{percent(result['run_linear_probe_accuracy'])}."]
        lines.append("")
    lines += ["## Findings", ""] + findings(results, pixels) + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "mae_layers.md"))
    args = parser.parse_args(argv)
    output = Path(args.output)
    store = output.with_suffix(".json")
    committed = json.loads(store.read_text())["runs"] if store.is_file() else {}
    ssl_full = json.loads((ROOT / "docs" / "results" / "ssl_full.json").read_text())
    pixels = ssl_full["pixels"]
    torch.set_num_threads(1)
    dataset, info = load_image_dataset("fashion-mnist")
    images = {}
    for split in ("train", "test"):
        pixel_tensor, labels = dataset_to_tensors(dataset[split])
        images[split] = (normalise_images(pixel_tensor, info["image_mean"], info["image_std"]), labels)
    results = {}
    for name, _ in RUNS:
        folder = Path(args.runs) / name
        if not (folder / "model" / "config.json").is_file():
            if name in committed:
                results[name] = committed[name]
            continue
        model = load_mae_model(folder / "model")
        train = layer_features(model, images["train"][0])
        test = layer_features(model, images["test"][0])
        evaluation = json.loads((folder / "evaluation.json").read_text())
        results[name] = {"rows": score_features(train, images["train"][1], test, images["test"][1]),
                         # summed over the run's launches (a resumed run's evaluation.json has its last only)
                         "steps": evaluation["steps"], "train_minutes": ssl_full["runs"][name]["wall_seconds"] / 60,
                         "run_linear_probe_accuracy": evaluation["linear_probe_accuracy"]}
    store.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    output.write_text(render(results, pixels))
    print(f"wrote {output} and {store}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
