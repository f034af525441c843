import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import whitebox_hf
from whitebox_hf.cli import TRAINING_SCRIPTS, main


def test_presets_lists_book_sizes(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "crate-tiny" in out and "6,090,856" in out and "crate-alpha-base" in out and "72,328,936" in out
    assert re.search(r"sita-vae-256 +185,249,409 parameters", out) and "sita-vae-cpu" in out


def test_fetch_from_a_folder_without_the_files_fails_clearly(tmp_path, capsys):
    assert main(["data", "fetch", "fashion-mnist", "--data-dir", str(tmp_path)]) == 1
    assert "whitebox-hf data fetch fashion-mnist" in capsys.readouterr().err


# ---- every sub-command: --help, errors, push / export / card / eval / train / demo -------------------------------

COMMANDS = [["data"], ["data", "fetch"], ["presets"], ["train"], ["eval"], ["card"], ["push"], ["export"], ["demo"],
            ["convert"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"whitebox-hf {' '.join(command)}" in out


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("data", "presets", "train", "eval", "card", "push", "export", "demo", "convert"):
        assert command in out


@pytest.mark.parametrize("argv, message", [
    (["frobnicate"], "invalid choice"),
    (["push", "only-a-folder"], "required: repo_id"),
    (["train", "no-such-task"], "invalid choice"),
    (["eval"], "required: folder"),
    (["eval", "x", "--batch-size", "many"], "expected a positive integer"),
    (["eval", "x", "--limit", "-1"], "argument --limit: expected a positive integer, got '-1'"),
])
def test_bad_arguments_exit_non_zero_with_a_readable_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def saved_classifier(folder, tiny_crate_config):
    from whitebox_hf.training.builders import build_image_processor

    model = whitebox_hf.CrateForImageClassification(tiny_crate_config(num_labels=10)).eval()
    model.save_pretrained(folder)
    build_image_processor(8, [0.5], [0.25]).save_pretrained(folder)
    return model


def test_push_offline_fails_at_once_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["push", str(tmp_path), "me/model"]) == 2
    err = capsys.readouterr().err
    assert "offline mode" in err and "HF_HUB_OFFLINE=0" in err and "HF_ENDPOINT" in err and "--endpoint" in err


def test_push_with_endpoint_reaches_the_hub_server(tmp_path, hub_server, capsys):
    folder = tmp_path / "model"
    saved_classifier(folder, lambda **kw: whitebox_hf.CrateConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=4, num_channels=1, **kw))
    assert main(["push", str(folder), "me/crate", "--endpoint", hub_server, "--private"]) == 0
    assert "pushed" in capsys.readouterr().out
    from huggingface_hub import HfApi

    from whitebox_hf.hub.push import _allow_network

    with _allow_network():  # the session is offline; look at the server the way push did
        files = HfApi(endpoint=hub_server).list_repo_files("me/crate")
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(files)


def test_push_missing_folder_is_a_readable_error(tmp_path, capsys):
    assert main(["push", str(tmp_path / "missing"), "me/model", "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_export_round_trip_via_cli(tmp_path, tiny_crate_config, capsys):
    model = saved_classifier(tmp_path / "model", tiny_crate_config)
    assert main(["export", "--remote-code", str(tmp_path / "model"), str(tmp_path / "out")]) == 0
    assert "auto_map" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_crate.CrateForImageClassification"
    from transformers import AutoModelForImageClassification

    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    # (in this process whitebox_hf is imported, so transformers may pick the registered class; the load without
    # the package is tested in tests/hub/test_remote_code_export.py)
    pixels = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)
    # a second export into the same folder needs --overwrite
    assert main(["export", "--remote-code", str(tmp_path / "model"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "out2")]) == 2
    assert "--remote-code" in capsys.readouterr().err


def test_card_reads_the_metrics_file(tmp_path, tiny_crate_config, capsys):
    from huggingface_hub import ModelCard

    saved_classifier(tmp_path / "model", tiny_crate_config)
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.8125, "steps": 10, "epochs": 1.0,
                                                       "dataset": "Fashion-MNIST"}))
    assert main(["card", str(tmp_path / "model"), "--training-command", "python training/train_x.py"]) == 0
    assert "accuracy 0.8125" in capsys.readouterr().out
    card = ModelCard.load(tmp_path / "model" / "README.md")
    result = card.data.eval_results[0]
    assert (result.metric_type, result.metric_value, result.dataset_name) == ("accuracy", 0.8125, "Fashion-MNIST")
    assert result.dataset_type == "zalando-datasets/fashion_mnist"
    text = (tmp_path / "model" / "README.md").read_text()
    for needle in ("model-index", "@book{", "Intended use", "python training/train_x.py", "§8.4.1", "metrics.json"):
        assert needle in text, needle


def test_card_without_metrics_is_a_readable_error(tmp_path, tiny_crate_config, capsys):
    saved_classifier(tmp_path / "model", tiny_crate_config)
    assert main(["card", str(tmp_path / "model")]) == 2
    assert "metrics" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text(json.dumps({"steps": 3}))
    assert main(["card", str(tmp_path / "model"), "--dataset", "digits"]) == 2
    assert "test_accuracy" in capsys.readouterr().err


def test_eval_on_digits(tmp_path, tiny_crate_config, capsys):
    saved_classifier(tmp_path / "model", tiny_crate_config)
    out = tmp_path / "result.json"
    assert main(["eval", str(tmp_path / "model"), "--dataset", "digits", "--limit", "64", "--quiet",
                 "--json", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["num_examples"] == 64 and 0.0 <= result["accuracy"] <= 1.0


def test_eval_missing_folder(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_train_dispatches_to_the_script_with_the_arguments(tmp_path, capsys):
    script = tmp_path / TRAINING_SCRIPTS["ssl"]
    script.write_text("import json, sys\nopen(sys.argv[0] + '.out', 'w').write(json.dumps(sys.argv[1:]))\n")
    assert main(["train", "--training-dir", str(tmp_path), "ssl", "--epochs", "2", "--method", "simdino"]) == 0
    assert json.loads((tmp_path / (TRAINING_SCRIPTS["ssl"] + ".out")).read_text()) == [
        "--epochs", "2", "--method", "simdino"]
    assert main(["train", "--training-dir", str(tmp_path), "mae"]) == 2
    assert "train_mae.py is missing" in capsys.readouterr().err


def test_train_without_a_training_folder_explains_why(tmp_path, monkeypatch, capsys):
    from whitebox_hf import cli

    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path / "site-packages")  # as when installed from a wheel
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WHITEBOX_HF_TRAINING_DIR", raising=False)
    assert main(["train", "image-classification"]) == 2
    err = capsys.readouterr().err
    assert "no training/ folder" in err and "source" in err


def test_train_scripts_of_the_checkout_exist():
    from whitebox_hf.cli import REPO_ROOT

    for task in ("image-classification", "causal-lm", "ssl", "mae"):
        assert (REPO_ROOT / "training" / TRAINING_SCRIPTS[task]).is_file()


def test_demo_dispatches_to_the_app_or_lists_the_demos(tmp_path, capsys):
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "app.py").write_text("import pathlib, sys\npathlib.Path('ran').write_text(' '.join(sys.argv[1:]))\n")
    assert main(["demo", "--spaces-dir", str(tmp_path), "hello", "--share"]) == 0
    assert (tmp_path / "hello" / "ran").read_text() == "--share"
    assert main(["demo", "--spaces-dir", str(tmp_path), "missing"]) == 2
    assert "available: hello" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "whitebox_hf.cli", "export", "--help"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and "--remote-code" in result.stdout


# ---- usage errors: one line on stderr, exit status 2, no traceback, and no torch import ------------------------

USAGE_ERRORS = [  # (argv, what the one line must name)
    (["--no-such-flag"], "--no-such-flag"),
    (["frobnicate"], "'frobnicate'"),
    ([], "COMMAND"),
    (["data"], "ACTION"),
    (["data", "fetch", "nope"], "'nope'"),
    (["eval", "x", "--batch-size", "many"], "--batch-size"),
    (["eval", "x", "--limit", "-1"], "--limit"),  # refused while parsing: no accuracy "on -1 images"
    (["train", "image-classification", "--config", "/nonexistent.yaml"], "'/nonexistent.yaml'"),
    (["train", "ssl", "--config=/nonexistent.yaml", "--epochs", "1"], "'/nonexistent.yaml'"),
    (["train", "mae", "--config"], "--config"),
]


def test_usage_errors_are_one_line_exit_2_and_never_import_torch():
    """Every case in one fresh interpreter, as `whitebox-hf ARGS` runs: argparse is built without torch."""
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from whitebox_hf.cli import main
        results = []
        for argv, _ in {USAGE_ERRORS!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_info:
                    code = exit_info.code
            results.append([code, err.getvalue()])
        print(json.dumps({{"results": results, "torch": "torch" in sys.modules}}))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(whitebox_hf.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    for (argv, needle), (code, err) in zip(USAGE_ERRORS, out["results"]):
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
        assert "error:" in err and needle in err and "Traceback" not in err, (argv, err)


def test_console_script_usage_error_is_one_line():
    result = subprocess.run([sys.executable, "-m", "whitebox_hf.cli", "--no-such-flag"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["whitebox-hf: error: unrecognized arguments: --no-such-flag "
                                          "(see `whitebox-hf --help`)"]


def test_library_errors_of_a_command_are_one_line(tmp_path, capsys):
    """A handler's OSError / ValueError (bad input, named by the library) is reported like a usage error."""
    (tmp_path / "config.json").write_text("{}")  # a folder that is not a saved classifier
    assert main(["eval", str(tmp_path), "--dataset", "digits", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("whitebox-hf eval: error: ") and err.count("\n") == 1


def test_convert_writes_a_folder_auto_loads_with_the_official_logits(tmp_path, capsys):
    from transformers import AutoModelForImageClassification

    from tests.models.official_crate_reference import OfficialCrate, randomise_

    official = randomise_(OfficialCrate(32, 8, 5, 32, 2, 4, 8)).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, tmp_path / "ckpt.pth")
    assert main(["convert", str(tmp_path / "ckpt.pth"), str(tmp_path / "out"), "--num-heads", "4"]) == 0
    assert "CrateForImageClassification (ista, width 32, 2 layers, 4 heads" in capsys.readouterr().out
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, official(x), rtol=1e-4, atol=1e-4)
    # A second run into the same folder is refused without --overwrite.
    assert main(["convert", str(tmp_path / "ckpt.pth"), str(tmp_path / "out"), "--num-heads", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_convert_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "broken.pth").write_bytes(b"not a torch file")
    assert main(["convert", str(tmp_path / "broken.pth"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("whitebox-hf convert: error: ") and "broken.pth" in err and err.count("\n") == 1
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    assert main(["convert", str(tmp_path / "other.pth"), str(tmp_path / "out")]) == 2
    assert "neither an official CRATE" in capsys.readouterr().err
