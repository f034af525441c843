"""Causal CRATE (and CRATE-α) language model configuration."""


from ..crate.configuration_crate import check_sparse_coding_fields
from ..language_modeling import WhiteboxCausalLMConfig
from ..validation import resolve_head_dim, strict_config

__all__ = ["CausalCrateConfig", "CAUSAL_CRATE_PRESETS"]

CAUSAL_CRATE_PRESETS: dict[str, dict] = {
    # crate-lm/crate-lm `crate.py` on the GPT-2-base shape: 12·(3d² + 5d) + 50304·d = 59.9 M (book: 60 M).
    "causal-crate-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    # `crate_overcomplete.py`: ODL block (s = 4d, 2 steps, residual) and a final LayerNorm.
    "causal-crate-alpha-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, block_type="odl", final_layer_norm=True
    ),
}


@strict_config
class CausalCrateConfig(WhiteboxCausalLMConfig):
    r"""
    Configuration of the causal CRATE language model (spec ``crate_family.md`` §5; book §8.4, Table 8.18).

    A layer is the CRATE layer of the image model with a causal mask: ``Z½ = Z + CausalMSSA(LN Z)`` then
    ``Z⁺ = ISTA(LN Z½)`` (no residual) or, with ``block_type="odl"`` (the CRATE-α LM), ``Z⁺ = Z½ + ODL(LN Z½)``.
    The defaults are CausalCRATE-Base (59.9 M parameters in nanoGPT's count); `from_preset` also gives
    ``causal-crate-alpha-base``.

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
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Share the token embedding with the LM head.
        use_cache (`bool`, *optional*, defaults to `True`):
            Return the generation cache from `forward` (in eval mode) so `generate()` can reuse it.
        final_layer_norm (`bool`, *optional*, defaults to `False`):
            LayerNorm before the LM head: absent in the authors' `crate.py`, present in `crate_overcomplete.py`.
        head_dim (`int`, *optional*):
            Subspace dimension ``p``; defaults to ``hidden_size // num_attention_heads``.
        block_type (`str`, *optional*, defaults to `"ista"`):
            `"ista"` (CRATE) or `"odl"` (CRATE-α: overcomplete dictionary with a residual).
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA/ODL step size ``η``.
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ℓ₁ weight ``λ``.
        ista_residual (`bool`, *optional*, defaults to `False`):
            Ablation, not in the book or the authors' code: add the layer input back after ISTA
            (``Z⁺ = Z½ + ISTA(LN Z½)``), as CRATE-α does after ODL. The output is then no longer a sparse code.
        odl_expansion (`int`, *optional*, defaults to 4):
            ODL dictionary width ``s / d``.
        odl_steps (`int`, *optional*, defaults to 2):
            ODL proximal steps.
        attention_output_bias (`bool`, *optional*, defaults to `True`):
            Bias on the MSSA output projection (``c_proj``).
        projection_init (`str`, *optional*):
            Initialisation of the layers' linear maps (the shared MSSA projection ``U`` and ``c_proj``).
            `"torch"`: `nn.Linear`'s own kaiming-uniform init. `"gpt2"`: nanoGPT's normal(``initializer_range``),
            ``c_proj`` scaled by 1/√(2L), as in the authors' crate-lm code. Defaults to `"torch"` for the
            authors' layer (ISTA with no residual) and to `"gpt2"` when the sparse-coding block has a residual
            (``block_type="odl"`` or ``ista_residual=True``): GPT-2's init is made for a residual stream, and
            without one its small ``U`` and ``c_proj`` leave the model at the unigram loss (issue 11; the
            ``causal_crate_gpt2_init`` row of ``docs/results/language.md``). Embeddings use
            normal(``initializer_range``) either way.

    Example:

    ```python
    >>> from whitebox_hf import CausalCrateConfig, CausalCrateForCausalLM, nanogpt_parameter_count

    >>> model = CausalCrateForCausalLM(CausalCrateConfig.from_preset("causal-crate-base"))
    >>> nanogpt_parameter_count(model)
    59913216
    ```"""

    model_type = "causal_crate"
    PRESETS = CAUSAL_CRATE_PRESETS

    final_layer_norm: bool = False
    head_dim: int | None = None
    block_type: str = "ista"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    ista_residual: bool = False
    odl_expansion: int = 4
    odl_steps: int = 2
    attention_output_bias: bool = True
    projection_init: str | None = None

    def __post_init__(self, **kwargs):
        if self.projection_init is None:
            has_residual = self.block_type == "odl" or self.ista_residual
            self.projection_init = "gpt2" if has_residual else "torch"
        if self.projection_init not in ("torch", "gpt2"):
            raise ValueError(f"`projection_init` must be 'torch' or 'gpt2', got {self.projection_init!r}")
        super().__post_init__(**kwargs)
        resolve_head_dim(self)
        check_sparse_coding_fields(self)
