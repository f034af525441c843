"""Byte-level BPE tokenizers for the language models, built offline.

Two ways to get one, both returning a `transformers.PreTrainedTokenizerFast` that `save_pretrained` writes and
`AutoTokenizer.from_pretrained` reads back without the network:

* `train_bpe_tokenizer` trains a GPT-2-style byte-level BPE on any iterable of strings (e.g. the Python
  documentation sources of `whitebox_hf.data.load_python_docs`);
* `gpt2_tokenizer_from_whisper_asset` rebuilds GPT-2's own tokenizer (50 257 tokens) from the ``gpt2.tiktoken``
  rank file that the ``openai-whisper`` source distribution ships, for users who want GPT-2's vocabulary but
  cannot reach the Hugging Face Hub. Get the file with ``pip install --no-deps openai-whisper``: ``--no-deps``
  matters, since the package otherwise pulls torch, numba and triton, none of which is needed here.
"""

from __future__ import annotations

import base64
import importlib.util
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .data.fashion_mnist import DataUnavailableError

__all__ = [
    "ENDOFTEXT_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "bytes_to_unicode",
    "gpt2_tokenizer_from_whisper_asset",
    "read_tiktoken_ranks",
    "recover_bpe_merges",
    "tokens_per_character",
    "train_bpe_tokenizer",
    "whisper_gpt2_asset_path",
]

ENDOFTEXT_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
# Trained tokenizers put these first, so their ids (0 and 1) do not depend on the vocabulary size.
SPECIAL_TOKENS = (ENDOFTEXT_TOKEN, PAD_TOKEN)
NUM_BYTES = 256

WHISPER_INSTALL_HINT = (
    "GPT-2's BPE ranks come from the openai-whisper source distribution. Install it WITHOUT its dependencies\n"
    "(they include torch, numba and triton, none of which is needed here):\n"
    "  pip install --no-deps openai-whisper\n"
    "or pass the path of a gpt2.tiktoken file as tiktoken_path=... (or --tiktoken_path)."
)


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _byte_level_pipeline(tokenizer) -> None:
    """GPT-2's pre-tokenization, decoding and post-processing, with no prefix space: ``"x"`` and ``" x"``
    stay different strings, so decoding gives back exactly what was encoded."""
    from tokenizers import decoders, pre_tokenizers, processors

    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets=False: offsets then cover the leading space a token carries, as in GPT-2.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)


def _wrap(tokenizer, model_max_length: int, pad_token: str | None):
    from transformers import PreTrainedTokenizerFast

    kwargs = dict(
        tokenizer_object=tokenizer,
        bos_token=ENDOFTEXT_TOKEN,
        eos_token=ENDOFTEXT_TOKEN,
        unk_token=ENDOFTEXT_TOKEN,
        model_max_length=model_max_length,
        # Byte-level tokens already carry their spaces; the "clean-up" would turn "a ." into "a." and break
        # decode(encode(x)) == x.
        clean_up_tokenization_spaces=False,
    )
    if pad_token is not None:
        kwargs["pad_token"] = pad_token
    return PreTrainedTokenizerFast(**kwargs)


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8192,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    show_progress: bool = False,
):
    """Train a byte-level BPE tokenizer (GPT-2 style) on ``texts``.

    The vocabulary holds ``<|endoftext|>`` (id 0) and ``<|pad|>`` (id 1), all 256 bytes — so every string can
    be encoded, with no unknown token — and the learned merges. ``<|endoftext|>`` serves as bos, eos and unk
    token, ``<|pad|>`` as pad token.

    Args:
        texts: an iterable of strings (a list, a generator, a `datasets` column), read once.
        vocab_size: the final vocabulary size, at least 256 + 2 (bytes and special tokens). Training stops
            earlier if the corpus has no more pairs seen ``min_frequency`` times.
        min_frequency: a pair must occur this often to be merged.
        model_max_length: the context length recorded in the tokenizer (``tokenizer.model_max_length``).
        show_progress: show the `tokenizers` progress bar.

    Returns:
        A `transformers.PreTrainedTokenizerFast`.

    Raises:
        TypeError: ``texts`` is a single string, or holds something else than strings; a size is not an int.
        ValueError: ``texts`` is empty, or ``vocab_size`` / ``min_frequency`` / ``model_max_length`` is too small.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    if isinstance(texts, (str, bytes)):
        # Iterating a string would train on single characters; almost certainly a caller's mistake.
        raise TypeError("texts must be an iterable of strings, not a single string; wrap it in a list")
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be an iterable of strings, got {type(texts).__name__}")
    _check_positive_int("vocab_size", vocab_size, minimum=NUM_BYTES + len(SPECIAL_TOKENS))
    _check_positive_int("min_frequency", min_frequency, minimum=1)
    _check_positive_int("model_max_length", model_max_length, minimum=1)

    seen = 0

    def checked() -> Iterator[str]:
        # `tokenizers` reports a wrong type with an opaque Rust error; name the argument instead.
        nonlocal seen
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}")
            seen += 1
            yield text

    tokenizer = Tokenizer(models.BPE())
    _byte_level_pipeline(tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes, even those absent from the corpus: no input can then fall outside the vocabulary.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(checked(), trainer=trainer)
    if seen == 0:
        raise ValueError("texts is empty: there is nothing to train the tokenizer on")
    return _wrap(tokenizer, model_max_length, pad_token=PAD_TOKEN)


def tokens_per_character(tokenizer, texts: Iterable[str]) -> float:
    """Tokens produced per character of ``texts`` (no special tokens): lower means a tighter compression, and
    an LM's loss per token divided by this ratio gives its loss per character, comparable across tokenizers."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be an iterable of strings, not a single string; wrap it in a list")
    tokens = characters = 0
    batch: list[str] = []

    def count(batch: list[str]) -> int:
        # verbose=False: documents longer than model_max_length are expected here, not a mistake to warn about.
        encoded = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
        return sum(len(ids) for ids in encoded)

    for text in texts:
        batch.append(text)
        characters += len(text)
        if len(batch) == 64:
            tokens += count(batch)
            batch = []
    if batch:
        tokens += count(batch)
    if characters == 0:
        raise ValueError("texts holds no characters")
    return tokens / characters


# --------------------------------------------------------------------------------------------------------------
# GPT-2's tokenizer, rebuilt from tiktoken ranks
# --------------------------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters.

    Byte-level BPE vocabularies are stored as strings; bytes that are printable Latin-1 characters map to
    themselves, the rest (control characters, space, ...) to unused code points from 256 on, in byte order.
    So the space byte becomes ``"Ġ"`` and newline ``"Ċ"``, as in GPT-2's ``vocab.json``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    offset = 0
    for byte in range(NUM_BYTES):
        if byte not in mapping:
            mapping[byte] = chr(NUM_BYTES + offset)
            offset += 1
    return mapping


def read_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken rank file (one ``<base64 token> <rank>`` pair per line) into ``{token bytes: rank}``.

    Raises:
        ValueError: a malformed line, or ranks that are not exactly ``0 .. n-1``.
    """
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as error:
                raise ValueError(f"{path}:{number} is not a '<base64 token> <rank>' line: {line[:80]!r}") from error
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: ranks are not the distinct integers 0..{len(ranks) - 1}")
    return ranks


def recover_bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge list, in rank order, that a rank table implies.

    A tiktoken table only lists tokens. The pair that created the token of rank ``r`` is found by running BPE
    on the token's own bytes with the tokens of rank ``< r`` only: it stops exactly one merge short, at the
    two parts the final merge joins.

    Raises:
        ValueError: a single byte is missing, or some token cannot be reached by merging lower-rank tokens.
    """
    missing = [byte for byte in range(NUM_BYTES) if bytes([byte]) not in ranks]
    if missing:
        raise ValueError(f"the rank table lacks {len(missing)} single-byte tokens (e.g. byte {missing[0]})")
    merges: list[tuple[bytes, bytes]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [bytes([byte]) for byte in token]
        while len(parts) > 2:
            # The adjacent pair whose concatenation has the lowest rank below `rank` merges first.
            best_rank, best_index = rank, -1
            for index in range(len(parts) - 1):
                pair_rank = ranks.get(parts[index] + parts[index + 1])
                if pair_rank is not None and pair_rank < best_rank:
                    best_rank, best_index = pair_rank, index
            if best_index < 0:
                break
            parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} (rank {rank}) cannot be built by merging lower-rank tokens")
        merges.append((parts[0], parts[1]))
    return merges


def whisper_gpt2_asset_path() -> Path:
    """The ``gpt2.tiktoken`` file of an installed ``openai-whisper``, found without importing ``whisper``
    (its ``__init__`` imports torch and numba).

    Raises:
        DataUnavailableError: ``openai-whisper`` is not installed, or its install lacks the file.
    """
    spec = importlib.util.find_spec("whisper")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DataUnavailableError("openai-whisper is not installed.\n" + WHISPER_INSTALL_HINT)
    path = Path(locations[0]) / "assets" / "gpt2.tiktoken"
    if not path.is_file():
        # Another package named `whisper` (e.g. Graphite's) can shadow openai-whisper.
        raise DataUnavailableError(f"{path} does not exist: the installed `whisper` package is not openai-whisper "
                                   "or lacks its assets.\n" + WHISPER_INSTALL_HINT)
    return path


def gpt2_tokenizer_from_whisper_asset(tiktoken_path: str | os.PathLike | None = None, model_max_length: int = 1024):
    """GPT-2's byte-level BPE tokenizer (50 257 tokens), rebuilt offline from a tiktoken rank file.

    Ranks become ids, the merges are recovered with `recover_bpe_merges`, and ``<|endoftext|>`` is added as
    id 50 256 — the same ids as the Hub's ``gpt2`` tokenizer (``"Hello world"`` → ``[15496, 995]``).
    ``<|endoftext|>`` is bos, eos and unk token; like the original, there is no pad token.

    Args:
        tiktoken_path: a ``gpt2.tiktoken`` file; default: the one in an installed ``openai-whisper``
            (``pip install --no-deps openai-whisper``).
        model_max_length: the context length recorded in the tokenizer (GPT-2's is 1024).

    Raises:
        DataUnavailableError: no ``tiktoken_path`` given and ``openai-whisper`` is not installed, or
            ``tiktoken_path`` does not exist.
        ValueError: the file is not a valid rank table.
    """
    from tokenizers import AddedToken, Tokenizer, models

    _check_positive_int("model_max_length", model_max_length, minimum=1)
    if tiktoken_path is None:
        path = whisper_gpt2_asset_path()
    else:
        path = Path(tiktoken_path)
        if not path.is_file():
            raise DataUnavailableError(f"tiktoken_path={str(path)!r} does not exist.\n" + WHISPER_INSTALL_HINT)
    ranks = read_tiktoken_ranks(path)
    merges = recover_bpe_merges(ranks)
    byte_encoder = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(byte_encoder[byte] for byte in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[(as_text(a), as_text(b)) for a, b in merges],
                                     fuse_unk=False))
    _byte_level_pipeline(tokenizer)
    tokenizer.add_special_tokens([AddedToken(ENDOFTEXT_TOKEN, special=True, normalized=False)])
    if tokenizer.token_to_id(ENDOFTEXT_TOKEN) != len(ranks):
        raise ValueError(f"{ENDOFTEXT_TOKEN} got id {tokenizer.token_to_id(ENDOFTEXT_TOKEN)}, expected {len(ranks)}")
    return _wrap(tokenizer, model_max_length, pad_token=None)
