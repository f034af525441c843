"""The `whitebox-hf` command.

    whitebox-hf data fetch fashion-mnist [--cache-dir DIR]   fetch and prepare Fashion-MNIST offline
    whitebox-hf presets                                       list the model presets and their sizes
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _fetch(args) -> int:
    from .data import DataUnavailableError, load_fashion_mnist

    if args.dataset != "fashion-mnist":
        print(f"unknown data set {args.dataset!r}; available: fashion-mnist", file=sys.stderr)
        return 2
    try:
        dataset = load_fashion_mnist(data_dir=args.data_dir, cache_dir=args.cache_dir)
    except DataUnavailableError as error:
        print(error, file=sys.stderr)
        return 1
    print({split: len(part) for split, part in dataset.items()})
    return 0


def _presets(args) -> int:
    import torch

    from .models.crate import CRATE_PRESETS, CrateConfig, CrateForImageClassification

    for name in CRATE_PRESETS:
        with torch.device("meta"):
            count = CrateForImageClassification(CrateConfig.from_preset(name)).num_parameters()
        print(f"{name:20s} {count:>12,d} parameters")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="whitebox-hf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    fetch = data.add_parser("fetch", help="fetch and prepare a data set")
    fetch.add_argument("dataset", choices=["fashion-mnist"])
    fetch.add_argument("--cache-dir", default=None, help="default: $WHITEBOX_HF_CACHE or ~/.cache/whitebox_hf")
    fetch.add_argument("--data-dir", default=None, help="a folder holding the original *-ubyte.gz files")
    fetch.set_defaults(handler=_fetch)
    presets = commands.add_parser("presets", help="list model presets")
    presets.set_defaults(handler=_presets)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
