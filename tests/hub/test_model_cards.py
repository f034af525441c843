"""Model cards: model-index results come from the run's metrics file, every card has the citation, the book section,
intended use and the command; the per-task templates of model_cards/templates are used from a checkout."""

import json

import pytest
from huggingface_hub import ModelCard

from whitebox_hf import CausalCrateConfig, CausalCrateForCausalLM, CrateModel
from whitebox_hf.hub import model_card_from_folder, write_model_card
from whitebox_hf.hub.model_card import TEMPLATE_PATH, TEMPLATES_DIR, template_for_task


def test_templates_exist_for_every_task():
    for task in ("image-classification", "text-generation", "image-feature-extraction"):
        assert template_for_task(task) == TEMPLATES_DIR / f"{task}.md"
    assert template_for_task("unknown-task") == TEMPLATE_PATH


def test_causal_lm_card_from_evaluation_json(tmp_path):
    model = CausalCrateForCausalLM(CausalCrateConfig(vocab_size=61, max_position_embeddings=16, hidden_size=16,
                                                     num_hidden_layers=1, num_attention_heads=2))
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "evaluation.json").write_text(json.dumps({
        "val_loss": 2.5, "val_perplexity": 12.18, "steps": 7, "command": "python training/train_causal_lm.py --x 1",
        "config": {"learning_rate": 0.001, "batch_size": 4, "data_dir": ""}}))
    path = write_model_card(tmp_path / "model", dataset_name="python-docs")
    card = ModelCard.load(path)
    metrics = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert metrics == {"loss": 2.5, "perplexity": 12.18}
    assert card.data.pipeline_tag == "text-generation"
    text = path.read_text()
    for needle in ("@book{", "Table 8.18", "python training/train_causal_lm.py --x 1", "learning_rate",
                   "evaluation.json", "Intended use"):
        assert needle in text, needle


@pytest.mark.parametrize("method, metrics", [
    ("simdino", {"knn20_accuracy": 0.7, "linear_probe_accuracy": 0.75, "method": "simdino"}),
    ("mae", {"reconstruction_loss": 0.3, "linear_probe_accuracy": 0.6, "method": "mae"}),
])
def test_representation_card(tmp_path, tiny_crate_config, method, metrics):
    CrateModel(tiny_crate_config()).save_pretrained(tmp_path)
    card = model_card_from_folder(tmp_path, metrics={**metrics, "dataset": "Fashion-MNIST"})
    assert card.data.pipeline_tag == "image-feature-extraction" and method in card.data.tags
    assert {r.metric_name for r in card.data.eval_results} == {k for k in metrics if k != "method"}
    assert card.data.eval_results[0].dataset_type == "zalando-datasets/fashion_mnist"
    assert "@book{" in card.content


def test_numbers_are_never_invented(tmp_path, tiny_crate_config):
    CrateModel(tiny_crate_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="knn20_accuracy"):
        model_card_from_folder(tmp_path, metrics={"dataset": "x", "loss": 1.0})
    with pytest.raises(ValueError, match="dataset"):
        model_card_from_folder(tmp_path, metrics={"knn20_accuracy": 0.5})


def test_packaged_template_renders_the_same_sections(tmp_path, tiny_crate_config):
    from whitebox_hf import CrateForImageClassification

    CrateForImageClassification(tiny_crate_config()).save_pretrained(tmp_path)
    card = model_card_from_folder(tmp_path, metrics={"test_accuracy": 0.5, "dataset": "digits"},
                                  template_path=TEMPLATE_PATH)
    for needle in ("model-index", "@book{", "Intended use", "§8.4.1"):
        assert needle in card.content
