"""Causal language models: CausalCRATE, the CRATE-α LM, AoT-MSSA, AoT-MHSA and ToST.

Each family is checked for what a causal LM promises: causal invariance, cached generation equal to
recomputation, left padding equal to no padding, SDPA equal to eager, save/load round trips through the Auto
classes, and clear errors on bad input.
"""

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, DynamicCache, pipeline

import whitebox_hf
from whitebox_hf import (
    AoTConfig,
    AoTForCausalLM,
    CausalCrateConfig,
    CausalCrateForCausalLM,
    ToSTConfig,
    ToSTForCausalLM,
    nanogpt_parameter_count,
)
from whitebox_hf.nn import TokenStatisticsCache

VOCAB = 61
CONTEXT = 40
SHAPE = dict(vocab_size=VOCAB, max_position_embeddings=CONTEXT, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=4)

FAMILIES = {
    "causal_crate": (CausalCrateForCausalLM, lambda: CausalCrateConfig(**SHAPE)),
    "crate_alpha_lm": (CausalCrateForCausalLM, lambda: CausalCrateConfig(**SHAPE, block_type="odl",
                                                                         final_layer_norm=True)),
    "aot_mssa": (AoTForCausalLM, lambda: AoTConfig(**SHAPE)),
    "aot_mhsa": (AoTForCausalLM, lambda: AoTConfig(**SHAPE, attention_type="mhsa")),
    # Layer scale 1 (not the authors' 1e-5) so that the token mixer visibly shapes the outputs under test.
    "tost": (ToSTForCausalLM, lambda: ToSTConfig(**SHAPE, layer_scale_init=1.0)),
}
ATTENTION_FAMILIES = ["causal_crate", "crate_alpha_lm", "aot_mssa", "aot_mhsa"]


def make_model(family, **overrides):
    model_class, make_config = FAMILIES[family]
    config = make_config()
    for key, value in overrides.items():
        setattr(config, key, value)
    return model_class(config).eval()


def tokens(batch, length, seed=0):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy_without_cache(model, prompt, steps):
    sequence = prompt
    for _ in range(steps):
        logits = model(sequence, use_cache=False).logits[:, -1]
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    return sequence


@pytest.mark.parametrize(
    "preset, config_class, model_class, expected_millions",
    [
        ("causal-crate-base", CausalCrateConfig, CausalCrateForCausalLM, 59.9),
        ("aot-mssa-base", AoTConfig, AoTForCausalLM, 101.9),
        ("aot-mssa-medium", AoTConfig, AoTForCausalLM, 182.5),
        ("aot-mhsa-base", AoTConfig, AoTForCausalLM, 122.0),
        ("tost-base", ToSTConfig, ToSTForCausalLM, 109.6),
        ("tost-medium", ToSTConfig, ToSTForCausalLM, 303.7),
        ("tost-large", ToSTConfig, ToSTForCausalLM, 655.1),
    ],
)
def test_preset_parameter_counts_match_the_book(preset, config_class, model_class, expected_millions):
    with torch.device("meta"):
        model = model_class(config_class.from_preset(preset))
    count = nanogpt_parameter_count(model) / 1e6
    assert count == pytest.approx(expected_millions, rel=0.005)


@pytest.mark.parametrize("preset, expected_millions", [("tost-tiny", 5.77), ("tost-small", 22.59)])
def test_vision_tost_preset_parameter_counts(preset, expected_millions):
    with torch.device("meta"):
        model = whitebox_hf.ToSTForImageClassification(whitebox_hf.ToSTVisionConfig.from_preset(preset))
    assert model.num_parameters() / 1e6 == pytest.approx(expected_millions, rel=0.005)


def test_nanogpt_count_excludes_position_table_and_counts_tied_embedding_once():
    model = make_model("causal_crate")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    all_unique = sum(p.numel() for p in model.parameters())
    assert nanogpt_parameter_count(model) == all_unique - CONTEXT * 32


@pytest.mark.parametrize("family", list(FAMILIES))
def test_causal_invariance(family):
    model = make_model(family)
    x = tokens(2, 24)
    full = model(x, use_cache=False).logits
    for n in (1, 7, 23):
        prefix = model(x[:, :n], use_cache=False).logits
        torch.testing.assert_close(prefix, full[:, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_depend_on_earlier_tokens(family):
    """The other half of causality: the token mixer really reads the past (a model that ignored it would
    pass every invariance test above)."""
    model = make_model(family)
    x = tokens(1, 12)
    changed = x.clone()
    changed[0, 0] = (x[0, 0] + 1) % VOCAB
    difference = (model(x, use_cache=False).logits - model(changed, use_cache=False).logits)[0].abs().amax(-1)
    assert torch.all(difference[1:] > 1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cached_forward_equals_full_forward(family):
    model = make_model(family)
    x = tokens(2, 20)
    full = model(x).logits
    first = model(x[:, :12], use_cache=True)
    second = model(x[:, 12:17], past_key_values=first.past_key_values, use_cache=True)
    third = model(x[:, 17:], past_key_values=second.past_key_values, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, second.logits, third.logits], 1), full, atol=1e-5, rtol=1e-5)
    assert third.past_key_values.get_seq_length() == 20


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_generate_with_cache_equals_recomputation(family):
    model = make_model(family)
    prompt = tokens(2, 6, seed=1)
    generated = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert generated.shape == (2, 18)
    torch.testing.assert_close(generated, greedy_without_cache(model, prompt, 12), atol=0, rtol=0)


@pytest.mark.parametrize("family", ["causal_crate", "aot_mhsa", "tost"])
def test_beam_search_reorders_the_cache(family):
    model = make_model(family)
    prompt = tokens(2, 5, seed=4)
    kwargs = dict(max_new_tokens=6, num_beams=3, do_sample=False, pad_token_id=0)
    torch.testing.assert_close(
        model.generate(prompt, **kwargs), model.generate(prompt, use_cache=False, **kwargs), atol=0, rtol=0
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_left_padded_batch_equals_unpadded_runs(family):
    model = make_model(family)
    long_prompt, short_prompt = tokens(1, 9, seed=2), tokens(1, 5, seed=3)
    pad = 0
    batch = torch.cat([long_prompt, torch.cat([torch.full((1, 4), pad), short_prompt], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    generated = model.generate(batch, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=pad)
    alone_long = model.generate(long_prompt, max_new_tokens=8, do_sample=False, pad_token_id=pad)
    alone_short = model.generate(short_prompt, max_new_tokens=8, do_sample=False, pad_token_id=pad)
    torch.testing.assert_close(generated[0], alone_long[0], atol=0, rtol=0)
    torch.testing.assert_close(generated[1, 4:], alone_short[0], atol=0, rtol=0)
    # The logits of the real tokens agree too, not just the argmax.
    padded_logits = model(batch, attention_mask=mask, use_cache=False).logits[1, 4:]
    torch.testing.assert_close(padded_logits, model(short_prompt, use_cache=False).logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_sdpa_equals_eager_with_cache_and_padding(family):
    model = make_model(family)
    x = tokens(2, 16)
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model.config._attn_implementation = implementation
        first = model(x[:, :10], attention_mask=mask[:, :10], use_cache=True)
        second = model(x[:, 10:], attention_mask=mask, past_key_values=first.past_key_values, use_cache=True)
        outputs[implementation] = torch.cat([first.logits, second.logits], 1)
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_attention_rows_sum_to_one_and_are_causal(family):
    model = make_model(family)
    attentions = model(tokens(1, 12), output_attentions=True, use_cache=False).attentions
    assert len(attentions) == 2
    for probabilities in attentions:
        assert probabilities.shape == (1, 4, 12, 12)
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(1, 4, 12))
        assert torch.all(probabilities.triu(diagonal=1) == 0)


def test_mssa_cache_stores_the_shared_projection_once():
    model = make_model("causal_crate")
    cache = model(tokens(1, 10), use_cache=True).past_key_values
    assert isinstance(cache, DynamicCache)
    assert cache.layers[0].keys.shape == (1, 4, 10, 8)
    assert cache.layers[0].values.numel() == 0


def test_causal_crate_sparse_codes_are_non_negative():
    model = make_model("causal_crate")
    hidden_states = model(tokens(2, 12), output_hidden_states=True, use_cache=False).hidden_states
    # No final LayerNorm in crate.py: every layer output, the last included, is an ISTA code.
    for layer_output in hidden_states[1:]:
        assert torch.all(layer_output >= 0)
        assert (layer_output == 0).float().mean() > 0.05


def test_tost_state_does_not_grow_with_context():
    model = make_model("tost")
    cache = model(tokens(1, 5), use_cache=True).past_key_values
    assert isinstance(cache, TokenStatisticsCache)
    sizes = [cache.layers[0].energy.numel() + cache.layers[0].weighted_moment.numel() + cache.layers[0].mass.numel()]
    for step in range(20):
        cache = model(tokens(1, 1, seed=step), past_key_values=cache, use_cache=True).past_key_values
        layer = cache.layers[0]
        sizes.append(layer.energy.numel() + layer.weighted_moment.numel() + layer.mass.numel())
    assert len(set(sizes)) == 1 and sizes[0] == 32 + 32 + 4
    assert cache.get_seq_length() == 25


def test_tost_rejects_a_key_value_cache():
    model = make_model("tost")
    with pytest.raises(TypeError, match="TokenStatisticsCache"):
        model(tokens(1, 4), past_key_values=DynamicCache(config=model.config), use_cache=True)


def test_tost_memberships_are_a_distribution_over_heads():
    model = make_model("tost")
    memberships = model(tokens(2, 12), output_attentions=True, use_cache=False).attentions
    for pi in memberships:
        assert pi.shape == (2, 4, 12)
        assert torch.all(pi >= 0)
        torch.testing.assert_close(pi.sum(1), torch.ones(2, 12))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_load_round_trip_through_auto_classes(family, tmp_path):
    model = make_model(family)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    x = tokens(2, 10)
    torch.testing.assert_close(reloaded(x).logits, model(x).logits, atol=0, rtol=0)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is type(model.model)


@pytest.mark.parametrize("family", ["causal_crate", "tost"])
def test_gradient_checkpointing_gives_the_same_gradients(family):
    model = make_model(family)
    model.train()
    x = tokens(2, 12)
    model(x, labels=x).loss.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(x, labels=x).loss.backward()
    for name, p in model.named_parameters():
        if name in reference:
            torch.testing.assert_close(p.grad, reference[name], atol=1e-6, rtol=1e-5)


def test_text_generation_pipeline_from_a_saved_folder(tmp_path):
    from whitebox_hf.tokenization import train_bpe_tokenizer

    corpus = ["The coding rate of the tokens is reduced by each layer."] * 20 + ["Sparse codes are non-negative."] * 20
    tokenizer = train_bpe_tokenizer(corpus, vocab_size=300, model_max_length=CONTEXT)
    config = CausalCrateConfig(**{**SHAPE, "vocab_size": len(tokenizer)}, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = CausalCrateForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    prompt, settings = "The coding rate", dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    inputs = tokenizer(prompt, return_tensors="pt")
    expected = model.generate(**inputs, **settings)[0]
    # Greedy decoding through the pipeline (from the saved folder) is exactly the in-memory model's generate.
    assert expected.shape[0] == inputs.input_ids.shape[1] + 5
    assert generator(prompt, return_tensors=True, **settings)[0]["generated_token_ids"] == expected.tolist()
    text = generator(prompt, **settings)[0]["generated_text"]
    assert text == tokenizer.decode(expected, skip_special_tokens=True) and text != prompt


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bad_input_raises_value_error_naming_the_limit(family):
    model = make_model(family)
    with pytest.raises(ValueError, match="vocab_size=61"):
        model(torch.tensor([[1, 2, VOCAB]]))
    with pytest.raises(ValueError, match="vocab_size=61"):
        model(torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=f"max_position_embeddings={CONTEXT}"):
        model(tokens(1, CONTEXT + 1))
    with pytest.raises(ValueError, match="attention_mask"):
        model(tokens(2, 5), attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids"):
        model(torch.ones(1, 3))
    # The limit also holds when a cache carries the context past it.
    cache = model(tokens(1, CONTEXT), use_cache=True).past_key_values
    with pytest.raises(ValueError, match=f"max_position_embeddings={CONTEXT}"):
        model(tokens(1, 1), past_key_values=cache, use_cache=True)


@pytest.mark.parametrize(
    "config_class, overrides, field",
    [
        (CausalCrateConfig, dict(block_type="mlp"), "block_type"),
        (AoTConfig, dict(attention_type="linear"), "attention_type"),
        (ToSTConfig, dict(layer_scale_init=0.0), "layer_scale_init"),
        (ToSTConfig, dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (AoTConfig, dict(max_position_embeddings=0), "max_position_embeddings"),
        (CausalCrateConfig, dict(vocab_size=-3), "vocab_size"),
    ],
)
def test_bad_configuration_raises_value_error(config_class, overrides, field):
    with pytest.raises(ValueError, match=field):
        config_class(**overrides)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        ToSTConfig.from_preset("tost-gigantic")
