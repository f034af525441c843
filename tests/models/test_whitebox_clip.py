"""Tests of WhiteboxClipModel (CLIP and LIFT with a CRATE image tower), its processor and train_clip.py."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel

from whitebox_hf import WhiteboxClipConfig, WhiteboxClipModel, WhiteboxClipProcessor
from whitebox_hf.objectives.contrastive import MAX_LOGIT_SCALE, clip_loss

ROOT = Path(__file__).resolve().parents[2]

VISION = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=8, patch_size=4, num_channels=3)
TEXT = dict(vocab_size=100, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
            max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_model(text_tower="lift", **overrides):
    config = WhiteboxClipConfig(vision_config=dict(VISION), text_config=dict(TEXT), text_tower=text_tower,
                                projection_dim=16, **overrides)
    return WhiteboxClipModel(config).eval()


def tiny_inputs(batch=4, length=6):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, 3:] = 0  # one padded text
    return dict(pixel_values=torch.randn(batch, 3, 8, 8, generator=generator), input_ids=input_ids,
                attention_mask=attention_mask)


@pytest.mark.parametrize("text_tower,dim", [("lift", 24), ("clip", 16)])
def test_shapes_norms_and_logits(text_tower, dim):
    model = tiny_model(text_tower)
    inputs = tiny_inputs()
    out = model(**inputs, return_loss=True)
    assert out.image_embeds.shape == out.text_embeds.shape == (4, dim)
    assert out.logits_per_image.shape == out.logits_per_text.shape == (4, 4)
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(4))
    cosine = F.cosine_similarity(out.image_embeds[:, None], out.text_embeds[None], dim=-1)
    torch.testing.assert_close(out.logits_per_image, model.logit_scale.exp() * cosine)
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.T)
    image_features = model.get_image_features(inputs["pixel_values"])
    text_features = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    torch.testing.assert_close(out.loss, clip_loss(image_features, text_features, model.logit_scale))
    # Symmetric: the mean of the two cross-entropies over the diagonal.
    targets = torch.arange(4)
    manual = (F.cross_entropy(out.logits_per_image, targets) + F.cross_entropy(out.logits_per_text, targets)) / 2
    torch.testing.assert_close(out.loss, manual)
    assert model.logit_scale.item() == pytest.approx(2.6592)
    # Image and text batches of different sizes are fine without a loss.
    fewer_images = model(pixel_values=inputs["pixel_values"][:2], input_ids=inputs["input_ids"])
    assert fewer_images.logits_per_image.shape == (2, 4)


def test_masked_mean_ignores_padding():
    model = tiny_model("lift")
    ids = torch.randint(1, 100, (1, 6))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    short = model.get_text_features(ids[:, :3], mask[:, :3])
    padded = model.get_text_features(torch.cat([ids[:, :3], torch.zeros(1, 3, dtype=torch.long)], 1), mask)
    torch.testing.assert_close(short, padded)


@pytest.mark.parametrize("text_tower", ["lift", "clip"])
def test_text_embeds_match_running_the_tower(text_tower):
    model = tiny_model(text_tower)
    inputs = tiny_inputs()
    full = model(**inputs, return_loss=True)
    cached = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    fast = model(pixel_values=inputs["pixel_values"], text_embeds=cached, return_loss=True)
    torch.testing.assert_close(fast.loss, full.loss)
    torch.testing.assert_close(fast.logits_per_image, full.logits_per_image)
    assert fast.text_model_output is None


def test_lift_text_tower_is_frozen_and_image_side_trains():
    model = tiny_model("lift")
    model.train()
    assert not model.text_model.training and model.vision_model.training
    assert all(not p.requires_grad for p in model.text_model.parameters())
    model(**tiny_inputs(), return_loss=True).loss.backward()
    assert all(p.grad is None for p in model.text_model.parameters())
    assert model.image_head.fc1.weight.grad.abs().sum() > 0
    assert model.vision_model.embeddings.cls_token.grad.abs().sum() > 0
    assert model.logit_scale.grad is not None
    assert model.text_projection is None and model.visual_projection is None


def test_clip_text_tower_trains():
    model = tiny_model("clip").train()
    model(**tiny_inputs(), return_loss=True).loss.backward()
    assert model.text_model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.text_projection.weight.grad.abs().sum() > 0 and model.image_head is None


@pytest.mark.parametrize("text_tower", ["lift", "clip"])
def test_save_load_round_trip(tmp_path, text_tower):
    model = tiny_model(text_tower)
    with torch.no_grad():
        model.logit_scale.fill_(3.1)
    inputs = tiny_inputs()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    assert "logit_scale" in load_file(tmp_path / "model.safetensors")
    assert AutoConfig.from_pretrained(tmp_path).model_type == "whitebox_clip"
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, WhiteboxClipModel) and loaded.config.text_tower == text_tower
    before, after = model(**inputs, return_loss=True), loaded(**inputs, return_loss=True)
    assert torch.equal(before.logits_per_image, after.logits_per_image)
    assert torch.equal(before.loss, after.loss)
    if text_tower == "lift":  # freezing survives loading
        assert all(not p.requires_grad for p in loaded.text_model.parameters())


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="text_tower"):
        WhiteboxClipConfig(text_tower="siglip")
    with pytest.raises(ValueError, match="projection_dim"):
        WhiteboxClipConfig(text_tower="clip", projection_dim=0)
    with pytest.raises(TypeError, match="vision_config"):
        WhiteboxClipConfig(vision_config=[1, 2])
    model = tiny_model("clip")
    inputs = tiny_inputs()
    with pytest.raises(ValueError, match="pixel_values"):
        model(pixel_values=inputs["pixel_values"][0], input_ids=inputs["input_ids"])
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_image_features(inputs["pixel_values"][0])
    with pytest.raises(ValueError, match="pixel_values.*4 images.*hold 3"):
        model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"][:3], return_loss=True)
    with pytest.raises(ValueError, match="input_ids.*text_embeds"):
        model(pixel_values=inputs["pixel_values"])
    with pytest.raises(ValueError, match="text_embeds"):
        model(pixel_values=inputs["pixel_values"], text_embeds=torch.randn(4, 7))
    with pytest.raises(ValueError, match="attention_mask"):
        model.get_text_features(inputs["input_ids"], inputs["attention_mask"][:, :2])


def test_minilm_tower_equals_sentence_transformers():
    import sentence_transformers  # in the test extra: the reference encoder
    from whitebox_hf.models.whitebox_clip import minilm_path

    config = WhiteboxClipConfig(vision_config=dict(VISION), text_tower="lift")
    model = WhiteboxClipModel.from_minilm(config).eval()
    processor = WhiteboxClipProcessor.from_minilm(_image_processor())
    texts = ["Apple pie. Keywords: food, dessert", "a clip art of animals", "A red arrow."]
    batch = processor(text=texts)
    ours = F.normalize(model.get_text_features(batch["input_ids"], batch["attention_mask"]), dim=-1)
    reference = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-4, rtol=0)
    assert all(not p.requires_grad for p in model.text_model.parameters())


def _image_processor():
    from whitebox_hf.training.builders import build_image_processor

    return build_image_processor(8, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def test_processor_round_trip(tmp_path):
    from PIL import Image

    processor = WhiteboxClipProcessor.from_minilm(_image_processor(), max_length=12)
    images = [Image.new("RGB", (20, 10), "red"), Image.new("RGB", (8, 8), "white")]
    batch = processor(text=["a red square", "white"], images=images)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    processor.save_pretrained(tmp_path)
    loaded = WhiteboxClipProcessor.from_pretrained(tmp_path)
    assert loaded.max_length == 12
    again = loaded(text=["a red square", "white"], images=images)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    with pytest.raises(ValueError, match="max_length"):
        WhiteboxClipProcessor(_image_processor(), processor.tokenizer, max_length=0)
    with pytest.raises(ValueError, match="text.*images"):
        processor()


# -- training/train_clip.py --------------------------------------------------------------------------------------

_spec = importlib.util.spec_from_file_location("train_clip", ROOT / "training" / "train_clip.py")
train_clip = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_clip)

TINY_ARGS = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "4", "--patch_size", "4",
             "--text_hidden_size", "24", "--text_num_hidden_layers", "1", "--text_num_attention_heads", "2",
             "--projection_dim", "16", "--max_length", "12", "--batch_size", "4", "--max_steps", "3",
             "--warmup_steps", "1", "--learning_rate", "0.01", "--num_threads", "1", "--log_every", "1",
             "--text_pretrained", "false", "--logit_scale_init_value", "4.7", "--eval_batch_size", "8"]


def fake_pairs(n_train=12, n_test=6):
    generator = torch.Generator().manual_seed(0)
    words = ["apple", "arrow", "star", "tree", "car", "house"]
    captions = [f"{words[i % 6].title()} number {i}. Keywords: {words[i % 6]}" for i in range(n_train + n_test)]
    images = torch.randint(0, 256, (n_train + n_test, 3, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(n_train + n_test) % 3
    return {"train_images": images[:n_train], "train_captions": captions[:n_train], "train_labels": labels[:n_train],
            "test_images": images[n_train:], "test_captions": captions[n_train:], "test_labels": labels[n_train:],
            "class_names": ["food", "signs and symbols", "plants"]}


@pytest.mark.parametrize("text_tower", ["lift", "clip"])
def test_train_clip_three_steps(tmp_path, text_tower):
    out = tmp_path / text_tower
    argv = TINY_ARGS + ["--text_tower", text_tower, "--output_dir", str(out),
                        "--text_embedding_cache_dir", str(tmp_path / "cache")]
    results = train_clip.main(argv, data=fake_pairs())
    assert results["steps"] == 3 and math.isfinite(results["final_train_loss"])
    assert results["logit_scale"] <= MAX_LOGIT_SCALE + 1e-6  # initialised above ln 100, clamped after each step
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_to_text_R@1", "text_to_image_R@5", "zero_shot_accuracy", "wall_seconds", "epochs"):
        assert key in metrics
    assert metrics["retrieval_pairs"] == 6 and (out / "loss_curve.png").is_file()
    card = (out / "model" / "README.md").read_text()  # the model card, its model-index from metrics.json
    assert "model-index" in card and "training/train_clip.py" in card and "@book{" in card
    assert f"value: {metrics['zero_shot_accuracy']}" in card

    # Weights moved from the initialisation (rebuilt with the same seed); LIFT's text tower did not.
    set_seed(0)
    initial = train_clip.build_model(train_clip.parse_args(argv), 8, 3).state_dict()
    trained = AutoModel.from_pretrained(out / "model")
    state = trained.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values())
    assert not torch.equal(initial["vision_model.embeddings.cls_token"], state["vision_model.embeddings.cls_token"])
    text_key = "text_model.embeddings.word_embeddings.weight"
    assert torch.equal(initial[text_key], state[text_key]) == (text_tower == "lift")
    if text_tower == "lift":
        assert list((tmp_path / "cache").glob("*.safetensors"))  # the frozen tower's embeddings were cached
    processor = WhiteboxClipProcessor.from_pretrained(out / "model")
    assert processor.max_length == 12


def test_train_clip_rejects_unknown_tower():
    with pytest.raises(ValueError, match="text_tower"):
        train_clip.parse_args(["--text_tower", "siglip"])


def test_train_clip_on_shape_renders(tmp_path, monkeypatch):
    """``--dataset shape_renders``: real (tiny) renders, one view per item a step, multi-view evaluation."""
    monkeypatch.setenv("WHITEBOX_HF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "renders"
    argv = TINY_ARGS + ["--text_tower", "lift", "--dataset", "shape_renders", "--num_per_category", "2",
                        "--shape_seed", "1", "--num_views", "2", "--render_size", "16", "--patch_size", "8",
                        "--prompt_template", "a 3D render of a {}", "--output_dir", str(out)]
    results = train_clip.main(argv)
    assert results["steps"] == 3 and results["num_train_pairs"] == 13 and results["image_size"] == 16
    assert results["num_views"] == 2 and results["zero_shot_test_images"] == 2 * results["num_test_pairs"]
    assert results["retrieval_queries"] == 2 * results["num_test_pairs"]
    assert 0.0 <= results["image_to_text_R@1"] <= results["image_to_text_R@5"] <= 1.0
    assert results["num_per_category"] == 2 and results["shape_seed"] == 1
    assert (tmp_path / "cache" / "shape-renders").is_dir()
    model = AutoModel.from_pretrained(out / "model")
    from whitebox_hf.data import load_shape_renders
    from whitebox_hf.evaluation import embed_images

    views = load_shape_renders(2, 1, 2, 16)["test"].with_format("torch", dtype=torch.uint8)[:]["images"]
    embeds = embed_images(model, views.flatten(0, 1))  # the processor saved with the model
    assert embeds.shape == (2 * results["num_test_pairs"], model.config.embedding_dim)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(len(embeds)))


def test_train_clip_rejects_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        train_clip.parse_args(["--dataset", "shapenet"])
