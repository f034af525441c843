"""Bad-input fuzz of the `whitebox-hf` command, the training scripts' argument parsing, the pipelines, the
denoisers and the autoencoder as called directly, the evaluation entry points and the saved files (issue 12).

Every bad input must be "clear" (`_harness.classify`): a `ValueError`/`TypeError` -- `OSError` for a file -- whose
message names the argument (or the file); for the command line, one line on stderr and exit status 2. The cases are
drawn by hypothesis from whole families of bad values, and they are enumerated from what the package exposes
(the sub-commands of the CLI parser, the scripts of `whitebox_hf.cli.TRAINING_SCRIPTS` and their ``DEFAULTS``, the
pipeline classes), so that a new command, script option or pipeline is fuzzed without a new test.

`fixed_cases` is one deterministic case per kind; `benchmarks/fuzz_report_cli.py` counts its outcomes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _harness import CLEAR, FuzzTally, describe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import whitebox_hf
from whitebox_hf.cli import TRAINING_SCRIPTS, build_parser, main
from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 3
FUZZ = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_clear(callable_, argument) -> None:
    outcome, detail = describe(callable_, argument)
    assert outcome == CLEAR, f"{outcome} (must name {argument!r}): {detail}"


# ---- the command line -----------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> None:
    """``whitebox-hf ARGV`` in-process, as the harness sees it: a usage error (one line on stderr, exit status 2)
    is raised as `ValueError` carrying that line; any other non-zero outcome (a traceback, several lines, another
    status) is a `RuntimeError` -- unclear --, and an accepted command returns (silent)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit_info:
            status = exit_info.code
    text = err.getvalue()
    if status in (0, None):
        return
    if status != 2 or "Traceback" in text or text.count("\n") != 1 or "error:" not in text:
        raise RuntimeError(f"exit status {status}, stderr {text!r}")
    raise ValueError(text.strip())


def subcommands() -> dict:
    """``{name: parser}`` of every sub-command of `build_parser` (nested ones as ``"data fetch"``)."""
    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, child in action.choices.items():
                    found[f"{prefix}{name}".strip()] = child
                    walk(child, f"{prefix}{name} ")

    walk(build_parser(), "")
    return found


def numeric_options(parser) -> list[str]:
    """The options whose value argparse converts (``type=int``, a positive count, ...): a word must be refused."""
    return [action.option_strings[-1] for action in parser._actions
            if action.option_strings and action.type not in (None, str)]


def positionals(parser) -> list:
    return [action for action in parser._actions if not action.option_strings
            and action.__class__.__name__ != "_SubParsersAction" and action.nargs != "..."]


# Options without which a command stops before looking at its arguments (export's format; push's Hub, which is
# offline in the tests and must fail only after the folder was checked: a closed loopback port).
NEEDED_OPTIONS = {"export": ["--remote-code"], "push": ["--endpoint=http://127.0.0.1:9"]}


def minimal_argv(name: str, parser, folder: str) -> list[str]:
    """A sub-command with every positional filled (choices: the first one; anything else: ``folder``)."""
    argv = [*name.split(), *NEEDED_OPTIONS.get(name, [])]
    for action in positionals(parser):
        argv.append(str(next(iter(action.choices))) if action.choices else folder)
    return argv


COMMANDS = subcommands()
LEAVES = {name: parser for name, parser in COMMANDS.items()
          if not any(other.startswith(name + " ") for other in COMMANDS)}
TOKEN = st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S")), min_size=1, max_size=8)


def with_unknown_flag(name: str, flag: str, folder: str) -> list[str]:
    """``name FLAG POSITIONALS...``: the positionals filled, so that the flag is what is wrong; before them, so that
    a command passing its remaining arguments on (``train``, ``demo``) does not take it for its script's."""
    argv = minimal_argv(name, COMMANDS[name], folder)
    depth = len(name.split())
    return [*argv[:depth], flag, *argv[depth:]]


@pytest.mark.parametrize("name", sorted(COMMANDS))
@FUZZ
@given(flag=TOKEN)
def test_unknown_options_of_every_command_are_one_clear_line(name, flag, tmp_path):
    flag = "--zz" + flag.lstrip("-")
    assert_clear(lambda: run_cli(with_unknown_flag(name, flag, str(tmp_path))), flag)


@pytest.mark.parametrize("name", sorted(name for name, parser in LEAVES.items() if positionals(parser)))
def test_a_missing_positional_of_every_command_is_named(name):
    required = positionals(LEAVES[name])
    assert_clear(lambda: run_cli(name.split()), (required[0].metavar or required[0].dest))


@pytest.mark.parametrize("name", sorted(name for name, parser in LEAVES.items() if numeric_options(parser)))
@FUZZ
@given(value=TOKEN.filter(lambda text: not text.lstrip("-").isdigit()), data=st.data())
def test_integer_options_of_every_command_refuse_non_integers(name, value, data, tmp_path):
    option = data.draw(st.sampled_from(numeric_options(LEAVES[name])))
    argv = minimal_argv(name, LEAVES[name], str(tmp_path))
    assert_clear(lambda: run_cli([*argv, option, value]), option)


@pytest.mark.parametrize("name", sorted(name for name, parser in LEAVES.items()
                                        if any(a.dest in ("folder", "name") for a in positionals(parser))))
@FUZZ
@given(missing=TOKEN.filter(lambda text: text not in (".", "..")))
def test_a_missing_folder_or_name_of_every_command_is_named(name, missing, tmp_path):
    target = "zz" + missing.replace("/", "_")
    argv = [*name.split(), *NEEDED_OPTIONS.get(name, []),
            *(target if a.dest in ("folder", "name") else (next(iter(a.choices)) if a.choices else str(tmp_path / "out"))
              for a in positionals(LEAVES[name]))]
    assert_clear(lambda: run_cli(argv), target)


@FUZZ
@given(limit=st.integers(max_value=0), batch_size=st.one_of(st.none(), st.integers(max_value=0)))
def test_eval_refuses_a_non_positive_limit_or_batch_size(limit, batch_size, tmp_path):
    argv = ["eval", str(tmp_path), "--limit", str(limit), "--quiet"]
    if batch_size is not None:
        argv += ["--batch-size", str(batch_size)]
    assert_clear(lambda: run_cli(argv), ("limit", "batch_size"))


@pytest.mark.parametrize("argv,needle", [
    (["--no-such-flag"], "--no-such-flag"),
    (["eval", "{tmp}", "--limit", "-1"], "limit"),
    (["train", "tokenizer", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
])
def test_through_a_subprocess_a_user_error_is_one_line_on_stderr_and_exit_2(argv, needle, tmp_path):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(whitebox_hf.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "whitebox_hf.cli", *argv], capture_output=True, text=True,
                            env=env, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.splitlines()) == 1 and needle in result.stderr, result.stderr[-2000:]


def test_a_training_script_reports_a_bad_value_in_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "training" / "train_tokenizer.py"), "--vocab_size", "abc"],
                            capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, PYTHONPATH=str(Path(whitebox_hf.__file__).parents[1])))
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.splitlines()) == 1 and "--vocab_size" in result.stderr, result.stderr


# ---- the training scripts' own arguments (parse_config_args) ------------------------------------------------

_SCRIPT_DEFAULTS: dict = {}


def script_defaults(task: str) -> dict:
    if task not in _SCRIPT_DEFAULTS:
        from tests.conftest import load_training_script

        _SCRIPT_DEFAULTS[task] = load_training_script(TRAINING_SCRIPTS[task].removesuffix(".py")).DEFAULTS
    return _SCRIPT_DEFAULTS[task]


def parse_script_args(task: str, argv: list[str]) -> None:
    """The script's `parse_config_args` as the harness sees it (as `run_cli`)."""
    from whitebox_hf.training.config import parse_config_args

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse_config_args(script_defaults(task), argv)
            return
        except SystemExit as exit_info:
            status = exit_info.code
    text = err.getvalue()
    if status != 2 or text.count("\n") != 1:
        raise RuntimeError(f"exit status {status}, stderr {text!r}")
    raise ValueError(text.strip())


def _parses(text: str, kind) -> bool:
    try:
        return math.isfinite(kind(text))
    except ValueError:
        return False


@pytest.mark.parametrize("task", sorted(TRAINING_SCRIPTS))
@FUZZ
@given(data=st.data())
def test_every_script_refuses_a_bad_option_value_in_one_line(task, data):
    defaults = script_defaults(task)
    numeric = [key for key, value in defaults.items() if type(value) in (int, float)]
    key = data.draw(st.sampled_from(numeric))
    kind = type(defaults[key])
    value = data.draw(st.one_of(TOKEN, st.sampled_from(["nan", "inf", "-inf"])).filter(
        lambda text: not _parses(text, kind) and not text.startswith("-")))
    assert_clear(lambda: parse_script_args(task, [f"--{key}", value]), f"--{key}")


YAML_FILES = st.sampled_from([
    ("- a\n- b\n", "mapping"),        # not a mapping
    ("just text\n", "mapping"),
    ("a: [1, 2\n", "YAML"),           # not YAML
    ("zz_no_such_key: 1\n", "zz_no_such_key"),
])


@pytest.mark.parametrize("task", sorted(TRAINING_SCRIPTS))
@FUZZ
@given(case=YAML_FILES, data=st.data())
def test_every_script_refuses_a_bad_config_file_in_one_line(task, case, data, tmp_path):
    text, needle = case
    defaults = script_defaults(task)
    if data.draw(st.booleans()):  # or a value of the wrong type for a known key
        key = data.draw(st.sampled_from(sorted(defaults)))
        text, needle = f"{key}: {json.dumps({'x': [1]}) if isinstance(defaults[key], str) else 'abc'}\n", key
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert_clear(lambda: parse_script_args(task, ["--config", str(path)]), needle)
    assert_clear(lambda: parse_script_args(task, ["--config", str(tmp_path / "absent.yaml")]), "absent.yaml")


def test_the_shipped_config_files_pass_the_strict_reading():
    """The other side of the YAML checks: every config of training/configs/ is read without an error by the script
    whose keys it uses (no false alarm from the type check)."""
    import yaml

    for path in sorted((REPO / "training" / "configs").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text()) or {})
        tasks = [task for task in sorted(TRAINING_SCRIPTS) if keys <= set(script_defaults(task))]
        assert tasks, f"{path.name}: no training script knows all of its keys"
        for task in tasks:
            parse_script_args(task, ["--config", str(path)])


# ---- pipelines --------------------------------------------------------------------------------------------------

def tiny_crate_denoiser():
    return whitebox_hf.CrateDenoiserTransformer(sample_size=8, in_channels=1, num_classes=NUM_CLASSES, hidden_size=16,
                                                num_layers=1, num_attention_heads=2, patch_size=2).eval()


def tiny_dit():
    from whitebox_hf.models.denoisers import build_dit_transformer

    return build_dit_transformer(8, 1, NUM_CLASSES, hidden_size=16, num_layers=1, num_attention_heads=2,
                                 patch_size=2).eval()


def tiny_pipelines() -> dict:
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=NUM_CLASSES + 1).eval()
    pipes = {
        "flow-crate": whitebox_hf.WhiteboxFlowPipeline(tiny_crate_denoiser(), FlowMatchEulerDiscreteScheduler(),
                                                       id2label={0: "a", 1: "b", 2: "c"}),
        "flow-dit": whitebox_hf.WhiteboxFlowPipeline(tiny_dit(), FlowMatchEulerDiscreteScheduler()),
        "ddpm": whitebox_hf.WhiteboxDDPMPipeline(unet, DDPMScheduler(num_train_timesteps=10)),
    }
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


PIPELINES = tiny_pipelines()
NAN = float("nan")


def bad_pipeline_arguments():
    """``(kwargs, argument)`` pairs, each with exactly one bad argument (the batch is 2 images of 1×8×8)."""
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)).filter(
        lambda shape: shape != (2, 1, 8, 8))
    return st.one_of(
        st.one_of(st.integers(NUM_CLASSES, 10 ** 6), st.integers(max_value=-1)).map(
            lambda label: ({"class_labels": [0, label]}, "class_labels")),
        st.sampled_from([[], [[]], None, 1.5, [0.0, 1.0], [True], "zz", [None], {"a": 1}, torch.zeros(2, 2).long(),
                         torch.tensor([0.5, 1.0])]).map(lambda labels: ({"class_labels": labels}, "class_labels")),
        st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.sampled_from(["2", None, True])).map(
            lambda steps: ({"num_inference_steps": steps}, "num_inference_steps")),
        st.one_of(st.floats(max_value=-1e-6), st.sampled_from([NAN, math.inf, "1", None, True])).map(
            lambda scale: ({"guidance_scale": scale}, "guidance_scale")),
        TOKEN.filter(lambda text: text not in ("pil", "np", "pt", "latent")).map(
            lambda kind: ({"output_type": kind}, "output_type")),
        shapes.map(lambda shape: ({"latents": torch.zeros(shape)}, "latents")),
        st.sampled_from([torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.zeros(2, 1, 8, 8).numpy(), [0.0]]).map(
            lambda latents: ({"latents": latents}, "latents")),
        st.tuples(st.integers(0, 127), st.sampled_from([NAN, math.inf, -math.inf])).map(
            lambda spot: ({"latents": torch.zeros(2, 1, 8, 8).view(-1).index_fill(0, torch.tensor(spot[0]),
                                                                                 spot[1]).view(2, 1, 8, 8)},
                          "latents")),
        st.sampled_from([0, 1, 3, 5]).map(
            lambda count: ({"generator": [torch.Generator().manual_seed(i) for i in range(count)]}, "generator")),
        st.sampled_from([0, "seed", [0, 1]]).map(lambda generator: ({"generator": generator}, "generator")),
    )


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@FUZZ
@given(case=bad_pipeline_arguments())
def test_every_pipeline_refuses_each_bad_argument_clearly(pipeline, case):
    kwargs, argument = case
    call = {"class_labels": [0, 1], "num_inference_steps": 1, "output_type": "pt", **kwargs}
    assert_clear(lambda: PIPELINES[pipeline](**call), argument)


# ---- denoisers and the autoencoder, called directly ---------------------------------------------------------

DENOISERS = {"crate": tiny_crate_denoiser(), "dit": tiny_dit()}


def bad_denoiser_calls():
    """``(hidden_states, timestep, class_labels, argument)`` with exactly one bad input (batch 2, 1×8×8)."""
    good = (torch.zeros(2, 1, 8, 8), torch.tensor([10.0, 500.0]), torch.tensor([0, NUM_CLASSES]))
    sides = st.tuples(st.integers(1, 13), st.integers(1, 13)).filter(lambda hw: hw[0] % 2 or hw[1] % 2)
    return st.one_of(
        sides.map(lambda hw: (torch.zeros(2, 1, *hw), good[1], good[2], "hidden_states")),  # 7×7 → would be 6×6
        st.sampled_from([torch.zeros(2, 2, 8, 8), torch.zeros(1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long),
                         torch.full((2, 1, 8, 8), NAN)]).map(lambda x: (x, good[1], good[2], "hidden_states")),
        st.sampled_from([NAN, math.inf, -1.0, -0.5, None, "1", torch.tensor([NAN, 1.0]), torch.tensor([-3.0, 1.0]),
                         torch.zeros(3), torch.zeros(2, 1), torch.tensor([True, False])]).map(
            lambda t: (good[0], t, good[2], "timestep")),
        st.one_of(st.integers(NUM_CLASSES + 1, 10 ** 6), st.integers(max_value=-1)).map(
            lambda label: (good[0], good[1], torch.tensor([0, label]), "class_labels")),
        st.sampled_from([None, [0, 1], torch.tensor([0.0, 1.0]), torch.tensor([0, 1, 2]), torch.tensor(0)]).map(
            lambda labels: (good[0], good[1], labels, "class_labels")),
    )


@pytest.mark.parametrize("denoiser", sorted(DENOISERS))
@FUZZ
@given(case=bad_denoiser_calls())
def test_denoisers_called_directly_refuse_each_bad_input(denoiser, case):
    hidden_states, timestep, class_labels, argument = case
    model = DENOISERS[denoiser]
    assert_clear(lambda: model(hidden_states, timestep, class_labels=class_labels), argument)


def tiny_rae():
    config = whitebox_hf.CrateConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8,
                                     patch_size=2, num_channels=1).to_dict()
    return CrateRepresentationAutoencoder(encoder_config=config, decoder_hidden_size=16, decoder_num_layers=1,
                                          decoder_num_heads=2).eval()


RAE = tiny_rae()


@FUZZ
@given(method=st.sampled_from(["encode", "decode", "forward"]),
       bad=st.sampled_from(["shape", "nan", "dtype", "type", "empty"]),
       shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)))
def test_the_autoencoder_refuses_bad_pixels_and_latents(method, bad, shape):
    argument = "latents" if method == "decode" else "pixel_values"
    good = (16, 4, 4) if method == "decode" else (1, 8, 8)
    value = {"shape": torch.zeros(2, *shape) if shape != good else torch.zeros(2, 5, 5, 5),
             "nan": torch.full((2, *good), NAN), "dtype": torch.zeros(2, *good, dtype=torch.long),
             "type": [[0.0]], "empty": torch.zeros(0, *good)}[bad]
    assert_clear(lambda: getattr(RAE, method)(value), argument)


# ---- evaluation -------------------------------------------------------------------------------------------------

FEATURES = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(12) % 3


def bad_evaluation_calls():
    from whitebox_hf import evaluation as ev

    def nan_at(spot):
        features = FEATURES.clone()
        features.view(-1)[spot[0] % features.numel()] = spot[1]
        return features

    spots = st.tuples(st.integers(0, 47), st.sampled_from([NAN, math.inf, -math.inf]))
    return st.one_of(
        spots.map(lambda s: (lambda: ev.knn_accuracy(nan_at(s), LABELS, FEATURES, LABELS, k=3), "train_features")),
        spots.map(lambda s: (lambda: ev.linear_probe_accuracy(FEATURES, LABELS, nan_at(s), LABELS), "test_features")),
        spots.map(lambda s: (lambda: ev.frechet_distance(nan_at(s), FEATURES), "features_a")),
        st.one_of(st.integers(max_value=0), st.integers(13, 100), st.floats(), st.just(None)).map(
            lambda k: (lambda: ev.knn_accuracy(FEATURES, LABELS, FEATURES, LABELS, k=k), "k")),
        st.one_of(st.floats(max_value=0), st.sampled_from([NAN, math.inf, "0.1", None])).map(
            lambda t: (lambda: ev.knn_accuracy(FEATURES, LABELS, FEATURES, LABELS, k=3, temperature=t),
                       "temperature")),
        st.one_of(st.floats(max_value=0), st.sampled_from([NAN, math.inf, "1", None])).map(
            lambda c: (lambda: ev.linear_probe_accuracy(FEATURES, LABELS, FEATURES, LABELS, C=c), "C")),
        st.one_of(st.floats(max_value=0), st.sampled_from([NAN, math.inf, "1e-4", None])).map(
            lambda tol: (lambda: ev.fit_linear_probe(FEATURES, LABELS, tol=tol), "tol")),
        st.sampled_from([torch.zeros(12), torch.zeros(12, 2, 2), "abc", [["a"]]]).map(
            lambda f: (lambda: ev.frechet_distance(f, FEATURES), "features_a")),
        st.sampled_from([LABELS[:5], LABELS.float(), -LABELS - 1]).map(
            lambda y: (lambda: ev.knn_accuracy(FEATURES, y, FEATURES, LABELS, k=3), "train_labels")),
        st.sampled_from([NAN, 100, -100, 1.5, "last"]).map(
            lambda layer: (lambda: ev.attention_saliency(SALIENCY_MODEL, torch.zeros(1, 1, 8, 8), layer=layer),
                           "layer")),
        st.sampled_from([torch.full((1, 1, 8, 8), NAN), torch.zeros(1, 1, 7, 8), torch.zeros(1, 8, 8),
                         torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(0, 1, 8, 8)]).map(
            lambda x: (lambda: ev.attention_saliency(SALIENCY_MODEL, x), "pixel_values")),
        st.one_of(st.integers(max_value=0), st.sampled_from([1.5, "10", True])).map(
            lambda limit: (lambda: evaluate(limit=limit), "limit")),
        st.one_of(st.integers(max_value=0), st.sampled_from([1.5, "10"])).map(
            lambda size: (lambda: evaluate(batch_size=size), "batch_size")),
        st.sampled_from(["nope", 3, None]).map(lambda split: (lambda: evaluate(split=split), "split")),
        st.sampled_from(["nope", 3]).map(lambda name: (lambda: evaluate(dataset=name), "dataset")),
    )


SALIENCY_MODEL = whitebox_hf.CrateForImageClassification(whitebox_hf.CrateConfig(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=8, patch_size=2, num_channels=1,
    num_labels=10)).eval()


def evaluate(**kwargs):
    """`evaluate_saved_image_classifier` with an already loaded model (no folder), on the bundled digits."""
    from whitebox_hf.evaluation.image_classifier import evaluate_saved_image_classifier
    from whitebox_hf.training.builders import build_image_processor

    return evaluate_saved_image_classifier(None, **{"dataset": "digits", "model": SALIENCY_MODEL,
                                                    "processor": build_image_processor(8, [0.5], [0.25]), **kwargs})


@FUZZ
@given(case=bad_evaluation_calls())
def test_evaluation_entry_points_refuse_each_bad_input(case):
    call, argument = case
    assert_clear(call, argument)


# ---- files ------------------------------------------------------------------------------------------------------

def damage(path: Path, how: str, cut: int) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: cut % max(len(data) - 1, 1)])
    elif how == "garbage":
        path.write_bytes(bytes((cut * 7 + i) % 256 for i in range(64)))
    else:  # valid JSON, wrong kind (a list), or an empty file
        path.write_text("[1, 2]" if path.suffix == ".json" else "")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved folder of each kind: denoiser, autoencoder, flow pipeline, image classifier."""
    from whitebox_hf.training.builders import build_image_processor

    root = tmp_path_factory.mktemp("saved")
    DENOISERS["crate"].save_pretrained(root / "denoiser")
    RAE.save_pretrained(root / "rae")
    PIPELINES["flow-crate"].save_pretrained(root / "pipeline")
    SALIENCY_MODEL.save_pretrained(root / "classifier")
    build_image_processor(8, [0.5], [0.25]).save_pretrained(root / "classifier")
    return root


def loaders(folder: Path) -> dict:
    from whitebox_hf.evaluation.image_classifier import load_saved_image_classifier

    return {
        "denoiser": lambda: whitebox_hf.CrateDenoiserTransformer.from_pretrained(folder),
        "rae": lambda: CrateRepresentationAutoencoder.from_pretrained(folder),
        "pipeline": lambda: whitebox_hf.WhiteboxFlowPipeline.from_pretrained(folder),
        "classifier": lambda: load_saved_image_classifier(folder),
    }


@FUZZ
@given(kind=st.sampled_from(["denoiser", "rae", "pipeline", "classifier"]), data=st.data(),
       how=st.sampled_from(["truncate", "garbage", "wrong"]), cut=st.integers(0, 10 ** 6))
def test_a_damaged_saved_file_raises_oserror_naming_it(kind, data, how, cut, saved, tmp_path):
    import shutil

    folder = tmp_path / kind
    shutil.copytree(saved / kind, folder, dirs_exist_ok=True)
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".safetensors") and p.is_file())
    target = data.draw(st.sampled_from(files))
    damage(target, how, cut)
    outcome, detail = describe(loaders(folder)[kind], target.name)
    assert outcome == CLEAR and detail.startswith("OSError"), f"{target.relative_to(folder)} ({how}): {detail}"


@FUZZ
@given(how=st.sampled_from(["truncate", "garbage", "wrong"]), cut=st.integers(0, 10 ** 6),
       command=st.sampled_from(["card", "eval"]))
def test_cli_commands_name_a_damaged_file_or_a_missing_output_folder(how, cut, command, saved, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.5, "dataset": "digits"}))
    if command == "card":
        damage(metrics, how, cut)
        argv, needle = ["card", str(saved / "classifier"), "--metrics", str(metrics),
                        "--output", str(tmp_path / "README.md")], "metrics.json"
    else:  # the result's folder is checked before the evaluation runs
        argv, needle = ["eval", str(saved / "classifier"), "--dataset", "digits", "--quiet",
                        "--json", str(tmp_path / f"zz{cut}" / "result.json")], f"zz{cut}"
    assert_clear(lambda: run_cli(argv), needle)


@FUZZ
@given(target=st.sampled_from(["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]),
       how=st.sampled_from(["truncate", "garbage", "wrong"]), cut=st.integers(0, 10 ** 6))
def test_a_damaged_bundled_checkpoint_is_named_by_bundled_checkpoint(target, how, cut, tmp_path):
    """`bundled_checkpoint` checks the folder it hands out: a broken installation is one `OSError` naming the file,
    not an error deep inside whatever loads it. A copy of a bundled checkpoint (its small files, and a small valid
    safetensors file), damaged, in a stand-in for the bundled folder."""
    import shutil
    from unittest import mock

    from safetensors.torch import save_file

    from whitebox_hf.hub import bundled

    source = bundled.BUNDLED_DIR / "python-docs-crate-alpha"
    copy = tmp_path / "bundled" / "checkpoint"  # tmp_path is shared by the examples: refreshed each time
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.suffix in (".json", ".md", ".txt"):
            shutil.copy(path, copy / path.name)
    save_file({"weight": torch.zeros(4, 4)}, copy / "model.safetensors")
    with mock.patch.object(bundled, "BUNDLED_DIR", tmp_path / "bundled"):
        assert bundled.bundled_checkpoint("checkpoint") == copy  # intact: handed out
        damage(copy / target, how, cut)
        outcome, detail = describe(lambda: bundled.bundled_checkpoint("checkpoint"), target)
        assert outcome == CLEAR and detail.startswith("OSError"), f"{target} ({how}): {detail}"


def test_value_checks_never_read_accelerator_tensors():
    """NaN / range checks read the data, which on an accelerator would synchronise the host at every call: they run
    on CPU tensors only. Meta tensors hold no data at all (reading one raises), so they stand in for any device."""
    from whitebox_hf.evaluation._utils import as_feature_tensor
    from whitebox_hf.models.denoisers import check_denoiser_inputs

    meta = torch.device("meta")
    check_denoiser_inputs(torch.empty(2, 1, 8, 8, device=meta), torch.empty(2, device=meta),
                          torch.empty(2, dtype=torch.long, device=meta), in_channels=1, patch_size=2, num_classes=3)
    RAE._check_tensor("latents", torch.empty(2, 16, 4, 4, device=meta), (16, 4, 4))
    PIPELINES["flow-crate"]._check_latents(torch.empty(2, 1, 8, 8, device=meta), (2, 1, 8, 8))
    as_feature_tensor(torch.empty(3, 4, device=meta), "features")
    with pytest.raises(ValueError, match="hidden_states"):  # shape checks still run off the CPU
        check_denoiser_inputs(torch.empty(2, 1, 7, 7, device=meta), 1.0, torch.empty(2, dtype=torch.long, device=meta),
                              in_channels=1, patch_size=2, num_classes=3)


# ---- one deterministic case per kind, for benchmarks/fuzz_report_cli.py -------------------------------------------

def fixed_cases(workdir: Path):
    """``(case name, callable, argument)`` for one representative bad input of each family above (the report counts
    these; the tests above draw many more)."""
    from whitebox_hf import evaluation as ev

    workdir.mkdir(parents=True, exist_ok=True)
    for name in sorted(COMMANDS):
        yield f"cli {name} --zzflag", (lambda n=name: run_cli(with_unknown_flag(n, "--zzflag", str(workdir)))), \
            "--zzflag"
    yield "cli eval --limit -1", lambda: run_cli(["eval", str(workdir), "--limit", "-1"]), "limit"
    yield "cli eval --limit 0", lambda: run_cli(["eval", str(workdir), "--limit", "0"]), "limit"
    yield "cli eval missing folder", lambda: run_cli(["eval", str(workdir / "zz")]), "zz"
    yield "cli card missing folder", lambda: run_cli(["card", str(workdir / "zz")]), "zz"
    classifier = workdir / "classifier"
    SALIENCY_MODEL.save_pretrained(classifier)
    from whitebox_hf.training.builders import build_image_processor

    build_image_processor(8, [0.5], [0.25]).save_pretrained(classifier)
    (workdir / "list.json").write_text("[1]")
    yield "cli card metrics a list", lambda: run_cli(["card", str(classifier), "--metrics", str(workdir / "list.json"),
                                                      "--output", str(workdir / "README.md")]), "list.json"
    yield "cli eval --split nope", lambda: run_cli(["eval", str(classifier), "--dataset", "digits", "--quiet",
                                                    "--split", "nope"]), "split"
    yield "cli eval --json no folder", lambda: run_cli(["eval", str(classifier), "--dataset", "digits", "--quiet",
                                                        "--json", str(workdir / "zz" / "r.json")]), "zz"
    for task in sorted(TRAINING_SCRIPTS):
        numeric = next(key for key, value in script_defaults(task).items() if type(value) in (int, float))
        yield f"script {task} --{numeric} abc", (lambda t=task, k=numeric: parse_script_args(t, [f"--{k}", "abc"])), \
            f"--{numeric}"
        yield f"script {task} missing --config", (lambda t=task: parse_script_args(
            t, ["--config", str(workdir / "absent.yaml")])), "absent.yaml"
        (workdir / "list.yaml").write_text("- a\n")
        yield f"script {task} YAML list", (lambda t=task: parse_script_args(
            t, ["--config", str(workdir / "list.yaml")])), "mapping"
        (workdir / "unknown.yaml").write_text("zz_key: 1\n")
        yield f"script {task} unknown key", (lambda t=task: parse_script_args(
            t, ["--config", str(workdir / "unknown.yaml")])), "zz_key"
    pipeline_cases = [({"class_labels": [0, NUM_CLASSES]}, "class_labels"), ({"class_labels": []}, "class_labels"),
                      ({"class_labels": [0.5]}, "class_labels"), ({"num_inference_steps": 0}, "num_inference_steps"),
                      ({"num_inference_steps": 2.5}, "num_inference_steps"), ({"guidance_scale": NAN}, "guidance_scale"),
                      ({"guidance_scale": math.inf}, "guidance_scale"), ({"guidance_scale": -1.0}, "guidance_scale"),
                      ({"latents": torch.zeros(2, 1, 7, 7)}, "latents"),
                      ({"latents": torch.zeros(2, 1, 8, 8, dtype=torch.long)}, "latents"),
                      ({"latents": torch.full((2, 1, 8, 8), NAN)}, "latents"),
                      ({"generator": [torch.Generator()]*3}, "generator"), ({"output_type": "jpeg"}, "output_type")]
    for pipeline, pipe in sorted(PIPELINES.items()):
        for kwargs, argument in pipeline_cases:
            call = {"class_labels": [0, 1], "num_inference_steps": 1, "output_type": "pt", **kwargs}
            yield f"pipeline {pipeline} {min(kwargs)}", (lambda p=pipe, c=call: p(**c)), argument
    good = (torch.zeros(2, 1, 8, 8), torch.tensor([10.0, 500.0]), torch.tensor([0, 1]))
    denoiser_cases = [((torch.zeros(2, 1, 7, 7), *good[1:]), "hidden_states"),
                      ((torch.full((2, 1, 8, 8), NAN), *good[1:]), "hidden_states"),
                      ((good[0], torch.tensor([NAN, 1.0]), good[2]), "timestep"),
                      ((good[0], torch.tensor([-1.0, 1.0]), good[2]), "timestep"),
                      ((good[0], torch.zeros(3), good[2]), "timestep"),
                      ((good[0], good[1], torch.tensor([0, 99])), "class_labels")]
    for denoiser, model in sorted(DENOISERS.items()):
        for (x, t, y), argument in denoiser_cases:
            yield f"denoiser {denoiser} {argument}", (lambda m=model, a=(x, t, y): m(a[0], a[1], class_labels=a[2])), \
                argument
    yield "rae encode NaN", lambda: RAE.encode(torch.full((1, 1, 8, 8), NAN)), "pixel_values"
    yield "rae decode long", lambda: RAE.decode(torch.zeros(1, 16, 4, 4, dtype=torch.long)), "latents"
    nan_features = FEATURES.clone()
    nan_features[0, 0] = NAN
    yield "knn NaN features", lambda: ev.knn_accuracy(nan_features, LABELS, FEATURES, LABELS, k=3), "train_features"
    yield "knn temperature inf", lambda: ev.knn_accuracy(FEATURES, LABELS, FEATURES, LABELS, temperature=math.inf, k=3), \
        "temperature"
    yield "probe NaN features", lambda: ev.linear_probe_accuracy(FEATURES, LABELS, nan_features, LABELS), \
        "test_features"
    yield "probe tol string", lambda: ev.fit_linear_probe(FEATURES, LABELS, tol="x"), "tol"
    yield "frechet NaN", lambda: ev.frechet_distance(nan_features, FEATURES), "features_a"
    yield "frechet strings", lambda: ev.frechet_distance([["a", "b"]] * 3, FEATURES), "features_a"
    yield "saliency NaN", lambda: ev.attention_saliency(SALIENCY_MODEL, torch.full((1, 1, 8, 8), NAN)), "pixel_values"
    yield "eval limit -1", lambda: evaluate(limit=-1), "limit"
    # Files: each saved kind with its weights truncated and its config.json replaced by a list.
    for kind, folder in (("denoiser", workdir / "denoiser"), ("rae", workdir / "rae"),
                         ("pipeline", workdir / "pipeline")):
        {"denoiser": DENOISERS["crate"], "rae": RAE, "pipeline": PIPELINES["flow-crate"]}[kind].save_pretrained(folder)
        weights = next(folder.rglob("*.safetensors"))
        config = next(folder.rglob("config.json"))

        def broken(kind=kind, folder=folder, path=weights, how="truncate"):
            original = path.read_bytes()
            damage(path, how, 100)
            try:
                loaders(folder)[kind]()
            finally:
                path.write_bytes(original)

        yield f"files {kind} truncated weights", broken, weights.name
        yield f"files {kind} config.json a list", (lambda b=broken, c=config: b(path=c, how="wrong")), config.name
    index = workdir / "pipeline" / "model_index.json"
    yield "files pipeline model_index.json truncated", (lambda: (damage(index, "truncate", 20),
                                                                 loaders(index.parent)["pipeline"]())), index.name


def test_fixed_cases_are_all_clear(tmp_path):
    tally = FuzzTally()
    for name, call, argument in fixed_cases(tmp_path):
        tally.record(name, call, argument)
    assert tally.failures == [], "\n".join(f"{name}: {outcome}: {detail}" for name, outcome, detail in tally.failures)
