import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    pipeline,
)

from whitebox_hf import CrateConfig, CrateForImageClassification, CrateImageProcessor, CrateModel
from whitebox_hf.models.crate import CRATE_PRESETS


def count_on_meta(config):
    with torch.device("meta"):
        return CrateForImageClassification(config).num_parameters()


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize(
    "name, expected",
    [("crate-tiny", 6_090_856), ("crate-small", 13_116_328), ("crate-base", 22_796_008), ("crate-large", 77_641_192)],
)
def test_crate_presets_match_the_book_parameter_counts(name, expected):
    assert count_on_meta(CrateConfig.from_preset(name)) == expected


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large"])
def test_crate_alpha_presets_have_10d2_plus_4d_per_layer(size):
    config = CrateConfig.from_preset(f"crate-alpha-{size}")
    d, layers = config.hidden_size, config.num_hidden_layers
    stem = 3 * 16 * 16 * d + d  # conv patchifier with bias
    rest = d + 197 * d + 2 * d + d * 1000 + 1000  # cls, positions, final LN, head
    assert count_on_meta(config) == layers * (10 * d * d + 4 * d) + stem + rest


def test_crate_alpha_base_is_72_33_million():
    assert count_on_meta(CrateConfig.from_preset("crate-alpha-base")) == 72_328_936


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="crate-tiny"):
        CrateConfig.from_preset("crate-huge")
    assert set(CRATE_PRESETS) >= {"crate-tiny", "crate-alpha-large"}


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("block_type", ["ista", "odl"])
def test_outputs_have_transformers_shapes(tiny_crate_config, block_type):
    config = tiny_crate_config(block_type=block_type)
    model = CrateForImageClassification(config).eval()
    out = model(torch.randn(2, 1, 8, 8), output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (2, 3)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (2, 17, 32) for h in out.hidden_states)
    assert len(out.attentions) == config.num_hidden_layers
    for attention in out.attentions:
        assert attention.shape == (2, 4, 17, 17)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 17))


def test_ista_layers_output_nonnegative_sparse_codes(tiny_crate_config):
    model = CrateModel(tiny_crate_config()).eval()
    hidden_states = model(torch.randn(4, 1, 8, 8), output_hidden_states=True).hidden_states
    assert hidden_states[0].min() < 0  # the embedding is not a sparse code
    for layer_output in hidden_states[1:]:
        assert layer_output.min() >= 0
        assert (layer_output == 0).any()


def test_odl_layers_are_residual(tiny_crate_config):
    model = CrateModel(tiny_crate_config(block_type="odl")).eval()
    hidden_states = model(torch.randn(4, 1, 8, 8), output_hidden_states=True).hidden_states
    assert hidden_states[-1].min() < 0  # CRATE-α adds the decoded code to the stream, no ReLU on the output


def test_sdpa_and_eager_models_agree(tiny_crate_config):
    config = tiny_crate_config()
    sdpa = CrateForImageClassification(config).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    eager = CrateForImageClassification._from_config(config, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    pixels = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(sdpa(pixels).logits, eager(pixels).logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sdpa(pixels).logits, sdpa(pixels, output_attentions=True).logits, atol=1e-5,
                               rtol=1e-5)


def test_mean_pooling_differs_from_cls(tiny_crate_config):
    cls_model = CrateModel(tiny_crate_config()).eval()
    mean_model = CrateModel(tiny_crate_config(pooling="mean")).eval()
    mean_model.load_state_dict(cls_model.state_dict())
    pixels = torch.randn(2, 1, 8, 8)
    out = mean_model(pixels)
    torch.testing.assert_close(out.pooler_output, mean_model.pooler_norm(out.last_hidden_state.mean(1)))
    assert not torch.allclose(out.pooler_output, cls_model(pixels).pooler_output)


def test_other_image_sizes_interpolate_positions(tiny_crate_config):
    model = CrateForImageClassification(tiny_crate_config()).eval()
    out = model(torch.randn(1, 1, 12, 6), output_hidden_states=True)
    assert out.hidden_states[0].shape == (1, 1 + 6 * 3, 32)


def test_return_dict_false_gives_tuples(tiny_crate_config):
    model = CrateForImageClassification(tiny_crate_config()).eval()
    pixels, labels = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    loss, logits = model(pixels, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_crate_config):
    model = CrateForImageClassification(tiny_crate_config())
    pixels, labels = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    model(pixels, labels=labels).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    model.train()
    model(pixels, labels=labels).loss.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, reference[name], msg=name)


def test_bfloat16_forward(tiny_crate_config):
    model = CrateForImageClassification(tiny_crate_config()).to(torch.bfloat16).eval()
    assert model(torch.randn(2, 1, 8, 8)).logits.dtype == torch.bfloat16


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip_through_auto_classes(tiny_crate_config, tmp_path):
    model = CrateForImageClassification(tiny_crate_config(id2label={0: "a", 1: "b", 2: "c"})).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "crate"

    assert isinstance(AutoConfig.from_pretrained(tmp_path), CrateConfig)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, CrateForImageClassification)
    pixels = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(reloaded(pixels).logits, model(pixels).logits)
    assert reloaded.config.id2label == {0: "a", 1: "b", 2: "c"}

    backbone = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(backbone, CrateModel)
    torch.testing.assert_close(backbone(pixels).pooler_output, model.crate(pixels).pooler_output)
    saved = load_file(tmp_path / "model.safetensors")
    torch.testing.assert_close(saved["crate.layers.0.sparse_coding.dictionary"],
                               model.crate.layers[0].sparse_coding.dictionary)


def test_loading_refuses_pickled_weights(tiny_crate_config, tmp_path):
    model = CrateForImageClassification(tiny_crate_config())
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        AutoModelForImageClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="safetensors"):
        CrateForImageClassification.from_pretrained(tmp_path, use_safetensors=False)


def test_image_processor_and_pipeline(tiny_crate_config, tmp_path):
    from PIL import Image

    model = CrateForImageClassification(tiny_crate_config(id2label={0: "a", 1: "b", 2: "c"})).eval()
    model.save_pretrained(tmp_path)
    CrateImageProcessor(num_channels=1, size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5]).save_pretrained(
        tmp_path
    )
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, CrateImageProcessor)
    image = Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy())
    # Pipelines open images as RGB; the processor brings them back to the model's single channel.
    rgb = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
    assert rgb.shape == (1, 1, 8, 8)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 1, 8, 8)
    classify = pipeline("image-classification", model=str(tmp_path))
    predictions = classify(image, top_k=3)
    pixels = rgb
    assert {p["label"] for p in predictions} == {"a", "b", "c"}
    expected = model(pixels).logits.softmax(-1)[0]
    assert max(p["score"] for p in predictions) == pytest.approx(expected.max().item(), abs=1e-5)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(image_size=10, patch_size=4), "patch_size"),
        (dict(block_type="mlp"), "block_type"),
        (dict(pooling="max"), "pooling"),
        (dict(patch_embedding_type="linearx"), "patch_embedding_type"),
        (dict(ista_lambda=-0.1), "ista_lambda"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
    ],
)
def test_config_validation(tiny_crate_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_crate_config(**overrides)


def test_head_dim_may_differ_from_width_over_heads(tiny_crate_config):
    config = tiny_crate_config(hidden_size=30, num_attention_heads=4, head_dim=6)
    model = CrateModel(config)
    assert model.layers[0].attention.subspace_projection.weight.shape == (24, 30)


@pytest.mark.parametrize("patch_embedding_type", ["linear", "conv"])
def test_forward_rejects_bad_pixels(tiny_crate_config, patch_embedding_type):
    model = CrateForImageClassification(tiny_crate_config(patch_embedding_type=patch_embedding_type))
    with pytest.raises(ValueError, match=r"3 channels.*num_channels=1"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"9x8 is not divisible by patch_size=2"):
        model(torch.randn(1, 1, 9, 8))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        model(torch.randn(1, 8, 8))
    with pytest.raises(ValueError, match="pixel_values"):
        model(None)


def test_image_processor_rejects_statistics_of_the_wrong_channel_count():
    from whitebox_hf.models.crate import CrateImageProcessor

    assert list(CrateImageProcessor(num_channels=1).image_mean) == [0.5]  # ViT's default, one value per channel
    with pytest.raises(ValueError, match="image_mean"):
        CrateImageProcessor(num_channels=1, image_mean=[0.5, 0.5, 0.5], image_std=[0.5])
    with pytest.raises(ValueError, match="image_std"):
        CrateImageProcessor(num_channels=1, image_mean=[0.5], image_std=[0.5, 0.5, 0.5])
    processor = CrateImageProcessor(num_channels=1, image_mean=[0.5], image_std=[0.25])
    assert list(processor.image_mean) == [0.5]
