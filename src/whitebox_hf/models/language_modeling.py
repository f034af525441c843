"""The nanoGPT scaffold shared by the white-box causal language models (CausalCRATE, AoT, ToST).

Every family keeps its own configuration, layer and model classes (``models/<family>/``); what they share
lives here once:

- `WhiteboxCausalLMConfig`: the fields of the scaffold (vocabulary, context, width, depth, dropout, …);
- `WhiteboxDecoderModel`: token + position embeddings → L family layers → optional final LayerNorm, with
  input checks, position ids (from the attention mask, so left padding works), the causal/padding mask and
  the generation cache: a growing `DynamicCache` by default, or a preallocated `StaticCache`
  (``generate(..., cache_implementation="static")``), whose unfilled slots the mask hides, so that a decode step
  has the same shapes at every length (flat latency, and one graph under `torch.compile`);
- `WhiteboxForCausalLM`: the tied LM head, the shifted cross-entropy loss and `GenerationMixin`.

Initialisation follows nanoGPT / GPT-2: normal(0.02) for linear and embedding weights, zero biases, and the
residual output projections scaled by 1/√(2L). Blocks the authors left at their own init (ISTA, ODL, layer
scale, TSSA temperatures and biases) keep it. CausalCRATE keeps `nn.Linear`'s own init in its layers by default
(`CausalCrateConfig.projection_init`).
"""

import math

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from ..nn import ISTA, OvercompleteDictionaryLearning, TokenStatisticsSelfAttention, causal_attention_mask
from ..utils.validation import check_binary_mask, check_finite_tensor, check_floating_tensor, check_index_tensor
from .modeling_utils import WhiteboxPreTrainedModel, run_layers
from .validation import check_positive, check_positive_int, check_probability, strict_config

__all__ = [
    "WhiteboxCausalLMConfig",
    "WhiteboxCausalLMPreTrainedModel",
    "WhiteboxDecoderModel",
    "WhiteboxForCausalLM",
    "nanogpt_parameter_count",
]


@strict_config
class WhiteboxCausalLMConfig(PreTrainedConfig):
    r"""
    Fields shared by every white-box causal language model (nanoGPT scaffold). Family configurations
    (`CausalCrateConfig`, `AoTConfig`, `ToSTConfig`) add their own.

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
    """

    vocab_size: int = 50304
    max_position_embeddings: int = 1024
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    use_position_embeddings: bool = True
    final_layer_norm: bool = True
    tie_word_embeddings: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        check_positive_int(self, "vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
                           "num_attention_heads")
        check_positive(self, "layer_norm_eps", "initializer_range")
        check_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob")
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """The configuration ``name`` (one of the family's ``PRESETS``), with any field overridden by keyword."""
        presets = getattr(cls, "PRESETS", {})
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


def nanogpt_parameter_count(model: nn.Module) -> int:
    """Parameters counted as nanoGPT does: shared (tied) tensors once, the position table excluded."""
    unique = {id(p): p.numel() for p in model.parameters()}
    for module in model.modules():
        if isinstance(module, WhiteboxDecoderModel) and module.position_embeddings is not None:
            unique.pop(id(module.position_embeddings.weight), None)
    return sum(unique.values())


class WhiteboxCausalLMPreTrainedModel(WhiteboxPreTrainedModel):
    """Base of the decoder models and causal LMs: nanoGPT initialisation and the common class attributes."""

    config: WhiteboxCausalLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear) and getattr(module, "_keep_torch_init", False):
            # nn.Linear.reset_parameters: kaiming-uniform weight, uniform(±1/√fan_in) bias.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.weight.shape[1])
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Linear):
            # GPT-2: projections that write into the residual stream are scaled down by 1/√(2L).
            scale = 1.0 / math.sqrt(2 * self.config.num_hidden_layers) if getattr(module, "_is_residual_output", False) else 1.0
            init.normal_(module.weight, mean=0.0, std=std * scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (ISTA, OvercompleteDictionaryLearning)):
            # The dictionaries keep their kaiming init: nanoGPT's init only touches Linear and Embedding.
            module.reset_parameters()
        elif isinstance(module, TokenStatisticsSelfAttention):
            init.ones_(module.temperature)
            if module.position_bias is not None:
                init.zeros_(module.position_bias)
        if isinstance(getattr(module, "cls_token", None), nn.Parameter):  # vision ToST's class token
            init.trunc_normal_(module.cls_token, std=std)
        if hasattr(module, "layer_scale_init") and hasattr(module, "attention_scale"):
            init.constant_(module.attention_scale, module.layer_scale_init)
            init.constant_(module.mlp_scale, module.layer_scale_init)


class WhiteboxDecoderModel(WhiteboxCausalLMPreTrainedModel):
    """Embeddings, the family's layers and the final LayerNorm; returns `BaseModelOutputWithPast`.

    Subclasses set `layer_class` (called as ``layer_class(config, layer_idx)``) and may override `make_cache`.
    Every layer is called as ``layer(hidden_states, attention_mask=, token_mask=, position_ids=,
    past_key_values=, output_attentions=, attn_implementation=)`` and returns ``(hidden_states, weights)``.
    """

    layer_class: type[nn.Module]
    # True for softmax-attention families, which need the 4-D causal/padding mask; ToST needs only the 2-D one.
    uses_attention_mask_4d = True

    def __init__(self, config: WhiteboxCausalLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size) if config.use_position_embeddings else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([self.layer_class(config, layer_idx) for layer_idx in range(config.num_hidden_layers)])
        self.final_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=getattr(config, "bias", True))
            if config.final_layer_norm
            else None
        )
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def make_cache(self) -> Cache:
        """The cache `forward` creates when `use_cache` is on and none is given."""
        return DynamicCache(config=self.config)

    @staticmethod
    def static_cache_length(past_key_values: Cache | None) -> int | None:
        """The preallocated key length of a static cache (`StaticCache`), or None for a growing one."""
        if past_key_values is None or not getattr(past_key_values, "is_compileable", False):
            return None
        if any(getattr(layer, "is_sliding", False) for layer in past_key_values.layers):
            # A sliding-window layer rolls its slots: the slot index is then not the position the mask assumes.
            raise ValueError(
                "`past_key_values` must be a full-attention static cache: these models have no sliding window, got "
                f"a {type(past_key_values).__name__} with sliding layers"
            )
        length = past_key_values.get_max_length(0)
        return int(length) if length is not None and length > 0 else None

    @staticmethod
    def static_cache_mask(past_length, num_tokens: int, key_length: int, padding_mask, dtype, device) -> torch.Tensor:
        """Additive mask ``(batch or 1, 1, num_tokens, key_length)`` for a static cache of ``key_length`` slots.

        The new tokens fill slots ``past_length ..``: query ``i`` sees slot ``j`` iff ``j ≤ past_length + i``,
        which also hides every unfilled slot (they all lie after the query). ``past_length`` may be the cache's
        0-d length tensor, so that no host sync (or graph break under `torch.compile`) is needed.
        ``padding_mask`` ``(batch, past + new)`` (1 = real token) hides padded keys.
        """
        query_slots = torch.arange(num_tokens, device=device) + past_length
        allowed = (torch.arange(key_length, device=device)[None, :] <= query_slots[:, None])[None, None]
        if padding_mask is not None:
            # Slots past the filled ones are hidden by causality already: pad the padding mask with "real".
            padding = torch.nn.functional.pad(padding_mask.to(torch.bool), (0, key_length - padding_mask.shape[-1]),
                                              value=True)
            allowed = allowed & padding[:, None, None, :].to(device)
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)

    def _prepared_attention_mask(self, attention_mask, batch_size, num_tokens, key_length, dtype):
        """A 4-D mask (what `generate` prepares for a static cache), checked and made additive in ``dtype``."""
        if not self.uses_attention_mask_4d:
            raise ValueError(
                f"`attention_mask` must be a 2-D (batch, sequence) padding mask for {type(self).__name__}, got shape "
                f"{tuple(attention_mask.shape)}"
            )
        expected = (1, num_tokens, key_length)
        if attention_mask.ndim != 4 or attention_mask.shape[0] not in (1, batch_size) or tuple(attention_mask.shape[1:]) != expected:
            raise ValueError(
                f"a 4-D `attention_mask` must have shape (batch or 1, {', '.join(map(str, expected))}) = (batch, 1, "
                f"new tokens, key length), got {tuple(attention_mask.shape)}"
            )
        if attention_mask.dtype == torch.bool:  # True = attend (SDPA's convention)
            return torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device).masked_fill(
                ~attention_mask, torch.finfo(dtype).min
            )
        if not attention_mask.is_floating_point():
            raise TypeError(f"a 4-D `attention_mask` must be bool or additive float, got dtype {attention_mask.dtype}")
        return attention_mask.to(dtype)

    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, past_length):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of `input_ids` and `inputs_embeds`")
        if input_ids is not None:
            if not isinstance(input_ids, torch.Tensor):
                raise TypeError(f"`input_ids` must be a torch.Tensor, got {type(input_ids).__name__}")
            if input_ids.ndim != 2:
                raise ValueError(f"`input_ids` must be (batch, sequence), got shape {tuple(input_ids.shape)}")
            # The range check reads the ids back to the host: done on CPU tensors only, as on an accelerator it
            # would stall the device at every forward (an out-of-range id then fails in the embedding lookup).
            check_index_tensor("input_ids", input_ids, self.config.vocab_size, "vocab_size")
            batch_size, num_tokens = input_ids.shape
        else:
            if not isinstance(inputs_embeds, torch.Tensor):
                raise TypeError(f"`inputs_embeds` must be a torch.Tensor, got {type(inputs_embeds).__name__}")
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"`inputs_embeds` must be (batch, sequence, {self.config.hidden_size}), got {tuple(inputs_embeds.shape)}"
                )
            check_floating_tensor("inputs_embeds", inputs_embeds)
            check_finite_tensor("inputs_embeds", inputs_embeds)
            batch_size, num_tokens = inputs_embeds.shape[:2]
        if num_tokens == 0 or batch_size == 0:
            name = "input_ids" if input_ids is not None else "inputs_embeds"
            raise ValueError(f"`{name}` is empty (shape {(batch_size, num_tokens)}): at least one sequence of at "
                             f"least one token is needed")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor):
                raise TypeError(f"`attention_mask` must be a torch.Tensor, got {type(attention_mask).__name__}")
            if attention_mask.ndim == 4:
                return batch_size, num_tokens  # a prepared mask: checked against the key length in `forward`
            if past_length is None:  # a static cache's length on an accelerator: only the batch can be checked
                if attention_mask.ndim != 2 or attention_mask.shape[0] != batch_size:
                    raise ValueError(f"`attention_mask` must have shape (batch = {batch_size}, past + new tokens), "
                                     f"got {tuple(attention_mask.shape)}")
            elif tuple(attention_mask.shape) != (batch_size, past_length + num_tokens):
                raise ValueError(
                    f"`attention_mask` must have shape (batch, past + new tokens) = ({batch_size}, "
                    f"{past_length + num_tokens}), got {tuple(attention_mask.shape)}"
                )
            check_binary_mask("attention_mask", attention_mask)
        return batch_size, num_tokens

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and past_key_values is None:
            past_key_values = self.make_cache()
        if not use_cache:
            past_key_values = None
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        # A static cache reports its length as a 0-d tensor (so a compiled step does not bake it in): kept as a
        # tensor for the positions and the mask, read as an int only for the eager-mode checks.
        static_length = self.static_cache_length(past_key_values)
        compiling = torch.compiler.is_compiling()
        if isinstance(past_length, int):
            past_length_int = past_length
        else:  # reading it back would sync an accelerator at every step (and break a compiled graph)
            past_length_int = int(past_length) if past_length.device.type == "cpu" and not compiling else None
        batch_size, num_tokens = self._check_inputs(input_ids, inputs_embeds, attention_mask, past_length_int)
        prepared_mask = attention_mask if attention_mask is not None and attention_mask.ndim == 4 else None
        if prepared_mask is not None:
            attention_mask = None
        if static_length is not None and past_length_int is not None and past_length_int + num_tokens > static_length:
            raise ValueError(
                f"the static cache holds {static_length} tokens, but {past_length_int} cached + {num_tokens} new "
                f"were given: build it with a larger `max_cache_len`"
            )

        # Looking at tensor values syncs with the host; on an accelerator only shapes are checked (see below).
        on_cpu = (input_ids if input_ids is not None else inputs_embeds).device.type == "cpu" and not compiling
        if on_cpu and attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # nothing padded: the plain causal path is exact and faster
        if position_ids is None and attention_mask is None:
            # Known from shapes alone (a static cache's length only where reading it is free).
            last_position = past_length_int + num_tokens - 1 if past_length_int is not None else None
            position_ids = torch.arange(num_tokens, device=self.device)[None] + past_length
            position_ids = position_ids.expand(batch_size, -1)
        else:
            if position_ids is None:
                # Left padding: real tokens count their positions from the first real token.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -num_tokens:]
            # Data-dependent: checked on CPU; on an accelerator an out-of-range position fails in the lookup.
            last_position = int(position_ids.max()) if position_ids.device.type == "cpu" and not compiling else None
        if last_position is not None and last_position >= self.config.max_position_embeddings:
            raise ValueError(
                f"sequence too long: position {last_position} reached, but this model supports at most "
                f"max_position_embeddings={self.config.max_position_embeddings} tokens"
            )

        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position_embeddings is not None:
            hidden_states = hidden_states + self.position_embeddings(position_ids)
        hidden_states = self.dropout(hidden_states)

        mask_4d = None
        key_length = static_length if static_length is not None else past_length + num_tokens
        if prepared_mask is not None:
            mask_4d = self._prepared_attention_mask(prepared_mask, batch_size, num_tokens, key_length,
                                                    hidden_states.dtype)
        elif self.uses_attention_mask_4d and static_length is not None:
            # Every step attends over all preallocated slots: the mask is needed even without padding.
            mask_4d = self.static_cache_mask(past_length, num_tokens, static_length, attention_mask,
                                             hidden_states.dtype, hidden_states.device)
        elif self.uses_attention_mask_4d and attention_mask is not None:
            mask_4d = causal_attention_mask(
                num_tokens, past_length + num_tokens, attention_mask, hidden_states.dtype, hidden_states.device
            )
        token_mask = attention_mask[:, -num_tokens:] if attention_mask is not None else None
        backend = self._attention_backend(output_attentions)

        hidden_states, all_hidden_states, all_attentions = run_layers(
            self.layers,
            hidden_states,
            output_hidden_states,
            output_attentions,
            attention_mask=mask_4d,
            token_mask=token_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            attn_implementation=backend,
        )
        if self.final_norm is not None:
            hidden_states = self.final_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states = all_hidden_states[:-1] + (hidden_states,)

        if not return_dict:
            return tuple(
                v for v in (hidden_states, past_key_values, all_hidden_states, all_attentions) if v is not None
            )
        return BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


class WhiteboxForCausalLM(WhiteboxCausalLMPreTrainedModel, GenerationMixin):
    """A decoder model with the (tied) LM head; `generate()` and `pipeline("text-generation")` work.

    Subclasses set `model_class` (their `WhiteboxDecoderModel`).
    """

    model_class: type[WhiteboxDecoderModel]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: WhiteboxCausalLMConfig):
        super().__init__(config)
        self.model = self.model_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch, sequence)`, *optional*):
            Next-token targets, aligned with `input_ids` (the shift happens inside); -100 is ignored.
        logits_to_keep (`int` or `torch.Tensor`, *optional*, defaults to 0):
            Compute logits only for the last `logits_to_keep` positions (0: all), as `generate` requests.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if "cache" in kwargs and past_key_values is None:  # the name transformers ≥ 5.24 uses
            past_key_values = kwargs.pop("cache")
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden_states = hidden_states[:, -logits_to_keep:] if logits_to_keep > 0 else hidden_states
        else:
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            if not isinstance(labels, torch.Tensor):
                raise TypeError(f"`labels` must be a torch.Tensor, got {type(labels).__name__}")
            if tuple(labels.shape) != tuple(logits.shape[:2]):
                raise ValueError(f"`labels` must have shape {tuple(logits.shape[:2])}, got {tuple(labels.shape)}")
            # -100 marks positions without a target (transformers' ignore_index).
            check_index_tensor("labels", labels, self.config.vocab_size, "vocab_size", ignore_index=-100,
                               long_only=True)
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        if not return_dict:
            output = (logits,) + tuple(
                v for v in (outputs.past_key_values, outputs.hidden_states, outputs.attentions) if v is not None
            )
            return ((loss,) + output) if loss is not None else output
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
