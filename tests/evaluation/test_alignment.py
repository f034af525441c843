"""The alignment space: retrieval_metrics on hand-built embeddings, embed_texts (frozen MiniLM, cached) and
embed_images (a LIFT model's image side)."""

import pytest
import torch

from whitebox_hf.evaluation import embed_images, embed_texts, retrieval_metrics
from whitebox_hf.models.whitebox_clip import (
    MINILM_TEXT_CONFIG,
    WhiteboxClipConfig,
    WhiteboxClipModel,
)

AXES = torch.eye(4)


def test_retrieval_metrics_known_values():
    # Query i is gallery axis i, slightly tilted towards axis i + 1: queries 0-2 rank their own axis first; query 3
    # is nearest to axis 0 but its positive is axis 3 (second).
    queries = AXES.clone()
    queries[:3, 1:] += 0.1 * torch.eye(3)
    queries[3] = torch.tensor([0.8, 0.0, 0.0, 0.6])
    metrics = retrieval_metrics(queries, AXES * 3.0, torch.arange(4))  # the gallery's scale does not matter
    assert metrics["r@1"] == pytest.approx(0.75) and metrics["r@5"] == 1.0
    assert metrics["num_queries"] == 4 and metrics["gallery_size"] == 4
    assert metrics["chance_r@1"] == pytest.approx(0.25) and metrics["chance_r@5"] == 1.0
    cosines = [1 / (1 + 0.01) ** 0.5] * 3 + [0.6]
    assert metrics["mean_similarity"] == pytest.approx(sum(cosines) / 4)


def test_duplicates_count_as_positives():
    # Two gallery rows carry the same caption: a query nearest to the duplicate is a hit when both are positives.
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    queries = torch.tensor([[0.85, 0.5]])
    only_first = retrieval_metrics(queries, gallery, torch.tensor([0]))
    both = retrieval_metrics(queries, gallery, torch.tensor([[True, False, True]]))
    assert only_first["r@1"] == 0.0 and both["r@1"] == 1.0
    assert both["chance_r@1"] == pytest.approx(2 / 3)
    # With 3 gallery rows, R@5 covers them all.
    assert only_first["r@5"] == 1.0 and only_first["chance_r@5"] == 1.0


def test_chance_r5_formula():
    gallery = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    metrics = retrieval_metrics(gallery[:2], gallery, torch.arange(2))
    assert metrics["chance_r@5"] == pytest.approx(0.5) and metrics["r@1"] == 1.0


@pytest.mark.parametrize("query, gallery, positives, match", [
    (torch.ones(3), torch.ones(2, 3), torch.arange(1), "query_embeds"),
    (torch.ones(2, 3), torch.ones(2, 4), torch.arange(2), "gallery_embeds"),
    (torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool), "positives"),
    (torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 2]), "positives"),
    (torch.ones(2, 3), torch.ones(2, 3), torch.tensor([[True, False], [False, False]]), "positives"),
    (torch.tensor([[float("nan"), 1.0, 0.0]]), torch.ones(2, 3), torch.tensor([0]), "query_embeds"),
    (torch.zeros(1, 3), torch.ones(2, 3), torch.tensor([0]), "query_embeds"),
    (torch.ones(1, 3, dtype=torch.long), torch.ones(2, 3), torch.tensor([0]), "query_embeds"),
])
def test_retrieval_metrics_bad_inputs(query, gallery, positives, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(query, gallery, positives)


def test_retrieval_metrics_positives_must_be_a_tensor():
    with pytest.raises(TypeError, match="positives"):
        retrieval_metrics(torch.ones(2, 3), torch.ones(2, 3), [0, 1])


def test_embed_texts_unit_vectors_equal_texts_equal_vectors(tmp_path):
    texts = ["a round table with a single pedestal leg", "a tall narrow bottle",
             "a round table with a single pedestal leg"]
    embeds = embed_texts(texts, cache_dir=tmp_path)
    assert embeds.shape == (3, 384) and embeds.dtype == torch.float32
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3))
    assert torch.equal(embeds[0], embeds[2]) and not torch.allclose(embeds[0], embeds[1])
    assert list(tmp_path.glob("*.safetensors"))  # cached
    torch.testing.assert_close(embed_texts(texts, cache_dir=tmp_path, batch_size=1), embeds)
    with pytest.raises(ValueError, match="texts"):
        embed_texts("a single string", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="texts"):
        embed_texts(["ok", 3], cache_dir=tmp_path)


def tiny_lift():
    config = WhiteboxClipConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8),
        text_config=dict(MINILM_TEXT_CONFIG, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32), text_tower="lift")
    return WhiteboxClipModel(config)


def test_embed_images_uint8_and_pixel_values():
    from whitebox_hf.models.crate import CrateImageProcessor

    model = tiny_lift().train()
    processor = CrateImageProcessor(num_channels=3, do_resize=True, size={"height": 16, "width": 16},
                                    image_mean=[0.5] * 3, image_std=[0.25] * 3)
    images = torch.randint(0, 256, (3, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    embeds = embed_images(model, images, image_processor=processor, batch_size=2)
    assert embeds.shape == (3, model.config.embedding_dim) and model.training  # mode restored
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3))
    pixels = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(embed_images(model, pixels), embeds, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="image_processor"):
        embed_images(model, images)  # a fresh model has no saved processor
    with pytest.raises(ValueError, match="images"):
        embed_images(model, images[0])
    with pytest.raises(TypeError, match="clip_model"):
        embed_images(torch.nn.Linear(2, 2), images)
