"""Scores of a personalised text-to-image model (DreamBooth, Custom Diffusion; book §8.7).

* Subject fidelity: the mean cosine similarity between the image features of every generated image and every
  subject image (DreamBooth's DINO score, with this package's encoders in place of DINO: EfficientNet-Lite0
  pooled features, `whitebox_hf.evaluation.frechet.FrechetEffNetDistance.features`, or the LIFT image tower,
  `whitebox_hf.evaluation.alignment.embed_images`).
* Prompt fidelity: the mean cosine between each generated image's LIFT image embedding and its prompt's MiniLM
  embedding (`embed_texts`): DreamBooth's CLIP-T with LIFT as the CLIP. The prompt is scored *without* the rare
  identifier (``"a cmll stickman in the snow"`` is scored as ``"a stickman in the snow"``), as in DreamBooth.

```python
>>> from whitebox_hf.evaluation.personalization import image_features, prompt_fidelity, subject_fidelity
>>> subject_fidelity(image_features(generated, "efficientnet"), image_features(subject_images, "efficientnet"))
>>> prompt_fidelity(lift_model, generated, prompts)
```
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["image_features", "mean_pairwise_cosine", "prompt_fidelity", "subject_fidelity"]


def _check_features(name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a float (n, d) tensor, got {type(value).__name__}")
    if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0 or not value.is_floating_point():
        raise ValueError(f"`{name}` must be a non-empty float (n, d) tensor, got {value.dtype} {tuple(value.shape)}")
    if (value.norm(dim=-1) == 0).any():
        raise ValueError(f"`{name}` must not hold zero vectors (their cosine is undefined)")


def mean_pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity over all ``(n × m)`` pairs of rows of ``a`` ``(n, d)`` and ``b`` ``(m, d)``."""
    _check_features("a", a)
    _check_features("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"`b` must have the width of `a` ({a.shape[1]}), got {b.shape[1]}")
    return float((F.normalize(a.double(), dim=-1) @ F.normalize(b.double(), dim=-1).T).mean())


def subject_fidelity(generated_features: torch.Tensor, subject_features: torch.Tensor) -> float:
    """The DINO-score analogue: `mean_pairwise_cosine` of the generated images' and the subject images' features."""
    return mean_pairwise_cosine(generated_features, subject_features)


def image_features(images: torch.Tensor, encoder, batch_size: int = 64) -> torch.Tensor:
    """Image features ``(n, d)`` for the fidelity scores.

    Args:
        images: uint8 ``(n, H, W, 3)`` RGB images.
        encoder: ``"efficientnet"`` (EfficientNet-Lite0 pooled features at 224 px, 1280-d), a
            `FrechetEffNetDistance` (reusing its loaded network), or a trained `WhiteboxClipModel` (its LIFT image
            embedding, 384-d).
    """
    from ..models.whitebox_clip import WhiteboxClipModel
    from .alignment import embed_images
    from .frechet import FrechetEffNetDistance

    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError("`images` must be a uint8 (n, H, W, 3) tensor, got "
                         + (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                            else type(images).__name__))
    if isinstance(encoder, str) and encoder == "efficientnet":
        encoder = FrechetEffNetDistance()
    if isinstance(encoder, FrechetEffNetDistance):
        return encoder.features(images.permute(0, 3, 1, 2).contiguous(), batch_size)
    if isinstance(encoder, WhiteboxClipModel):
        return embed_images(encoder, images, batch_size=batch_size)
    raise TypeError(f"`encoder` must be 'efficientnet', a FrechetEffNetDistance or a WhiteboxClipModel, got "
                    f"{encoder!r}")


def prompt_fidelity(clip_model, images: torch.Tensor, prompts: list[str]) -> float:
    """Mean cosine between the LIFT embedding of each image (uint8 ``(n, H, W, 3)``) and of its prompt.

    Raises:
        ValueError: not one prompt per image, or an empty prompt.
    """
    from .alignment import embed_images, embed_texts

    if not isinstance(prompts, (list, tuple)) or len(prompts) != len(images):
        raise ValueError(f"`prompts` must be a list of one prompt per image ({len(images)}), got "
                         f"{len(prompts) if isinstance(prompts, (list, tuple)) else type(prompts).__name__}")
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise ValueError("`prompts` must be non-empty strings")
    image_embeds = embed_images(clip_model, images)
    text_embeds = embed_texts(list(prompts))
    if image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(f"`clip_model` must embed images in the text space of MiniLM ({text_embeds.shape[1]}-d, a "
                         f"LIFT model), got {image_embeds.shape[1]}-d embeddings")
    return float((F.normalize(image_embeds.double(), dim=-1) * F.normalize(text_embeds.double(), dim=-1)).sum(-1).mean())
