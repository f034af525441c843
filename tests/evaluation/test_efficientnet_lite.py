"""EfficientNet-Lite0: the packaged state dict loads strictly, features have the documented shape, the
perceptual loss behaves."""

import pytest
import torch

from whitebox_hf.evaluation import (
    EfficientNetLite0,
    EffNetPerceptualLoss,
    FrechetEffNetDistance,
    fd_effnet,
    load_efficientnet_lite0,
)
from whitebox_hf.evaluation.efficientnet_lite import efficientnet_lite0_weights_path


@pytest.fixture(scope="module")
def network():
    return load_efficientnet_lite0()


def test_state_dict_keys_match_strictly():
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    assert len(model._blocks) == 16
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)


def test_features_shape_and_determinism(network):
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        first, second = network.features(images), network.features(images)
    assert first.shape == (2, 1280)
    assert torch.equal(first, second)
    assert torch.isfinite(first).all() and (first >= 0).all()  # ReLU6 before pooling


def test_preprocess_grey_to_imagenet_rgb(network):
    x = network.preprocess(torch.full((1, 1, 28, 28), -1.0), image_size=32)
    assert x.shape == (1, 3, 32, 32)
    expected = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[0, :, 0, 0], expected)
    with pytest.raises(ValueError):
        network.preprocess(torch.zeros(1, 2, 28, 28))


def test_fd_effnet_small(network):
    metric = FrechetEffNetDistance(model=network, image_size=64, batch_size=4)
    a = torch.rand(6, 1, 28, 28) * 2 - 1
    assert metric(a, a) == pytest.approx(0.0, abs=1e-3)
    assert fd_effnet(a, -a, metric=metric) > 0


def test_perceptual_loss_zero_on_identical_and_differentiable(network):
    loss_fn = EffNetPerceptualLoss(network, image_size=28, stages=(0, 1))
    target = torch.rand(2, 1, 28, 28) * 2 - 1
    assert loss_fn(target, target).item() == pytest.approx(0.0, abs=1e-6)
    prediction = torch.zeros_like(target, requires_grad=True)
    loss = loss_fn(prediction, target)
    loss.backward()
    assert loss.item() > 0 and prediction.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in loss_fn.network.parameters())


def test_cached_features(network, tmp_path):
    metric = FrechetEffNetDistance(model=network, image_size=32, batch_size=4)
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    first = metric.cached_features(images, tmp_path / "ref.pt")
    assert (tmp_path / "ref.pt").is_file()
    assert torch.equal(metric.cached_features(torch.zeros(1, 1, 28, 28), tmp_path / "ref.pt"), first)
