import pytest
import torch
from transformers import AutoModelForMaskedImageModeling

from whitebox_hf import CrateConfig, CrateForMaskedImageModeling
from whitebox_hf.models.crate import CRATE_PRESETS
from whitebox_hf.models.crate.modeling_crate import (
    CrateMAEDecoderLayer,
    patchify,
    sincos_position_embedding_2d,
    unpatchify,
)
from whitebox_hf.objectives import masked_patch_loss

IMAGE, PATCH, CHANNELS = 16, 4, 3
NUM_PATCHES = (IMAGE // PATCH) ** 2


def tiny_config(**overrides):
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE, patch_size=PATCH,
                  num_channels=CHANNELS, patch_embedding_type="conv", ista_lambda=0.5, mask_ratio=0.75)
    kwargs.update(overrides)
    return CrateConfig(**kwargs)


def tiny_model(**overrides):
    torch.manual_seed(0)
    return CrateForMaskedImageModeling(tiny_config(**overrides)).eval()


def pixels(batch=2, seed=1):
    return torch.randn(batch, CHANNELS, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- presets and config
@pytest.mark.parametrize("name, ours, book", [("crate-mae-small", 24_846_528, 25_405_824),
                                              ("crate-mae-base", 43_745_280, 44_638_464)])
def test_presets_match_the_book_once_decoder_embed_and_frozen_tables_are_added(name, ours, book):
    config = CrateConfig.from_preset(name)
    assert (config.ista_lambda, config.mask_ratio, config.decoder_num_hidden_layers) == (0.5, 0.75, 12)
    with torch.device("meta"):
        model = CrateForMaskedImageModeling(config)
    d = config.hidden_size
    assert model.num_parameters() == ours
    # Spec §6: the book counts the unused decoder_embed Linear(d→d) and the two frozen 197×d sin-cos tables.
    assert ours + (d * d + d) + 2 * 197 * d == book
    assert round(book / 1e6, 2) == {"crate-mae-small": 25.41, "crate-mae-base": 44.64}[name]
    assert "crate-mae-small" in CRATE_PRESETS


def test_config_defaults_and_validation():
    config = tiny_config()
    assert config.decoder_num_hidden_layers == config.num_hidden_layers
    assert tiny_config(decoder_num_hidden_layers=1).decoder_num_hidden_layers == 1
    assert tiny_config().norm_pix_loss is False
    for ratio in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="mask_ratio"):
            tiny_config(mask_ratio=ratio)
    with pytest.raises(ValueError, match="decoder_num_hidden_layers"):
        tiny_config(decoder_num_hidden_layers=0)


# ---------------------------------------------------------------- forward
def test_shapes_and_outputs():
    model = tiny_model(decoder_num_hidden_layers=3)
    out = model(pixels(), output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (2, NUM_PATCHES, PATCH * PATCH * CHANNELS)
    assert out.reconstruction.shape == (2, CHANNELS, IMAGE, IMAGE)
    assert out.last_hidden_state.shape == (2, NUM_PATCHES + 1, 32)
    assert out.mask.shape == (2, NUM_PATCHES) and out.mask.dtype == torch.bool
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert len(out.decoder_hidden_states) == 4 and len(out.decoder_attentions) == 3
    assert out.attentions[0].shape == (2, 4, NUM_PATCHES + 1, NUM_PATCHES + 1)
    torch.testing.assert_close(out.reconstruction, model.unpatchify(out.logits))
    assert isinstance(model(pixels(), return_dict=False), tuple)


def test_loss_is_masked_patch_loss_on_patchified_targets():
    for norm_pix_loss in (False, True):
        model = tiny_model(norm_pix_loss=norm_pix_loss)
        images = pixels()
        out = model(images)
        target = patchify(images, PATCH)
        expected = masked_patch_loss(out.logits, target, out.mask, normalize_target=norm_pix_loss)
        torch.testing.assert_close(out.loss, expected)
        # By hand: only masked patches count.
        if not norm_pix_loss:
            per_patch = (out.logits - target).square().mean(-1)
            torch.testing.assert_close(out.loss, per_patch[out.mask].mean())


def test_sampled_mask_respects_the_ratio_and_the_generator():
    model = tiny_model(mask_ratio=0.5)
    out = model(pixels(batch=3), generator=torch.Generator().manual_seed(3))
    assert out.mask.sum(dim=1).tolist() == [NUM_PATCHES // 2] * 3
    again = model(pixels(batch=3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.mask, again.mask)
    torch.testing.assert_close(out.loss, again.loss)


def test_nothing_masked_gives_no_loss():
    model = tiny_model(mask_ratio=0.0)
    out = model(pixels())
    assert not out.mask.any() and out.loss is None
    assert out.reconstruction.shape == (2, CHANNELS, IMAGE, IMAGE)


def test_masked_pixels_do_not_reach_the_encoder():
    model = tiny_model()
    images = pixels(batch=1)
    mask = torch.zeros(1, NUM_PATCHES, dtype=torch.bool)
    mask[0, [0, 5, 6, 15]] = True
    changed = images.clone()
    grid = IMAGE // PATCH
    for index in (0, 5, 6, 15):
        row, col = divmod(index, grid)
        changed[..., row * PATCH:(row + 1) * PATCH, col * PATCH:(col + 1) * PATCH] = 100.0
    first, second = model(images, bool_masked_pos=mask), model(changed, bool_masked_pos=mask)
    torch.testing.assert_close(first.last_hidden_state, second.last_hidden_state)
    torch.testing.assert_close(first.logits, second.logits)
    # ... while visible pixels do change the encoding.
    changed[..., :PATCH, PATCH:2 * PATCH] += 1.0  # patch 1 is visible
    assert not torch.allclose(model(changed, bool_masked_pos=mask).last_hidden_state, first.last_hidden_state)


def test_decoder_layer_subtracts_mssa():
    torch.manual_seed(0)
    layer = CrateMAEDecoderLayer(tiny_config()).eval()
    hidden = torch.randn(2, 5, 32)
    y = layer.dictionary_norm(hidden) @ layer.dictionary.weight.T
    compression, _ = layer.attention(layer.attention_norm(y))
    output, _ = layer(hidden)
    torch.testing.assert_close(output, y - compression)
    assert layer.dictionary.bias is None


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedImageModeling.from_pretrained(tmp_path).eval()
    assert type(loaded) is CrateForMaskedImageModeling
    torch.testing.assert_close(loaded.crate.embeddings.position_embeddings, model.crate.embeddings.position_embeddings)
    torch.testing.assert_close(loaded.decoder_position_embeddings, model.decoder_position_embeddings)
    mask = model(pixels()).mask
    first, second = model(pixels(), bool_masked_pos=mask), loaded(pixels(), bool_masked_pos=mask)
    torch.testing.assert_close(first.logits, second.logits)
    torch.testing.assert_close(first.loss, second.loss)


def test_positions_are_frozen_sincos_buffers():
    model = tiny_model()
    names = {name for name, _ in model.named_parameters()}
    assert not any("position" in name for name in names)
    assert "position_embeddings" not in model.state_dict()
    table = sincos_position_embedding_2d(32, 4, 4)
    torch.testing.assert_close(model.crate.embeddings.position_embeddings, table)
    torch.testing.assert_close(model.decoder_position_embeddings, table)
    assert torch.all(table[0, 0] == 0)  # the class-token slot carries no position
    # Larger images evaluate the same formula on the larger grid.
    out = model(torch.randn(1, CHANNELS, 24, 24))
    assert out.reconstruction.shape == (1, CHANNELS, 24, 24)


def test_patchify_round_trip():
    images = pixels()
    patches = patchify(images, PATCH)
    assert patches.shape == (2, NUM_PATCHES, PATCH * PATCH * CHANNELS)
    torch.testing.assert_close(unpatchify(patches, PATCH, CHANNELS), images)
    # The first patch is the top-left ps×ps block, (row, col, channel) order.
    torch.testing.assert_close(patches[0, 0], images[0, :, :PATCH, :PATCH].permute(1, 2, 0).reshape(-1))


def test_bad_inputs():
    model = tiny_model()
    with pytest.raises(ValueError, match="bool_masked_pos"):
        model(pixels(), bool_masked_pos=torch.zeros(2, NUM_PATCHES + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool_masked_pos"):
        model(pixels(), bool_masked_pos=torch.zeros(NUM_PATCHES, dtype=torch.bool))
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(2, 1, IMAGE, IMAGE))
    with pytest.raises(ValueError, match="divisible by 4"):
        CrateForMaskedImageModeling(tiny_config(hidden_size=30, num_attention_heads=3))


def test_training_step_reaches_every_parameter():
    model = tiny_model().train()
    model(pixels()).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_encoder_is_a_crate_model_that_automodel_loads_alone(tmp_path):
    """`AutoModel` on a CRATE-MAE folder gives the encoder (`CrateModel`) with every weight loaded; its
    class-token feature is the MAE representation's class token."""
    from transformers import AutoModel

    from whitebox_hf import CrateModel

    model = tiny_model()
    assert isinstance(model.crate, CrateModel) and model.base_model is model.crate
    assert model.config.position_embedding_type == "sincos"
    model.save_pretrained(tmp_path)
    encoder, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(encoder) is CrateModel and info["missing_keys"] == set()
    assert all(key == "crate.embeddings.mask_token" or key.startswith("decoder_") for key in info["unexpected_keys"])
    nothing_hidden = torch.zeros(2, NUM_PATCHES, dtype=torch.bool)
    representation = model(pixels(), bool_masked_pos=nothing_hidden).last_hidden_state
    torch.testing.assert_close(encoder.eval()(pixels()).pooler_output, representation[:, 0])


def test_checkpoints_of_the_old_root_layout_still_load(tmp_path):
    """Before the encoder moved under `crate`, its weights sat at the root (`encoder_layers`, ...)."""
    from safetensors.torch import load_file, save_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert any(key.startswith("crate.layers.") for key in state)
    old_names = {"crate.embeddings.patch_embeddings": "patch_embeddings", "crate.embeddings.cls_token": "cls_token",
                 "crate.embeddings.mask_token": "mask_token", "crate.layers": "encoder_layers",
                 "crate.pooler_norm": "encoder_norm"}

    def old_key(key):
        for new, old in old_names.items():
            if key.startswith(new):
                return old + key[len(new):]
        return key

    save_file({old_key(k): v for k, v in state.items()}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded, info = CrateForMaskedImageModeling.from_pretrained(tmp_path, output_loading_info=True)
    assert (info["missing_keys"], info["unexpected_keys"]) == (set(), set())
    mask = model(pixels()).mask
    torch.testing.assert_close(loaded.eval()(pixels(), bool_masked_pos=mask).logits,
                               model(pixels(), bool_masked_pos=mask).logits, atol=0, rtol=0)
    # Re-saving writes the current layout.
    loaded.save_pretrained(tmp_path / "again")
    assert set(load_file(tmp_path / "again" / "model.safetensors")) == set(state)


def test_learned_positions_are_refused_and_an_empty_cpu_mask_has_no_loss():
    with pytest.raises(ValueError, match="position_embedding_type"):
        CrateForMaskedImageModeling(tiny_config(position_embedding_type="learned"))
    model = tiny_model()
    assert model(pixels(), bool_masked_pos=torch.zeros(2, NUM_PATCHES, dtype=torch.bool)).loss is None
