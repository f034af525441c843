"""A training run's settings: the script's defaults, overridden by a YAML file, overridden by the command line."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

__all__ = ["RUN_DEFAULTS", "parse_config_args"]

# The run-management options every training script accepts (merged into each script's DEFAULTS).
RUN_DEFAULTS = {
    "log_every": 20,
    "checkpoint_every": 0,  # steps; 0 = the script's natural period (an epoch, an evaluation)
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": "",  # a checkpoint folder, or "latest"
    "num_threads": 0,  # 0 = torch's default
    "interrupt_after_steps": 0,  # tests: stop as if interrupted after this many steps
}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    # A typo such as `--save_model ture` must not silently mean False.
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


class _OneLineArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage error is one line (argparse prints the whole usage block first), as the
    `whitebox-hf` command's: ``<script>: error: <message> (see `<script> --help`)`` and exit status 2."""

    def error(self, message: str):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parse_float(text: str) -> float:
    value = float(text)  # ValueError: argparse reports "invalid _parse_float value"; named below instead
    if not math.isfinite(value):
        # `--learning_rate nan` would otherwise train on NaN without a word.
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


_parse_float.__name__ = "float"  # argparse names the type in "invalid float value: 'abc'"


def _check_file_value(path: str, key: str, value, default):
    """A YAML value must have the type of the script's default (an int is accepted for a float), as a
    command-line value is converted to it: `learning_rate: abc` is an error, never a string in the run."""
    if default is None:
        return value
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if ok and expected is float and not math.isfinite(value):
        ok = False
    if not ok:
        raise ValueError(f"{path}: `{key}` must be a {expected.__name__} (like its default {default!r}), "
                         f"got {value!r}")
    return float(value) if expected is float else value


def _read_config_file(path: str, defaults: dict) -> dict:
    """The mapping of the YAML file ``path``, checked against ``defaults`` (keys and value types).

    Raises:
        OSError: the file cannot be read (naming it).
        ValueError: not YAML, not a mapping, an unknown key, or a value of the wrong type.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise OSError(f"cannot read the config file {path!r}: {reason}") from None
    try:
        from_file = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if from_file is None:  # an empty file: no overrides
        return {}
    if not isinstance(from_file, dict):
        raise ValueError(f"{path} must hold a mapping of settings (key: value), got a {type(from_file).__name__}")
    unknown = set(from_file) - set(defaults)
    if unknown:
        raise ValueError(f"unknown keys in {path}: {sorted(map(str, unknown))}; known keys: {sorted(defaults)}")
    return {key: _check_file_value(path, key, value, defaults[key]) for key, value in from_file.items()}


def parse_config_args(defaults: dict, argv=None, description: str | None = None) -> dict:
    """The run's settings: ``defaults``, overridden by a YAML file (``--config``), overridden by ``--key value``.

    Every key of ``defaults`` becomes a command-line option of the default's type (booleans read
    ``true/false/1/0/yes/no``, and a bare ``--flag`` means true). Unknown keys in the YAML file are an error,
    so a misspelt key never silently falls back to its default, and so is a YAML value whose type differs from
    the default's.

    Every user error -- a bad command-line value, an unreadable or missing config file, a file that is not a YAML
    mapping, an unknown key -- is reported as one line on stderr (``<script>: error: ...``) and exits with
    status 2, like any argparse usage error; no traceback.

    Raises:
        SystemExit: (status 2) on any of the errors above; (status 0) after ``--help``.
    """
    pre = _OneLineArgumentParser(add_help=False)
    pre.add_argument("--config", default="")
    known, rest = pre.parse_known_args(argv)
    config = dict(defaults)
    if known.config:
        try:
            config.update(_read_config_file(known.config, defaults))
        except (OSError, ValueError) as error:
            pre.error(f"argument --config: {error}")
    parser = _OneLineArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=known.config, help="YAML file with any of the keys below")
    for key, default in defaults.items():
        if isinstance(default, bool):
            # `--flag` alone means true, as with argparse's store_true; `--flag false` switches it off.
            parser.add_argument(f"--{key}", type=_parse_bool, nargs="?", const=True, default=config[key],
                                help=f"(default: {config[key]!r})")
        else:
            kind = _parse_float if isinstance(default, float) else type(default)
            parser.add_argument(f"--{key}", type=kind, default=config[key], help=f"(default: {config[key]!r})")
    args = vars(parser.parse_args(rest))
    args.pop("config")
    return args


class RunSettingsError(ValueError):
    """A run's settings or folders do not fit (e.g. resuming from checkpoints written with other settings): the
    user's error, not a bug, so `run_script` reports it in one line with exit status 2 instead of a traceback."""


def _raised_while_parsing_arguments(error: BaseException) -> bool:
    """Whether ``error`` came out of a script's ``parse_args``: there a ValueError/TypeError is a bad argument value
    (argparse itself reports its own errors by exiting)."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "parse_args":
            return True
        frame = frame.tb_next
    return False


def run_script(main) -> None:
    """Call a training script's ``main()``; a `RunSettingsError`, or a ValueError/TypeError raised by the script's
    ``parse_args`` (a bad argument value), becomes ``<script>: error: <message>`` on stderr and exit status 2, like
    an argument error."""
    try:
        main()
    except (ValueError, TypeError) as error:
        if not isinstance(error, RunSettingsError) and not _raised_while_parsing_arguments(error):
            raise
        message = " ".join(str(error).split())
        print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
