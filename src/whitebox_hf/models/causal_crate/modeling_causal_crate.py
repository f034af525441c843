"""Causal CRATE language model (spec ``crate_family.md`` §5, the authors' crate-lm `crate.py`).

The layer is the image model's `CrateLayer` with a causal MSSA (so its KV cache, SDPA kernel and ISTA/ODL block
are shared, not copied); the scaffold (embeddings, LM head, generation) is the nanoGPT one of
`whitebox_hf.models.language_modeling`.
"""

from __future__ import annotations

from ..crate.modeling_crate import CrateLayer
from ..language_modeling import WhiteboxDecoderModel, WhiteboxForCausalLM
from .configuration_causal_crate import CausalCrateConfig

__all__ = ["CausalCrateLayer", "CausalCrateModel", "CausalCrateForCausalLM"]


class CausalCrateLayer(CrateLayer):
    """``Z½ = Z + CausalMSSA(LN Z)``, then ``ISTA(LN Z½)`` (or ``Z½ + ODL(LN Z½)``)."""

    def __init__(self, config: CausalCrateConfig, layer_idx: int):
        super().__init__(config, is_causal=True, layer_idx=layer_idx)
        # GPT-2 init: the projection writing into the residual stream is scaled by 1/√(2L).
        self.attention.output_projection._is_residual_output = True


class CausalCrateModel(WhiteboxDecoderModel):
    config: CausalCrateConfig
    config_class = CausalCrateConfig
    layer_class = CausalCrateLayer
    _no_split_modules = ["CausalCrateLayer"]


class CausalCrateForCausalLM(WhiteboxForCausalLM):
    """Causal CRATE with the tied LM head. Generation uses a KV cache that stores each layer's ``U_kᵀZ`` once."""

    config: CausalCrateConfig
    config_class = CausalCrateConfig
    model_class = CausalCrateModel
    _no_split_modules = ["CausalCrateLayer"]
