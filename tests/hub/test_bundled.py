"""The bundled checkpoints: laid out as Hub repositories, small, loadable offline with `from_pretrained`."""

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoTokenizer,
)

from whitebox_hf.hub import BUNDLED_DIR, bundled_checkpoint, list_bundled_checkpoints

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"fashion-mnist-crate", "fashion-mnist-simdino-crate", "python-docs-crate-alpha",
            "fashion-mnist-flow-vae-dit", "procedural-shapes-image-to-3d", "cmu-motion-from-head",
            "procedural-shapes-cupid", "openclipart-emoji-text-to-image"}


def test_bundle_names_resolve_and_stay_under_50_mb():
    names = list_bundled_checkpoints()
    assert {"fashion-mnist-crate", "fashion-mnist-simdino-crate"} <= set(names)
    assert set(names) <= EXPECTED
    total = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert total <= 50e6
    for name in names:
        folder = bundled_checkpoint(name)
        assert (folder / "README.md").read_text().startswith("---"), name  # a card with YAML metadata
        assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), "safetensors only"


def test_unknown_name_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="fashion-mnist-crate"):
        bundled_checkpoint("imagenet-crate")
    with pytest.raises(TypeError, match="name"):
        bundled_checkpoint(3)


def test_image_models_load_and_run():
    classifier = AutoModelForImageClassification.from_pretrained(bundled_checkpoint("fashion-mnist-crate")).eval()
    assert classifier.config.id2label[9] == "Ankle boot"
    backbone = AutoModel.from_pretrained(bundled_checkpoint("fashion-mnist-simdino-crate")).eval()
    pixels = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.isfinite(backbone(pixel_values=pixels).pooler_output).all()
    # The trained weights, not just the layout: the four Fashion-MNIST test images the Space ships are named by
    # their class, and the bundled classifier gets all four right.
    processor = AutoImageProcessor.from_pretrained(bundled_checkpoint("fashion-mnist-crate"))
    paths = sorted((ROOT / "spaces" / "crate-image-classification" / "examples").glob("*.png"))
    assert len(paths) == 4
    with torch.no_grad():
        logits = classifier(**processor([Image.open(path) for path in paths], return_tensors="pt")).logits
    predicted = [classifier.config.id2label[i].lower().replace(" ", "_") for i in logits.argmax(-1).tolist()]
    assert predicted == [path.stem for path in paths]
    card = (bundled_checkpoint("fashion-mnist-crate") / "README.md").read_text()
    config = json.loads((bundled_checkpoint("fashion-mnist-crate") / "config.json").read_text())
    assert "model-index" in card and config["model_type"] == "crate"


def test_language_model_generates():
    assert "python-docs-crate-alpha" in list_bundled_checkpoints()  # shipped in the wheel: missing is a defect
    folder = bundled_checkpoint("python-docs-crate-alpha")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer("def main(", return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert output.shape[1] == ids.shape[1] + 5 and torch.equal(output[0, : ids.shape[1]], ids[0])
    # Trained on Python docs: a small Python program costs far less than the uniform ln(vocab) (4.1 vs 8.3 nats).
    text = ("import os\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n\n"
            "if __name__ == '__main__':\n    main()\n")
    program = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(program, labels=program).loss.item()
    assert loss < 0.6 * math.log(len(tokenizer))


def test_flow_pipeline_samples():
    assert "fashion-mnist-flow-vae-dit" in list_bundled_checkpoints()
    from whitebox_hf.pipelines import WhiteboxFlowPipeline

    pipe = WhiteboxFlowPipeline.from_pretrained(bundled_checkpoint("fashion-mnist-flow-vae-dit"))
    pipe.set_progress_bar_config(disable=True)
    sample = lambda labels, seed: pipe(labels, num_inference_steps=2, guidance_scale=2.0,  # noqa: E731
                                       generator=torch.Generator().manual_seed(seed), output_type="pt").images
    images = sample([0, 9], 0)
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all()
    # Seeded and class-conditional: the same call repeats exactly, the same noise under another label differs.
    assert torch.equal(sample([0, 9], 0), images)
    assert not torch.allclose(sample([9, 9], 0)[0], images[0], atol=1e-3)


def test_find_model_folder_prefers_argument_then_environment_then_candidates(tmp_path, monkeypatch):
    from whitebox_hf.hub import find_model_folder

    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for folder in (first, second, empty):
        folder.mkdir()
    (first / "config.json").write_text("{}")
    (second / "model_index.json").write_text("{}")
    monkeypatch.delenv("WHITEBOX_TEST_PATH", raising=False)
    assert find_model_folder(None, "WHITEBOX_TEST_PATH", [empty, first]) == first
    assert find_model_folder(None, "WHITEBOX_TEST_PATH", [first, second], marker="model_index.json") == second
    monkeypatch.setenv("WHITEBOX_TEST_PATH", str(second))
    with pytest.raises(FileNotFoundError, match="WHITEBOX_TEST_PATH"):
        find_model_folder(None, "WHITEBOX_TEST_PATH", [first])  # the environment wins over the candidates
    assert find_model_folder(first, "WHITEBOX_TEST_PATH", [second]) == first  # and the argument over both
