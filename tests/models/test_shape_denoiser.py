"""AlignedShapeLatentDenoiser (Michelangelo's ASLDM, spec threed_and_motion.md §1.4): output shape, dependence on
the condition and on the unmasked condition tokens only, the cross-attention and CRATE variants, SDPA = eager,
save/load, the UNet-like layout, and input checks naming the argument."""

import pytest
import torch

from whitebox_hf import AlignedShapeLatentDenoiser

L, D0, DC, LC, BATCH = 5, 4, 6, 3, 2


def tiny(**overrides):
    torch.manual_seed(0)
    options = dict(num_latents=L, latent_channels=D0, condition_dim=DC, hidden_size=16, num_layers=2,
                   num_attention_heads=2)
    return AlignedShapeLatentDenoiser(**{**options, **overrides}).eval()


def inputs(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(BATCH, L, D0, generator=generator), torch.tensor([3, 700]),
            torch.randn(BATCH, LC, DC, generator=generator))


VARIANTS = [dict(), dict(conditioning="cross_attention"), dict(block_type="crate"),
            dict(block_type="crate", conditioning="cross_attention")]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v.values()) or "default")
def test_shape_condition_dependence_and_attention_backends(variant):
    model = tiny(**variant)
    sample, timestep, condition = inputs()
    output = model(sample, timestep, condition).sample
    assert output.shape == (BATCH, L, D0) and torch.isfinite(output).all()
    other = model(sample, timestep, torch.randn_like(condition)).sample
    assert not torch.allclose(output, other, atol=1e-5)  # the condition is read
    assert not torch.allclose(output, model(sample, torch.tensor([900, 10]), condition).sample, atol=1e-5)
    # A masked condition token is never read: changing it changes nothing; an unmasked one does.
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    masked = model(sample, timestep, condition, mask).sample
    changed = condition.clone()
    changed[0, 2], changed[1, 1:] = 5.0, -3.0
    assert torch.allclose(masked, model(sample, timestep, changed, mask).sample, atol=1e-6)
    changed[0, 0] = 5.0
    assert not torch.allclose(masked[0], model(sample, timestep, changed, mask).sample[0], atol=1e-5)
    eager = model(sample, timestep, condition, mask, attn_implementation="eager").sample
    torch.testing.assert_close(eager, masked, atol=1e-5, rtol=1e-5)
    assert model(sample, 3, condition, return_dict=False)[0].shape == (BATCH, L, D0)


def test_layout_unet_skips_and_block_types():
    model = tiny()
    assert len(model.encoder_blocks) == len(model.decoder_blocks) == len(model.skip_projections) == 2
    assert model.skip_projections[0].in_features == 32 and model.skip_projections[0].out_features == 16
    assert model.encoder_blocks[0].cross_attention is None
    crate = tiny(block_type="crate", conditioning="cross_attention")
    block = crate.encoder_blocks[0]
    assert type(block.attention).__name__ == "MultiHeadSubspaceSelfAttention"
    assert type(block.feed_forward).__name__ == "ISTA" and block.cross_attention is not None
    # In-context: the condition tokens occupy sequence positions; cross-attention: they do not. Gradient w.r.t.
    # the latents flows in both.
    sample, timestep, condition = inputs()
    sample.requires_grad_(True)
    crate(sample, timestep, condition).sample.square().sum().backward()
    assert sample.grad.abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    for index, variant in enumerate(VARIANTS):
        model = tiny(**variant)
        model.save_pretrained(tmp_path / str(index))
        reloaded = AlignedShapeLatentDenoiser.from_pretrained(tmp_path / str(index)).eval()
        assert reloaded.config.conditioning == model.config.conditioning
        assert reloaded.config.block_type == model.config.block_type
        sample, timestep, condition = inputs(1)
        assert torch.equal(model(sample, timestep, condition).sample, reloaded(sample, timestep, condition).sample)


def test_bad_configuration_and_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="conditioning"):
        tiny(conditioning="adaln")
    with pytest.raises(ValueError, match="block_type"):
        tiny(block_type="mamba")
    with pytest.raises(ValueError, match="num_attention_heads"):
        tiny(num_attention_heads=3)
    with pytest.raises(ValueError, match="num_layers"):
        tiny(num_layers=0)
    with pytest.raises(ValueError, match="mlp_ratio"):
        tiny(mlp_ratio=0)
    model = tiny()
    sample, timestep, condition = inputs()
    with pytest.raises(ValueError, match="`sample`"):
        model(sample[:, :-1], timestep, condition)
    with pytest.raises(TypeError, match="`sample`"):
        model(sample.long(), timestep, condition)
    with pytest.raises(ValueError, match="`sample`"):
        model(sample.clone().fill_(float("nan")), timestep, condition)
    with pytest.raises(ValueError, match="`timestep`"):
        model(sample, torch.tensor([1, 2, 3]), condition)
    with pytest.raises(ValueError, match="`encoder_hidden_states`"):
        model(sample, timestep, condition[..., :-1])
    with pytest.raises(ValueError, match="`encoder_hidden_states`"):
        model(sample, timestep, condition[:1])
    with pytest.raises(ValueError, match="`encoder_attention_mask`"):
        model(sample, timestep, condition, torch.ones(BATCH, LC + 1))
    with pytest.raises(ValueError, match="`encoder_attention_mask`"):
        model(sample, timestep, condition, torch.full((BATCH, LC), 2))
    with pytest.raises(ValueError, match="`attn_implementation`"):
        model(sample, timestep, condition, attn_implementation="flash")
