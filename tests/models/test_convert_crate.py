"""`whitebox_hf.models.crate.convert_crate_checkpoint`: the authors' CRATE / CRATE-α state dicts → our classifier.

No released file is available offline, so the checkpoints are synthetic: the independent reference of the official
module layout (`official_crate_reference.py`) with random values, saved as the authors' scripts save them.
"""

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from whitebox_hf import CrateConfig, CrateForImageClassification
from whitebox_hf.models.crate.convert_crate_checkpoint import (
    convert_crate_checkpoint,
    convert_original_state_dict,
    crate_config_from_original,
    load_original_state_dict,
)

from tests.models.official_crate_reference import (
    OFFICIAL_CRATE_ALPHA_VARIANTS,
    OFFICIAL_CRATE_VARIANTS,
    OfficialCrate,
    official_variant,
    randomise_,
)


def tiny_official(alpha=False, pool="cls", heads=4, dim_head=8, dim=32, seed=0):
    return randomise_(OfficialCrate(32, 8, 5, dim, 2, heads, dim_head, pool=pool, alpha=alpha), seed).eval()


def images(seed=1, batch=3):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def save_like_crate_main(model, path):
    """As Ma-Lab-Berkeley/CRATE main.py saves: under "state_dict", DataParallel's "module." prefix, metadata."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "arch": "CRATE_tiny", "state_dict": state, "best_acc1": torch.tensor(12.5)}, path)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_crate_checkpoint_matches_the_official_forward_and_loads_with_auto(tmp_path, pool):
    official = tiny_official(pool=pool)
    save_like_crate_main(official, tmp_path / "crate.pth")
    model = convert_crate_checkpoint(tmp_path / "crate.pth", tmp_path / "out", num_attention_heads=4, pooling=pool)
    x = images()
    with torch.no_grad():
        expected = official(x)
        torch.testing.assert_close(model(x).logits, expected, rtol=1e-4, atol=1e-4)
        loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
        assert isinstance(loaded, CrateForImageClassification)
        torch.testing.assert_close(loaded(x).logits, expected, rtol=1e-4, atol=1e-4)
    assert loaded.config.pooling == pool and loaded.config.block_type == "ista"
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.size == {"height": 32, "width": 32}
    assert processor.image_mean == pytest.approx([0.485, 0.456, 0.406])


def test_the_numerical_check_can_fail():
    """A wrong pooling (the one thing the weights cannot tell) gives other logits: the comparison is sensitive."""
    official = tiny_official(pool="mean")
    config = crate_config_from_original(official.state_dict(), num_attention_heads=4, pooling="cls")
    model = CrateForImageClassification(config).eval()
    model.load_state_dict(convert_original_state_dict(official.state_dict(), config))
    with torch.no_grad():
        assert (model(images()).logits - official(images())).abs().max() > 1e-2


def test_crate_alpha_safetensors_matches_the_port(tmp_path):
    official = tiny_official(alpha=True)
    save_file(official.state_dict(), tmp_path / "alpha.safetensors")
    model = convert_crate_checkpoint(tmp_path / "alpha.safetensors", tmp_path / "out", num_attention_heads=4)
    assert model.config.block_type == "odl" and model.config.odl_expansion == 4
    assert model.config.layer_norm_eps == 1e-6 and model.config.pooler_layer_norm_eps == 1e-5
    with torch.no_grad():
        loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
        torch.testing.assert_close(loaded(images()).logits, official(images()), rtol=1e-4, atol=1e-4)


def test_single_full_width_head_without_output_projection(tmp_path):
    """The authors drop `to_out` for one head of width d; the converter puts an identity there."""
    official = tiny_official(heads=1, dim_head=32)
    assert not any(".to_out." in key for key in official.state_dict())
    torch.save(official.state_dict(), tmp_path / "one_head.pth")
    model = convert_crate_checkpoint(tmp_path / "one_head.pth", tmp_path / "out", num_attention_heads=1)
    with torch.no_grad():
        torch.testing.assert_close(model(images()).logits, official(images()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [*OFFICIAL_CRATE_VARIANTS, *OFFICIAL_CRATE_ALPHA_VARIANTS])
def test_released_variants_map_onto_our_presets(name):
    """Every released variant, on the meta device (shapes only): the config read from its state dict is our preset,
    every tensor maps with the right shape, and the parameter counts agree (CRATE-B: 22,796,008)."""
    with torch.device("meta"):
        official = official_variant(name)
        state_dict = official.state_dict()
        config = crate_config_from_original(state_dict)
        patch = (OFFICIAL_CRATE_ALPHA_VARIANTS | OFFICIAL_CRATE_VARIANTS)[name][3]
        preset = CrateConfig.from_preset(name, patch_size=patch)
        ours = CrateForImageClassification(config)
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim", "block_type", "patch_size",
                  "image_size", "patch_embedding_type", "attention_output_bias", "layer_norm_eps", "odl_expansion",
                  "num_labels"):
        assert getattr(config, field) == getattr(preset, field), field
    converted = convert_original_state_dict(state_dict, config)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    official_count = sum(p.numel() for p in official.parameters())
    assert ours.num_parameters() == official_count
    if name == "crate-base":
        assert official_count == 22_796_008


def test_wrong_shape_names_the_key_expected_and_received():
    state = tiny_official().state_dict()
    config = crate_config_from_original(state, num_attention_heads=4)
    state["transformer.layers.1.1.fn.weight"] = torch.zeros(32, 31)
    with pytest.raises(ValueError, match=r"`transformer\.layers\.1\.1\.fn\.weight`.*\(32, 32\).*got \(32, 31\)"):
        convert_original_state_dict(state, config)


def test_left_over_and_missing_keys_are_named():
    state = tiny_official().state_dict()
    config = crate_config_from_original(state, num_attention_heads=4)
    with pytest.raises(ValueError, match="extra_head.weight"):
        convert_original_state_dict({**state, "extra_head.weight": torch.zeros(2)}, config)
    del state["mlp_head.0.bias"]
    with pytest.raises(ValueError, match="`mlp_head.0.bias`"):
        convert_original_state_dict(state, config)


def test_unknown_width_needs_the_number_of_heads():
    with pytest.raises(ValueError, match="num_attention_heads"):
        crate_config_from_original(tiny_official().state_dict())


def test_not_a_crate_checkpoint_is_refused():
    with pytest.raises(ValueError, match="neither an official CRATE"):
        crate_config_from_original({"encoder.weight": torch.zeros(2, 2)})


def test_unreadable_files_raise_oserror(tmp_path):
    official = tiny_official()
    torch.save(official.state_dict(), tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    torch.save({"state_dict": {"x": object.__new__(torch.nn.Identity)}}, tmp_path / "code.pth")
    for name in ("truncated.pth", "bad.safetensors", "code.pth", "missing.pth"):
        with pytest.raises(OSError, match=name):
            load_original_state_dict(tmp_path / name)
    torch.save({"epoch": 1}, tmp_path / "no_weights.pth")
    with pytest.raises(OSError, match="no state dict|not tensors"):
        load_original_state_dict(tmp_path / "no_weights.pth")
