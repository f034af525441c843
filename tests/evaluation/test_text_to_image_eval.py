"""whitebox_hf.evaluation.text_to_image and training/report_conditional.py with a tiny pipeline and a tiny LIFT
image tower (the real frozen all-MiniLM-L6-v2 embeds the captions)."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from tests.conftest import load_training_script
from whitebox_hf.evaluation import text_image_scores
from whitebox_hf.evaluation.text_to_image import fd_effnet_uint8
from whitebox_hf.models.whitebox_clip import MINILM_TEXT_CONFIG, WhiteboxClipConfig, WhiteboxClipModel
from whitebox_hf.pipelines.text_to_image import (
    assemble_text_to_image_pipeline,
    build_text_to_image_unet,
    load_minilm_text_encoder,
)
from whitebox_hf.training.builders import build_image_processor

report_conditional = load_training_script("report_conditional")
CAPTIONS = ["Grinning face. Keywords: smileys & emotion", "Red apple. Keywords: food", "Blue car. Keywords: car"]


@pytest.fixture(scope="module")
def lift_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lift")
    config = WhiteboxClipConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=dict(MINILM_TEXT_CONFIG), text_tower="lift")
    WhiteboxClipModel(config).save_pretrained(folder)
    build_image_processor(32, [0.5] * 3, [0.5] * 3).save_pretrained(folder)
    return folder


def images(n, seed=0):
    return torch.randint(0, 256, (n, 32, 32, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_scores_shapes_and_chance(lift_folder):
    model = WhiteboxClipModel.from_pretrained(lift_folder)
    scores = text_image_scores(model, images(3), CAPTIONS)
    assert -1 <= scores["lift_score"] <= 1 and scores["gallery_size"] == 3
    assert scores["chance_r@1"] == pytest.approx(1 / 3) and 0 <= scores["r@1"] <= 1
    # Two images for the same caption: both count the shared caption as their hit.
    shared = text_image_scores(model, images(2), [CAPTIONS[0], CAPTIONS[0]], gallery=CAPTIONS)
    assert shared["chance_r@1"] == pytest.approx(1 / 3)


def test_scores_reject_bad_inputs(lift_folder):
    model = WhiteboxClipModel.from_pretrained(lift_folder)
    with pytest.raises(ValueError, match="`images`"):
        text_image_scores(model, images(3).float(), CAPTIONS)
    with pytest.raises(ValueError, match="`prompts` must be a list of 3"):
        text_image_scores(model, images(3), CAPTIONS[:2])
    with pytest.raises(ValueError, match="gallery"):
        text_image_scores(model, images(3), CAPTIONS, gallery=CAPTIONS[:1])


def test_fd_of_a_set_with_itself_is_zero():
    a = images(6)
    assert fd_effnet_uint8(a, a, image_size=64) == pytest.approx(0.0, abs=1e-3)
    assert fd_effnet_uint8(a, images(6, seed=1), image_size=64) > 0


def tiny_pipeline_parts():
    """MiniLM, its tokenizer and a tiny random VAE (seed 0): the parts a report test assembles its pipelines from."""
    torch.manual_seed(0)
    encoder, tokenizer = load_minilm_text_encoder()
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), latent_channels=4,
                        norm_num_groups=4, sample_size=32)
    return encoder, tokenizer, vae


def test_report_writes_its_section_and_keeps_the_others(lift_folder, tmp_path):
    encoder, tokenizer, vae = tiny_pipeline_parts()
    unet = build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8)
    assemble_text_to_image_pipeline(vae, unet, encoder, tokenizer).save_pretrained(tmp_path / "run" / "pipeline")
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"steps": 5, "batch_size": 4, "train_seconds_total": 60.0, "num_parameters": 1234,
         "test_denoising_mse": 0.5}))
    page = tmp_path / "conditional.md"
    page.write_text("# Conditional generation\n\n## ControlNet\n\nkept\n")
    data = {"captions": CAPTIONS, "images": images(3), "sources": ["emoji", "openclipart", "openclipart"]}
    argv = ["--pipeline", str(tmp_path / "run" / "pipeline"), "--lift", str(lift_folder), "--output", str(page),
            "--num_prompts", "3", "--guidance_scales", "1,3", "--num_inference_steps", "2", "--fd_image_size", "64",
            "--vae_metrics", "", "--evaluation_json", str(tmp_path / "eval.json")]
    evaluation = report_conditional.main(argv, data=data)
    text = page.read_text()
    assert "## ControlNet\n\nkept" in text and text.count("## Text-to-image") == 1
    assert [r["guidance_scale"] for r in evaluation["rows"]] == [1.0, 3.0]
    assert f"| generated | MHSA | 3 | {evaluation['rows'][1]['lift_score']:.3f} |" in text
    assert "| U-Net (MHSA) | 5 | 4 | 1.0 | 1,234 | denoising MSE 0.5000 |" in text and "MSSA" not in text
    assert (tmp_path / "conditional_text_to_image.png").stat().st_size > 0
    # Rerunning replaces the section instead of appending a second one.
    report_conditional.main(argv, data=data)
    assert page.read_text().count("## Text-to-image") == 1 and "kept" in page.read_text()


def test_report_compares_the_mssa_unet_when_given(lift_folder, tmp_path):
    from whitebox_hf.pipelines.text_to_image import subspace_unet_to_standard

    encoder, tokenizer, vae = tiny_pipeline_parts()
    unets = {"mhsa": build_text_to_image_unet((16, 32), attention_head_dim=4, norm_num_groups=8),
             "mssa": subspace_unet_to_standard(build_text_to_image_unet((16, 32), attention_head_dim=4,
                                                                        norm_num_groups=8, attention="mssa"))}
    for name, unet in unets.items():
        assemble_text_to_image_pipeline(vae, unet, encoder, tokenizer).save_pretrained(tmp_path / name / "pipeline")
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"steps": 5, "batch_size": 4, "train_seconds_total": 60.0, "num_parameters": 1000 + len(name),
             "test_denoising_mse": 0.5 if name == "mhsa" else 0.25}))
    page = tmp_path / "conditional.md"
    data = {"captions": CAPTIONS, "images": images(3), "sources": ["emoji", "openclipart", "openclipart"]}
    evaluation = report_conditional.main(
        ["--pipeline", str(tmp_path / "mhsa" / "pipeline"), "--mssa_pipeline", str(tmp_path / "mssa" / "pipeline"),
         "--lift", str(lift_folder), "--output", str(page), "--num_prompts", "3", "--guidance_scales", "2",
         "--num_inference_steps", "2", "--fd_image_size", "64", "--vae_metrics", ""], data=data)
    text = page.read_text()
    assert f"| generated | MSSA | 2 | {evaluation['mssa']['rows'][0]['lift_score']:.3f} |" in text
    assert "| U-Net (MSSA) | 5 | 4 | 1.0 | 1,004 | denoising MSE 0.2500 |" in text
    # Different weights, same seeds: the two U-Nets' samples differ.
    assert evaluation["mssa"]["rows"][0]["fd_effnet"] != evaluation["rows"][0]["fd_effnet"]
