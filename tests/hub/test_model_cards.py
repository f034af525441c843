"""Model cards: model-index results come from the run's metrics file, every card has the citation, the book section,
intended use and the command; the per-task templates shipped in whitebox_hf/templates are used; no absolute path."""

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from whitebox_hf import CausalCrateConfig, CausalCrateForCausalLM, CrateModel
from whitebox_hf.hub import model_card_from_folder, write_model_card
from whitebox_hf.hub.model_card import (
    TEMPLATE_PATH,
    TEMPLATES_DIR,
    autoencoder_model_card,
    pipeline_model_card,
    template_for_task,
)


def test_templates_exist_for_every_task():
    for task in ("image-classification", "text-generation", "image-feature-extraction",
                 "zero-shot-image-classification", "autoencoder", "unconditional-image-generation"):
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


def _check_card(path, metrics, command):
    """The saved card parses, its model-index holds exactly ``metrics``, the command and the citation are there."""
    card = ModelCard.load(path)
    assert {r.metric_name: r.metric_value for r in (card.data.eval_results or [])} == metrics
    text = Path(path).read_text()
    for needle in (command, "@book{buchanan2025learning", "Intended use", "## Architecture"):
        assert needle in text, needle
    return card


def test_contrastive_card_from_clip_metrics(tmp_path):
    from whitebox_hf.models.whitebox_clip import WhiteboxClipConfig, WhiteboxClipModel

    config = WhiteboxClipConfig(text_tower="clip", vision_config=dict(hidden_size=16, num_hidden_layers=1,
                                                                      num_attention_heads=2, image_size=8,
                                                                      patch_size=4, num_channels=3),
                                text_config=dict(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32),
                                projection_dim=8)
    WhiteboxClipModel(config).save_pretrained(tmp_path / "model")
    measured = {"image_to_text_R@1": 0.25, "image_to_text_R@5": 0.5, "text_to_image_R@1": 0.125,
                "text_to_image_R@5": 0.625, "zero_shot_accuracy": 0.375, "zero_shot_balanced_accuracy": 0.3}
    command = "python training/train_clip.py --text_tower clip"
    (tmp_path / "metrics.json").write_text(json.dumps({**measured, "retrieval_chance_R@1": 0.01, "steps": 3,
                                                       "dataset": "Openclipart", "command": command}))
    card = _check_card(write_model_card(tmp_path / "model"), measured, command)
    assert card.data.pipeline_tag == "zero-shot-image-classification" and "clip" in card.data.tags
    assert card.data.library_name == "transformers" and "§8.3.8" in card.content


@pytest.mark.parametrize("class_name", ["AutoencoderKL", "CrateRepresentationAutoencoder"])
def test_autoencoder_card(tmp_path, class_name):
    config = ({"in_channels": 1, "block_out_channels": [8, 8], "latent_channels": 4, "scaling_factor": 0.5}
              if class_name == "AutoencoderKL" else
              {"decoder_hidden_size": 16, "decoder_num_layers": 1, "noise_tau": 0.8,
               "encoder_config": {"model_type": "crate", "hidden_size": 32, "num_hidden_layers": 2}})
    measured = {"test_l1": 0.07, "test_psnr": 23.5, "test_rfd_effnet": 3.25}
    command = "python training/train_autoencoder.py --autoencoder vae"
    card = autoencoder_model_card(config, measured, "Fashion-MNIST", class_name, latent_shape=[4, 7, 7],
                                  dataset_id="zalando-datasets/fashion_mnist", command=command,
                                  hyperparameters={"learning_rate": 5e-4})
    card.save(str(tmp_path / "README.md"))
    card = _check_card(tmp_path / "README.md", measured, command)
    assert card.data.library_name == "diffusers" and "whitebox_hf" in card.data.tags
    assert "4 × 7 × 7" in card.content and class_name in card.content
    assert ("white-box" in card.data.tags) == (class_name == "CrateRepresentationAutoencoder")
    with pytest.raises(ValueError, match="metrics"):
        autoencoder_model_card(config, {}, "Fashion-MNIST", class_name)


RUN_RESULTS = {"steps": 1500, "batch_size": 64, "epochs": 1.6, "train_seconds_total": 551.0,
               "num_parameters": 1424772, "input_shape": [4, 7, 7], "denoiser": "dit",
               "autoencoder": "runs/autoencoder-vae/autoencoder"}


def test_pipeline_card_without_metrics_points_to_the_report(tmp_path):
    command = "python training/train_latent_flow.py --config training/configs/flow_vae_dit.yaml"
    card = pipeline_model_card(RUN_RESULTS, "Fashion-MNIST", dataset_id="zalando-datasets/fashion_mnist",
                               autoencoder_class="AutoencoderKL", class_names=["T-shirt/top", "Trouser"],
                               command=command)
    card.save(str(tmp_path / "README.md"))
    card = _check_card(tmp_path / "README.md", {}, command)
    assert "model-index" not in card.content and "docs/results/generation.md" in card.content
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "unconditional-image-generation"
    assert "WhiteboxFlowPipeline" in card.content and "1,500 steps of batch 64" in card.content


@pytest.mark.parametrize("denoiser, pipeline_class", [("crate", "WhiteboxFlowPipeline"),
                                                      ("unet", "WhiteboxDDPMPipeline")])
def test_pipeline_card_with_sample_metrics(tmp_path, denoiser, pipeline_class):
    measured = {"fd_effnet@cfg2.0": 18.25, "class_accuracy@cfg2.0": 0.8}
    command = f"python training/train_x.py --denoiser {denoiser}"
    card = pipeline_model_card({**RUN_RESULTS, "denoiser": denoiser, "autoencoder": "none"}, "Fashion-MNIST",
                               metrics=measured, command=command)
    card.save(str(tmp_path / "README.md"))
    card = _check_card(tmp_path / "README.md", measured, command)
    assert card.data.eval_results[0].task_type == "unconditional-image-generation"
    assert pipeline_class in card.content and "pixel space" in card.content
    assert ("white-box" in card.data.tags) == (denoiser == "crate")


def test_packaged_template_renders_a_card_without_results(tmp_path):
    card = pipeline_model_card(RUN_RESULTS, "Fashion-MNIST", template_path=TEMPLATE_PATH)
    assert "docs/results/generation.md" in card.content and "| metric | value |" not in card.content


# An absolute POSIX path with at least two components, after a space, quote, backtick, bracket or "=" (written
# independently of the builder's own pattern).
ABSOLUTE = re.compile(r"(?:^|[\s`\"'(\[=])/[A-Za-z_][\w.-]*/", re.MULTILINE)
REPO = Path(__file__).resolve().parents[2]
COMMITTED_CARDS = sorted([*(REPO / "model_cards").glob("*.md"), *(REPO / "src/whitebox_hf/bundled").rglob("README.md")])


def test_committed_cards_hold_no_absolute_path():
    assert len(COMMITTED_CARDS) >= 10
    for path in COMMITTED_CARDS:
        found = ABSOLUTE.findall(path.read_text())
        assert not found, f"{path.relative_to(REPO)} holds absolute paths: {found}"


def test_the_detector_finds_absolute_paths():
    assert ABSOLUTE.search('from_pretrained("/work/main/runs/x")')
    assert ABSOLUTE.search("read from `/root/.cache/evaluation.json`")
    assert not ABSOLUTE.search("see docs/results/generation.md and https://hf.co/a/b, 1/√(2L)")


def test_generated_cards_hold_no_absolute_path(tmp_path, monkeypatch, tiny_crate_config):
    from whitebox_hf import CrateForImageClassification

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    model_dir = work / "runs" / "crate" / "model"
    CrateForImageClassification(tiny_crate_config()).save_pretrained(model_dir)
    (elsewhere / "eval").mkdir(parents=True)
    (elsewhere / "eval" / "metrics.json").write_text(json.dumps({
        "test_accuracy": 0.5, "dataset": "digits",
        "command": f"{elsewhere}/venv/bin/python training/train.py --output_dir {model_dir.parent}",
        "config": {"data_dir": str(elsewhere / "data"), "learning_rate": 0.001}}))
    monkeypatch.chdir(work)
    text = write_model_card(model_dir, metrics_file=elsewhere / "eval" / "metrics.json").read_text()
    assert not ABSOLUTE.findall(text), ABSOLUTE.findall(text)
    assert 'from_pretrained("runs/crate/model")' in text  # under the working directory: relative to it
    assert "python training/train.py --output_dir runs/crate" in text and "| data_dir | data |" in text
    assert "read from `metrics.json`" in text
    # A folder outside the working directory is shown as the usual placeholder.
    monkeypatch.chdir(elsewhere)
    text = str(model_card_from_folder(model_dir, metrics_file=elsewhere / "eval" / "metrics.json"))
    assert not ABSOLUTE.findall(text) and 'from_pretrained("path/to/this/folder")' in text
    assert "read from `eval/metrics.json`" in text


REQUIRED_METADATA = {
    "language": {"white_box", "tags", "pipeline_tag", "book_section", "name", "summary"},
    "image": {"white_box", "tags", "book_section", "descriptions"},
    "contrastive": {"white_box", "tags", "pipeline_tag", "book_section", "description", "text_towers"},
    "autoencoder": {"white_box", "short_name", "tags", "book_section", "description", "usage"},
    "denoiser": {"white_box", "pipeline_class", "tags", "book_section", "description"},
    "shape_autoencoder": {"white_box", "short_name", "tags", "book_section", "description"},
    "image_to_3d": {"white_box", "short_name", "tags", "book_section", "description"},
    "motion": {"white_box", "short_name", "tags", "book_section", "description"},
}


def test_family_card_metadata_is_complete_and_lives_beside_the_models():
    from whitebox_hf.hub.model_card import BASELINE_METADATA, card_metadata

    metadata = card_metadata()
    assert set(metadata) == set(REQUIRED_METADATA)
    for kind, families in metadata.items():
        for key, entry in families.items():
            assert REQUIRED_METADATA[kind] <= set(entry), (kind, key, REQUIRED_METADATA[kind] - set(entry))
            assert entry["white_box"] == ("white-box" in entry["tags"]), (kind, key)
            assert (entry["book_section"] is not None) == entry["white_box"], (kind, key)
    own = {key for families in metadata.values() for key in families} - set(BASELINE_METADATA)
    assert {"crate", "crate/odl", "causal_crate", "causal_crate/odl", "aot/mssa", "aot/mhsa", "tost", "whitebox_clip",
            "CrateRepresentationAutoencoder", "dit"} <= own
    # The intended-use paragraph of every task and every usage snippet are templates in the package.
    for task in ("image-classification", "text-generation", "image-feature-extraction",
                 "zero-shot-image-classification", "autoencoder", "unconditional-image-generation"):
        assert (TEMPLATES_DIR / "intended_use" / f"{task}.md").read_text().strip()
    for entry in metadata["autoencoder"].values():
        assert (TEMPLATES_DIR / "usage" / f"{entry['usage']}.md").is_file()


def test_image_to_3d_card_from_a_saved_cupid_flow_folder(tmp_path):
    import json

    from whitebox_hf.hub.model_card import model_card_from_folder
    from whitebox_hf.models.cupid import CupidFlowConfig, CupidFlowModel

    model = CupidFlowModel(CupidFlowConfig(
        cube_resolution=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        image_encoder_config=dict(image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2)))
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "evaluation.json").write_text(json.dumps({
        "pose": {"rotation_error_median_deg": 7.25, "rotation_within_15deg": 0.625}, "volumetric_iou": 0.5125,
        "dataset": "procedural-shapes", "steps": 200, "command": f"python training/train_cupid.py --output_dir {tmp_path}/run"}))
    card = model_card_from_folder(tmp_path / "model")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"rotation_error_median_deg": 7.25, "rotation_within_15deg": 0.625, "volumetric_iou": 0.5125}
    assert card.data.eval_results[0].task_type == "image-to-3d"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag is None
    assert {"cupid-flow", "3d", "pose-estimation", "image-to-3d"} <= set(card.data.tags)
    assert "white-box" not in card.data.tags
    text = str(card)
    assert "| rotation_error_median_deg | 7.2500 |" in text and "| cube_resolution | 8 |" in text
    assert "CupidPipeline(flow_model" in text and "stage 2, is not built" in text
    assert "Cupid's stage 1 trained on procedural-shapes" in text
    assert str(tmp_path) not in text  # the command's absolute path is made portable
    (tmp_path / "evaluation.json").write_text(json.dumps({"dataset": "procedural-shapes", "steps": 1}))
    with pytest.raises(ValueError, match="rotation_error_median_deg"):
        model_card_from_folder(tmp_path / "model")


@pytest.mark.parametrize("block_type, white_box", [("transformer", False), ("crate", True)])
def test_shape_autoencoder_card_from_a_saved_sita_vae_folder(tmp_path, block_type, white_box):
    import json

    from whitebox_hf.hub.model_card import model_card_from_folder
    from whitebox_hf.models.sita_vae import SitaVaeConfig, SitaVaeModel

    model = SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                                       num_decoder_layers=1, latent_channels=4, num_fourier_frequencies=2,
                                       alignment_dim=8, block_type=block_type))
    model.save_pretrained(tmp_path / "model")
    retrieval = {"shape_to_text": {"r@1": 0.25, "r@5": 0.5, "mean_similarity": 0.3, "chance_r@1": 0.05,
                                   "num_queries": 40}}
    (tmp_path / "evaluation.json").write_text(json.dumps({
        "volumetric_iou": 0.9312, "dataset": "procedural-shapes", "steps": 100, "epochs": 2.0,
        "retrieval": retrieval, "command": f"python training/train_sita_vae.py --output_dir {tmp_path}/run"}))
    card = model_card_from_folder(tmp_path / "model")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"volumetric_iou": 0.9312, "shape_to_text_R@1": 0.25, "shape_to_text_R@5": 0.5,
                       "shape_to_text_mean_similarity": 0.3}
    assert card.data.eval_results[0].task_type == "shape-reconstruction"
    text = str(card)
    assert "| volumetric_iou | 0.9312 |" in text and "| block_type | " + block_type in text
    assert ("white-box" in card.data.tags) == white_box and "3d" in card.data.tags
    assert "model.encode(surface_points" in text and "Intended use" in text
    assert str(tmp_path) not in text  # the command's absolute path is made portable
    (tmp_path / "evaluation.json").write_text(json.dumps({"dataset": "procedural-shapes", "steps": 1}))
    with pytest.raises(ValueError, match="volumetric_iou"):
        model_card_from_folder(tmp_path / "model")
