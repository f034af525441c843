#!/usr/bin/env python
"""Collect the language-model runs of `training/run_language_comparison.sh` into docs/results/language.md.

    bash training/run_language_comparison.sh      # trains runs/lm-<model>, then runs this script
    python training/report_language.py            # (re)writes the report from whatever runs exist

Every number is read from the runs themselves (`evaluation.json`, `log.jsonl`, `wall_time.json`), none is
typed here: model, nanoGPT parameter count, training tokens, wall and training time, tokens/s, validation
loss and perplexity, the exact commands, and greedy/sampled generations. It also draws the validation
curves of all models on one plot and copies each run's loss curve and model card next to the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from whitebox_hf.training.builders import CAUSAL_LM_MODELS

ROOT = Path(__file__).resolve().parent.parent
# The family keys of `CAUSAL_LM_MODELS` (run folders runs/lm-<key>) in the report's order, with their labels.
MODELS = {key: CAUSAL_LM_MODELS[key].label for key in (
    "gpt2", "causal-crate", "causal-crate-gpt2-init", "causal-crate-residual", "causal-crate-alpha", "aot-mssa",
    "aot-mhsa", "tost")}
# Settings that must agree for the table to compare like with like.
SHARED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "context_length", "tokenizer",
               "max_tokens", "batch_size", "learning_rate", "min_lr_ratio", "weight_decay", "adam_beta1",
               "adam_beta2", "warmup_steps", "max_grad_norm", "mixed_precision", "seed", "final_eval_blocks")
SAMPLE_CHARACTERS = 500


def read_run(run_dir: Path) -> dict | None:
    path = run_dir / "evaluation.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    wall = run_dir / "wall_time.json"
    run["wall_seconds"] = json.loads(wall.read_text())["wall_seconds"] if wall.is_file() else run.get(
        "wall_seconds_this_run")
    return run


def validation_curves(runs: dict[str, dict], runs_dir: Path, png_path: Path) -> bool:
    """Validation loss against training tokens for every model (periodic evaluations on the first
    ``eval_blocks`` blocks, and the final one on the whole split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from whitebox_hf.utils.tracking import read_jsonl

    fig, axis = plt.subplots(figsize=(7, 4))
    drawn = False
    for key in runs:
        log = runs_dir / f"lm-{key}" / "log.jsonl"
        if not log.is_file():
            continue
        points = [(r["tokens"], r["val_loss"]) for r in read_jsonl(str(log))
                  if r.get("type") == "metrics" and "val_loss" in r and "tokens" in r]
        if points:
            axis.plot(*zip(*points), "o-", markersize=3, label=MODELS.get(key, key))
            drawn = True
    if drawn:
        axis.set_xlabel("training tokens")
        axis.set_ylabel("validation loss (nats / token)")
        axis.legend()
        fig.tight_layout()
        fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return drawn


DISCUSSION_START = "<!-- discussion: every number in it is one of this page's tables (tests/test_results_pages.py) -->"
DISCUSSION_END = "<!-- /discussion -->"
BASELINE = "gpt2"  # the columns "… vs GPT-2" and the ranking compare every model with it


def results_table(runs: dict[str, dict]) -> list[str]:
    """One row per run; with the GPT-2 run present, also each model's parameters, loss gap and throughput
    relative to GPT-2, so that a discussion quoting "0.44 nats behind GPT-2" or "1.5× GPT-2" quotes a table."""
    base = runs.get(BASELINE)
    header = ("| model | parameters (nanoGPT) | training tokens | wall time | training time | tokens/s | "
              "validation loss | perplexity |")
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if base:
        header += " params vs GPT-2 | loss − GPT-2 | tokens/s vs GPT-2 |"
        rule += "---:|---:|---:|"
    lines = [header, rule]
    for key, run in runs.items():
        wall = f"{run['wall_seconds'] / 60:.1f} min" if run.get("wall_seconds") else "–"
        row = (f"| {MODELS[key]} | {run['parameters']:,} | {run['tokens_seen']:,} | {wall} | "
               f"{run['train_seconds'] / 60:.1f} min | {run['tokens_per_second']:.0f} | {run['val_loss']:.4f} | "
               f"{run['val_perplexity']:.2f} |")
        if base:
            row += (f" {run['parameters'] / base['parameters']:.0%} | {run['val_loss'] - base['val_loss']:+.2f} | "
                    f"{run['tokens_per_second'] / base['tokens_per_second']:.2f}× |")
        lines.append(row)
    return lines


def settings_table(runs: dict[str, dict]) -> list[str]:
    """The shared shape and budget, from the first run's config (the warning above lists any disagreement)."""
    run = next(iter(runs.values()))
    config = run["config"]
    tokens_per_step = config["batch_size"] * config["context_length"]
    rows = [("width (`hidden_size`)", config["hidden_size"]),
            ("depth (`num_hidden_layers`)", config["num_hidden_layers"]), ("heads", config["num_attention_heads"]), ("context (tokens)", config["context_length"]),
            ("blocks per step (`batch_size`)", config["batch_size"]), ("tokens per step", f"{tokens_per_step:,}"),
            ("optimiser steps", f"{run['tokens_seen'] // tokens_per_step:,}"),
            ("peak learning rate", config["learning_rate"]), ("warm-up steps", config["warmup_steps"])]
    return ["| shared setting | value |", "|---|---:|", *[f"| {name} | {value} |" for name, value in rows]]


def renamed_keys_note(runs: dict[str, dict]) -> list[str]:
    """Runs launched before the family keys took their current spelling record the key they were launched with
    (``launched_with_key``); their commands above are shown with today's key, which builds the same model."""
    renamed = {key: run["launched_with_key"] for key, run in runs.items() if run.get("launched_with_key")}
    if not renamed:
        return []
    pairs = ", ".join(f"`{old}` → `{key}`" for key, old in renamed.items())
    return [f"These runs were launched before the model-family keys were renamed ({pairs}); the commands show "
            "today's keys, which build the same models.", ""]


def beats(runs: dict[str, dict], first: str, second: str) -> str:
    """ "A beats B" or "A does not beat B" on validation loss (lower is better), with both values."""
    a, b = runs[first]["val_loss"], runs[second]["val_loss"]
    verb = "beats" if a < b else "does not beat"
    return f"{MODELS[first]} {verb} {MODELS[second]} ({a:.4f} vs {b:.4f} nats)"


def ranking(runs: dict[str, dict]) -> list[str]:
    """The ordering by validation loss, and each white-box model against GPT-2, computed from the runs."""
    ordered = sorted(runs, key=lambda key: runs[key]["val_loss"])
    lines = ["Ordering by validation loss (lower is better): "
             + " < ".join(f"{MODELS[key]} {runs[key]['val_loss']:.4f}" for key in ordered) + "."]
    if BASELINE in runs and len(runs) > 1:
        lines += ["", *[f"- {beats(runs, key, BASELINE)}." for key in runs if key != BASELINE]]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="folder holding the lm-<model> runs")
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "language.md"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--model_cards", default=str(ROOT / "model_cards"), help="where to copy the model cards")
    args = parser.parse_args(argv)

    runs_dir, output = Path(args.runs), Path(args.output)
    figures = output.parent
    figures.mkdir(parents=True, exist_ok=True)
    runs = {}
    for key in args.models:
        run = read_run(runs_dir / f"lm-{key}")
        if run is None:
            print(f"skipping {key}: no {runs_dir / f'lm-{key}' / 'evaluation.json'}", file=sys.stderr)
            continue
        runs[key] = run
    if not runs:
        print("no finished runs found: run training/run_language_comparison.sh first", file=sys.stderr)
        return 1

    first = next(iter(runs.values()))["config"]
    differing = {k: {key: run["config"].get(k) for key, run in runs.items()} for k in SHARED_KEYS
                 if len({json.dumps(run["config"].get(k)) for run in runs.values()}) > 1}
    scope = ("every block of the validation split" if not first.get("final_eval_blocks")
             else f"only the first {first['final_eval_blocks']} blocks of the validation split (`final_eval_blocks`)")
    processes = "/".join(sorted({str(run["num_processes"]) for run in runs.values()}))
    threads = "/".join(sorted({str(run["num_threads"]) for run in runs.values()}))
    lines = [
        "# Language models on the Python documentation: white-box LMs and GPT-2 at one shape and token budget",
        "",
        "Real data: the reStructuredText sources of the Python 3.11 documentation (`python3.11-doc`, PSF licence; "
        "`whitebox_hf.data.load_python_docs`), split by document into train and validation. Every model has the "
        f"same width ({first['hidden_size']}), depth ({first['num_hidden_layers']}), heads "
        f"({first['num_attention_heads']}), context ({first['context_length']} tokens), tokenizer "
        f"(`{first['tokenizer']}`) and training recipe (nanoGPT: AdamW β = ({first['adam_beta1']}, "
        f"{first['adam_beta2']}), weight decay {first['weight_decay']} on ≥2-D weights, {first['warmup_steps']} "
        f"warm-up steps then cosine decay to {first['min_lr_ratio']}× the peak learning rate "
        f"{first['learning_rate']}, gradient clipping {first['max_grad_norm']}, {first['batch_size']} blocks of "
        f"{first['context_length']} tokens per step), and stops after the same number of training tokens.",
        "",
        "Validation loss is the mean next-token cross-entropy (nats per token of the shared tokenizer) over "
        f"{scope}, measured by the training script at the end of the run; perplexity is its exponential. "
        "Parameters are counted as nanoGPT does (tied embedding once, position table excluded). Tokens/s is "
        "training throughput (forward, backward and optimiser step; evaluation and checkpointing excluded), "
        f"{processes} process(es) of {threads} CPU thread(s) per run.",
        "",
    ]
    if differing:
        lines += ["**Warning: the runs below differ in settings that should be shared:** "
                  + "; ".join(f"`{k}`: {v}" for k, v in differing.items()), ""]
    lines += [*results_table(runs), "", *settings_table(runs), "", *ranking(runs)]
    lines += [
        "",
        f"Precision: {', '.join(sorted({run['mixed_precision'] for run in runs.values()}))} "
        "(`bf16` = bf16 autocast, float32 weights and loss). Wall time is that of the last invocation of each "
        "run (tokenisation, training, evaluations, checkpoints, samples and saving). Runs train side by side "
        "(`PARALLEL` in run_language_comparison.sh) on a machine that may run other work, so wall time and "
        "tokens/s compare the models only roughly; the losses do not depend on it.",
        "",
        "## Commands",
        "",
        "```bash",
        "bash training/run_language_comparison.sh   # trains runs/lm-<model> two at a time, then this report",
        "python training/report_language.py         # the report alone",
        "```",
        "",
        "Each run, exactly as launched:",
        "",
        "```bash",
        *[run["command"] for run in runs.values()],
        "```",
        "",
        *renamed_keys_note(runs),
        "## Validation loss during training",
        "",
    ]
    if validation_curves(runs, runs_dir, figures / "language_validation_loss.png"):
        lines += [
            "Periodic evaluations use the first "
            f"{first['eval_blocks'] or 'all'} validation blocks; the last point of each curve is the final "
            f"evaluation, on {scope}.",
            "",
            "![validation loss against training tokens](language_validation_loss.png)",
            "",
        ]
    lines += ["Training and validation loss of each run:", ""]
    cards = Path(args.model_cards)
    for key in runs:
        run_dir = runs_dir / f"lm-{key}"
        if (run_dir / "loss_curve.png").is_file():
            shutil.copyfile(run_dir / "loss_curve.png", figures / f"language_loss_{key}.png")
            lines.append(f"- {MODELS[key]}: ![loss](language_loss_{key}.png)")
        if (run_dir / "model" / "README.md").is_file():
            cards.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "model" / "README.md", cards / f"python-docs-lm-{key}.md")
    lines += [
        "",
        "## Samples",
        "",
        "Continuations written by each trained model at the end of its run (greedy decoding, then sampling with "
        f"temperature 0.8 and top-k 50, seed {first['seed']}); the first {SAMPLE_CHARACTERS} characters.",
        "",
    ]
    for key, run in runs.items():
        lines += [f"### {MODELS[key]}", ""]
        for sample in run.get("samples", []):
            text = sample["text"][:SAMPLE_CHARACTERS]
            lines += [f"Prompt {sample['prompt']!r}, {sample['mode']}:", "", "```rst", text.replace("```", "'''"),
                      "```", ""]
    lines += ["## Comparison with the book", ""]
    # The discussion is written by hand (it interprets the numbers above); keep it next to the report. The markers
    # let tests/test_results_pages.py check that every number it quotes is in the tables above.
    discussion = output.with_name(output.stem + "_discussion.md")
    if discussion.is_file():
        lines += [DISCUSSION_START, "", discussion.read_text().strip(), "", DISCUSSION_END, ""]
    else:
        lines += [f"_No discussion yet: write it in `{discussion.name}` and rerun this script._", ""]
    output.write_text("\n".join(lines))
    print(f"wrote {output} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
