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
    lines += [
        "| model | parameters (nanoGPT) | training tokens | wall time | training time | tokens/s | "
        "validation loss | perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, run in runs.items():
        wall = f"{run['wall_seconds'] / 60:.1f} min" if run.get("wall_seconds") else "–"
        lines.append(
            f"| {MODELS[key]} | {run['parameters']:,} | {run['tokens_seen']:,} | {wall} | "
            f"{run['train_seconds'] / 60:.1f} min | {run['tokens_per_second']:.0f} | {run['val_loss']:.4f} | "
            f"{run['val_perplexity']:.2f} |"
        )
    lines += [
        "",
        f"Precision: {', '.join(sorted({run['mixed_precision'] for run in runs.values()}))} "
        "(`bf16` = bf16 autocast, float32 weights and loss). Wall time is that of the last invocation of each "
        "run (tokenisation, training, evaluations, checkpoints, samples and saving), beside the other run of "
        "its pair.",
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
    # The discussion is written by hand (it interprets the numbers above); keep it next to the report.
    discussion = output.with_name(output.stem + "_discussion.md")
    if discussion.is_file():
        lines += [discussion.read_text().strip(), ""]
    else:
        lines += [f"_No discussion yet: write it in `{discussion.name}` and rerun this script._", ""]
    output.write_text("\n".join(lines))
    print(f"wrote {output} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
