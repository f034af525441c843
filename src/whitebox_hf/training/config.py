"""A training run's settings: the script's defaults, overridden by a YAML file, overridden by the command line."""

from __future__ import annotations

import argparse

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


def parse_config_args(defaults: dict, argv=None, description: str | None = None) -> dict:
    """The run's settings: ``defaults``, overridden by a YAML file (``--config``), overridden by ``--key value``.

    Every key of ``defaults`` becomes a command-line option of the default's type (booleans read
    ``true/false/1/0/yes/no``, and a bare ``--flag`` means true). Unknown keys in the YAML file are an error,
    so a misspelt key never silently falls back to its default.

    Raises:
        ValueError: the YAML file holds keys that ``defaults`` does not know.
        OSError: the YAML file cannot be read.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="")
    known, rest = pre.parse_known_args(argv)
    config = dict(defaults)
    if known.config:
        with open(known.config) as handle:
            from_file = yaml.safe_load(handle) or {}
        unknown = set(from_file) - set(defaults)
        if unknown:
            raise ValueError(f"unknown keys in {known.config}: {sorted(unknown)}; known keys: {sorted(defaults)}")
        config.update(from_file)
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=known.config, help="YAML file with any of the keys below")
    for key, default in defaults.items():
        if isinstance(default, bool):
            # `--flag` alone means true, as with argparse's store_true; `--flag false` switches it off.
            parser.add_argument(f"--{key}", type=_parse_bool, nargs="?", const=True, default=config[key],
                                help=f"(default: {config[key]!r})")
        else:
            parser.add_argument(f"--{key}", type=type(default), default=config[key], help=f"(default: {config[key]!r})")
    args = vars(parser.parse_args(rest))
    args.pop("config")
    return args
