"""`whitebox_hf.evaluation.segmentation`: known answers on synthetic masks, attention maps and features."""

import math

import pytest
import torch
from transformers import ViTConfig, ViTModel

import whitebox_hf
from whitebox_hf.evaluation.segmentation import (
    attention_share,
    border_patches,
    mask_iou,
    normalized_cut_mask,
    patch_object_masks,
    random_mass_masks,
    segmentation_scores,
    top_mass_mask,
)


def test_patch_masks_threshold_pixels_then_patches():
    image = torch.zeros(1, 8, 8, dtype=torch.uint8)
    image[0, :4, :4] = 200          # a full object patch (top left)
    image[0, 4:6, 4:8] = 200        # half of the bottom-right patch
    image[0, 0, 4] = 10             # below the threshold: background
    masks = patch_object_masks(image, 4)
    assert masks.tolist() == [[True, False, False, True]]
    assert patch_object_masks(image, 4, min_fraction=0.75).tolist() == [[True, False, False, False]]
    assert patch_object_masks(image.float() / 255, 4).tolist() == masks.tolist()  # floats in [0, 1] alike


def test_border_ring():
    assert border_patches(3, 3).reshape(3, 3).tolist() == [[True] * 3, [True, False, True], [True] * 3]


def test_share_of_known_maps_and_uniform_chance():
    masks = torch.tensor([[True, False, True, False]])
    attention = torch.tensor([[[0.5, 0.25, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0]]])  # (1, heads=2, 4): 2nd unnormalised
    assert attention_share(attention, masks).tolist() == [[0.75, 0.5]]  # uniform → |M| / N


def test_top_mass_keeps_the_highest_patches_until_the_mass():
    attention = torch.tensor([[0.1, 0.5, 0.1, 0.3]])
    assert top_mass_mask(attention, 0.6).tolist() == [[False, True, False, True]]  # 0.5 + 0.3 crosses 0.6
    assert top_mass_mask(attention, 0.5).tolist() == [[False, True, False, False]]  # 0.5 alone holds 0.5
    assert top_mass_mask(attention, 1.0).all()


def test_iou_known_values():
    masks = torch.tensor([[True, True, False, False]])
    predicted = torch.tensor([[[True, False, False, False], [True, True, True, True], [False] * 4]])
    assert mask_iou(predicted, masks).tolist() == [[0.5, 0.5, 0.0]]
    assert mask_iou(torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, 4, dtype=torch.bool)).tolist() == [1.0]


def _square_object(side=6, inner=slice(1, 4), dim=8, noise=0.05, seed=0):
    """Features of a side×side grid: object patches near one direction, background near another."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(side, side, dtype=torch.bool)
    mask[inner, inner] = True
    mask = mask.flatten()
    object_direction, background_direction = torch.zeros(dim), torch.zeros(dim)
    object_direction[0], background_direction[1] = 1.0, 1.0
    features = torch.where(mask[:, None], object_direction, background_direction)
    return (features + noise * torch.randn(features.shape, generator=generator))[None], mask[None]


def test_normalized_cut_recovers_the_object_and_picks_the_inner_side():
    features, mask = _square_object()
    cut = normalized_cut_mask(features, 6, 6)
    assert mask_iou(cut, mask).item() == 1.0
    # The side chosen by attention: attend to the object → the object; to the background → the background.
    attention = mask.float() + 0.01
    assert torch.equal(normalized_cut_mask(features, 6, 6, foreground="attention", attention=attention), mask)
    attention = (~mask).float() + 0.01
    assert torch.equal(normalized_cut_mask(features, 6, 6, foreground="attention", attention=attention), ~mask)


def test_normalized_cut_of_an_off_centre_object_still_avoids_the_border_side():
    features, mask = _square_object(inner=slice(0, 3))  # touches two border edges, but less of the ring
    assert torch.equal(normalized_cut_mask(features, 6, 6), mask)


def test_random_mass_masks_are_the_uniform_chance():
    masks = torch.zeros(2000, 49, dtype=torch.bool)
    masks[:, :20] = True
    chance = random_mass_masks(masks, 0.6, generator=torch.Generator().manual_seed(0))
    assert (chance.sum(-1) == math.ceil(0.6 * 49)).all()
    # E|A∩M| = 30·20/49 for a random 30-set A; IoU ≈ 12.24 / (30 + 20 − 12.24).
    expected = (30 * 20 / 49) / (30 + 20 - 30 * 20 / 49)
    assert mask_iou(chance, masks).mean().item() == pytest.approx(expected, abs=0.01)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="`masks` must be a bool"):
        attention_share(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match="`mass`"):
        top_mass_mask(torch.ones(1, 4), 0.0)
    with pytest.raises(ValueError, match="`patch_size`"):
        patch_object_masks(torch.zeros(1, 8, 8), 3)
    with pytest.raises(ValueError, match="`foreground='attention'` needs `attention`"):
        normalized_cut_mask(torch.randn(1, 4, 3), 2, 2, foreground="attention")


@pytest.mark.parametrize("kind", ["crate", "vit"])
def test_scores_of_a_model_match_its_attention(kind, tiny_crate_config):
    torch.manual_seed(0)
    if kind == "crate":
        model = whitebox_hf.CrateModel(tiny_crate_config()).eval()
    else:
        config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           image_size=8, patch_size=2, num_channels=1, attn_implementation="eager")
        model = ViTModel(config, add_pooling_layer=False).eval()
    pixels = torch.randn(5, 1, 8, 8)
    masks = torch.rand(5, 16, generator=torch.Generator().manual_seed(1)) > 0.5
    scores = segmentation_scores(model, pixels, masks, batch_size=2)
    assert scores["num_images"] == 5
    assert len(scores["share"]) == 2 and len(scores["share"][0]) == 4 and len(scores["ncut_iou"]) == 2
    with torch.no_grad():
        attention = model(pixel_values=pixels, output_attentions=True).attentions[-1][:, :, 0, 1:]
    attention = attention / attention.sum(-1, keepdim=True)
    expected = attention_share(attention, masks).mean(0)
    assert scores["share"][-1] == pytest.approx(expected.tolist(), abs=1e-5)
    expected_iou = mask_iou(top_mass_mask(attention.mean(1)), masks).mean().item()
    assert scores["iou_mean_head"][-1] == pytest.approx(expected_iou, abs=1e-6)
