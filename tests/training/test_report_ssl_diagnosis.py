"""The verdicts of training/report_ssl_diagnosis.py follow from the values, each one both ways."""

from tests.conftest import load_training_script

report = load_training_script("report_ssl_diagnosis")


def run(knn, std=0.01, probe=0.8, mse=0.5, steps=100):
    return {"knn20_accuracy": knn, "feature_std": std, "linear_probe_accuracy": probe, "reconstruction_loss": mse,
            "steps": steps}


def test_ssl_reading_both_ways():
    up = report.ssl_reading(run(0.5, std=0.001), run(0.7, std=0.02), pixels_knn=0.8)
    assert "rises" in up and "does not rise" not in up and "more spread" in up and "still below" in up
    down = report.ssl_reading(run(0.7, std=0.02), run(0.5, std=0.001), pixels_knn=0.4)
    assert "does not rise" in down and "less spread" in down and "above raw pixels" in down


def test_mae_reading_both_ways():
    good = report.mae_reading(run(0.6, probe=0.85, mse=0.4), run(0.6, probe=0.8, mse=0.6), plateau=0.7,
                              pixels_probe=0.82)
    assert "is below the position-blind" in good and "is above raw" in good
    assert "ViT-MAE has the lower masked MSE and ViT-MAE the better" in good
    bad = report.mae_reading(run(0.6, probe=0.7, mse=0.9), run(0.6, probe=0.8, mse=0.6), plateau=0.7,
                             pixels_probe=0.82)
    assert "not below" in bad and "is below raw" in bad
    assert "CRATE-MAE has the lower masked MSE and CRATE-MAE the better" in bad
    assert "CRATE-MAE" not in report.mae_reading(run(0.6), None, plateau=0.7, pixels_probe=0.82)
