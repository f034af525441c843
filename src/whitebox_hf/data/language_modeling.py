"""Language-model data: documents → one token stream → fixed-length training blocks (nanoGPT's packing).

Documents are tokenised, each followed by the end-of-text token, and concatenated into a single stream, so
no token is wasted on padding and the model learns where documents end. The stream is then read as blocks
of ``context_length + 1`` tokens that overlap by one token: block ``i`` is
``stream[i·T : i·T + T + 1]``, its first ``T`` tokens are the input and its last ``T`` the targets. Every
token of the stream (but the first) is thus a target exactly once per epoch, and every input is exactly
``T = context_length`` tokens long, as in nanoGPT (``x = data[i:i+T]``, ``y = data[i+1:i+1+T]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import Dataset

from ..utils.validation import check_positive_int

__all__ = ["PackedTokenBlocks", "tokenize_and_concatenate"]


def tokenize_and_concatenate(tokenizer, texts: Iterable[str], separator_id: int | None = None,
                             batch_size: int = 64) -> torch.Tensor:
    """Tokenise ``texts`` (no special tokens added) and join them into one 1-D ``int32`` stream, each
    document followed by ``separator_id`` (default: the tokenizer's ``eos_token_id``, ``<|endoftext|>``).

    Raises:
        TypeError: ``texts`` is a single string.
        ValueError: no separator id is given and the tokenizer has no eos token; ``texts`` holds no token.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be an iterable of strings, not a single string; wrap it in a list")
    if separator_id is None:
        separator_id = tokenizer.eos_token_id
        if separator_id is None:
            raise ValueError("separator_id: the tokenizer has no eos token; pass the id that separates documents")
    pieces: list[torch.Tensor] = []
    batch: list[str] = []

    def flush() -> None:
        # verbose=False: documents longer than model_max_length are expected here; they are cut into blocks.
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            pieces.append(torch.tensor([*ids, separator_id], dtype=torch.int32))
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not pieces:
        raise ValueError("texts is empty: there is no document to tokenise")
    # int32 halves the memory of the stream; blocks are returned as int64, the dtype embeddings expect.
    return torch.cat(pieces)


class PackedTokenBlocks(Dataset):
    """Fixed-length language-model examples cut from a token stream (see the module docstring).

    Item ``i`` is ``{"input_ids": stream[i·T : i·T + T], "target_ids": stream[i·T + 1 : i·T + T + 1]}``
    (``int64``): the targets are already shifted by one, so compute the loss as
    ``cross_entropy(logits, target_ids)`` — do *not* pass them as a model's ``labels``, which would shift them
    a second time. A stream of ``n`` tokens gives ``(n − 1) // T`` blocks; the tail that fills no whole block
    is dropped.

    Args:
        stream (`torch.Tensor`): 1-D token ids, e.g. from `tokenize_and_concatenate`.
        context_length (`int`): ``T``, the number of input (and target) tokens per block.

    Raises:
        ValueError: ``stream`` is not 1-D, ``context_length`` is not a positive integer, or the stream is too
            short for one block.
    """

    def __init__(self, stream: torch.Tensor, context_length: int):
        check_positive_int("context_length", context_length)
        if stream.ndim != 1:
            raise ValueError(f"`stream` must be a 1-D tensor of token ids, got shape {tuple(stream.shape)}")
        if stream.numel() < context_length + 1:
            raise ValueError(
                f"`stream` holds {stream.numel()} tokens, fewer than one block of context_length + 1 = "
                f"{context_length + 1}; use more text or a shorter context"
            )
        self.stream = stream
        self.context_length = context_length

    def __len__(self) -> int:
        return (self.stream.numel() - 1) // self.context_length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} out of range for {len(self)} blocks")
        start = index * self.context_length
        block = self.stream[start : start + self.context_length + 1].long()
        return {"input_ids": block[:-1], "target_ids": block[1:]}

    @property
    def num_tokens(self) -> int:
        """Input tokens over all blocks (``len(self) · context_length``)."""
        return len(self) * self.context_length
