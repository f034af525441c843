"""training/report_mae_layers.py: its per-layer features agree with the MAE script's own feature, saved folders of
both models load, and the findings follow the values both ways."""

import pytest
import torch

from tests.conftest import load_training_script

report = load_training_script("report_mae_layers")
train_mae = load_training_script("train_mae")

TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--decoder_num_hidden_layers", "1",
        "--num_attention_heads", "4", "--patch_size", "4"]
PIXELS = {"knn20_accuracy": 0.85, "linear_probe_accuracy": 0.84, "feature_dim": 784}


@pytest.mark.parametrize("model_name", ["crate", "vit"])
def test_layer_features_match_the_training_scripts_feature_and_survive_a_save(tmp_path, model_name):
    torch.manual_seed(0)
    args = train_mae.parse_args(TINY + ["--model", model_name])
    model = train_mae.build_model(args, image_size=16, num_channels=1).eval()
    pixels = torch.randn(6, 1, 16, 16)
    features = report.layer_features(model, pixels, batch_size=4)  # two batches
    assert list(features) == ["embedding", "layer 1", "layer 2", report.FINAL, report.CONCATENATED]
    assert all(value.shape == (6, 32) for name, value in features.items() if name != report.CONCATENATED)
    assert features[report.CONCATENATED].shape == (6, 64)
    torch.testing.assert_close(features[report.CONCATENATED][:, 32:], features["layer 2"])
    # the final feature is the training script's probe feature, computed here by hand: one unmasked forward
    with torch.no_grad():
        if model_name == "vit":
            model.config.mask_ratio = 0.0
            expected = model.vit(pixel_values=pixels).last_hidden_state[:, 1:].mean(dim=1)
            model.config.mask_ratio = 0.75
        else:
            expected = model(pixel_values=pixels, bool_masked_pos=torch.zeros(6, 16, dtype=torch.bool)
                             ).last_hidden_state[:, 1:].mean(dim=1)
    torch.testing.assert_close(features[report.FINAL], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(train_mae.encoder_features(model, pixels, batch_size=6), expected, rtol=1e-5, atol=1e-5)
    assert model.config.mask_ratio == 0.75, "layer_features must restore ViT-MAE's mask ratio"
    assert not torch.allclose(features["layer 2"], features[report.FINAL]), "the final norm is a separate stage"
    model.save_pretrained(tmp_path)
    reloaded = report.load_mae_model(tmp_path)
    assert type(reloaded) is type(model) and not reloaded.training
    torch.testing.assert_close(report.layer_features(reloaded, pixels)[report.FINAL], features[report.FINAL])


def test_layer_features_reject_an_empty_or_flat_batch():
    model = train_mae.build_model(train_mae.parse_args(TINY), image_size=16, num_channels=1)
    for bad in (torch.zeros(0, 1, 16, 16), torch.zeros(4, 256)):
        with pytest.raises(ValueError, match="pixel_values"):
            report.layer_features(model, bad)


def rows(final_probe, best_layer_probe, concatenated_probe):
    row = lambda name, probe: {"feature": name, "dim": 96, "knn20_accuracy": 0.8,  # noqa: E731
                               "linear_probe_accuracy": probe, "seconds": 1.0}
    return {"rows": [row("embedding", 0.70), row("layer 1", best_layer_probe), row(report.FINAL, final_probe),
                     row(report.CONCATENATED, concatenated_probe)], "steps": 5616, "train_minutes": 60.0}


def test_findings_name_the_best_layer_and_the_features_above_pixels_both_ways():
    results = {"mae-vit-12ep": rows(final_probe=0.82, best_layer_probe=0.83, concatenated_probe=0.86)}
    (line,) = report.findings(results, PIXELS)
    assert "`layer 1` (83.00 %" in line and "Above the pixels' probe (84.00 %): `layers concatenated`." in line
    results = {"mae-vit-12ep": rows(final_probe=0.85, best_layer_probe=0.80, concatenated_probe=0.83)}
    (line,) = report.findings(results, PIXELS)
    assert f"`{report.FINAL}` (85.00 %" in line and f"Above the pixels' probe (84.00 %): `{report.FINAL}`." in line
    results = {"mae-crate-12ep": rows(final_probe=0.80, best_layer_probe=0.81, concatenated_probe=0.82)}
    (line,) = report.findings(results, PIXELS)
    assert line.startswith("- CRATE-MAE") and "No feature is above the pixels' probe" in line


def test_render_marks_a_missing_run_and_signs_the_gap():
    page = report.render({"mae-vit-12ep": rows(0.82, 0.83, 0.86)}, PIXELS)
    assert "`runs/mae-crate-12ep/model` is not there: not measured." in page
    assert "| layers concatenated | 96 | 80.00 % | 86.00 % | +2.00 pt |" in page
    assert "| final (LayerNorm) | 96 | 80.00 % | 82.00 % | -2.00 pt |" in page
