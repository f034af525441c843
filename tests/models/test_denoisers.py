"""The class-conditional denoisers: diffusers' DiT with DiT's initialisation, and the CRATE denoiser."""

import pytest
import torch
from diffusers import DiTTransformer2DModel
from diffusers.models.embeddings import LabelEmbedding

from whitebox_hf.models.denoisers import CrateDenoiserTransformer, build_dit_transformer
from whitebox_hf.nn import ISTA, MultiHeadSubspaceSelfAttention

NUM_CLASSES = 3


def tiny_dit(**overrides):
    kwargs = dict(sample_size=8, in_channels=2, num_classes=NUM_CLASSES, hidden_size=32, num_layers=2,
                  num_attention_heads=4, patch_size=2)
    kwargs.update(overrides)
    return build_dit_transformer(**kwargs)


def tiny_crate(**overrides):
    kwargs = dict(sample_size=8, in_channels=2, num_classes=NUM_CLASSES, hidden_size=32, num_layers=2,
                  num_attention_heads=4, patch_size=2)
    kwargs.update(overrides)
    return CrateDenoiserTransformer(**kwargs)


BUILDERS = {"dit": tiny_dit, "crate": tiny_crate}


def inputs(batch=3):
    x = torch.randn(batch, 2, 8, 8)
    timestep = torch.tensor([0.0, 500.0, 1000.0])[:batch]
    labels = torch.tensor([0, 2, NUM_CLASSES])[:batch]  # includes the null id
    return x, timestep, labels


@pytest.mark.parametrize("name", BUILDERS)
def test_fresh_denoiser_outputs_exactly_zero_with_the_right_shape(name):
    model = BUILDERS[name]()
    x, timestep, labels = inputs()
    output = model(x, timestep, class_labels=labels)
    assert output.sample.shape == x.shape
    assert torch.equal(output.sample, torch.zeros_like(x))
    assert model(x, timestep, class_labels=labels, return_dict=False)[0].shape == x.shape


@pytest.mark.parametrize("name", BUILDERS)
def test_out_channels_and_gradients_flow(name):
    model = BUILDERS[name](out_channels=4)
    x, timestep, labels = inputs()
    target = torch.randn(3, 4, 8, 8)
    (model(x, timestep, class_labels=labels).sample - target).square().mean().backward()
    # At zero-init only the output layer receives a gradient; gates, then the blocks follow step by step.
    assert model.proj_out_2.weight.grad.abs().sum() > 0
    assert model.proj_out_1.weight.grad.abs().sum() == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        loss = (model(x, timestep, class_labels=labels).sample - target).square().mean()
        loss.backward()
        optimizer.step()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # Row NUM_CLASSES-1 is unused here, but every parameter tensor must receive a gradient.
    assert not no_grad, no_grad
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_dit_initialisation_is_dits_and_label_dropout_is_off():
    model = tiny_dit()
    assert isinstance(model, DiTTransformer2DModel)
    assert model.config.num_embeds_ada_norm == NUM_CLASSES
    for block in model.transformer_blocks:
        assert torch.count_nonzero(block.norm1.linear.weight) == 0 and torch.count_nonzero(block.norm1.linear.bias) == 0
        assert block.attn1.to_q.weight.abs().sum() > 0  # xavier, not zero
    assert torch.count_nonzero(model.proj_out_1.weight) == 0 and torch.count_nonzero(model.proj_out_2.weight) == 0
    embedders = [m for m in model.modules() if isinstance(m, LabelEmbedding)]
    assert embedders and all(m.dropout_prob == 0.0 for m in embedders)
    assert all(m.embedding_table.num_embeddings == NUM_CLASSES + 1 for m in embedders)  # null row kept
    # Training mode must not change the labels (dropout happens once, in the training script).
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, timestep, labels = inputs()
    torch.manual_seed(0)
    first = model(x, timestep, class_labels=labels).sample
    torch.manual_seed(1)
    assert torch.equal(first, model(x, timestep, class_labels=labels).sample)


def test_crate_denoiser_reuses_the_white_box_operators_and_roundtrips(tmp_path):
    model = tiny_crate()
    block = model.blocks[0]
    assert isinstance(block.attention, MultiHeadSubspaceSelfAttention) and isinstance(block.sparse_coding, ISTA)
    assert model.class_embedder.num_embeddings == NUM_CLASSES + 1
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    reloaded = CrateDenoiserTransformer.from_pretrained(tmp_path)
    x, timestep, labels = inputs()
    torch.testing.assert_close(reloaded(x, timestep, class_labels=labels).sample,
                               model.eval()(x, timestep, class_labels=labels).sample, rtol=0, atol=0)
    # A scalar timestep broadcasts over the batch.
    torch.testing.assert_close(model(x, 500.0, class_labels=labels).sample,
                               model(x, torch.full((3,), 500.0), class_labels=labels).sample)


@pytest.mark.parametrize("kwargs", [dict(patch_size=3), dict(hidden_size=30), dict(num_layers=0)])
@pytest.mark.parametrize("name", BUILDERS)
def test_bad_shapes_raise(name, kwargs):
    with pytest.raises(ValueError):
        BUILDERS[name](**kwargs)
