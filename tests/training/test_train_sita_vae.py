"""Tests of training/train_sita_vae.py (SITA-VAE on the procedural shapes): a few steps on a tiny data set."""

import json

import pytest
import torch
from transformers import AutoModel

from tests.conftest import load_training_script
from whitebox_hf.data.shapes import load_procedural_shapes

train_sita_vae = load_training_script("train_sita_vae")

TINY = ["--eval_grid_depth", "3", "--num_per_category", "3", "--batch_size", "4", "--eval_batch_size", "4", "--warmup_steps", "1", "--learning_rate", "0.001",
        "--num_threads", "1", "--log_every", "1", "--num_input_points", "48", "--num_volume_queries", "16",
        "--num_near_queries", "16"]


def tiny_shapes(num_per_category=3):
    return load_procedural_shapes(num_per_category=num_per_category, categories=["mug", "bottle", "table"],
                                  num_surface_points=64, num_volume_queries=32, num_near_queries=32)


@pytest.mark.parametrize("block_type", ["transformer", "crate"])
def test_a_few_steps_log_each_term_and_save_a_model_autoModel_loads(tmp_path, block_type):
    data = tiny_shapes()
    results = train_sita_vae.main(TINY + ["--block_type", block_type, "--max_steps", "3", "--output_dir",
                                          str(tmp_path)], data=data)
    assert results["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train_loss" in r]
    assert len(steps) == 3
    for record in steps:  # the total is the weighted sum of the terms logged beside it (L_con off)
        expected = record["volume_loss"] + 0.1 * record["near_loss"] + 0.001 * record["kl_loss"]
        assert record["train_loss"] == pytest.approx(expected, rel=1e-5)
    assert (tmp_path / "loss_curve.png").stat().st_size > 0 and (tmp_path / "loss_terms.png").stat().st_size > 0

    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert 0.0 <= evaluation["volumetric_iou"] <= 1.0
    categories = sorted(set(data["validation"]["category"]))
    assert sorted(evaluation["volumetric_iou_per_category"]) == categories
    assert sum(c["num_shapes"] for c in evaluation["volumetric_iou_per_category"].values()) == len(data["validation"])

    reloaded, info = AutoModel.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(reloaded).__name__ == "SitaVaeModel" and reloaded.config.block_type == block_type
    # The saved model reproduces the evaluation it was scored with.
    again = train_sita_vae.evaluate(reloaded, train_sita_vae.split_tensors(data["validation"]), batch_size=4,
                                    num_input_points=48)
    assert again["volume_query_iou"] == pytest.approx(evaluation["volume_query_iou"])
    assert 0.0 <= evaluation["f_score"] <= 1.0 and evaluation["num_per_category"] == 3
    assert (tmp_path / "model" / "README.md").read_text().count("sita_vae") >= 1


def test_kl_weight_zero_drops_the_kl_term_from_the_loss(tmp_path):
    train_sita_vae.main(TINY + ["--kl_weight", "0", "--max_steps", "1", "--output_dir", str(tmp_path)],
                        data=tiny_shapes())
    record = next(json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()
                  if "train_loss" in line)
    assert record["kl_loss"] > 0
    assert record["train_loss"] == pytest.approx(record["volume_loss"] + 0.1 * record["near_loss"], rel=1e-5)


def test_volumetric_iou_counts_the_occupied_sets():
    logits = torch.tensor([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0], [-1.0, 2.0, -1.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert train_sita_vae.per_shape_iou(logits, labels).tolist() == [1 / 3, 1.0, 0.0]


@pytest.mark.parametrize("argv, needle", [
    (["--contrastive_weight", "0.1"], "alignment_model"),
    (["--num_input_points", "5000"], "num_input_points"),
    (["--num_volume_queries", "9000", "--num_near_queries", "9000"], "num_volume_queries"),
    (["--block_type", "mlp"], "block_type"),
    (["--kl_weight", "-1"], "kl_weight"),
    (["--num_near_queries", "7"], "num_near_queries"),
    (["--preset", "big"], "preset"),
])
def test_bad_settings_are_refused_by_name(argv, needle):
    with pytest.raises(ValueError, match=needle):
        train_sita_vae.parse_args(argv)
