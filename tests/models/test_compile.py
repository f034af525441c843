"""Accelerator-ready forwards: `torch.compile` gives the eager outputs, and no forward reads a tensor value back
to the host when nothing needs it.

Compiling is slow on two CPU cores, so one tiny model per family: CRATE through inductor (C++ code generation
with gcc: the real compiler path) as one whole graph, the causal LMs through ``aot_eager`` (dynamo tracing and
AOTAutograd, no code generation), which checks the same tracing at a fraction of the time.

The host-synchronisation test runs the forwards on the ``meta`` device: a meta tensor has no values, so any
``.item()``, ``bool(tensor)``, ``int(tensor)`` or ``if tensor:`` raises there, exactly where an accelerator would
stall. (Value checks of the inputs, e.g. token ids below the vocabulary size, run on CPU tensors only.)
"""

import pytest
import torch

from whitebox_hf import (
    AoTConfig,
    AoTForCausalLM,
    CausalCrateConfig,
    CausalCrateForCausalLM,
    CrateConfig,
    CrateForImageClassification,
    CrateForMaskedImageModeling,
    ToSTConfig,
    ToSTForCausalLM,
    ToSTForImageClassification,
    ToSTVisionConfig,
)
from whitebox_hf.objectives import random_patch_mask

LANGUAGE = dict(vocab_size=61, max_position_embeddings=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=16, patch_size=4, num_channels=3)

LANGUAGE_MODELS = {
    "causal_crate": lambda: CausalCrateForCausalLM(CausalCrateConfig(**LANGUAGE)),
    "aot": lambda: AoTForCausalLM(AoTConfig(**LANGUAGE)),
    "tost": lambda: ToSTForCausalLM(ToSTConfig(**LANGUAGE, layer_scale_init=1.0)),
}


def pixels(device="cpu"):
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).to(device)


def token_ids(device="cpu"):
    return torch.randint(0, 61, (2, 7), generator=torch.Generator().manual_seed(2)).to(device)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_crate_equals_eager_through_inductor_as_one_graph():
    torch.manual_seed(0)
    model = CrateForImageClassification(CrateConfig(**VISION, num_labels=3)).eval()
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        eager, fast = model(pixels()), compiled(pixels())
    torch.testing.assert_close(fast.logits, eager.logits, atol=1e-6, rtol=1e-5)


def test_compiled_crate_training_step_equals_eager_as_one_graph():
    """The training path (dropout off, labels, cross-entropy) traces as one graph too, and its gradients match.
    ``aot_eager``: dynamo and AOTAutograd (the joint forward-backward graph) without code generation."""
    torch.manual_seed(0)
    model = CrateForImageClassification(CrateConfig(**VISION, num_labels=3)).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    labels = torch.tensor([0, 2])
    losses, grads = [], []
    for run in (model, compiled):
        model.zero_grad(set_to_none=True)
        loss = run(pixels(), labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
    for fast, eager in zip(grads[1], grads[0]):
        torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-4)


def test_compiled_crate_layer_equals_eager_under_bf16_autocast():
    """One CRATE layer through inductor under bf16 autocast (the benchmark's compiled bf16 path): inductor may
    fuse casts, LayerNorm and the ReLU differently from eager, so the match is to bf16 resolution."""
    from whitebox_hf.models.crate.modeling_crate import CrateLayer

    torch.manual_seed(0)
    layer = CrateLayer(CrateConfig(**VISION, num_labels=3)).eval()
    compiled = torch.compile(layer, backend="inductor", fullgraph=True)
    tokens = torch.randn(2, 17, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager, fast = layer(tokens)[0], compiled(tokens)[0]
    assert fast.dtype == eager.dtype
    assert (fast.float() - eager.float()).abs().max() < 4 * 2**-8 * eager.float().abs().max()


@pytest.mark.parametrize("family", list(LANGUAGE_MODELS))
def test_compiled_causal_lm_equals_eager(family):
    torch.manual_seed(0)
    model = LANGUAGE_MODELS[family]().eval()
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        eager = model(token_ids(), use_cache=False).logits
        fast = compiled(token_ids(), use_cache=False).logits
    torch.testing.assert_close(fast, eager, atol=1e-6, rtol=1e-5)


def test_compiled_mae_with_a_sampled_mask_equals_eager():
    torch.manual_seed(0)
    model = CrateForMaskedImageModeling(CrateConfig(**VISION, patch_embedding_type="conv", ista_lambda=0.5,
                                                    decoder_num_hidden_layers=1)).eval()
    # Not one graph: dynamo cannot trace a draw from a `torch.Generator` object (it breaks the graph there).
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        eager = model(pixels(), generator=torch.Generator().manual_seed(3))
        fast = compiled(pixels(), generator=torch.Generator().manual_seed(3))
    assert torch.equal(fast.mask, eager.mask)
    torch.testing.assert_close(fast.loss, eager.loss, atol=1e-6, rtol=1e-5)


def meta_copy(make_model):
    with torch.device("meta"):
        return make_model().eval()


@pytest.mark.parametrize("family", list(LANGUAGE_MODELS))
def test_causal_lm_forward_never_reads_values_on_an_accelerator(family):
    model = meta_copy(LANGUAGE_MODELS[family])
    ids = token_ids("meta")
    assert model(ids, use_cache=False).logits.shape == (2, 7, 61)
    # A padding mask and the cached generation path stay on the device too.
    mask = torch.ones(2, 7, dtype=torch.long, device="meta")
    assert model(ids, attention_mask=mask).logits.shape == (2, 7, 61)


def test_vision_forwards_never_read_values_on_an_accelerator():
    crate = meta_copy(lambda: CrateForImageClassification(CrateConfig(**VISION, num_labels=3)))
    assert crate(pixels("meta"), labels=torch.zeros(2, dtype=torch.long, device="meta")).logits.shape == (2, 3)
    tost = meta_copy(lambda: ToSTForImageClassification(ToSTVisionConfig(**VISION, num_labels=3)))
    assert tost(pixels("meta")).logits.shape == (2, 3)
    mae = meta_copy(lambda: CrateForMaskedImageModeling(CrateConfig(**VISION, patch_embedding_type="conv")))
    assert mae(pixels("meta")).loss.shape == ()  # the mask is sampled on the device
    given = torch.zeros(2, 16, dtype=torch.bool, device="meta")
    assert mae(pixels("meta"), bool_masked_pos=given).loss is not None  # no look at the mask's values


def test_the_cpu_keeps_the_value_checks():
    model = LANGUAGE_MODELS["aot"]().eval()
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(ValueError, match="sequence too long"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_masks_are_drawn_on_the_generator_device():
    """A CPU generator gives the same mask whatever the target device (here: meta, which has no values, only
    the device to move to)."""
    generator = torch.Generator().manual_seed(0)
    on_cpu = random_patch_mask(2, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert random_patch_mask(2, 16, 0.75, generator=generator, device="meta").device.type == "meta"
    assert torch.equal(random_patch_mask(2, 16, 0.75, generator=torch.Generator().manual_seed(0), device="cpu"),
                       on_cpu)
