"""The text-to-image folder: a plain `StableDiffusionPipeline` of a small AutoencoderKL, a small
UNet2DConditionModel and the frozen all-MiniLM-L6-v2; bad prompts (issue 17 item 8)."""

import json
import logging
import subprocess
import sys

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from whitebox_hf.pipelines.text_to_image import (
    TEXT_MAX_LENGTH,
    assemble_text_to_image_pipeline,
    build_text_to_image_unet,
    check_prompts,
    encode_latents,
    encode_prompts,
    generate_images,
    load_minilm_text_encoder,
    validate_text_to_image_pipeline,
)


def tiny_vae():
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
                         latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.5)


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    encoder, tokenizer = load_minilm_text_encoder()
    unet = build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8)
    return assemble_text_to_image_pipeline(tiny_vae(), unet, encoder, tokenizer)


def test_parts(pipeline):
    assert pipeline.tokenizer.model_max_length == TEXT_MAX_LENGTH == 32
    assert pipeline.unet.config.cross_attention_dim == 384 and pipeline.unet.config.sample_size == 8
    assert pipeline.safety_checker is None and pipeline.feature_extractor is None
    assert not any(p.requires_grad for p in pipeline.text_encoder.parameters())


def test_training_encoding_equals_the_pipelines_prompt_encoding(pipeline):
    prompts = ["Grinning face. Keywords: smileys & emotion, face-smiling", "", "a red apple"]
    ours = encode_prompts(pipeline.text_encoder, pipeline.tokenizer, prompts)
    theirs, negative = pipeline.encode_prompt(prompts, "cpu", 1, True, None)
    assert ours.shape == (3, 32, 384)
    torch.testing.assert_close(ours, theirs)
    # No negative prompt: SD's unconditional input is the empty prompt, the row CFG dropout trains.
    torch.testing.assert_close(negative[0], ours[1])


def test_latents_are_what_the_pipeline_decodes(pipeline):
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = encode_latents(pipeline.vae, pixels)
    expected = pipeline.vae.encode(pixels).latent_dist.mode() * 0.5
    torch.testing.assert_close(latents, expected)
    assert latents.shape == (2, 4, 8, 8)


def test_saved_folder_loads_and_runs_with_plain_diffusers(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["text_encoder"] == ["transformers", "BertModel"]
    assert index["tokenizer"][0] == "transformers" and index["tokenizer"][1] in ("BertTokenizer", "BertTokenizerFast")
    assert index["safety_checker"] == [None, None]
    code = (
        "import sys, torch\n"
        "from diffusers import StableDiffusionPipeline\n"
        f"pipe = StableDiffusionPipeline.from_pretrained({str(tmp_path)!r})\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "out = pipe(['a red apple'], num_inference_steps=2, guidance_scale=3.0, output_type='np',\n"
        "           generator=torch.Generator().manual_seed(0))\n"
        "assert out.images.shape == (1, 32, 32, 3), out.images.shape\n"
        "assert not any(name.startswith('whitebox_hf') for name in sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_generate_images_is_deterministic_and_uint8(pipeline):
    a = generate_images(pipeline, ["a red apple", "a blue car"], guidance_scale=2.0, num_inference_steps=2)
    b = generate_images(pipeline, ["a red apple", "a blue car"], guidance_scale=2.0, num_inference_steps=2)
    assert a.shape == (2, 32, 32, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_too_long_prompt_truncation_is_announced(pipeline):
    records = _Records()
    logger = diffusers_logging.get_logger("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion")
    logger.addHandler(records)
    try:
        pipeline.encode_prompt(["a red apple"], "cpu", 1, False, None)
        assert not any("truncated" in m for m in records.messages)
        long_prompt = "a red apple on a table " * 10 + "with a golden spoon"
        pipeline.encode_prompt([long_prompt], "cpu", 1, False, None)
    finally:
        logger.removeHandler(records)
    truncated = [m for m in records.messages if "truncated" in m]
    assert truncated and "32 tokens" in truncated[0] and "golden spoon" in truncated[0]


@pytest.mark.parametrize("prompts, error, match", [
    ([], ValueError, "`prompts` must be a non-empty list"),
    ("a red apple", TypeError, "`prompts` must be a list of strings, got str"),
    (["a red apple", 3], TypeError, "got int at index 1"),
    (None, TypeError, "got NoneType"),
])
def test_bad_prompts_name_the_argument(pipeline, prompts, error, match):
    with pytest.raises(error, match=match):
        check_prompts(prompts)
    with pytest.raises(error, match=match):
        generate_images(pipeline, prompts, num_inference_steps=1)


def test_bad_generation_settings(pipeline):
    with pytest.raises(ValueError, match="guidance_scale"):
        generate_images(pipeline, ["a"], guidance_scale=0.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate_images(pipeline, ["a"], num_inference_steps=0)


def test_diffusers_own_check_names_a_wrong_prompt_type(pipeline):
    # diffusers' check_inputs rejects a non-str, non-list prompt by name; an empty list it does not catch
    # (IndexError deep inside), which is why generate_images checks prompts first.
    with pytest.raises(ValueError, match="`prompt` has to be of type `str` or `list`"):
        pipeline(5, num_inference_steps=1)


def test_validation_catches_mismatched_parts(pipeline):
    encoder, tokenizer = pipeline.text_encoder, pipeline.tokenizer
    wrong = build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8, cross_attention_dim=128)
    with pytest.raises(ValueError, match="cross_attention_dim"):
        assemble_text_to_image_pipeline(tiny_vae(), wrong, encoder, tokenizer)
    wrong = build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8, latent_channels=3)
    with pytest.raises(ValueError, match="latent channels"):
        assemble_text_to_image_pipeline(tiny_vae(), wrong, encoder, tokenizer)
    with pytest.raises(TypeError, match="StableDiffusionPipeline"):
        validate_text_to_image_pipeline(object())
    with pytest.raises(ValueError, match="block_out_channels"):
        build_text_to_image_unet((), norm_num_groups=8)


# --- the white-box U-Net: every attention MSSA (SubspaceAttnProcessor) ---------------------------------------------


def _mssa_unet():
    torch.manual_seed(1)
    return build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8, attention="mssa")


def test_mssa_self_attention_is_the_packages_mssa_operator():
    """The processor in a diffusers Attention computes nn.MultiHeadSubspaceSelfAttention with the same weights."""
    from whitebox_hf.nn import MultiHeadSubspaceSelfAttention

    unet = _mssa_unet()
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert not hasattr(attn, "to_k") and not hasattr(attn, "to_v")
    reference = MultiHeadSubspaceSelfAttention(16, attn.heads, 16 // attn.heads, output_bias=True)
    reference.subspace_projection.weight.data.copy_(attn.to_q.weight)
    reference.output_projection.load_state_dict(attn.to_out[0].state_dict())
    tokens = torch.randn(2, 64, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(tokens), reference(tokens)[0])


def test_mssa_cross_attention_uses_the_text_coordinates_as_keys_and_values():
    unet = _mssa_unet()
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert hasattr(attn, "to_k") and not hasattr(attn, "to_v")
    image, text = torch.randn(2, 64, 16), torch.randn(2, 32, 384)
    q = attn.to_q(image).view(2, 64, attn.heads, -1).transpose(1, 2)
    k = attn.to_k(text).view(2, 32, attn.heads, -1).transpose(1, 2)
    scores = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    expected = attn.to_out[0]((scores @ k).transpose(1, 2).reshape(2, 64, -1))
    with torch.no_grad():
        torch.testing.assert_close(attn(image, encoder_hidden_states=text), expected.detach())


def test_mssa_unet_has_fewer_parameters_and_its_standard_copy_is_exact():
    from whitebox_hf.pipelines.text_to_image import subspace_unet_to_standard

    unet = _mssa_unet()
    standard = subspace_unet_to_standard(unet)
    plain = build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(standard) == count(plain) > count(unet)
    sample, timesteps, states = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 32, 384)
    with torch.no_grad():
        torch.testing.assert_close(standard(sample, timesteps, encoder_hidden_states=states).sample,
                                   unet(sample, timesteps, encoder_hidden_states=states).sample, rtol=0, atol=0)
    assert {type(p).__name__ for p in standard.attn_processors.values()} == {"AttnProcessor2_0"}


def test_mssa_conversion_errors_name_the_problem():
    from whitebox_hf.pipelines.text_to_image import subspace_attention_, subspace_unet_to_standard

    with pytest.raises(ValueError, match="attention"):
        build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8, attention="linear")
    unet = _mssa_unet()
    with pytest.raises(ValueError, match="already MSSA"):
        subspace_attention_(unet)
    with pytest.raises(ValueError, match="no MSSA attention"):
        subspace_unet_to_standard(build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8))
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    with pytest.raises(ValueError, match="attention_mask"):
        attn(torch.randn(1, 64, 16), attention_mask=torch.ones(1, 64))
