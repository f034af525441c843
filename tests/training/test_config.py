"""whitebox_hf.training: configuration parsing, the model-family keys, the checkpoint helpers, and
training/train_tokenizer.py (which takes no optimiser step, so it has no resume test)."""

import pytest
import torch
from transformers import AutoTokenizer

from tests.conftest import load_training_script
from whitebox_hf.models.causal_crate import CAUSAL_CRATE_PRESETS
from whitebox_hf.training.builders import CAUSAL_LM_MODELS, build_causal_lm, check_causal_lm_key
from whitebox_hf.training.checkpointing import step_seed
from whitebox_hf.training.config import RUN_DEFAULTS, parse_config_args

DEFAULTS = {"learning_rate": 0.1, "steps": 3, "name": "a", "save_model": True, "gpt2": False}


def test_defaults_yaml_and_flags_override_in_that_order(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 0.5\nsteps: 7\n")
    args = parse_config_args(DEFAULTS, ["--config", str(config), "--steps", "9"])
    assert args == {"learning_rate": 0.5, "steps": 9, "name": "a", "save_model": True, "gpt2": False}


def test_booleans_take_a_value_or_stand_alone():
    assert parse_config_args(DEFAULTS, ["--gpt2"])["gpt2"] is True  # as argparse's store_true did
    assert parse_config_args(DEFAULTS, ["--save_model", "false"])["save_model"] is False
    with pytest.raises(SystemExit):  # a typo is an error, never a silent False
        parse_config_args(DEFAULTS, ["--save_model", "ture"])


def test_unknown_yaml_keys_are_errors(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rte: 0.5\n")
    with pytest.raises(SystemExit) as exit_info:  # one line on stderr and status 2, as any usage error
        parse_config_args(DEFAULTS, ["--config", str(config)])
    assert exit_info.value.code == 2
    assert "learning_rte" in capsys.readouterr().err


def test_run_defaults_are_the_resume_options():
    assert {"checkpoint_every", "checkpoints_total_limit", "resume_from_checkpoint", "interrupt_after_steps"} <= set(
        RUN_DEFAULTS)


def test_family_keys_match_the_presets_and_old_spellings_name_the_new_key():
    # A preset is "<family key>-<size>": the configuration presets and the training keys spell a family alike.
    for preset in CAUSAL_CRATE_PRESETS:
        assert preset.rsplit("-", 1)[0] in CAUSAL_LM_MODELS
    assert "causal-crate-gpt2-init" in CAUSAL_LM_MODELS
    with pytest.raises(ValueError, match="'crate_alpha' is now 'causal-crate-alpha'"):
        check_causal_lm_key("crate_alpha")
    with pytest.raises(ValueError, match="must be one of"):
        build_causal_lm({"model": "lstm"}, vocab_size=10)


def test_the_crate_alpha_family_builds_the_preset_layer():
    shape = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, context_length=8)
    model = build_causal_lm({"model": "causal-crate-alpha", **shape}, vocab_size=16,
                            attn_implementation="eager")
    preset = CAUSAL_CRATE_PRESETS["causal-crate-alpha-base"]
    assert model.config.block_type == preset["block_type"] and model.config.final_layer_norm
    assert model.config._attn_implementation == "eager"


def test_step_seeds_differ_across_steps_and_processes():
    seeds = {step_seed(0, step, rank) for step in range(100) for rank in range(8)}
    assert len(seeds) == 800
    torch.manual_seed(step_seed(3, 5))
    first = torch.rand(3)
    torch.manual_seed(step_seed(3, 5))
    assert torch.equal(torch.rand(3), first)


def test_train_tokenizer_saves_a_loadable_tokenizer(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for d in range(6):
        (corpus / f"doc{d}.rst.txt").write_text(f"Module {d}\n\n" + "Return the value of the object. " * 40)
    script = load_training_script("train_tokenizer")
    assert script.main(["--data_dir", str(corpus), "--output_dir", str(tmp_path / "tok"), "--vocab_size", "300",
                        "--model_max_length", "64"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(tokenizer) <= 300 and tokenizer.model_max_length == 64
    assert (tmp_path / "tok" / "tokenizer_stats.json").is_file()
    with pytest.raises(ValueError, match="output_dir"):
        script.parse_args(["--vocab_size", "300"])


def test_run_script_reports_a_settings_error_in_one_line(capsys):
    from whitebox_hf.training.config import RunSettingsError, run_script

    def main():
        raise RunSettingsError("cannot resume from x: it was written with other settings:\n seed (checkpoint 0, this run 1)")

    with pytest.raises(SystemExit) as exit_info:
        run_script(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: cannot resume from x" in err and "seed (checkpoint 0, this run 1)" in err

    def buggy():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_script(buggy)


def test_run_script_reports_a_bad_argument_value_from_parse_args_in_one_line(capsys):
    """A ValueError raised while a script checks its arguments (its ``parse_args``) is the user's: one line, exit 2.
    The same error raised later, inside training, keeps its traceback."""
    from whitebox_hf.training.config import run_script

    def parse_args(argv=None):
        raise ValueError("`attention` must be one of ('mhsa', 'mssa'), got 'linear'")

    def main():
        parse_args()

    with pytest.raises(SystemExit) as exit_info:
        run_script(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: `attention` must be one of" in err

    def training_step():
        raise ValueError("a shape bug deep in training")

    with pytest.raises(ValueError, match="shape bug"):
        run_script(training_step)


@pytest.mark.parametrize("script, argument, message", [
    ("train_text_to_image", ["--attention", "linear"], "`attention` must be one of"),
    ("train_world_model", ["--model", "transformer"], "`model` must be one of"),
    ("train_mae", ["--model", "transformer"], "`model` must be one of"),
])
def test_a_bad_argument_value_is_refused_by_the_scripts_own_checks(script, argument, message):
    from tests.conftest import load_training_script

    with pytest.raises(ValueError, match=message):
        load_training_script(script).parse_args(argument)


# One script through a real interpreter (one without diffusers: a start that imports it takes about 15 s here): the
# exit status and the single line are run_script's, the same for every script, and the check above covers each
# script's own values.
@pytest.mark.parametrize("script, argument", [("train_mae", ["--model", "transformer"])])
def test_a_bad_argument_value_on_the_command_line_exits_2_in_one_line(script, argument):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "training" / f"{script}.py"), *argument], capture_output=True,
                            text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"{script}.py: error: "), result.stderr
