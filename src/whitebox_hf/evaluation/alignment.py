"""The image-text alignment space of LIFT, and retrieval in it (Michelangelo's ST-S / SI-S, R@1, R@5).

The text side is the frozen all-MiniLM-L6-v2 sentence embedding (LIFT's text tower, 384-d); the image side is a
trained `WhiteboxClipModel`'s image tower and LIFT head, which map into the same space. Shape embeddings of a
SITA-VAE are aligned to both, and `retrieval_metrics` scores any query set against any gallery in that space.

```python
>>> from whitebox_hf.evaluation import embed_images, embed_texts, retrieval_metrics
>>> texts = embed_texts(captions)                       # (n, 384), unit rows
>>> images = embed_images(lift_model, renders)          # uint8 (n, H, W, 3) -> (n, 384), unit rows
>>> retrieval_metrics(images, texts, torch.eye(n, dtype=torch.bool))["r@1"]
```
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch
from torch.nn import functional as F

__all__ = ["LIFT_MAX_LENGTH", "embed_images", "embed_texts", "lift_text_tower", "retrieval_metrics"]

# train_clip.py's `max_length`: the same truncation gives the same embeddings (and the same cache entries).
LIFT_MAX_LENGTH = 32


@functools.lru_cache(maxsize=1)
def lift_text_tower():
    """``(model, tokenizer)``: a `WhiteboxClipModel` holding only the frozen all-MiniLM-L6-v2 text tower that
    matters here (its image tower is a minimal placeholder, never run), and the MiniLM tokenizer. Built once."""
    from transformers import AutoTokenizer

    from ..models.whitebox_clip import (
        MINILM_TEXT_CONFIG,
        WhiteboxClipConfig,
        WhiteboxClipModel,
        minilm_path,
    )

    config = WhiteboxClipConfig(
        vision_config=dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, image_size=8, patch_size=8),
        text_config=dict(MINILM_TEXT_CONFIG), text_tower="lift",
    )
    model = WhiteboxClipModel.from_minilm(config).eval()
    return model, AutoTokenizer.from_pretrained(str(minilm_path()))


def embed_texts(texts: list[str], batch_size: int = 256, max_length: int = LIFT_MAX_LENGTH,
                cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """L2-normalised frozen all-MiniLM-L6-v2 sentence embeddings ``(len(texts), 384)`` float32 (LIFT's text
    side), read from or written to the on-disk cache keyed by a hash of the texts, ``max_length`` and the
    tower's weights (``cache_dir``, default ``default_cache_dir() / "lift_text_embeddings"``, the cache
    train_clip.py uses)."""
    from ..data.fashion_mnist import default_cache_dir
    from ..models.whitebox_clip import cached_text_features

    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(f"`texts` must be a non-empty list of strings, got {type(texts).__name__}"
                         + (f" of length {len(texts)}" if isinstance(texts, (list, tuple)) else ""))
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise ValueError(f"`texts` must hold strings only, got {type(texts[bad[0]]).__name__} at index {bad[0]}")
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    model, tokenizer = lift_text_tower()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "lift_text_embeddings"
    features, _ = cached_text_features(model, tokenizer, list(texts), max_length, folder, batch_size)
    return F.normalize(features.float(), dim=-1)


def _image_processor_of(clip_model, image_processor):
    from transformers import AutoImageProcessor

    if image_processor is not None:
        return getattr(image_processor, "image_processor", image_processor)  # a WhiteboxClipProcessor's part
    source = getattr(clip_model, "name_or_path", "") or ""
    if source and Path(source).is_dir():
        try:
            return AutoImageProcessor.from_pretrained(source)
        except OSError:
            pass
    raise ValueError("`image_processor` must be given for uint8 images when `clip_model` was not loaded from a "
                     f"folder holding its processor (name_or_path {source!r})")


@torch.no_grad()
def embed_images(clip_model, images: torch.Tensor, image_processor=None, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised LIFT image embeddings ``(n, embedding_dim)`` float32 of a `WhiteboxClipModel`, in eval mode.

    Args:
        clip_model: a trained `WhiteboxClipModel` (its training mode is restored afterwards).
        images: uint8 ``(n, H, W, 3)`` images, preprocessed by ``image_processor``; or float ``(n, C, H, W)``
            pixel values already in the processor's output form.
        image_processor: the model's `CrateImageProcessor` (or its `WhiteboxClipProcessor`); default the one
            saved next to the model (``clip_model.name_or_path``).
        batch_size: images per forward pass.
    """
    from ..models.whitebox_clip import WhiteboxClipModel

    if not isinstance(clip_model, WhiteboxClipModel):
        raise TypeError(f"`clip_model` must be a WhiteboxClipModel, got {type(clip_model).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("`images` must be a non-empty uint8 (n, H, W, 3) or float (n, C, H, W) tensor, got "
                         + (f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                            else type(images).__name__))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if images.dtype == torch.uint8:
        if images.shape[-1] != 3:
            raise ValueError(f"uint8 `images` must be (n, H, W, 3), got shape {tuple(images.shape)}")
        processor = _image_processor_of(clip_model, image_processor)
        pixel_values = processor(images=list(images.numpy()), return_tensors="pt")["pixel_values"]
    elif images.is_floating_point():
        pixel_values = images
    else:
        raise ValueError(f"`images` must be uint8 (n, H, W, 3) or float pixel values, got dtype {images.dtype}")
    was_training = clip_model.training
    clip_model.eval()
    try:
        device = next(clip_model.parameters()).device
        features = torch.cat([clip_model.get_image_features(pixel_values[i : i + batch_size].to(device)).float().cpu()
                              for i in range(0, len(pixel_values), batch_size)])
    finally:
        clip_model.train(was_training)
    return F.normalize(features, dim=-1)


def _check_embeddings(name: str, value) -> None:
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"`{name}` must be a non-empty (n, d) tensor, got "
                         + (f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__))
    if not value.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}")
    if not torch.isfinite(value).all():
        raise ValueError(f"`{name}` must be finite, got NaN or inf")
    if (value.norm(dim=-1) == 0).any():
        raise ValueError(f"`{name}` must not hold zero vectors (their cosine is undefined)")


def retrieval_metrics(query_embeds: torch.Tensor, gallery_embeds: torch.Tensor, positives) -> dict:
    """Retrieval of gallery rows for each query by cosine similarity.

    Args:
        query_embeds: ``(n, d)`` embeddings (normalised here, so any scale works).
        gallery_embeds: ``(m, d)`` embeddings in the same space.
        positives: which gallery rows are correct for each query: a bool ``(n, m)`` tensor, or an integer ``(n,)``
            tensor of the one correct gallery index per query. Every query needs at least one positive; several
            (e.g. all gallery captions equal to the query's) all count as hits.

    Returns:
        ``r@1`` / ``r@5``: the share of queries with a positive among their top 1 / top 5 (of ``min(5, m)``);
        ``mean_similarity``: the mean cosine between a query and its positives (per query, then over queries;
        Michelangelo's ST-S / SI-S); ``chance_r@1`` / ``chance_r@5``: the expected R@1 / R@5 of a random
        ranking (a query with p positives among m: p / m, and 1 - C(m - p, k) / C(m, k)); ``num_queries``,
        ``gallery_size``.
    """
    _check_embeddings("query_embeds", query_embeds)
    _check_embeddings("gallery_embeds", gallery_embeds)
    n, m = query_embeds.shape[0], gallery_embeds.shape[0]
    if query_embeds.shape[1] != gallery_embeds.shape[1]:
        raise ValueError(f"`gallery_embeds` must have the width of `query_embeds` ({query_embeds.shape[1]}), got "
                         f"{gallery_embeds.shape[1]}")
    if not isinstance(positives, torch.Tensor):
        raise TypeError(f"`positives` must be a bool (n, m) or integer (n,) tensor, got {type(positives).__name__}")
    if positives.dtype == torch.bool:
        if tuple(positives.shape) != (n, m):
            raise ValueError(f"bool `positives` must have shape (n, m) = {(n, m)}, got {tuple(positives.shape)}")
        relevant = positives
    elif not positives.is_floating_point() and not positives.is_complex():
        if tuple(positives.shape) != (n,):
            raise ValueError(f"integer `positives` must have shape (n,) = ({n},), got {tuple(positives.shape)}")
        if ((positives < 0) | (positives >= m)).any():
            raise ValueError(f"integer `positives` must be gallery indices in [0, {m}), got values in "
                             f"[{int(positives.min())}, {int(positives.max())}]")
        relevant = torch.zeros(n, m, dtype=torch.bool)
        relevant[torch.arange(n), positives.long().cpu()] = True
    else:
        raise ValueError(f"`positives` must be a bool (n, m) or integer (n,) tensor, got dtype {positives.dtype}")
    relevant = relevant.cpu()
    counts = relevant.sum(dim=1)
    if (counts == 0).any():
        raise ValueError(f"`positives` must give every query at least one positive, got none for query "
                         f"{int((counts == 0).nonzero()[0])}")
    similarity = F.normalize(query_embeds.double(), dim=-1) @ F.normalize(gallery_embeds.double(), dim=-1).T
    similarity = similarity.cpu()
    order = similarity.argsort(dim=1, descending=True, stable=True)
    hits = torch.gather(relevant, 1, order)
    k5 = min(5, m)
    matched = (similarity * relevant).sum(dim=1) / counts
    chance_5 = [1.0 - (math.comb(m - int(p), k5) / math.comb(m, k5)) for p in counts]
    return {
        "r@1": float(hits[:, 0].double().mean()),
        "r@5": float(hits[:, :k5].any(dim=1).double().mean()),
        "mean_similarity": float(matched.mean()),
        "chance_r@1": float((counts.double() / m).mean()),
        "chance_r@5": float(sum(chance_5) / n),
        "num_queries": n,
        "gallery_size": m,
    }
