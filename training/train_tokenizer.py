#!/usr/bin/env python
"""Train a byte-level BPE tokenizer on the Python documentation sources, or rebuild GPT-2's, fully offline.

    python training/train_tokenizer.py --output_dir runs/tokenizer-python-docs-8k
    python training/train_tokenizer.py --output_dir runs/tokenizer-python-docs-16k --vocab_size 16384
    pip install --no-deps openai-whisper   # only for --gpt2: ships GPT-2's BPE ranks (no torch/numba pulled)
    python training/train_tokenizer.py --output_dir runs/tokenizer-gpt2 --gpt2

The tokenizer is written with `save_pretrained`, so `AutoTokenizer.from_pretrained(output_dir)` loads it. The
script also writes `tokenizer_stats.json` there: vocabulary size, training time and tokens per character on the
validation split (the ratio that turns a loss per token into a loss per character).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from whitebox_hf.data import DataUnavailableError, load_python_docs
from whitebox_hf.tokenization import gpt2_tokenizer_from_whisper_asset, tokens_per_character, train_bpe_tokenizer
from whitebox_hf.training.config import parse_config_args


DEFAULTS = {
    "output_dir": "",  # required: where save_pretrained writes the tokenizer
    "vocab_size": 8192,
    "min_frequency": 2,
    "model_max_length": 1024,
    "cache_dir": "",  # data cache ("" = $WHITEBOX_HF_CACHE or ~/.cache/whitebox_hf)
    "data_dir": "",  # a folder of *.rst.txt files instead of the cached docs
    "gpt2": False,  # save GPT-2's tokenizer (rebuilt from openai-whisper's gpt2.tiktoken) instead of training
    "tiktoken_path": "",  # with --gpt2: a gpt2.tiktoken file to use
}


def parse_args(argv=None) -> dict:
    """The settings (`whitebox_hf.training.config.parse_config_args`: defaults < ``--config`` YAML < flags).

    Raises:
        ValueError: no ``output_dir``, or a non-positive ``vocab_size`` / ``model_max_length``.
    """
    args = parse_config_args(DEFAULTS, argv, __doc__)
    if not args["output_dir"]:
        raise ValueError("`output_dir` is required (where the tokenizer is saved), got ''")
    for key in ("vocab_size", "model_max_length"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be positive, got {args[key]!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stats: dict = {}
    try:
        # GPT-2's tokenizer needs no data; the corpus is then only used, when present, for the statistics.
        dataset = load_python_docs(data_dir=args["data_dir"] or None, cache_dir=args["cache_dir"] or None,
                                   fetch=not args["gpt2"])
    except DataUnavailableError as error:
        if not args["gpt2"]:
            print(error, file=sys.stderr)
            return 1
        dataset = None
    start = time.perf_counter()
    try:
        if args["gpt2"]:
            tokenizer = gpt2_tokenizer_from_whisper_asset(args["tiktoken_path"] or None,
                                                          model_max_length=args["model_max_length"])
            stats["source"] = "gpt2 (rebuilt from openai-whisper's gpt2.tiktoken)"
        else:
            tokenizer = train_bpe_tokenizer(dataset["train"]["text"], vocab_size=args["vocab_size"],
                                            min_frequency=args["min_frequency"],
                                            model_max_length=args["model_max_length"], show_progress=True)
            stats.update(source="byte-level BPE trained on python-docs/train", min_frequency=args["min_frequency"])
    except DataUnavailableError as error:
        print(error, file=sys.stderr)
        return 1
    stats["build_seconds"] = round(time.perf_counter() - start, 2)
    stats["vocab_size"] = len(tokenizer)
    if dataset is not None:
        for split, part in dataset.items():
            stats[f"{split}_tokens_per_character"] = round(tokens_per_character(tokenizer, part["text"]), 4)

    output_dir = Path(args["output_dir"])
    tokenizer.save_pretrained(str(output_dir))
    (output_dir / "tokenizer_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
