"""Sentence embeddings of LIFT's frozen text tower, computed once and cached on disk.

LIFT (book §8.3.8) never trains its text tower, so the embedding of a text is a constant: training scripts and
evaluation compute the embeddings of all their texts once, store them as safetensors keyed by the texts, the
tokenizer's ``max_length`` and the tower's weights, and never run the tower again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["cached_text_features", "compute_text_features"]


@torch.no_grad()
def compute_text_features(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 256) -> torch.Tensor:
    """``model.get_text_features`` of every text, in batches: ``(len(texts), embedding_dim)`` float32 (not
    normalised). ``model`` is a `WhiteboxClipModel`; its training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt", return_token_type_ids=False)
        chunks.append(model.get_text_features(batch["input_ids"], batch["attention_mask"]).float())
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.embedding_dim)


def cached_text_features(model, tokenizer, texts: list[str], max_length: int, cache_dir: str | Path,
                         batch_size: int = 256) -> tuple[torch.Tensor, bool]:
    """The frozen tower's features of ``texts``, read from ``cache_dir`` when an earlier call stored them.

    The key hashes the texts, ``max_length`` and the tower's weights (a sample of them), so a change of any
    of the three never reuses stale embeddings. Returns ``(features, was_cached)``.
    """
    weights = torch.cat([p.detach().flatten()[:1024].float() for p in model.text_model.parameters()])
    key = hashlib.sha256(json.dumps({"texts": texts, "max_length": max_length}).encode("utf-8"))
    key.update(weights.numpy().tobytes())
    path = Path(cache_dir) / f"{key.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return load_file(str(path))["embeddings"], True
    embeddings = compute_text_features(model, tokenizer, texts, max_length, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": embeddings.contiguous()}, str(path))
    return embeddings, False
