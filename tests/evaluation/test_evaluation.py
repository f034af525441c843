"""Tests of `whitebox_hf.evaluation` on tiny models and small synthetic data (a few seconds on 2 CPU cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from whitebox_hf import CrateConfig, CrateForImageClassification, coding_rate
from whitebox_hf.evaluation import (
    METRIC_NAMES,
    attention_saliency,
    compute_accuracy,
    diagnostics_table,
    extract_features,
    fit_linear_probe,
    knn_accuracy,
    knn_classify,
    layerwise_diagnostics,
    linear_probe_accuracy,
    metric_path,
    plot_diagnostics,
    save_saliency_grid,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_crate(block_type: str = "ista") -> CrateForImageClassification:
    torch.manual_seed(0)
    config = CrateConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=8, patch_size=2,
        num_channels=1, num_labels=3, block_type=block_type,
    )
    return CrateForImageClassification(config).eval()


def tiny_vit(attn_implementation: str = "eager"):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=8,
        patch_size=2, num_channels=1, num_labels=3, attn_implementation=attn_implementation,
    )
    return ViTForImageClassification(config).eval()


@pytest.fixture(scope="module")
def crate():
    return tiny_crate()


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(5, 1, 8, 8, generator=generator)


def two_clusters(n_per_class: int, dim: int, separation: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    centre = torch.zeros(dim)
    centre[0] = separation
    x = torch.cat([torch.randn(n_per_class, dim, generator=generator) + centre,
                   torch.randn(n_per_class, dim, generator=generator) - centre])
    y = torch.cat([torch.zeros(n_per_class, dtype=torch.long), torch.ones(n_per_class, dtype=torch.long)])
    return x, y


# ----------------------------------------------------------------------------------------------- features


def test_extract_features_crate_matches_pooler_output(crate, images):
    features = extract_features(crate, images, batch_size=2)
    with torch.no_grad():
        expected = crate.crate(images).pooler_output
    assert features.shape == (5, 32) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected)
    # the base model gives the same features
    torch.testing.assert_close(extract_features(crate.crate, images), expected)


def test_extract_features_restores_training_mode(images):
    model = tiny_crate()
    model.train()
    extract_features(model, images)
    assert model.training and model.crate.training


def test_extract_features_uint8_processor_and_dataloader(crate):
    generator = torch.Generator().manual_seed(2)
    raw = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=generator)
    scaled = raw.float() / 255.0
    with torch.no_grad():
        expected_scaled = crate.crate(scaled).pooler_output
        expected_normalised = crate.crate((scaled - 0.5) / 0.25).pooler_output
    torch.testing.assert_close(extract_features(crate, raw, batch_size=4), expected_scaled)

    normalise = lambda batch: (batch.float() / 255.0 - 0.5) / 0.25  # noqa: E731
    torch.testing.assert_close(extract_features(crate, raw, image_processor=normalise), expected_normalised)

    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(do_resize=False, image_mean=[0.5], image_std=[0.25])
    torch.testing.assert_close(
        extract_features(crate, raw, image_processor=processor), expected_normalised, atol=1e-4, rtol=1e-4
    )

    labels = torch.arange(6)
    loader = DataLoader(TensorDataset(scaled, labels), batch_size=4)  # yields (images, labels)
    torch.testing.assert_close(extract_features(crate, loader), expected_scaled)
    dict_batches = [{"pixel_values": scaled[:3]}, {"pixel_values": scaled[3:]}]
    torch.testing.assert_close(extract_features(crate, dict_batches), expected_scaled)


def test_extract_features_vit_uses_layernormed_cls_token(images):
    vit = tiny_vit()
    with torch.no_grad():
        expected = vit.vit(images).last_hidden_state[:, 0]
    features = extract_features(vit, images)
    torch.testing.assert_close(features, expected)
    # layernormed: each feature is (up to LN affine params, initialised to identity) zero-mean
    torch.testing.assert_close(features.mean(dim=1), torch.zeros(5), atol=1e-5, rtol=0)


def test_extract_features_bad_inputs(crate, images):
    with pytest.raises(TypeError, match="model"):
        extract_features(torch.nn.Linear(2, 2), images)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(crate, images, batch_size=0)
    with pytest.raises(ValueError, match="pixel_values_or_dataloader"):
        extract_features(crate, images[0])
    with pytest.raises(TypeError, match="pixel_values_or_dataloader"):
        extract_features(crate, 3)
    with pytest.raises(ValueError, match="pixel_values"):
        extract_features(crate, [{"image": images}])


# ---------------------------------------------------------------------------------------------------- kNN


def test_knn_separated_clusters_near_perfect():
    train_x, train_y = two_clusters(100, 8, separation=5.0, seed=0)
    test_x, test_y = two_clusters(50, 8, separation=5.0, seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=10) >= 0.99
    predictions = knn_classify(train_x, train_y, test_x, k=10)
    assert predictions.dtype == torch.long and predictions.shape == (100,)


def test_knn_random_labels_near_chance():
    generator = torch.Generator().manual_seed(3)
    train_x, test_x = torch.randn(400, 16, generator=generator), torch.randn(400, 16, generator=generator)
    train_y = torch.randint(0, 4, (400,), generator=generator)
    test_y = torch.randint(0, 4, (400,), generator=generator)
    accuracy = knn_accuracy(train_x, train_y, test_x, test_y, k=20)
    assert 0.15 < accuracy < 0.35


def test_knn_weighting_hand_computed():
    # test point at 30°: cosine 0.866 to the single label-0 point, 0.5 to the two label-1 points
    # (one of which is not unit length: features are l2-normalised first).
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    train_y = torch.tensor([0, 1, 1])
    test_x = torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]])
    for temperature in (0.3, 1.0):
        vote_0 = math.exp(math.cos(math.pi / 6) / temperature)
        vote_1 = 2 * math.exp(math.sin(math.pi / 6) / temperature)
        expected = 0 if vote_0 > vote_1 else 1
        assert knn_classify(train_x, train_y, test_x, k=3, temperature=temperature).tolist() == [expected]
    # the switch happens at T* = (cos30° - sin30°) / ln 2 ≈ 0.528: sharp weights let one close neighbour win
    assert knn_classify(train_x, train_y, test_x, k=3, temperature=0.3).item() == 0
    assert knn_classify(train_x, train_y, test_x, k=3, temperature=1.0).item() == 1
    # with k=1 only the nearest neighbour votes
    assert knn_classify(train_x, train_y, test_x, k=1, temperature=1.0).item() == 0


def test_knn_chunking_numpy_and_scale_invariance():
    generator = torch.Generator().manual_seed(4)
    train_x, test_x = torch.randn(60, 6, generator=generator), torch.randn(25, 6, generator=generator)
    train_y = torch.randint(0, 3, (60,), generator=generator)
    reference = knn_classify(train_x, train_y, test_x, k=5)
    assert torch.equal(knn_classify(train_x, train_y, test_x, k=5, chunk_size=7), reference)
    assert torch.equal(knn_classify(train_x.numpy(), train_y.numpy(), test_x.numpy(), k=5), reference)
    assert torch.equal(knn_classify(3.0 * train_x, train_y, 0.1 * test_x, k=5), reference)
    assert knn_classify(train_x, train_y, test_x, k=5, num_classes=7).max() < 3


def test_knn_bad_inputs():
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="train_labels"):
        knn_classify(x, y[:9], x)
    with pytest.raises(ValueError, match="`k`"):
        knn_classify(x, y, x, k=0)
    with pytest.raises(ValueError, match="`k`"):
        knn_classify(x, y, x, k=11)
    with pytest.raises(ValueError, match="temperature"):
        knn_classify(x, y, x, k=3, temperature=0.0)
    with pytest.raises(ValueError, match="test_features"):
        knn_classify(x, y, torch.randn(3, 5), k=3)
    with pytest.raises(ValueError, match="num_classes"):
        knn_classify(x, torch.full((10,), 4), x, k=3, num_classes=3)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(x, y, x, y[:5], k=3)
    with pytest.raises(TypeError, match="train_labels"):
        knn_classify(x, y.float(), x, k=3)


# ------------------------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_data():
    train_x, train_y = two_clusters(100, 10, separation=3.0, seed=5)
    test_x, test_y = two_clusters(100, 10, separation=3.0, seed=6)
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y) > 0.95
    probe = fit_linear_probe(train_x.numpy(), train_y.numpy())
    assert compute_accuracy(probe.predict(test_x.numpy()), test_y) > 0.95


def test_linear_probe_random_labels_near_chance():
    generator = torch.Generator().manual_seed(7)
    train_x, test_x = torch.randn(300, 8, generator=generator), torch.randn(300, 8, generator=generator)
    train_y = torch.randint(0, 3, (300,), generator=generator)
    test_y = torch.randint(0, 3, (300,), generator=generator)
    assert 0.2 < linear_probe_accuracy(train_x, train_y, test_x, test_y) < 0.46


def test_linear_probe_bad_inputs():
    x, y = torch.randn(10, 4), torch.tensor([0, 1] * 5)
    with pytest.raises(ValueError, match="train_labels"):
        linear_probe_accuracy(x, y[:9], x, y)
    with pytest.raises(ValueError, match="test_labels"):
        linear_probe_accuracy(x, y, x, y[:9])
    with pytest.raises(ValueError, match="test_features"):
        linear_probe_accuracy(x, y, torch.randn(10, 3), y)
    with pytest.raises(ValueError, match="max_iter"):
        linear_probe_accuracy(x, y, x, y, max_iter=0)
    with pytest.raises(ValueError, match="two classes"):
        fit_linear_probe(x, torch.zeros(10, dtype=torch.long))


# ----------------------------------------------------------------------------------------------- saliency


def manual_saliency(attentions, height, width, grid):
    cls = attentions[-1].mean(dim=1)[:, 0, 1:].reshape(-1, 1, grid, grid)
    maps = F.interpolate(cls, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low)


def test_attention_saliency_crate_matches_manual(crate, images):
    maps = attention_saliency(crate, images)
    assert maps.shape == (5, 8, 8)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    torch.testing.assert_close(maps.amin(dim=(1, 2)), torch.zeros(5))
    torch.testing.assert_close(maps.amax(dim=(1, 2)), torch.ones(5))
    with torch.no_grad():
        attentions = crate(images, output_attentions=True).attentions
    assert len(attentions) == 2 and attentions[-1].shape == (5, 4, 17, 17)
    torch.testing.assert_close(maps, manual_saliency(attentions, 8, 8, grid=4))
    torch.testing.assert_close(attention_saliency(crate.crate, images), maps)
    # an earlier layer gives a different map
    first = attention_saliency(crate, images, layer=0)
    assert not torch.allclose(first, maps)


def test_attention_saliency_vit(images):
    vit = tiny_vit("eager")
    maps = attention_saliency(vit, images)
    with torch.no_grad():
        attentions = vit(images, output_attentions=True).attentions
    torch.testing.assert_close(maps, manual_saliency(attentions, 8, 8, grid=4))
    with pytest.raises(ValueError, match="eager"):
        attention_saliency(tiny_vit("sdpa"), images)


def test_attention_saliency_bad_inputs(crate, images):
    with pytest.raises(ValueError, match="pixel_values"):
        attention_saliency(crate, images[0])
    with pytest.raises(TypeError, match="pixel_values"):
        attention_saliency(crate, images.to(torch.uint8))
    with pytest.raises(ValueError, match="layer"):
        attention_saliency(crate, images, layer=2)


def test_save_saliency_grid_writes_png(crate, images, tmp_path):
    maps = attention_saliency(crate, images)
    path = save_saliency_grid(images, maps, tmp_path / "out" / "saliency.png", titles=list("abcde"), ncols=3)
    assert Path(path).read_bytes()[:8] == PNG_MAGIC
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    path = save_saliency_grid(rgb, maps[:2], tmp_path / "rgb.png")
    assert Path(path).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="maps"):
        save_saliency_grid(images, maps[:, :4], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="titles"):
        save_saliency_grid(images, maps, tmp_path / "bad.png", titles=["a"])


# -------------------------------------------------------------------------------------------- diagnostics


def test_layerwise_diagnostics_crate(crate, images):
    rows = layerwise_diagnostics(crate, images, eps=0.5)
    assert [row["layer"] for row in rows] == [1, 2]
    with torch.no_grad():
        hidden_states = crate(images, output_hidden_states=True).hidden_states
    for row, tokens in zip(rows, hidden_states[1:]):
        assert 0.0 < row["sparsity"] <= 1.0  # ISTA outputs are ReLU sparse codes
        assert row["sparsity"] == pytest.approx((tokens == 0).float().mean().item())
        assert row["coding_rate"] > 0
        assert row["coding_rate"] == pytest.approx(coding_rate(tokens, 0.5).mean().item(), rel=1e-6)
    chunked = layerwise_diagnostics(crate, images, eps=0.5, batch_size=2)
    for a, b in zip(rows, chunked):
        assert a["sparsity"] == pytest.approx(b["sparsity"])
        assert a["coding_rate"] == pytest.approx(b["coding_rate"], rel=1e-5)
    # a larger distortion eps means a smaller coding rate
    assert layerwise_diagnostics(crate, images, eps=2.0)[0]["coding_rate"] < rows[0]["coding_rate"]


def test_layerwise_diagnostics_residual_models_are_dense(images):
    for model in (tiny_crate("odl"), tiny_vit()):
        rows = layerwise_diagnostics(model, images)
        assert len(rows) == 2
        assert all(0.0 <= row["sparsity"] < 0.05 and row["coding_rate"] > 0 for row in rows)


def test_diagnostics_table_and_plot(crate, images, tmp_path):
    rows = layerwise_diagnostics(crate, images)
    table = diagnostics_table(rows)
    lines = table.strip().splitlines()
    assert lines[0] == "| layer | sparsity | coding rate |"
    assert len(lines) == 4 and lines[2].startswith("| 1 | ") and lines[3].startswith("| 2 | ")
    assert f"{rows[1]['sparsity']:.3f}" in lines[3]
    path = plot_diagnostics({"crate": rows, "vit": layerwise_diagnostics(tiny_vit(), images)}, tmp_path / "d.png")
    assert Path(path).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="rows"):
        diagnostics_table([])
    with pytest.raises(ValueError, match="rows"):
        diagnostics_table([{"layer": 1}])
    with pytest.raises(ValueError, match="rows_by_model"):
        plot_diagnostics({}, tmp_path / "e.png")


def test_layerwise_diagnostics_bad_inputs(crate, images):
    with pytest.raises(ValueError, match="eps"):
        layerwise_diagnostics(crate, images, eps=0.0)
    with pytest.raises(ValueError, match="pixel_values"):
        layerwise_diagnostics(crate, images[0])
    with pytest.raises(TypeError, match="model"):
        layerwise_diagnostics(torch.nn.Linear(2, 2), images)


# ------------------------------------------------------------------------------------------------ metrics


def test_compute_accuracy():
    assert compute_accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert compute_accuracy(torch.tensor([2, 2]), np.array([2, 2])) == 1.0
    with pytest.raises(ValueError, match="predictions"):
        compute_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        compute_accuracy([], [])
    with pytest.raises(TypeError, match="predictions"):
        compute_accuracy([0.5, 1.0], [0, 1])


@pytest.fixture(scope="module")
def isolated_hf_home(tmp_path_factory):
    """evaluate copies metric scripts into ``$HF_HOME/modules/evaluate_modules`` and imports them from there:
    point it at a temporary folder, first on `sys.path`, with no stale `evaluate_modules` package imported."""
    import evaluate

    home = tmp_path_factory.mktemp("hf_home")
    (home / "modules").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.setattr(evaluate.config, "HF_MODULES_CACHE", home / "modules")
        patch.setattr(evaluate.config, "HF_EVALUATE_CACHE", home / "evaluate")
        patch.setattr(evaluate.config, "HF_METRICS_CACHE", home / "metrics")
        patch.syspath_prepend(str(home / "modules"))
        for module in [m for m in sys.modules if m == "evaluate_modules" or m.startswith("evaluate_modules.")]:
            patch.delitem(sys.modules, module)
        yield home


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_evaluate_metrics_load_offline(name, isolated_hf_home):
    import evaluate

    path = metric_path(name)
    assert Path(path).is_file()
    metric = evaluate.load(path)
    result = metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    assert result == {name: 0.75}
    copies = list((isolated_hf_home / "modules").rglob(f"{name}.py"))
    assert copies  # the script was copied under the temporary HF_HOME, not the user's cache


def test_metric_path_unknown_name():
    with pytest.raises(ValueError, match="name"):
        metric_path("f1")
