"""`whitebox_sdpa`: the white-box models' attention kernel as a transformers attention implementation, so the
transformers baselines (ViT, GPT-2) can run it. It must compute what transformers' own SDPA computes."""

import pytest
import torch
from transformers import (AutoModelForImageClassification, GPT2Config, GPT2LMHeadModel, ViTConfig,
                          ViTForImageClassification)

from whitebox_hf.models.attention_interface import WHITEBOX_ATTENTION, register_whitebox_attention
from whitebox_hf.training.builders import build_image_classifier


def _vit(implementation: str) -> ViTForImageClassification:
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=16, patch_size=4, num_channels=1, num_labels=3)
    model = ViTForImageClassification(config)
    model.set_attn_implementation(implementation)
    return model


def test_vit_with_whitebox_sdpa_equals_transformers_sdpa_forward_and_backward():
    register_whitebox_attention()
    images = torch.randn(3, 1, 16, 16)
    outputs, grads = {}, {}
    for name in ("sdpa", WHITEBOX_ATTENTION):
        model = _vit(name)
        logits = model(pixel_values=images).logits
        logits.square().sum().backward()
        outputs[name] = logits.detach()
        grads[name] = {key: p.grad.clone() for key, p in model.named_parameters()}
    torch.testing.assert_close(outputs[WHITEBOX_ATTENTION], outputs["sdpa"], atol=1e-5, rtol=1e-5)
    for key in grads["sdpa"]:
        torch.testing.assert_close(grads[WHITEBOX_ATTENTION][key], grads["sdpa"][key], atol=1e-5, rtol=1e-4, msg=key)


def test_vit_with_whitebox_sdpa_in_bf16_autocast_stays_close_to_fp32():
    register_whitebox_attention()
    images = torch.randn(4, 1, 16, 16)
    model = _vit(WHITEBOX_ATTENTION).eval()
    with torch.no_grad():
        reference = model(pixel_values=images).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(pixel_values=images).logits.float()
    assert (low - reference).abs().max() < 0.05 * reference.abs().max() + 0.05


def test_gpt2_with_whitebox_sdpa_equals_sdpa_with_causality_and_a_padding_mask():
    """GPT-2 hands the implementation a boolean mask (causal and padding): it is turned into an additive one."""
    register_whitebox_attention()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4)).eval()
    ids = torch.randint(0, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in the second row
    logits = {}
    for name in ("sdpa", WHITEBOX_ATTENTION):
        model.set_attn_implementation(name)
        with torch.no_grad():
            logits[name] = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits[WHITEBOX_ATTENTION][0], logits["sdpa"][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[WHITEBOX_ATTENTION][1, 3:], logits["sdpa"][1, 3:], atol=1e-5, rtol=1e-5)
    # and the future is masked: changing the last token leaves the earlier positions' logits unchanged
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    with torch.no_grad():
        later = model(input_ids=changed, attention_mask=mask).logits
    torch.testing.assert_close(later[0, :-1], logits[WHITEBOX_ATTENTION][0, :-1])


def test_the_training_builder_gives_vit_the_whitebox_kernel_and_the_saved_folder_loads_without_it(tmp_path):
    args = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "patch_size": 4}
    model = build_image_classifier(args, 16, 1, ["a", "b"])
    assert model.config._attn_implementation == WHITEBOX_ATTENTION
    for name in ("eager", WHITEBOX_ATTENTION):
        assert build_image_classifier({**args, "vit_attention": name}, 16, 1, ["a", "b"]).config._attn_implementation \
            == name
    model.save_pretrained(tmp_path)
    assert WHITEBOX_ATTENTION not in (tmp_path / "config.json").read_text()
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    images = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=images).logits, model.eval()(pixel_values=images).logits,
                                   atol=1e-5, rtol=1e-5)


def test_an_unknown_implementation_name_is_refused_by_transformers():
    with pytest.raises(ValueError):
        _vit("whitebox_flash")
