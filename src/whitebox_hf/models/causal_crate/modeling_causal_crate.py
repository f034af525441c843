"""Causal CRATE language model (spec ``crate_family.md`` §5, the authors' crate-lm `crate.py`).

The layer is the image model's `CrateLayer` with a causal MSSA (so its KV cache, SDPA kernel and ISTA/ODL block
are shared, not copied); the scaffold (embeddings, LM head, generation) is the nanoGPT one of
`whitebox_hf.models.language_modeling`.
"""

from __future__ import annotations

from torch import nn

from ..crate.modeling_crate import CrateLayer
from ..language_modeling import WhiteboxDecoderModel, WhiteboxForCausalLM
from .configuration_causal_crate import CausalCrateConfig

__all__ = ["CausalCrateLayer", "CausalCrateModel", "CausalCrateForCausalLM"]


class CausalCrateLayer(CrateLayer):
    """``Z½ = Z + CausalMSSA(LN Z)``, then ``ISTA(LN Z½)`` (or ``Z½ + ODL(LN Z½)``)."""

    def __init__(self, config: CausalCrateConfig, layer_idx: int):
        super().__init__(config, is_causal=True, layer_idx=layer_idx)
        if config.projection_init == "torch":
            # nn.Linear's kaiming-uniform init (std ≈ 1/√(3d), not GPT-2's 0.02): with no residual around ISTA,
            # GPT-2's small U and c_proj leave the layer output nearly independent of the context, and the
            # model sits at the unigram loss (issue 11, docs/results/language.md).
            for linear in self.attention.modules():
                if isinstance(linear, nn.Linear):
                    linear._keep_torch_init = True
        else:
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
