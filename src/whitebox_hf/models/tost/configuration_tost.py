"""ToST (Token Statistics Transformer) configuration, for language and for vision."""

from transformers import PreTrainedConfig

from ..language_modeling import WhiteboxCausalLMConfig
from ..validation import check_positive, check_positive_int, check_probability, strict_config

__all__ = ["ToSTConfig", "ToSTVisionConfig", "TOST_PRESETS", "TOST_VISION_PRESETS"]

TOST_PRESETS: dict[str, dict] = {
    # Causal ToST on nanoGPT (tost_lang): d / L / K, bias-free, layer scale 1e-5. Counts exclude wpe.
    "tost-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),  # 109.6 M (book 110 M)
    "tost-medium": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),  # 303.7 M (304 M)
    "tost-large": dict(hidden_size=1280, num_hidden_layers=36, num_attention_heads=20),  # 655.1 M (655 M)
}
_VISION = dict(bias=True, layer_norm_eps=1e-6, image_size=224, patch_size=16, num_channels=3, num_labels=1000)
TOST_VISION_PRESETS: dict[str, dict] = {
    # Vision ToST (tost_vision `tost_cab_*_p16`): XCiT conv stem, Fourier positions, 2 class-attention blocks.
    "tost-tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=4, layer_scale_init=1.0, **_VISION),
    "tost-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=8, layer_scale_init=1.0, **_VISION),
    # 71.5 M with the code's layer count; the book lists 68.1 M (spec §3.2: unresolved).
    "tost-vision-medium": dict(
        hidden_size=512, num_hidden_layers=24, num_attention_heads=8, layer_scale_init=1e-5, **_VISION
    ),
}


@strict_config
class ToSTConfig(WhiteboxCausalLMConfig):
    r"""
    Configuration of causal ToST, the Token Statistics Transformer (Wu et al., ICLR 2025; book §8.4, Table 8.24)
    as a language model (`ToSTModel`, `ToSTForCausalLM`; the vision model has `ToSTVisionConfig`).

    A block is ``Z + γ₁⊙TSSA(LN Z)`` then ``+ γ₂⊙MLP(LN ·)`` where TSSA (`whitebox_hf.nn.TokenStatisticsSelfAttention`)
    costs O(N·d) instead of attention's O(N²·d); here TSSA is causal, on the nanoGPT scaffold of the authors'
    ``tost_lang`` code. Defaults are ToST-Base.

    Args:
        vocab_size (`int`, *optional*, defaults to 50304):
            Vocabulary size (nanoGPT pads GPT-2's 50257 to a multiple of 64).
        max_position_embeddings (`int`, *optional*, defaults to 1024):
            Context length: the size of the learned position table and of the causal TSSA's per-position score
            bias, so causal ToST cannot run past it (longer inputs raise `ValueError`).
        hidden_size (`int`, *optional*, defaults to 768):
            Token width ``d``.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of layers ``L``.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of heads / subspaces ``K``.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the embeddings and after each residual branch.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout inside the token mixer.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear and embedding weights.
        use_position_embeddings (`bool`, *optional*, defaults to `True`):
            Add a learned absolute position table (nanoGPT's ``wpe``).
        final_layer_norm (`bool`, *optional*, defaults to `True`):
            LayerNorm before the LM head (``ln_f``).
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Share the token embedding with the LM head.
        use_cache (`bool`, *optional*, defaults to `True`):
            Return the generation cache from `forward` (in eval mode) so `generate()` can reuse it.
        mlp_ratio (`int`, *optional*, defaults to 4):
            MLP width as a multiple of ``hidden_size``.
        bias (`bool`, *optional*, defaults to `False`):
            Biases on the linear layers and LayerNorms (the language code has none).
        layer_scale_init (`float`, *optional*, defaults to 1e-5):
            Initial value of the per-channel layer scales γ₁, γ₂.

    Example:

    ```python
    >>> from whitebox_hf import ToSTConfig, ToSTForCausalLM, nanogpt_parameter_count

    >>> nanogpt_parameter_count(ToSTForCausalLM(ToSTConfig.from_preset("tost-base")))
    109597584
    ```"""

    model_type = "tost"
    PRESETS = TOST_PRESETS

    mlp_ratio: int = 4
    bias: bool = False
    layer_scale_init: float = 1e-5

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_positive_int(self, "mlp_ratio")
        check_positive(self, "layer_scale_init")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})"
            )


@strict_config
class ToSTVisionConfig(PreTrainedConfig):
    r"""
    Configuration of vision ToST (`ToSTVisionModel`, `ToSTForImageClassification`): the authors' ``tost_vision``
    code, non-causal TSSA blocks on the XCiT scaffold (stride-2 conv stem, Fourier position encoding) followed by
    CaiT class-attention blocks. Defaults give ToST-Small at 224², patch 16; `ToSTVisionConfig.from_preset(name)`
    gives every preset of `TOST_VISION_PRESETS` (``tost-tiny``, ``tost-small``, ``tost-vision-medium``).

    Args:
        hidden_size (`int`, *optional*, defaults to 384):
            Token width ``d``.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of TSSA blocks.
        num_attention_heads (`int`, *optional*, defaults to 8):
            TSSA heads (and class-attention heads); must divide ``hidden_size``.
        mlp_ratio (`int`, *optional*, defaults to 4):
            MLP width as a multiple of ``hidden_size``.
        bias (`bool`, *optional*, defaults to `True`):
            Biases on the linear layers and LayerNorms of the blocks (the vision code has them).
        layer_scale_init (`float`, *optional*, defaults to 1.0):
            Initial value of the per-channel layer scales γ₁, γ₂ (1.0 in the 12-layer models, 1e-5 in the 24-layer
            one).
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the embeddings and after each residual branch.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout inside TSSA.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear weights and the class token.
        image_size (`int`, *optional*, defaults to 224):
            Image side (other sizes divisible by the patch work too).
        patch_size (`int`, *optional*, defaults to 16):
            Patch side; a power of two, made by log2(patch_size) stride-2 convolutions.
        num_channels (`int`, *optional*, defaults to 3):
            Input channels.
        num_class_attention_layers (`int`, *optional*, defaults to 2):
            CaiT class-attention blocks after the TSSA blocks.
        fourier_channels (`int`, *optional*, defaults to 64):
            Sinusoid channels of the Fourier position encoding (half for each axis).

    Example:

    ```python
    >>> from whitebox_hf import ToSTForImageClassification, ToSTVisionConfig

    >>> ToSTForImageClassification(ToSTVisionConfig.from_preset("tost-tiny")).num_parameters()
    5769328
    ```"""

    model_type = "tost_vision"
    PRESETS = TOST_VISION_PRESETS

    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    mlp_ratio: int = 4
    bias: bool = True
    layer_scale_init: float = 1.0
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_class_attention_layers: int = 2
    fourier_channels: int = 64

    def __post_init__(self, **kwargs):
        check_positive_int(self, "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio",
                           "image_size", "patch_size", "num_channels", "fourier_channels")
        check_positive(self, "layer_scale_init", "layer_norm_eps", "initializer_range")
        check_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})"
            )
        if self.patch_size & (self.patch_size - 1):
            raise ValueError(f"`patch_size` must be a power of two (stride-2 conv stem), got {self.patch_size}")
        if self.hidden_size % max(self.patch_size // 2, 1):
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `patch_size // 2` ({self.patch_size // 2}): "
                "the conv stem halves the width at each of its stages"
            )
        if self.fourier_channels % 4:
            raise ValueError(f"`fourier_channels` must be a multiple of 4, got {self.fourier_channels}")
        if isinstance(self.num_class_attention_layers, bool) or self.num_class_attention_layers < 0:
            raise ValueError(f"`num_class_attention_layers` must be >= 0, got {self.num_class_attention_layers!r}")
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ToSTVisionConfig":
        """The configuration ``name`` (one of `TOST_VISION_PRESETS`), with any field overridden by keyword."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})
