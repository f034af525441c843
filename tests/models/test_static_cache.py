"""Flat decode: a preallocated `StaticCache` gives the `DynamicCache` results, token for token.

A static cache returns keys for all ``max_cache_len`` slots at every step, most of them unfilled; the decoder
masks them by position (`WhiteboxDecoderModel.static_cache_mask`), or takes the 4-D mask `generate` prepares
for compileable caches. ToST keeps its own constant-size `TokenStatisticsCache` whatever is asked (it has no
keys to preallocate): its static-cache generation must simply stay equal.

Compilation: the decode step of one LM is compiled as one whole graph with ``aot_eager`` (dynamo tracing and
AOTAutograd, ~10 s on two CPU cores). Inductor's C++ code generation gave the same tokens when tried by hand
(50 s on the shared CPU), too slow for the suite.
"""

import pytest
import torch
from transformers import DynamicCache, StaticCache

from whitebox_hf.nn import TokenStatisticsCache

from test_language_models import ATTENTION_FAMILIES, FAMILIES, greedy_without_cache, make_model, tokens

STEPS = 10


def greedy(model, prompt, **kwargs):
    output = model.generate(prompt, max_new_tokens=STEPS, do_sample=False, pad_token_id=0,
                            return_dict_in_generate=True, output_logits=True, **kwargs)
    return output.sequences, torch.stack(output.logits, 1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_static_cache_generation_equals_dynamic_cache_and_recomputation(family):
    model = make_model(family)
    prompt = tokens(2, 6, seed=1)
    static_tokens, static_logits = greedy(model, prompt, cache_implementation="static")
    dynamic_tokens, dynamic_logits = greedy(model, prompt)
    reference = greedy_without_cache(model, prompt, STEPS)
    assert static_tokens.shape == (2, 6 + STEPS)
    assert torch.equal(static_tokens, reference) and torch.equal(dynamic_tokens, reference)
    torch.testing.assert_close(static_logits, dynamic_logits, atol=1e-5, rtol=1e-5)
    # The logits of the last step against a full recomputation of the whole sequence.
    full = model(reference[:, :-1], use_cache=False).logits[:, -1]
    torch.testing.assert_close(static_logits[:, -1], full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_left_padded_static_generation_equals_dynamic(family, implementation):
    model = make_model(family)
    model.config._attn_implementation = implementation
    batch = torch.cat([tokens(1, 9, seed=2), torch.cat([torch.zeros(1, 4, dtype=torch.long), tokens(1, 5, seed=3)], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    static_tokens, static_logits = greedy(model, batch, attention_mask=mask, cache_implementation="static")
    dynamic_tokens, dynamic_logits = greedy(model, batch, attention_mask=mask)
    assert torch.equal(static_tokens, dynamic_tokens)
    torch.testing.assert_close(static_logits, dynamic_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_chunked_forward_through_a_static_cache_equals_the_full_forward(family):
    model = make_model(family)
    x = tokens(2, 20)
    mask = torch.ones_like(x)
    mask[0, :3] = 0  # left padding on the first row
    full = model(x, attention_mask=mask, use_cache=False).logits
    cache = StaticCache(config=model.config, max_cache_len=32)  # 12 slots stay unfilled to the end
    logits = []
    for start, end in ((0, 12), (12, 13), (13, 20)):
        output = model(x[:, start:end], attention_mask=mask[:, :end], past_key_values=cache, use_cache=True)
        assert output.past_key_values is cache
        logits.append(output.logits)
    torch.testing.assert_close(torch.cat(logits, 1)[mask.bool()], full[mask.bool()], atol=1e-5, rtol=1e-5)
    assert int(cache.get_seq_length()) == 20
    # The preallocated keys do not grow: every layer holds max_cache_len slots from the first step on.
    assert cache.layers[0].keys.shape[-2] == 32


def test_unfilled_slots_are_masked_not_merely_zero():
    """Garbage in the unfilled slots must not change the outputs: they are masked, not relied on to be zero."""
    model = make_model("aot_mhsa")
    x = tokens(1, 8)
    cache = StaticCache(config=model.config, max_cache_len=24)
    first = model(x[:, :5], past_key_values=cache, use_cache=True).logits
    for layer in cache.layers:
        layer.keys[:, :, 5:].normal_(0, 100.0)
        layer.values[:, :, 5:].normal_(0, 100.0)
    second = model(x[:, 5:], past_key_values=cache, use_cache=True).logits
    torch.testing.assert_close(torch.cat([first, second], 1), model(x, use_cache=False).logits, atol=1e-5, rtol=1e-5)


def test_mssa_static_cache_stores_the_shared_projection_once():
    model = make_model("causal_crate")
    cache = StaticCache(config=model.config, max_cache_len=16)
    model(tokens(1, 5), past_key_values=cache, use_cache=True)
    assert cache.layers[0].keys.shape == (1, 4, 16, 8)
    assert cache.layers[0].values.numel() == 0  # MSSA's value is its key


def test_tost_keeps_its_token_statistics_under_a_static_request():
    model = make_model("tost")
    prompt = tokens(1, 4)
    output = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0,
                            cache_implementation="static", return_dict_in_generate=True)
    assert isinstance(output.past_key_values, TokenStatisticsCache)
    with pytest.raises(TypeError, match="TokenStatisticsCache"):
        model(prompt, past_key_values=StaticCache(config=model.config, max_cache_len=8), use_cache=True)


def test_static_cache_overflow_and_bad_prepared_masks_are_refused():
    model = make_model("causal_crate")
    cache = StaticCache(config=model.config, max_cache_len=6)
    model(tokens(1, 4), past_key_values=cache, use_cache=True)
    with pytest.raises(ValueError, match="max_cache_len"):
        model(tokens(1, 3), past_key_values=cache, use_cache=True)
    with pytest.raises(ValueError, match="4-D `attention_mask`"):
        model(tokens(1, 1), attention_mask=torch.ones(1, 1, 1, 5, dtype=torch.bool), past_key_values=cache,
              use_cache=True)
    with pytest.raises(TypeError, match="bool or additive float"):
        model(tokens(1, 1), attention_mask=torch.ones(1, 1, 1, 6, dtype=torch.long), past_key_values=cache,
              use_cache=True)
    with pytest.raises(ValueError, match="2-D"):
        make_model("tost")(tokens(1, 2), attention_mask=torch.ones(1, 1, 2, 2, dtype=torch.bool))


def test_static_decode_never_reads_the_cache_length_on_an_accelerator():
    """On the meta device (no values) any read of the cache's length tensor would raise, as it would stall a GPU."""
    with torch.device("meta"):
        model = make_model("aot_mhsa")
    cache = StaticCache(config=model.config, max_cache_len=16)
    ids = tokens(2, 5).to("meta")
    model(ids, past_key_values=cache, use_cache=True)
    mask = torch.ones(2, 6, dtype=torch.long, device="meta")
    assert model(ids[:, :1], attention_mask=mask, past_key_values=cache, use_cache=True).logits.shape == (2, 1, 61)


def test_compiled_static_decode_is_one_graph_and_equals_eager():
    torch._dynamo.reset()
    model = make_model("causal_crate")
    prompt = tokens(2, 6, seed=1)
    eager_tokens, eager_logits = greedy(model, prompt, cache_implementation="static")
    model.forward = torch.compile(model.forward, backend="aot_eager", fullgraph=True)
    try:
        compiled_tokens, compiled_logits = greedy(model, prompt, cache_implementation="static")
    finally:
        torch._dynamo.reset()
    assert torch.equal(compiled_tokens, eager_tokens)
    torch.testing.assert_close(compiled_logits, eager_logits, atol=1e-5, rtol=1e-5)


def test_dynamic_cache_behaviour_is_unchanged():
    model = make_model("aot_mssa")
    x = tokens(1, 9)
    cache = DynamicCache(config=model.config)
    model(x[:, :4], past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 4 and isinstance(cache.get_seq_length(), int)
