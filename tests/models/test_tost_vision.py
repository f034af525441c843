"""Vision ToST: the XCiT scaffold around non-causal TSSA."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from whitebox_hf import ToSTConfig, ToSTForImageClassification, ToSTModel, ToSTVisionConfig, ToSTVisionModel


def tiny_config(**overrides):
    kwargs = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=16, patch_size=4,
                  num_channels=1, num_labels=3, bias=True, layer_norm_eps=1e-6, layer_scale_init=1.0)
    kwargs.update(overrides)
    return ToSTVisionConfig(**kwargs)


def test_forward_shapes_loss_and_attentions():
    model = ToSTForImageClassification(tiny_config()).eval()
    pixels = torch.randn(2, 1, 16, 16)
    outputs = model(pixels, labels=torch.tensor([0, 2]), output_attentions=True, output_hidden_states=True)
    assert outputs.logits.shape == (2, 3)
    assert torch.isfinite(outputs.loss)
    # Two TSSA blocks (memberships over 16 patches) then two class-attention maps over cls + 16 patches.
    assert [tuple(a.shape) for a in outputs.attentions] == [(2, 4, 16)] * 2 + [(2, 4, 1, 17)] * 2
    torch.testing.assert_close(outputs.attentions[0].sum(1), torch.ones(2, 16))
    torch.testing.assert_close(outputs.attentions[-1].sum(-1), torch.ones(2, 4, 1))


def test_patch_tokens_are_permutation_equivariant_inside_the_tssa_blocks():
    """TSSA sees token statistics, not positions: permuting patch tokens permutes the block outputs."""
    model = ToSTForImageClassification(tiny_config()).eval()
    block = model.tost.layers[0]
    tokens = torch.randn(2, 16, 32)
    permutation = torch.randperm(16)
    torch.testing.assert_close(block(tokens[:, permutation])[0], block(tokens)[0][:, permutation], atol=1e-6, rtol=1e-5)


def test_other_image_sizes_and_sdpa_free_class_attention_paths_agree():
    model = ToSTForImageClassification(tiny_config()).eval()
    pixels = torch.randn(1, 1, 24, 24)  # not the configured 16: the Fourier encoding is computed per grid
    plain = model(pixels).logits
    with_maps = model(pixels, output_attentions=True).logits  # eager class attention
    torch.testing.assert_close(plain, with_maps, atol=1e-6, rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    model = ToSTForImageClassification(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is ToSTForImageClassification
    pixels = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(reloaded(pixels).logits, model(pixels).logits, atol=0, rtol=0)


def test_vision_tost_has_its_own_model_type_and_automodel_gives_the_vision_backbone(tmp_path):
    """A vision ToST folder is `tost_vision`: `AutoModel` gives `ToSTVisionModel` (not the causal `ToSTModel`)
    with every backbone weight loaded."""
    model = ToSTForImageClassification(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is ToSTVisionConfig
    backbone, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(backbone) is ToSTVisionModel and not isinstance(backbone, ToSTModel)
    assert info["missing_keys"] == set() and info["unexpected_keys"] <= {"classifier.weight", "classifier.bias"}
    pixels = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(backbone.eval()(pixels).pooler_output, model.tost(pixels).pooler_output,
                               atol=0, rtol=0)


def test_the_language_configuration_is_refused():
    with pytest.raises(TypeError, match="ToSTVisionConfig"):
        ToSTForImageClassification(ToSTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4))
    with pytest.raises(ValueError, match="unknown preset"):
        ToSTVisionConfig.from_preset("tost-base")  # a language preset


def test_bad_pixel_values_and_config():
    model = ToSTForImageClassification(tiny_config())
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="patch_size"):
        tiny_config(patch_size=6)
