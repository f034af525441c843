"""End-to-end tests of training/train_causal_lm.py on a small synthetic corpus (tiny models, CPU, 1 thread)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, pipeline

from whitebox_hf.data.python_docs import python_docs_from_folder
from whitebox_hf.training.builders import CAUSAL_LM_MODELS, causal_lm_parameter_count

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "train_causal_lm.py"
# Width 32, 2 layers, context 32, 8 blocks per step; the tokenizer (320 tokens) is trained by the run itself.
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--context_length", "32",
        "--batch_size", "8", "--eval_batch_size", "8", "--eval_blocks", "4", "--tokenizer_vocab_size", "320",
        "--learning_rate", "0.003", "--warmup_steps", "2", "--log_every", "2", "--num_threads", "1",
        "--sample_max_new_tokens", "8", "--sample_prompts", "def |The "]

WORDS = ("module function class method return value object string list tuple dict file path error import "
         "the a of to is in for with and or").split()


def write_corpus(folder: Path, num_documents: int = 20) -> Path:
    """Small reST-like documents (deterministic): enough text for a few dozen blocks of 32 tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(num_documents):
        lines = [f"Module number {d}", "=" * 16, ""]
        for i in range(30):
            words = " ".join(WORDS[(d * 7 + i * 3 + k) % len(WORDS)] for k in range(8))
            lines.append(f".. function:: f{i}(x)\n\n   Return the {words}.\n")
        (folder / f"doc{d:02d}.rst.txt").write_text("\n".join(lines))
    return folder


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def load_script():
    spec = importlib.util.spec_from_file_location("train_causal_lm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.mark.parametrize("model_name", sorted(CAUSAL_LM_MODELS))
def test_tiny_run_saves_a_reloadable_model(script, corpus_dir, tmp_path, model_name):
    results = script.main([*TINY, "--model", model_name, "--data_dir", str(corpus_dir), "--max_steps", "3",
                           "--max_tokens", "100000", "--output_dir", str(tmp_path)])
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["model"] == model_name and evaluation["steps"] == 3
    assert evaluation["tokens_seen"] == 3 * 8 * 32
    assert evaluation["val_perplexity"] == pytest.approx(torch.tensor(evaluation["val_loss"]).exp().item())
    assert evaluation["val_loss"] == pytest.approx(results["val_loss"])
    assert evaluation["parameters"] > 0 and evaluation["tokens_per_second"] > 0
    assert {"loss_curve.png", "samples.txt", "log.jsonl"} <= {p.name for p in tmp_path.iterdir()}
    assert "### prompt 'def ' (greedy)" in (tmp_path / "samples.txt").read_text()

    model_dir = tmp_path / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert isinstance(model, GPT2LMHeadModel) if model_name == "gpt2" else model.config.model_type != "gpt2"
    assert model.config.vocab_size == len(tokenizer) and tokenizer.model_max_length == 32
    # The parameter count in evaluation.json is nanoGPT's: tied embedding once, position table excluded.
    assert evaluation["parameters"] == causal_lm_parameter_count(model)

    # The reloaded model is the trained one: it reproduces the script's validation loss on the packed blocks.
    from whitebox_hf.data import PackedTokenBlocks, tokenize_and_concatenate

    validation = python_docs_from_folder(corpus_dir)["validation"]["text"]
    blocks = PackedTokenBlocks(tokenize_and_concatenate(tokenizer, validation), 32)
    inputs = torch.stack([blocks[i]["input_ids"] for i in range(len(blocks))])
    targets = torch.stack([blocks[i]["target_ids"] for i in range(len(blocks))])
    with torch.no_grad():
        logits = model(inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets).item()
    assert loss == pytest.approx(evaluation["val_loss"], abs=1e-5)
    assert evaluation["val_tokens"] == targets.numel()

    card = ModelCard.load(model_dir / "README.md")
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.eval_results[0].metric_value == pytest.approx(evaluation["val_loss"])
    if model_name in ("causal-crate", "tost"):
        generator = pipeline("text-generation", model=str(model_dir), device="cpu")
        text = generator("def ", max_new_tokens=5, do_sample=False)[0]["generated_text"]
        # The pipeline from the folder decodes exactly the reloaded model's greedy continuation.
        prompt = tokenizer("def ", return_tensors="pt")
        expected = model.generate(**prompt, max_new_tokens=5, do_sample=False)
        assert expected.shape[1] <= prompt.input_ids.shape[1] + 5
        assert text == tokenizer.decode(expected[0], skip_special_tokens=True)


def test_loss_decreases_on_a_repetitive_corpus(script, tmp_path):
    import datasets

    sentence = "The os module provides a portable way of using operating system dependent functionality. "
    dataset = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": [sentence * 40] * 6, "path": [f"t{i}" for i in range(6)]}),
        "validation": datasets.Dataset.from_dict({"text": [sentence * 40], "path": ["v"]}),
    })
    script.main([*TINY, "--model", "aot-mssa", "--max_tokens", str(30 * 8 * 32), "--warmup_steps", "3",
                 "--learning_rate", "0.01", "--eval_every", "10", "--sample_prompts", "", "--save_model", "false",
                 "--output_dir", str(tmp_path)], dataset=dataset)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = [r["train_loss"] for r in records if "train_loss" in r]
    validation = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(train) == 15 and train[-1] < 0.5 * train[0], train
    assert validation[-1] < validation[0] - 1.0, validation
    assert not (tmp_path / "model").exists()


def test_bad_settings_are_clear_errors(script, corpus_dir, tmp_path):
    with pytest.raises(ValueError, match="`model` must be one of"):
        script.main(["--model", "llama", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="`max_tokens`"):
        script.main(["--max_tokens", "10", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="`tokenizer`"):
        script.main([*TINY, "--tokenizer", str(tmp_path / "missing"), "--data_dir", str(corpus_dir),
                     "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="`warmup_steps`"):
        script.main([*TINY, "--warmup_steps", "50", "--max_steps", "5", "--data_dir", str(corpus_dir),
                     "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):  # argparse: a boolean that is not one
        script.main(["--save_model", "ture", "--output_dir", str(tmp_path)])


def test_corpus_is_packed_with_separators(corpus_dir):
    from whitebox_hf.data import PackedTokenBlocks, tokenize_and_concatenate
    from whitebox_hf.tokenization import train_bpe_tokenizer

    dataset = python_docs_from_folder(corpus_dir)
    tokenizer = train_bpe_tokenizer(dataset["train"]["text"], vocab_size=300)
    texts = dataset["validation"]["text"]
    stream = tokenize_and_concatenate(tokenizer, texts)
    assert int((stream == tokenizer.eos_token_id).sum()) == len(texts) and stream[-1] == tokenizer.eos_token_id
    blocks = PackedTokenBlocks(stream, 32)
    assert len(blocks) == (len(stream) - 1) // 32
    first, second = blocks[0], blocks[1]
    assert torch.equal(first["target_ids"][:-1], first["input_ids"][1:])
    assert first["target_ids"][-1] == second["input_ids"][0]  # blocks overlap by exactly the one target token
    with pytest.raises(ValueError, match="context_length"):
        PackedTokenBlocks(stream, 0)
    with pytest.raises(ValueError, match="fewer than one block"):
        PackedTokenBlocks(stream[:10], 32)


def test_report_collects_the_runs(script, corpus_dir, tmp_path):
    runs = tmp_path / "runs"
    results = script.main([*TINY, "--model", "tost", "--data_dir", str(corpus_dir), "--max_steps", "2",
                           "--max_tokens", "100000", "--eval_every", "1", "--output_dir", str(runs / "lm-tost")])
    spec = importlib.util.spec_from_file_location("report_language", ROOT / "training" / "report_language.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    output = tmp_path / "docs" / "language.md"
    assert report.main(["--runs", str(runs), "--output", str(output), "--model_cards", str(tmp_path / "cards")]) == 0
    text = output.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| ToST"))
    # The numbers are the run's own, not typed into the report.
    assert f"{results['parameters']:,}" in row and f"{results['val_loss']:.4f}" in row
    assert f"{results['tokens_seen']:,}" in row
    assert results["command"] in text and "Comparison with the book" in text and "No discussion yet" in text
    # A hand-written discussion next to the report is included verbatim.
    (tmp_path / "docs" / "language_discussion.md").write_text("The ordering agrees with Table 8.22.")
    assert report.main(["--runs", str(runs), "--output", str(output), "--model_cards", str(tmp_path / "cards")]) == 0
    assert "The ordering agrees with Table 8.22." in output.read_text()
    assert "Prompt 'def ', greedy:" in text
    assert (tmp_path / "docs" / "language_validation_loss.png").is_file()
    assert (tmp_path / "cards" / "python-docs-lm-tost.md").is_file()
    # No run at all: a clear failure, not an empty report.
    assert report.main(["--runs", str(tmp_path / "none"), "--output", str(tmp_path / "empty.md")]) == 1
