"""Text-to-image evaluation on held-out captions: LIFT text-image alignment (a CLIP-score analogue), retrieval of the
prompt among distractor captions, and FD-EffNet of the generations against held-out images.

The LIFT scorer is a `WhiteboxClipModel` trained with ``training/train_clip.py`` on the TRAIN split of the same
caption images (``--dataset openclipart+emoji``): its image tower and head map a 32 px image into the 384-d space
of the frozen all-MiniLM-L6-v2 sentence embedding (`whitebox_hf.evaluation.alignment`). CLIP-score uses
``100·max(cos, 0)``; here the plain mean cosine is reported (no clipping, no scale), so it is not comparable to
published CLIP scores, only between models and guidance scales under the same scorer.

```python
>>> images = generate_images(pipeline, prompts, guidance_scale=4.0)       # uint8 (n, 32, 32, 3)
>>> text_image_scores(lift_model, images, prompts, gallery=prompts)       # lift_score, r@1, r@5, chance_r@1
```
"""

from __future__ import annotations

import torch

from .alignment import embed_images, embed_texts, retrieval_metrics
from .frechet import FrechetEffNetDistance, frechet_distance

__all__ = ["fd_effnet_uint8", "text_image_scores"]


def _check_uint8_images(name: str, images) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or \
            images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty uint8 (n, H, W, 3) tensor, got "
                         + (f"{images.dtype} shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                            else type(images).__name__))


def text_image_scores(lift_model, images: torch.Tensor, prompts: list[str], gallery: list[str] | None = None,
                      image_processor=None) -> dict:
    """Alignment of ``images`` (uint8 ``(n, H, W, 3)``, image i drawn for ``prompts[i]``) with their prompts.

    Returns:
        ``lift_score``: the mean cosine between each image's LIFT embedding and its prompt's MiniLM embedding;
        ``lift_score_std``: its standard deviation over images; ``r@1``, ``r@5``, ``chance_r@1``, ``chance_r@5``,
        ``gallery_size``: retrieval of each image's prompt among ``gallery`` (default: the distinct prompts; every
        gallery caption equal to the prompt counts as a hit).

    Raises:
        ValueError: bad ``images``, ``prompts`` of another length or not strings, or a prompt missing from
            ``gallery``.
    """
    _check_uint8_images("images", images)
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or len(prompts) != images.shape[0]:
        raise ValueError(f"`prompts` must be a list of {images.shape[0]} strings (one per image), got "
                         + (f"{len(prompts)}" if isinstance(prompts, (list, tuple)) else type(prompts).__name__))
    gallery = list(dict.fromkeys(prompts)) if gallery is None else list(gallery)
    missing = [p for p in prompts if p not in gallery]
    if missing:
        raise ValueError(f"every prompt must be in `gallery`, got {missing[0]!r} missing")
    image_embeds = embed_images(lift_model, images, image_processor)
    prompt_embeds = embed_texts(list(prompts))
    gallery_embeds = embed_texts(gallery)
    cosine = (image_embeds * prompt_embeds).sum(dim=-1)
    positives = torch.tensor([[g == p for g in gallery] for p in prompts], dtype=torch.bool)
    retrieval = retrieval_metrics(image_embeds, gallery_embeds, positives)
    return {"lift_score": float(cosine.mean()), "lift_score_std": float(cosine.std()) if len(cosine) > 1 else 0.0,
            "r@1": retrieval["r@1"], "r@5": retrieval["r@5"], "chance_r@1": retrieval["chance_r@1"],
            "chance_r@5": retrieval["chance_r@5"], "gallery_size": retrieval["gallery_size"],
            "num_images": int(images.shape[0])}


def fd_effnet_uint8(images_a: torch.Tensor, images_b: torch.Tensor, metric: FrechetEffNetDistance | None = None,
                    image_size: int = 224) -> float:
    """FD-EffNet (Fréchet distance of EfficientNet-Lite0 pooled features; not FID) between two uint8
    ``(n, H, W, 3)`` image sets."""
    _check_uint8_images("images_a", images_a)
    _check_uint8_images("images_b", images_b)
    metric = metric or FrechetEffNetDistance(image_size=image_size)
    features_a = metric.features(images_a.permute(0, 3, 1, 2).contiguous())
    features_b = metric.features(images_b.permute(0, 3, 1, 2).contiguous())
    return frechet_distance(features_a, features_b)
