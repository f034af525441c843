"""The `whitebox-hf` command.

    whitebox-hf data fetch fashion-mnist [--cache-dir DIR]   fetch and prepare Fashion-MNIST offline
    whitebox-hf data fetch python-docs [--cache-dir DIR]     fetch and prepare the Python docs (reST) offline
    whitebox-hf presets                                       list the model presets and their sizes
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


DATASETS = ("fashion-mnist", "python-docs")


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
    for name, preset in models.tost.TOST_PRESETS.items():
        vision = "image_size" in preset
        model_class = models.tost.ToSTForImageClassification if vision else models.tost.ToSTForCausalLM
        with torch.device("meta"):
            model = model_class(models.tost.ToSTConfig.from_preset(name))
        count = model.num_parameters() if vision else nanogpt_parameter_count(model)
        print(f"{name:24s} {count:>12,d} parameters ({'all' if vision else 'nanoGPT'})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="whitebox-hf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    fetch = data.add_parser("fetch", help="fetch and prepare a data set")
    fetch.add_argument("dataset", choices=list(DATASETS))
    fetch.add_argument("--cache-dir", default=None, help="default: $WHITEBOX_HF_CACHE or ~/.cache/whitebox_hf")
    fetch.add_argument("--data-dir", default=None,
                       help="a folder holding the original files (fashion-mnist: *-ubyte.gz; python-docs: *.rst.txt)")
    fetch.set_defaults(handler=_fetch)
    presets = commands.add_parser("presets", help="list model presets")
    presets.set_defaults(handler=_presets)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
