"""Subject and prompt fidelity (`whitebox_hf.evaluation.personalization`) on features whose answer is known."""

from __future__ import annotations

import pytest
import torch

from whitebox_hf.evaluation.alignment import embed_texts
from whitebox_hf.evaluation.personalization import (
    image_features,
    mean_pairwise_cosine,
    prompt_fidelity,
    subject_fidelity,
)


def test_mean_pairwise_cosine_known_answers():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0]])
    # cos = 1 and 0: mean 0.5; scale does not matter.
    assert mean_pairwise_cosine(a, b) == pytest.approx(0.5)
    assert subject_fidelity(b, 5 * b) == pytest.approx(1.0)
    assert subject_fidelity(b, -b) == pytest.approx(-1.0)


@pytest.mark.parametrize("a, b, error, message", [
    (torch.ones(2, 3), torch.ones(2, 4), ValueError, "`b` must have the width of `a`"),
    (torch.zeros(1, 3), torch.ones(1, 3), ValueError, "`a` must not hold zero vectors"),
    ([[1.0]], torch.ones(1, 1), TypeError, "`a` must be a float"),
    (torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3), ValueError, "`a` must be a non-empty float"),
])
def test_bad_features_are_named(a, b, error, message):
    with pytest.raises(error, match=message):
        mean_pairwise_cosine(a, b)


def test_image_features_of_equal_images_agree_and_the_encoder_is_checked():
    images = torch.randint(0, 256, (2, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    features = image_features(torch.cat([images, images[:1]]), "efficientnet")
    assert features.shape == (3, 1280)
    assert subject_fidelity(features[:1], features[2:]) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="`encoder` must be"):
        image_features(images, "dino")
    with pytest.raises(ValueError, match="`images` must be a uint8"):
        image_features(images.float(), "efficientnet")


def test_prompt_fidelity_is_the_mean_lift_image_text_cosine(tmp_path):
    from whitebox_hf.models.crate import CrateImageProcessor
    from whitebox_hf.models.whitebox_clip import (
        MINILM_TEXT_CONFIG,
        WhiteboxClipConfig,
        WhiteboxClipModel,
    )

    model = WhiteboxClipModel(WhiteboxClipConfig(
        vision_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 16,
                       "patch_size": 8},
        text_config=dict(MINILM_TEXT_CONFIG, num_hidden_layers=1), text_tower="lift"))  # LIFT: MiniLM's 384-d space
    processor = CrateImageProcessor(num_channels=3, do_resize=True, size={"height": 16, "width": 16},
                                    image_mean=[0.5] * 3, image_std=[0.25] * 3)
    model.save_pretrained(tmp_path / "lift")
    processor.save_pretrained(tmp_path / "lift")
    model = type(model).from_pretrained(tmp_path / "lift")
    images = torch.randint(0, 256, (2, 16, 16, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    prompts = ["a red kite", "a blue kite"]
    expected = (image_features(images, model) * embed_texts(prompts)).sum(-1).mean()
    assert prompt_fidelity(model, images, prompts) == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ValueError, match="`prompts` must be a list of one prompt per image"):
        prompt_fidelity(model, images, prompts[:1])
    with pytest.raises(ValueError, match="non-empty"):
        prompt_fidelity(model, images, ["a kite", " "])
    from tests.evaluation.test_alignment import tiny_lift

    with pytest.raises(ValueError, match="`clip_model` must embed images in the text space"):
        prompt_fidelity(tiny_lift(), images.float().permute(0, 3, 1, 2) / 255, prompts)
