import pytest
from transformers import ViTForImageClassification

from whitebox_hf import CrateForImageClassification
from whitebox_hf.data import load_image_dataset
from whitebox_hf.training.builders import build_image_classifier, build_image_processor

SHAPE = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=4)


def test_baseline_and_crate_share_the_shape():
    names = [str(i) for i in range(10)]
    crate = build_image_classifier(dict(model_type="crate", block_type="ista", **SHAPE), 28, 1, names)
    alpha = build_image_classifier(dict(model_type="crate", block_type="odl", **SHAPE), 28, 1, names)
    vit = build_image_classifier(dict(model_type="vit", **SHAPE), 28, 1, names)
    assert isinstance(crate, CrateForImageClassification) and isinstance(vit, ViTForImageClassification)
    for model in (crate, alpha, vit):
        config = model.config
        assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.patch_size) == (
            48, 2, 4, 4)
        assert config.id2label[3] == "3"
    assert alpha.config.block_type == "odl" and alpha.config.patch_embedding_type == "conv"
    assert vit.config.intermediate_size == 4 * 48
    # CRATE's per-layer 3d² + 5d against ViT's 12d² + 13d: the white-box layer is far smaller.
    assert crate.num_parameters() < 0.5 * vit.num_parameters()


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="model_type"):
        build_image_classifier(dict(model_type="resnet", **SHAPE), 28, 1, ["a"])
    with pytest.raises(ValueError, match="dataset"):
        load_image_dataset("cifar10")


def test_processor_matches_the_training_normalisation():
    processor = build_image_processor(16, [0.25], [0.5])
    assert processor.num_channels == 1 and list(processor.image_mean) == [0.25] and processor.size["height"] == 16
