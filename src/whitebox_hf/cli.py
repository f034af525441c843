"""The `whitebox-hf` command.

    whitebox-hf data fetch fashion-mnist [--cache-dir DIR]   fetch and prepare Fashion-MNIST offline
    whitebox-hf data fetch python-docs [--cache-dir DIR]     fetch and prepare the Python docs (reST) offline
    whitebox-hf presets                                       list the model presets and their sizes
    whitebox-hf train TASK [ARGS...]                          run a training script (training/*.py)
    whitebox-hf eval FOLDER [--dataset fashion-mnist]         test accuracy of a saved image classifier
    whitebox-hf card FOLDER [--metrics FILE]                  write FOLDER/README.md from the run's metrics
    whitebox-hf push FOLDER REPO_ID [--endpoint URL]          upload a folder to a Hub ($HF_ENDPOINT)
    whitebox-hf export --remote-code FOLDER OUT               a folder loadable with trust_remote_code=True
    whitebox-hf convert CHECKPOINT OUT                        the authors' CRATE / CRATE-α weights as a folder
    whitebox-hf demo NAME                                     launch the Gradio app spaces/NAME/app.py
    whitebox-hf shapes prepare MESH --out DIR                 your own mesh as a SITA-VAE item (points, occupancy)
    whitebox-hf shapes reconstruct DIR --model M --out F.glb  encode it with a SITA-VAE, write the decoded mesh

Run `whitebox-hf COMMAND --help` for the options and an example of each command.

Building the parser imports nothing heavy (no torch): each command handler imports what it needs, so a usage
error is reported at once. Every bad argument is one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]


DATASETS = ("fashion-mnist", "python-docs")

# The checkout this module runs from (src/whitebox_hf/cli.py -> repository root); absent files when installed.
REPO_ROOT = Path(__file__).resolve().parents[2]

# `whitebox-hf train TASK` -> training/<script>
TRAINING_SCRIPTS = {
    "image-classification": "train_image_classification.py",
    "causal-lm": "train_causal_lm.py",
    "ssl": "train_ssl.py",
    "mae": "train_mae.py",
    "clip": "train_clip.py",
    "autoencoder": "train_autoencoder.py",
    "latent-flow": "train_latent_flow.py",
    "ddpm": "train_ddpm_unet.py",
    "dreambooth-lora": "train_dreambooth_lora.py",
    "controlnet": "train_controlnet.py",
    "personalization": "train_personalization.py",
    "tokenizer": "train_tokenizer.py",
    "sita-vae": "train_sita_vae.py",
    "shape-diffusion": "train_shape_diffusion.py",
    "cupid-flow": "train_cupid_flow.py",
    "motion-prior": "train_motion_prior.py",
    "video-inflation": "train_video_inflation.py",
    "world-model": "train_world_model.py",
    "text-to-image": "train_text_to_image.py",
}


class CommandError(Exception):
    """A user error with a readable message (printed to stderr, exit status 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a one-line usage error (argparse prints the whole usage first); the sub-command
    parsers are of this class too (``add_subparsers`` uses the parent's class)."""

    def error(self, message: str):
        message = " ".join(str(message).split())  # a value holding a newline must not break the one line
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    """argparse type of a count (``--limit``, ``--batch-size``): checked while parsing, so that ``--limit -1`` is a
    usage error at once (before torch is imported), never an accuracy "on -1 images"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _checkout_dir(kind: str, environment_variable: str, explicit: str | None) -> Path:
    """training/ or spaces/: ``explicit``, else $ENV, else the checkout's folder, else ./kind."""
    for candidate in (explicit, os.environ.get(environment_variable)):
        if candidate:
            path = Path(candidate)
            if not path.is_dir():
                raise CommandError(f"{path} is not a folder")
            return path
    for path in (REPO_ROOT / kind, Path.cwd() / kind):
        if path.is_dir():
            return path
    raise CommandError(
        f"no {kind}/ folder found (looked in {REPO_ROOT} and {Path.cwd()}): the {kind} scripts ship with the source "
        f"checkout, not with the installed package. Clone the repository and run from it, or point "
        f"${environment_variable} (or --{kind}-dir) at its {kind}/ folder.")


def _fetch(args) -> int:
    from .data import DataUnavailableError, load_fashion_mnist, load_python_docs

    if args.dataset not in DATASETS:
        print(f"unknown data set {args.dataset!r}; available: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    try:
        if args.dataset == "fashion-mnist":
            dataset = load_fashion_mnist(data_dir=args.data_dir, cache_dir=args.cache_dir)
        else:
            dataset = load_python_docs(data_dir=args.data_dir, cache_dir=args.cache_dir)
    except DataUnavailableError as error:
        print(error, file=sys.stderr)
        return 1
    if args.dataset == "python-docs":
        # A text corpus is better described by its documents and characters than by its row count alone.
        for split, part in dataset.items():
            characters = sum(len(text) for text in part["text"])
            print(f"{split}: {len(part)} documents, {characters:,d} characters")
    else:
        print({split: len(part) for split, part in dataset.items()})
    return 0


def _presets(args) -> int:
    import torch

    from . import models
    from .models.language_modeling import nanogpt_parameter_count

    families = [
        (models.crate.CRATE_PRESETS, models.crate.CrateConfig, models.crate.CrateForImageClassification, "all"),
        (models.causal_crate.CAUSAL_CRATE_PRESETS, models.causal_crate.CausalCrateConfig,
         models.causal_crate.CausalCrateForCausalLM, "nanoGPT"),
        (models.aot.AOT_PRESETS, models.aot.AoTConfig, models.aot.AoTForCausalLM, "nanoGPT"),
    ]
    for names, config_class, model_class, convention in families:
        for name in names:
            # CRATE-MAE presets share CrateConfig but build the masked autoencoder.
            preset_class = models.crate.CrateForMaskedImageModeling if name.startswith("crate-mae-") else model_class
            with torch.device("meta"):
                model = preset_class(config_class.from_preset(name))
            count = nanogpt_parameter_count(model) if convention == "nanoGPT" else model.num_parameters()
            print(f"{name:24s} {count:>12,d} parameters ({convention})")
    for name in (*models.tost.TOST_PRESETS, *models.tost.TOST_VISION_PRESETS):
        vision = name in models.tost.TOST_VISION_PRESETS
        model_class = models.tost.ToSTForImageClassification if vision else models.tost.ToSTForCausalLM
        config_class = models.tost.ToSTVisionConfig if vision else models.tost.ToSTConfig
        with torch.device("meta"):
            model = model_class(config_class.from_preset(name))
        count = model.num_parameters() if vision else nanogpt_parameter_count(model)
        print(f"{name:24s} {count:>12,d} parameters ({'all' if vision else 'nanoGPT'})")
    for name in models.sita_vae.SITA_VAE_PRESETS:
        with torch.device("meta"):
            model = models.sita_vae.SitaVaeModel(models.sita_vae.SitaVaeConfig.from_preset(name))
        print(f"{name:24s} {model.num_parameters():>12,d} parameters (all)")
    return 0


def _config_files(script_args: list[str]) -> list[str]:
    """The values of every ``--config FILE`` / ``--config=FILE`` among the arguments passed to a training script."""
    files = []
    for index, argument in enumerate(script_args):
        if argument == "--config":
            if index + 1 == len(script_args):
                raise CommandError("argument --config: expected a YAML file after it")
            files.append(script_args[index + 1])
        elif argument.startswith("--config="):
            files.append(argument.removeprefix("--config="))
    return files


def _train(args) -> int:
    # Checked before the script starts: the scripts read --config after importing torch and their models.
    for config_file in _config_files(args.script_args):
        if not Path(config_file).is_file():
            raise CommandError(f"argument --config: {config_file!r} is not a file")
    folder = _checkout_dir("training", "WHITEBOX_HF_TRAINING_DIR", args.training_dir)
    script = folder / TRAINING_SCRIPTS[args.task]
    if not script.is_file():
        raise CommandError(f"{script} is missing from {folder}; available: "
                           f"{', '.join(t for t, f in TRAINING_SCRIPTS.items() if (folder / f).is_file())}")
    command = [sys.executable, str(script), *args.script_args]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.call(command)


def _demo(args) -> int:
    folder = _checkout_dir("spaces", "WHITEBOX_HF_SPACES_DIR", args.spaces_dir)
    app = folder / args.name / "app.py"
    if not app.is_file():
        available = sorted(p.parent.name for p in folder.glob("*/app.py"))
        raise CommandError(f"no demo {args.name!r}: {app} does not exist; available: "
                           f"{', '.join(available) or 'none'}")
    command = [sys.executable, str(app), *args.app_args]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.call(command, cwd=app.parent)


def _eval(args) -> int:
    import json

    from .evaluation.image_classifier import evaluate_saved_image_classifier

    if not Path(args.folder).is_dir():
        raise CommandError(f"{args.folder} is not a folder; pass a saved model folder (e.g. runs/<run>/model)")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        # Checked before the evaluation, which may take minutes, rather than when writing its result.
        raise CommandError(f"argument --json: the folder of {args.json!r} does not exist")
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if args.quiet:
        hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar: nothing but the result, or the error
    try:
        result = evaluate_saved_image_classifier(args.folder, args.dataset, split=args.split,
                                                 batch_size=args.batch_size, limit=args.limit,
                                                 data_dir=args.data_dir, progress=not args.quiet)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    print(f"{result['model_class']} from {args.folder}: {result['split']} accuracy {result['accuracy']:.4f} on "
          f"{result['num_examples']} {result['dataset']} images")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _card(args) -> int:
    from .hub.model_card import model_card_from_folder

    try:
        card = model_card_from_folder(args.folder, metrics_file=args.metrics, dataset_name=args.dataset,
                                      command=args.training_command, template_path=args.template,
                                      model_name=args.model_name, repo_path=args.repo_path)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    output = Path(args.output) if args.output else Path(args.folder) / "README.md"
    card.save(str(output))
    results = ", ".join(f"{r.metric_name} {r.metric_value:.4f}" for r in card.data.eval_results)
    print(f"wrote {output} ({results})")
    return 0


def _push(args) -> int:
    from .hub.push import HubOfflineError, push_folder

    try:
        url = push_folder(args.folder, args.repo_id, endpoint=args.endpoint, token=args.token, private=args.private,
                          commit_message=args.message)
    except (HubOfflineError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0


def _export(args) -> int:
    from .hub.export import RemoteCodeExportError, export_remote_code

    if not args.remote_code:
        raise CommandError("choose an export format: --remote-code (the only one so far)")
    try:
        auto_map = export_remote_code(args.folder, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, RemoteCodeExportError) as error:
        raise CommandError(str(error)) from None
    files = sorted(p.name for p in Path(args.out).glob("*.py"))
    print(f"wrote {args.out}: auto_map {auto_map}; code files {', '.join(files)}")
    return 0


def _convert(args) -> int:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise CommandError(f"the output folder {args.out!r} exists and is not empty (pass --overwrite)")
    from .models.crate.convert_crate_checkpoint import convert_crate_checkpoint

    model = convert_crate_checkpoint(
        args.checkpoint, out, layout=None if args.layout == "auto" else args.layout,
        num_attention_heads=args.num_heads, num_channels=args.num_channels, pooling=args.pooling,
    )
    config = model.config
    print(f"wrote {args.out}: CrateForImageClassification ({config.block_type}, width {config.hidden_size}, "
          f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, patch {config.patch_size}, "
          f"{config.image_size}px, {config.num_labels} labels, {model.num_parameters():,} parameters)")
    return 0


def _shapes_prepare(args) -> int:
    if not Path(args.mesh).is_file():
        raise CommandError(f"mesh file {args.mesh!r} does not exist")
    if args.out is None:
        raise CommandError("argument --out: the folder to write the prepared shape to is required")
    from .hub.shapes_cli import prepare_mesh

    summary = prepare_mesh(args.mesh, args.out, num_surface_points=args.num_surface_points,
                           num_volume_queries=args.num_volume_queries, num_near_queries=args.num_near_queries,
                           seed=args.seed)
    print(f"wrote {args.out}: {summary['num_surface_points']} surface points, {summary['num_volume_queries']} volume "
          f"queries ({summary['volume_inside_fraction']:.1%} inside), {summary['num_near_queries']} near queries; "
          f"mesh {summary['num_faces']} faces{', holes filled' if summary['holes_filled'] else ''}")
    return 0


def _shapes_reconstruct(args) -> int:
    if not Path(args.prepared).is_dir():
        raise CommandError(f"{args.prepared!r} is not a folder; pass the --out folder of `whitebox-hf shapes prepare`")
    for option, value in (("--model", args.model), ("--out", args.out)):
        if value is None:
            raise CommandError(f"argument {option}: required")
    from .hub.shapes_cli import reconstruct

    result = reconstruct(args.prepared, args.model, args.out, octree_depth=args.octree_depth, bound=args.bound,
                         level=args.level)
    iou = "undefined (no inside point)" if result["iou"] != result["iou"] else f"{result['iou']:.4f}"
    print(f"volume IoU {iou} on {result['num_volume_queries']} prepared queries")
    if result["mesh_path"] is None:
        print(f"whitebox-hf shapes: error: the decoded occupancy never crosses level {args.level} inside "
              f"[-{args.bound}, {args.bound}]^3: the field has no surface (an untrained model?), no mesh written",
              file=sys.stderr)
        return 1
    print(f"wrote {result['mesh_path']}: {result['num_vertices']} vertices, {result['num_faces']} faces")
    return 0


def _float(text: str) -> float:
    """argparse type of a finite number (``--bound``, ``--level``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _missing(parser: argparse.ArgumentParser, metavar: str):
    """The handler of a parser whose sub-command is missing: argparse's usage error naming it."""
    def handler(args):
        parser.error(f"the following arguments are required: {metavar}")
    return handler


def _add(commands, name: str, help_text: str, example: str, description: str | None = None):
    return commands.add_parser(name, help=help_text, description=description or help_text,
                               epilog="example:\n  " + example.strip().replace("\n", "\n  "),
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="whitebox-hf", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="example:\n  whitebox-hf train image-classification --config "
                                   "training/configs/fashion_mnist_crate.yaml")
    # Not required=True: argparse would then report a missing COMMAND before an unknown option, so
    # `whitebox-hf --no-such-flag` would not name the flag; a missing COMMAND / ACTION is reported by `_missing`.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(handler=_missing(parser, "COMMAND"))
    data_parser = _add(commands, "data", "data sets", "whitebox-hf data fetch fashion-mnist")
    data = data_parser.add_subparsers(dest="action", metavar="ACTION")
    data_parser.set_defaults(handler=_missing(data_parser, "ACTION"))
    fetch = data.add_parser("fetch", help="fetch and prepare a data set",
                            description="fetch and prepare a data set (offline afterwards)",
                            epilog="example:\n  whitebox-hf data fetch fashion-mnist\n"
                                   "  whitebox-hf data fetch python-docs --cache-dir ~/data-cache",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("dataset", choices=list(DATASETS))
    fetch.add_argument("--cache-dir", default=None, help="default: $WHITEBOX_HF_CACHE or ~/.cache/whitebox_hf")
    fetch.add_argument("--data-dir", default=None,
                       help="a folder holding the original files (fashion-mnist: *-ubyte.gz; python-docs: *.rst.txt)")
    fetch.set_defaults(handler=_fetch)
    presets = _add(commands, "presets", "list model presets and their parameter counts", "whitebox-hf presets")
    presets.set_defaults(handler=_presets)

    train = _add(commands, "train", "run a training script of training/ (arguments are passed through)",
                 "whitebox-hf train image-classification --config training/configs/fashion_mnist_crate.yaml\n"
                 "whitebox-hf train causal-lm --help     # the script's own options",
                 description="Run training/<script>.py with the current Python; every argument after TASK goes "
                             "to the script. Tasks: " + ", ".join(f"{t} ({f})" for t, f in TRAINING_SCRIPTS.items())
                             + ". For several processes call `accelerate launch` / `torchrun` on the script.")
    train.add_argument("--training-dir", default=None,
                       help="the training/ folder (default: the checkout's, or $WHITEBOX_HF_TRAINING_DIR)")
    train.add_argument("task", choices=list(TRAINING_SCRIPTS), metavar="TASK", help=", ".join(TRAINING_SCRIPTS))
    train.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="passed to the script")
    train.set_defaults(handler=_train)

    evaluate = _add(commands, "eval", "accuracy of a saved image classifier on a held-out split",
                    "whitebox-hf eval runs/fashion_mnist_crate/model --dataset fashion-mnist",
                    description="Load FOLDER with AutoModelForImageClassification + its saved image processor and "
                                "measure top-1 accuracy on the test split (Fashion-MNIST by default).")
    evaluate.add_argument("folder", help="a folder written by save_pretrained, with preprocessor_config.json")
    evaluate.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "digits"])
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=_positive_int, default=500)
    evaluate.add_argument("--limit", type=_positive_int, default=None, help="only the first N images")
    evaluate.add_argument("--data-dir", default=None, help="a folder with the original Fashion-MNIST *-ubyte.gz files")
    evaluate.add_argument("--json", default=None, help="also write the result to this JSON file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=_eval)

    card = _add(commands, "card", "write a model card (README.md) from a run's metrics",
                "whitebox-hf card runs/fashion_mnist_crate/model\n"
                "whitebox-hf card runs/lm-tost/model --metrics runs/lm-tost/evaluation.json --dataset python-docs",
                description="Build FOLDER/README.md with huggingface_hub.ModelCard: model-index results read from "
                            "the run's metrics file (metrics.json / evaluation.json in FOLDER or its parent), the "
                            "task's template from whitebox_hf/templates/, the book section and the citation.")
    card.add_argument("folder", help="a folder written by save_pretrained")
    card.add_argument("--metrics", default=None, help="the metrics JSON (default: found next to FOLDER)")
    card.add_argument("--dataset", default=None, help="data set name (default: the metrics' `dataset`)")
    card.add_argument("--training-command", default=None, help="the exact training command (default: the metrics')")
    card.add_argument("--template", default=None, help="a Jinja template (default: whitebox_hf/templates/<task>.md)")
    card.add_argument("--model-name", default=None)
    card.add_argument("--repo-path", default=None, help="repo id or path shown in the usage snippet")
    card.add_argument("--output", default=None, help="default FOLDER/README.md")
    card.set_defaults(handler=_card)

    push = _add(commands, "push", "upload a folder to a Hugging Face Hub repository",
                "whitebox-hf push runs/fashion_mnist_crate/model me/crate-fashion-mnist\n"
                "whitebox-hf push exported/crate me/crate --endpoint http://127.0.0.1:8080 --private",
                description="Create REPO_ID (if needed) and upload every file of FOLDER in one commit, to "
                            "--endpoint, else $HF_ENDPOINT, else huggingface.co. With HF_HUB_OFFLINE=1 and no "
                            "--endpoint it fails at once.")
    push.add_argument("folder")
    push.add_argument("repo_id", help="namespace/name")
    push.add_argument("--endpoint", default=None, help="Hub URL (default $HF_ENDPOINT)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--token", default=None, help="write token (default: stored login / $HF_TOKEN)")
    push.add_argument("--message", default="Upload with whitebox-hf", help="commit message")
    push.set_defaults(handler=_push)

    export = _add(commands, "export", "export a saved model for transformers without whitebox_hf",
                  "whitebox-hf export --remote-code runs/fashion_mnist_crate/model exported/crate\n"
                  "python -c \"from transformers import AutoModel; "
                  "AutoModel.from_pretrained('exported/crate', trust_remote_code=True)\"",
                  description="--remote-code: copy config (with auto_map), weights, processor/tokenizer files "
                              "and the card, and vendor the modeling code so that "
                              "AutoModel.from_pretrained(OUT, trust_remote_code=True) works where whitebox_hf is "
                              "not installed.")
    export.add_argument("--remote-code", action="store_true", help="write auto_map + self-contained modeling files")
    export.add_argument("folder", help="a folder written by save_pretrained")
    export.add_argument("out", help="the folder to write (must be empty unless --overwrite)")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(handler=_export)

    convert = _add(commands, "convert", "convert the authors' CRATE / CRATE-α weights to a from_pretrained folder",
                   "whitebox-hf convert CRATE_base.pth converted/crate-base\n"
                   "whitebox-hf convert crate_alpha_B16.pth converted/crate-alpha-b16 --layout crate-alpha",
                   description="Read CHECKPOINT (.pth / .pt / .bin with torch.load(weights_only=True), or "
                               ".safetensors): a Ma-Lab-Berkeley/CRATE model/crate.py state dict (bare or as "
                               "main.py saves it) or a UCSC-VLAA/CRATE-alpha torch_inference state dict; check every "
                               "key and shape, and write OUT with save_pretrained and an image processor, for "
                               "AutoModelForImageClassification.from_pretrained(OUT).")
    convert.add_argument("checkpoint", help="the authors' checkpoint file")
    convert.add_argument("out", help="the folder to write (must be empty unless --overwrite)")
    convert.add_argument("--layout", default="auto", choices=["auto", "crate", "crate-alpha"],
                         help="the source layout (default: from the keys)")
    convert.add_argument("--num-heads", type=_positive_int, default=None,
                         help="attention heads (default: the authors' variant of that width)")
    convert.add_argument("--num-channels", type=_positive_int, default=3, help="CRATE only: image channels")
    convert.add_argument("--pooling", default="cls", choices=["cls", "mean"],
                         help="CRATE only: the `pool` the model was trained with (authors' default cls)")
    convert.add_argument("--overwrite", action="store_true")
    convert.set_defaults(handler=_convert)

    demo = _add(commands, "demo", "launch a Gradio demo of spaces/ (Hub Space layout)",
                "whitebox-hf demo crate-image-classification",
                description="Run spaces/NAME/app.py with the current Python (from the source checkout); "
                            "arguments after NAME go to the app.")
    demo.add_argument("--spaces-dir", default=None,
                      help="the spaces/ folder (default: the checkout's, or $WHITEBOX_HF_SPACES_DIR)")
    demo.add_argument("name")
    demo.add_argument("app_args", nargs=argparse.REMAINDER, metavar="ARGS", help="passed to the app")
    demo.set_defaults(handler=_demo)

    shapes_parser = _add(commands, "shapes", "your own 3D mesh in and out of a SITA-VAE",
                         "whitebox-hf shapes prepare bunny.obj --out prepared/bunny\n"
                         "whitebox-hf shapes reconstruct prepared/bunny --model runs/sita_vae/model --out bunny.glb")
    shapes = shapes_parser.add_subparsers(dest="action", metavar="ACTION")
    shapes_parser.set_defaults(handler=_missing(shapes_parser, "ACTION"))
    # --out / --model are checked by the handlers, not with required=True: argparse would report a missing option
    # before an unknown one, which would then go unnamed.
    prepare = _add(shapes, "prepare", "normalise a mesh and sample points and occupancy from it",
                   "whitebox-hf shapes prepare bunny.obj --out prepared/bunny",
                   description="Read MESH (OBJ, PLY, GLB, OFF, STL), fill its holes if needed (it must be watertight), "
                               "centre and scale it into [-0.9, 0.9]^3, sample surface points with normals and "
                               "uniform / near-surface queries labelled by the winding number, and write "
                               "DIR/shape.safetensors and DIR/summary.json.")
    prepare.add_argument("mesh", metavar="MESH", help="a mesh file")
    prepare.add_argument("--out", default=None, metavar="DIR", help="the folder to write (required)")
    prepare.add_argument("--num-surface-points", type=_positive_int, default=4096)
    prepare.add_argument("--num-volume-queries", type=_positive_int, default=1024)
    prepare.add_argument("--num-near-queries", type=_positive_int, default=1024)
    prepare.add_argument("--seed", type=_non_negative_int, default=0)
    prepare.set_defaults(handler=_shapes_prepare)
    rebuild = _add(shapes, "reconstruct", "encode a prepared shape with a SITA-VAE and write the decoded mesh",
                   "whitebox-hf shapes reconstruct prepared/bunny --model runs/sita_vae/model --out bunny.glb",
                   description="Load --model with AutoModel (a saved SitaVaeModel), encode DIR's surface points, "
                               "print the IoU of the decoded occupancy on DIR's volume queries and write the "
                               "marching-cubes mesh of the decoded field to --out (format from the suffix: .glb, "
                               ".obj, .ply, .off, .stl).")
    rebuild.add_argument("prepared", metavar="DIR", help="a folder written by `whitebox-hf shapes prepare`")
    rebuild.add_argument("--model", default=None, metavar="FOLDER", help="a saved SitaVaeModel (required)")
    rebuild.add_argument("--out", default=None, metavar="MESH", help="the mesh file to write (required)")
    rebuild.add_argument("--octree-depth", type=_positive_int, default=7,
                         help="the grid has 2^depth + 1 points a side (default 7, as Michelangelo)")
    rebuild.add_argument("--bound", type=_float, default=1.25, help="the grid spans [-bound, bound]^3")
    rebuild.add_argument("--level", type=_float, default=0.0, help="the occupancy logit of the surface")
    rebuild.set_defaults(handler=_shapes_reconstruct)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (CommandError, OSError, ValueError, TypeError) as error:
        # OSError / ValueError / TypeError: the library's bad-input errors (a missing or damaged file, a value out
        # of range, a wrong type), which name the argument or the file; one line like argparse's own errors rather
        # than a traceback.
        message = " ".join(str(error).split())
        print(f"whitebox-hf {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
