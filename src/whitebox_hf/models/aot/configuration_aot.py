"""AoT (attention-only transformer) language model configuration."""


from ..language_modeling import WhiteboxCausalLMConfig
from ..validation import check_choice, resolve_head_dim, strict_config

__all__ = ["AoTConfig", "AOT_PRESETS"]

_ATTENTION_TYPES = ("mssa", "mhsa")

AOT_PRESETS: dict[str, dict] = {
    # No official code: shapes inferred from the book's counts (spec crate_family.md §4), 2d² + 3d per layer.
    "aot-mssa-base": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),  # 101.9 M (book 102 M)
    "aot-mssa-medium": dict(hidden_size=1280, num_hidden_layers=36, num_attention_heads=20),  # 182.5 M (182 M)
    # GPT-2 blocks without the MLP (4d² + 6d per layer). The book's 122 M fits no GPT-2 shape; d 896 (14 heads
    # of 64) with 24 layers gives 122.3 M, within 0.3 %, at the depth of the MSSA base model.
    "aot-mhsa-base": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, attention_type="mhsa"),
}


@strict_config
class AoTConfig(WhiteboxCausalLMConfig):
    r"""
    Configuration of AoT, the attention-only transformer (Wang et al., ICML 2025; book §8.4, Table 8.20).

    A layer is ``Z + Attention(LN Z)`` with no MLP, ISTA or ODL. With ``attention_type="mssa"`` the attention is
    the white-box MSSA (one projection shared by query, key and value: 2d² weights per layer); with ``"mhsa"``
    it is GPT-2's query/key/value attention (AoT-MHSA: a GPT-2 block with its MLP deleted).

    Args:
        vocab_size (`int`, *optional*, defaults to 50304):
            Vocabulary size (nanoGPT pads GPT-2's 50257 to a multiple of 64).
        max_position_embeddings (`int`, *optional*, defaults to 1024):
            Context length: the size of the learned position table (and of ToST's per-position bias). Longer
            inputs raise `ValueError`.
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
        attention_type (`str`, *optional*, defaults to `"mssa"`):
            `"mssa"` or `"mhsa"`.
        head_dim (`int`, *optional*):
            MSSA subspace dimension ``p`` (defaults to ``hidden_size // num_attention_heads``). MHSA always uses
            ``hidden_size // num_attention_heads``.
        bias (`bool`, *optional*, defaults to `True`):
            Biases on the output projection (and on MHSA's query/key/value projection) and on the LayerNorms.

    Example:

    ```python
    >>> from whitebox_hf import AoTConfig, AoTForCausalLM, nanogpt_parameter_count

    >>> nanogpt_parameter_count(AoTForCausalLM(AoTConfig.from_preset("aot-mssa-base")))
    101918720
    ```"""

    model_type = "aot"
    PRESETS = AOT_PRESETS

    attention_type: str = "mssa"
    head_dim: int | None = None
    bias: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_choice(self, "attention_type", _ATTENTION_TYPES)
        if self.attention_type == "mhsa" and self.head_dim not in (None, self.hidden_size // self.num_attention_heads):
            raise ValueError(f"`head_dim` must be hidden_size // num_attention_heads for MHSA, got {self.head_dim!r}")
        resolve_head_dim(self)
