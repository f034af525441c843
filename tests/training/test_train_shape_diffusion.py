"""Tests of training/train_shape_diffusion.py (ASLDM in a frozen SITA-VAE's latent space): a few steps on tiny shapes
with a tiny saved SITA-VAE and a tiny saved LIFT model, for text and image conditions; the saved pipeline loads and
generates; the condition dropout rate; bad settings refused by name."""

import json

import pytest
import torch
from datasets import Dataset, DatasetDict
from diffusers import DiffusionPipeline
from transformers import AutoTokenizer, BertConfig, BertModel

from tests.conftest import load_training_script
from whitebox_hf import (
    ShapeGenerationPipeline,
    SitaVaeConfig,
    SitaVaeModel,
    WhiteboxClipConfig,
    WhiteboxClipModel,
)
from whitebox_hf.data.shapes import load_procedural_shapes
from whitebox_hf.evaluation.shape_generation import shape_alignment_scores
from whitebox_hf.training.builders import build_image_processor

train_shape_diffusion = load_training_script("train_shape_diffusion")

VIEWS, SIZE = 2, 8
TINY = ["--batch_size", "2", "--lr_warmup_steps", "1", "--learning_rate", "0.003", "--num_threads", "1",
        "--log_every", "1", "--num_input_points", "24", "--num_surface_points", "32", "--hidden_size", "16",
        "--num_layers", "1", "--num_attention_heads", "2", "--max_text_length", "12", "--encode_batch_size", "4",
        "--render_size", str(SIZE)]


def tiny_shapes(num_per_category=3):
    return load_procedural_shapes(num_per_category=num_per_category, categories=["mug", "bottle", "table"],
                                  num_surface_points=32, num_volume_queries=1, num_near_queries=1)


def tiny_vae_folder(tmp_path):
    """A saved random SitaVaeModel whose shape embeddings have MiniLM's width (384), as after alignment."""
    torch.manual_seed(0)
    SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                               num_decoder_layers=1, latent_channels=3, alignment_dim=384)).save_pretrained(
        tmp_path / "vae")
    return str(tmp_path / "vae")


def tiny_lift_folder(tmp_path):
    """A saved random LIFT `WhiteboxClipModel` on 8×8 RGB images, with its image processor (mean 0.5, std 0.25)."""
    torch.manual_seed(0)
    text = {"vocab_size": 100, "hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 48,
                "max_position_embeddings": 16}
    vision = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": SIZE, "patch_size": 4,
                  "num_channels": 3}
    WhiteboxClipModel(WhiteboxClipConfig(vision_config=vision, text_config=text, text_tower="lift")).save_pretrained(
        tmp_path / "lift")
    build_image_processor(SIZE, [0.5] * 3, [0.25] * 3).save_pretrained(tmp_path / "lift")
    return str(tmp_path / "lift")


def fake_renders(shapes):
    """Random uint8 views of every shape, keyed by instance seed as `load_shape_renders`' are."""
    generator = torch.Generator().manual_seed(0)
    splits = {}
    for split in shapes:
        seeds = list(shapes[split]["instance_seed"])
        images = torch.randint(0, 256, (len(seeds), VIEWS, SIZE, SIZE, 3), generator=generator, dtype=torch.uint8)
        splits[split] = Dataset.from_dict({"instance_seed": seeds, "images": images.numpy()})
    return DatasetDict(splits)


def test_text_condition_trains_saves_a_pipeline_that_loads_and_scores_st_s(tmp_path):
    shapes = tiny_shapes()
    out = tmp_path / "run"
    results = train_shape_diffusion.main(TINY + [
        "--vae_model", tiny_vae_folder(tmp_path), "--max_steps", "3", "--eval_num_shapes", "2", "--sample_steps",
        "2", "--sample_octree_depth", "3", "--eval_surface_points", "16", "--output_dir", str(out)], data=shapes)
    assert results["steps"] == 3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len([r for r in records if "train_loss" in r]) == 3
    assert (out / "loss_curve.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_loss"] > 0 and metrics["validation_loss"] > 0
    generation = metrics["generation"]
    assert generation["num_shapes"] == 2
    assert generation["st_s"] is None or -1.0 <= generation["st_s"] <= 1.0

    pipe = ShapeGenerationPipeline.from_pretrained(out / "pipeline")
    assert pipe.condition_kind == "text" and type(pipe.scheduler).__name__ == "DDIMScheduler"
    # The stored factor is 1 / std of the training latents (the VAE's posterior means).
    vae = SitaVaeModel.from_pretrained(tmp_path / "vae").eval()
    surface = train_shape_diffusion.surface_tensor(shapes["train"], 24)
    with torch.no_grad():
        std = vae.encode(surface, sample_posterior=False).latents.std().item()
    assert pipe.config.latent_scaling_factor == pytest.approx(1.0 / std, rel=1e-4)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(prompt=["a mug with a round handle"], num_inference_steps=2, output_type="latent",
                   generator=torch.Generator().manual_seed(0)).shapes
    assert latents.shape == (1, 4, 3) and torch.isfinite(latents).all()
    generic = DiffusionPipeline.from_pretrained(out / "pipeline", trust_remote_code=True)
    assert type(generic).__name__ == "ShapeGenerationPipeline"
    card = (out / "pipeline" / "README.md").read_text()
    assert "ShapeGenerationPipeline" in card and "train_shape_diffusion.py" in card
    assert "class labels" not in card


def test_image_condition_with_cross_attention_crate_blocks(tmp_path):
    shapes = tiny_shapes()
    out = tmp_path / "run"
    results = train_shape_diffusion.main(TINY + [
        "--condition", "image", "--alignment_model", tiny_lift_folder(tmp_path), "--conditioning", "cross_attention",
        "--block_type", "crate", "--vae_model", tiny_vae_folder(tmp_path), "--max_steps", "2", "--eval_num_shapes",
        "1", "--sample_steps", "2", "--sample_octree_depth", "3", "--eval_surface_points", "16", "--output_dir",
        str(out)], data=shapes, renders=fake_renders(shapes))
    assert results["steps"] == 2 and results["denoiser"] == "asldm_crate"
    assert results["generation"]["num_shapes"] == 1  # sampled from a held-out render
    pipe = ShapeGenerationPipeline.from_pretrained(out / "pipeline")
    assert pipe.condition_kind == "image"
    assert pipe.config.image_mean == [0.5] * 3 and pipe.config.image_std == [0.25] * 3  # the LIFT processor's
    assert pipe.denoiser.config.conditioning == "cross_attention" and pipe.denoiser.config.block_type == "crate"
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(image=torch.rand(2, 3, SIZE, SIZE), num_inference_steps=2, output_type="latent").shapes
    assert latents.shape == (2, 4, 3)


def test_condition_dropout_drops_about_ten_percent_per_item():
    generator = torch.Generator().manual_seed(0)
    drops = torch.cat([train_shape_diffusion.drop_conditions(32, 0.1, generator) for _ in range(1000)])
    assert abs(drops.float().mean().item() - 0.1) < 0.01
    # The same step seed draws the same items (resume exactness).
    first = train_shape_diffusion.drop_conditions(32, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(first, train_shape_diffusion.drop_conditions(32, 0.1, torch.Generator().manual_seed(5)))


def test_dropped_items_get_the_empty_prompt_or_zero_image_tokens():
    from whitebox_hf.models.whitebox_clip import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)).eval()
    texts = train_shape_diffusion.TextConditions(encoder, tokenizer, {"train": ["a mug", "a tall bottle"]}, 8, 4)
    drop = torch.tensor([False, True])
    tokens, mask = texts.batch("train", torch.tensor([0, 1]), drop)
    torch.testing.assert_close(tokens[1], texts.null_tokens[0])
    torch.testing.assert_close(mask[1], texts.null_mask[0])
    assert not torch.allclose(tokens[0], texts.null_tokens[0])

    images = train_shape_diffusion.ImageConditions.__new__(train_shape_diffusion.ImageConditions)
    images.tokens = {"train": torch.randn(2, 3, 5, 4)}
    picked, none = images.batch("train", torch.tensor([0, 1]), drop, torch.Generator().manual_seed(0))
    assert none is None and torch.equal(picked[1], torch.zeros(5, 4)) and picked[0].abs().sum() > 0


def test_alignment_scores_skip_shapes_without_surface():
    embeds = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    scores = shape_alignment_scores(embeds, torch.tensor([True, False, True]), text_embeds=targets)
    assert scores["num_without_surface"] == 1
    assert scores["st_s"] == pytest.approx((1.0 + 2 ** -0.5) / 2)
    with pytest.raises(ValueError, match="has_surface"):
        shape_alignment_scores(embeds, torch.tensor([True]), text_embeds=targets)


@pytest.mark.parametrize("argv, needle", [
    (["--condition", "voxels"], "condition"),
    (["--condition", "image"], "alignment_model"),
    (["--conditioning", "adaln"], "conditioning"),
    (["--block_type", "mlp"], "block_type"),
    (["--condition_dropout_prob", "1.5"], "condition_dropout_prob"),
    (["--num_input_points", "5000"], "num_input_points"),
    (["--batch_size", "0"], "batch_size"),
    (["--eval_split", "train"], "eval_split"),
])
def test_bad_settings_are_refused_by_name(argv, needle):
    with pytest.raises(ValueError, match=needle):
        train_shape_diffusion.parse_args(argv)


def test_a_missing_vae_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError, match="no_such_vae"):
        train_shape_diffusion.main(TINY + ["--vae_model", str(tmp_path / "no_such_vae"), "--output_dir",
                                           str(tmp_path / "run")], data=tiny_shapes())
