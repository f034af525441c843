#!/usr/bin/env python
"""Train a causal language model (a white-box LM or the GPT-2 baseline) from scratch with Accelerate.

    python training/train_causal_lm.py --config training/configs/lm_demo.yaml
    python training/train_causal_lm.py --config training/configs/python_docs_lm_small.yaml --model tost \\
        --output_dir runs/lm-tost --num_threads 1
    python training/train_causal_lm.py --config ... --mixed_precision bf16 --max_tokens 500000
    python training/train_causal_lm.py --config ... --resume_from_checkpoint latest

`--model` is a family key of `whitebox_hf.training.builders.CAUSAL_LM_MODELS` (causal-crate, causal-crate-alpha,
aot-mssa, aot-mhsa, tost, gpt2 and the causal-crate ablations); every model gets the same
width, depth, heads, context and tokenizer. The recipe is nanoGPT's: AdamW (β = 0.9, 0.95), weight decay 0.1
on ≥2-D weights only, linear warm-up then cosine decay to learning_rate × min_lr_ratio, gradient clipping at
1.0. Training stops after `max_tokens` training tokens, so models compare at an equal token budget.

Data: the Python documentation corpus (`whitebox_hf.data.load_python_docs`, or `--data_dir` with *.rst.txt
files), each document followed by <|endoftext|>, concatenated and cut into blocks of context_length + 1
tokens (input = first context_length, targets = last context_length); the validation split is packed the
same way and never shuffled. Without `--tokenizer`, a byte-level BPE is trained on the train split and saved
in output_dir/tokenizer (reused when the run resumes).

Every key of the YAML file can be overridden on the command line (`--key value`). The run writes into
`output_dir`: `log.jsonl` (metrics), `loss_curve.png`, `checkpoints/checkpoint_<i>/` (`whitebox_hf.training.checkpointing`),
`evaluation.json` (validation loss and perplexity, nanoGPT parameter count, tokens, time, tokens/s),
`samples.txt` (greedy and sampled generations) and `model/` (`save_pretrained` model + tokenizer + model
card; `pipeline("text-generation", model="<output_dir>/model")` works after `import whitebox_hf`).

`batch_size` is the *global* batch in blocks: with several processes each one gets an equal share of every
batch (`split_batches=True`), so a multi-process run follows the single-process trajectory.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_cosine_with_min_lr_schedule_with_warmup

import whitebox_hf  # noqa: F401  (registers the Auto classes)
from whitebox_hf.data import EpochPermutationSampler, PackedTokenBlocks, load_python_docs, tokenize_and_concatenate
from whitebox_hf.hub import causal_lm_model_card
from whitebox_hf.tokenization import train_bpe_tokenizer
from whitebox_hf.training.builders import build_causal_lm, causal_lm_parameter_count, check_causal_lm_key
from whitebox_hf.training.atomic import atomic_directory
from whitebox_hf.training.checkpointing import (
    exit_if_interrupt_requested,
    resume_run,
    resumable_batches,
    save_checkpoint_if_due,
)
from whitebox_hf.training.config import parse_config_args, run_script
from whitebox_hf.training.optim import build_optimizer, causal_lm_parameter_groups
from whitebox_hf.training.plots import plot_training_curves
from whitebox_hf.training.run import start_run

DEFAULTS = {
    # model
    "model": "causal-crate",  # a key of CAUSAL_LM_MODELS
    "hidden_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 8,
    "context_length": 256,
    # data
    "tokenizer": "",  # folder of a saved tokenizer; "" = train one on the train split (output_dir/tokenizer)
    "tokenizer_vocab_size": 8192,  # only when training a tokenizer
    "data_dir": "",  # folder of *.rst.txt files instead of the cached Python documentation
    "validation_fraction": 0.05,
    # optimisation (nanoGPT)
    "learning_rate": 1e-3,
    "min_lr_ratio": 0.1,  # cosine decay ends at learning_rate * min_lr_ratio
    "weight_decay": 0.1,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "warmup_steps": 50,
    "max_tokens": 1_000_000,  # training tokens (batch_size * context_length per step); sets the step count
    "max_steps": 0,  # >0 stops earlier (tests)
    "batch_size": 8,  # global, in blocks of context_length tokens
    "eval_batch_size": 16,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",  # no | bf16 (autocast)
    "seed": 0,
    # bookkeeping
    "output_dir": "runs/lm",
    "eval_every": 0,  # steps; 0 = five evaluations per run
    "eval_blocks": 32,  # periodic evaluations use the first n validation blocks (0 = all)
    "final_eval_blocks": 0,  # the final evaluation's blocks (0 = the whole validation split; >0 for quick runs)
    "log_every": 10,
    "checkpoint_every": 0,  # steps; 0 = with every periodic evaluation
    "checkpoints_total_limit": 2,
    "resume_from_checkpoint": "",  # "" | latest | path
    "save_model": True,
    "sample_prompts": "The :mod:`os` module|def |.. function:: ",  # "|"-separated; "" = no samples
    "sample_max_new_tokens": 64,
    "num_threads": 0,  # >0: torch.set_num_threads (and no tokenizer thread pool when 1)
    "interrupt_after_steps": 0,  # >0: exit abruptly after this many steps, saving nothing (crash tests)
}

DATASET_NAME = "Python documentation (python3.11-doc reST sources)"
DATASET_ID = "python3.11-doc"


def parse_args(argv=None) -> dict:
    return parse_config_args(DEFAULTS, argv, __doc__)


def check_args(args: dict) -> None:
    """Fail before any data is read when a setting is out of range; the message names the setting."""
    check_causal_lm_key(args["model"])
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "context_length", "max_tokens",
                "batch_size", "eval_batch_size", "log_every", "sample_max_new_tokens", "checkpoints_total_limit"):
        if args[key] <= 0:
            raise ValueError(f"`{key}` must be positive, got {args[key]!r}")
    for key in ("warmup_steps", "max_steps", "eval_every", "eval_blocks", "final_eval_blocks", "checkpoint_every",
                "num_threads", "interrupt_after_steps"):
        if args[key] < 0:
            raise ValueError(f"`{key}` must be >= 0, got {args[key]!r}")
    if not 0.0 <= args["min_lr_ratio"] <= 1.0:
        raise ValueError(f"`min_lr_ratio` must lie in [0, 1], got {args['min_lr_ratio']!r}")
    if args["learning_rate"] <= 0:
        raise ValueError(f"`learning_rate` must be positive, got {args['learning_rate']!r}")
    if args["max_tokens"] < args["batch_size"] * args["context_length"]:
        raise ValueError(
            f"`max_tokens` ({args['max_tokens']}) is smaller than one step of batch_size × context_length = "
            f"{args['batch_size'] * args['context_length']} tokens"
        )


def load_tokenizer(args: dict, train_texts, output_dir: Path, accelerator):
    """The run's tokenizer: ``args["tokenizer"]`` if given, else the one this run trained before (resume),
    else a new byte-level BPE trained on ``train_texts`` and saved in ``output_dir/tokenizer``."""
    if args["tokenizer"]:
        folder = Path(args["tokenizer"])
        if not (folder / "tokenizer_config.json").is_file():
            raise ValueError(f"`tokenizer`: {str(folder)!r} holds no saved tokenizer (run training/train_tokenizer.py "
                             "or leave --tokenizer empty to train one for this run)")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    else:
        folder = output_dir / "tokenizer"
        # The main process trains and saves first; the others then load its copy, so all share one vocabulary.
        with accelerator.main_process_first():
            if (folder / "tokenizer_config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(str(folder))
            else:
                tokenizer = train_bpe_tokenizer(train_texts, vocab_size=args["tokenizer_vocab_size"],
                                                model_max_length=args["context_length"])
                if accelerator.is_main_process:
                    tokenizer.save_pretrained(str(folder))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"`tokenizer` ({args['tokenizer'] or folder}) has no eos token to separate documents")
    # Generation and pipelines must not run past the model's context.
    tokenizer.model_max_length = args["context_length"]
    return tokenizer, str(folder)


def next_token_loss(model, batch: dict, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the logits against the already shifted ``target_ids`` (see `PackedTokenBlocks`), in
    float32 even under bf16 autocast. ``reduction="none"`` gives the per-token losses ``(batch, tokens)``."""
    logits = model(input_ids=batch["input_ids"], use_cache=False).logits
    targets = batch["target_ids"]
    # (tokens, vocab) rows: cross_entropy on the transposed (batch, vocab, tokens) layout copies the logits and
    # runs about twice as slowly on CPU.
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)
    return loss.view_as(targets) if reduction == "none" else loss


def evaluate(model, loader, accelerator) -> tuple[float, int]:
    """Mean next-token loss over every target of ``loader`` (all processes), and the number of targets."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            per_token = next_token_loss(model, batch, reduction="none")
            sums, counts = accelerator.gather_for_metrics(
                (per_token.sum(-1).double(), torch.full_like(per_token[:, 0], per_token.shape[-1], dtype=torch.long))
            )
            total += sums.sum().item()
            count += int(counts.sum().item())
    model.train()
    return total / max(count, 1), count


def perplexity(loss: float) -> float:
    # exp overflows float beyond ~709; such a loss means an untrained (or diverged) model anyway.
    return math.exp(loss) if loss < 700 else float("inf")


def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, context_length: int,
                     seed: int) -> list[dict]:
    """A greedy and a sampled (temperature 0.8, top-k 50) continuation of every prompt."""
    samples = []
    model.eval()
    # GPT-2-style tokenizers may lack a pad token; generate() then needs one to fill finished sequences.
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for prompt in prompts:
        encoded = tokenizer(prompt, return_tensors="pt").to(model.device)
        budget = min(max_new_tokens, context_length - encoded["input_ids"].shape[-1])
        if budget <= 0:
            continue
        for mode, options in (("greedy", dict(do_sample=False)),
                              ("sampled", dict(do_sample=True, temperature=0.8, top_k=50))):
            torch.manual_seed(seed)
            with torch.no_grad():
                output = model.generate(**encoded, max_new_tokens=budget, pad_token_id=pad_token_id, **options)
            text = tokenizer.decode(output[0], skip_special_tokens=False)
            samples.append({"prompt": prompt, "mode": mode, "text": text})
    return samples


def write_samples(samples: list[dict], path: Path) -> None:
    lines = []
    for sample in samples:
        settings = "greedy" if sample["mode"] == "greedy" else "sampled, temperature 0.8, top-k 50"
        lines += [f"### prompt {sample['prompt']!r} ({settings})", sample["text"], ""]
    path.write_text("\n".join(lines))


def main(argv=None, dataset=None) -> dict:
    """Train, evaluate and save one model; returns the contents of ``evaluation.json``.

    ``dataset`` (a `datasets.DatasetDict` with ``train`` and ``validation`` splits holding a ``text`` column)
    replaces the Python documentation corpus: tests pass a small in-memory corpus this way.
    """
    started = time.time()
    args = parse_args(argv)
    check_args(args)
    if args["num_threads"] == 1:
        # The tokenizers library otherwise spreads batch encoding over every core.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    accelerator, output_dir = start_run(args)

    if dataset is None:
        with accelerator.main_process_first():  # the first load prepares the cache: one writer at a time
            dataset = load_python_docs(data_dir=args["data_dir"] or None,
                                       validation_fraction=args["validation_fraction"])
    for split in ("train", "validation"):
        if split not in dataset or "text" not in dataset[split].column_names:
            raise ValueError(f"`dataset` must have a {split!r} split with a 'text' column")
    tokenizer, tokenizer_path = load_tokenizer(args, dataset["train"]["text"], output_dir, accelerator)
    context_length = args["context_length"]
    train_set = PackedTokenBlocks(tokenize_and_concatenate(tokenizer, dataset["train"]["text"]), context_length)
    validation_set = PackedTokenBlocks(tokenize_and_concatenate(tokenizer, dataset["validation"]["text"]),
                                       context_length)

    model = build_causal_lm(args, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                            tokenizer.pad_token_id)
    parameters = causal_lm_parameter_count(model)

    sampler = EpochPermutationSampler(len(train_set), seed=args["seed"])
    train_loader = DataLoader(train_set, batch_size=args["batch_size"], sampler=sampler, drop_last=True)
    if len(train_loader) == 0:
        raise ValueError(f"`batch_size` ({args['batch_size']}) exceeds the {len(train_set)} training blocks")

    def first_blocks(count: int) -> DataLoader:
        # Validation blocks keep their order (no sampler): the periodic subset is the same blocks every time.
        return DataLoader(Subset(validation_set, range(min(count or len(validation_set), len(validation_set)))),
                          batch_size=args["eval_batch_size"])

    validation_loader = first_blocks(args["final_eval_blocks"])
    periodic_loader = first_blocks(args["eval_blocks"])
    subset_size = len(periodic_loader.dataset)

    tokens_per_step = args["batch_size"] * context_length
    total_steps = args["max_tokens"] // tokens_per_step
    if args["max_steps"]:
        total_steps = min(total_steps, args["max_steps"])
    if args["warmup_steps"] > total_steps:
        raise ValueError(f"`warmup_steps` ({args['warmup_steps']}) exceeds the run's {total_steps} steps")

    optimizer = build_optimizer("adamw", causal_lm_parameter_groups(model, args["weight_decay"]),
                                args["learning_rate"], (args["adam_beta1"], args["adam_beta2"]))
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, args["warmup_steps"], total_steps,
                                                            min_lr_rate=args["min_lr_ratio"])
    model, optimizer, train_loader, validation_loader, periodic_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, validation_loader, periodic_loader, scheduler
    )
    progress = resume_run(accelerator, output_dir, args)
    accelerator.init_trackers("log", config={**args, "parameters": parameters, "total_steps": total_steps,
                                             "train_blocks": len(train_set), "validation_blocks": len(validation_set)})

    eval_every = args["eval_every"] or max(1, total_steps // 5)
    checkpoint_every = args["checkpoint_every"] or eval_every
    bar = tqdm(total=total_steps, initial=progress.step, unit="step", desc=args["model"],
               disable=not accelerator.is_local_main_process)
    window_loss, window_steps, window_seconds = 0.0, 0, 0.0
    model.train()
    step_started = time.perf_counter()
    for batch in resumable_batches(accelerator, train_loader, progress.step, total_steps, seed=args["seed"]):
        loss = next_token_loss(model, batch)
        accelerator.backward(loss)
        grad_norm = None
        if args["max_grad_norm"] > 0:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), args["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window_loss += loss.item()  # also waits for the step to finish, so the timing below is honest
        seconds = time.perf_counter() - step_started
        progress.step += 1
        progress.tokens += tokens_per_step
        progress.train_seconds += seconds
        window_steps += 1
        window_seconds += seconds
        bar.update(1)
        if progress.step % args["log_every"] == 0 or progress.step == total_steps:
            tokens_per_second = window_steps * tokens_per_step / max(window_seconds, 1e-9)
            record = {"train_loss": window_loss / window_steps, "learning_rate": scheduler.get_last_lr()[0],
                      "tokens": progress.tokens, "tokens_per_second": tokens_per_second,
                      "train_seconds": progress.train_seconds}
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            accelerator.log(record, step=progress.step)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", tok_s=f"{tokens_per_second:.0f}")
            window_loss, window_steps, window_seconds = 0.0, 0, 0.0
        if progress.step % eval_every == 0 and progress.step < total_steps:
            val_loss, _ = evaluate(model, periodic_loader, accelerator)
            accelerator.log({"val_loss": val_loss, "val_perplexity": perplexity(val_loss), "tokens": progress.tokens},
                            step=progress.step)
            accelerator.print(f"step {progress.step}: validation loss {val_loss:.4f} ({subset_size} blocks)")
        save_checkpoint_if_due(accelerator, progress.step, checkpoint_every, total_steps, config=args)
        exit_if_interrupt_requested(accelerator, progress.step, args["interrupt_after_steps"])
        # Evaluation and checkpointing above are not training time.
        step_started = time.perf_counter()
    bar.close()

    val_loss, val_tokens = evaluate(model, validation_loader, accelerator)
    accelerator.log({"val_loss": val_loss, "val_perplexity": perplexity(val_loss), "tokens": progress.tokens,
                     "final": True}, step=progress.step)
    accelerator.print(f"final validation loss {val_loss:.4f}, perplexity {perplexity(val_loss):.2f} "
                      f"({val_tokens} tokens)")
    accelerator.wait_for_everyone()

    command = ["python", "training/train_causal_lm.py", *(sys.argv[1:] if argv is None else argv)]
    results = {
        "model": args["model"],
        "val_loss": val_loss,
        "val_perplexity": perplexity(val_loss),
        "val_tokens": val_tokens,
        "parameters": parameters,
        "tokens_seen": progress.tokens,
        "steps": progress.step,
        "epochs": progress.tokens / train_set.num_tokens,
        "train_seconds": progress.train_seconds,
        "tokens_per_second": progress.tokens / max(progress.train_seconds, 1e-9),
        "wall_seconds_this_run": None,  # filled in just before writing
        "mixed_precision": args["mixed_precision"],
        "num_threads": args["num_threads"] or torch.get_num_threads(),
        "num_processes": accelerator.num_processes,
        "train_tokens_available": train_set.num_tokens,
        "vocab_size": len(tokenizer),
        "tokenizer": tokenizer_path,
        "command": shlex.join(command),
        "config": args,
        "samples": [],
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.end_training()
        plot_training_curves(output_dir / "log.jsonl", output_dir / "loss_curve.png", train_key="train_loss",
                             train_label="train loss", eval_key="val_loss", eval_label="validation loss",
                             same_axis=True, x_key="tokens", x_label="training tokens", title=args["model"])
        unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        prompts = [p for p in args["sample_prompts"].split("|") if p]
        results["samples"] = generate_samples(unwrapped, tokenizer, prompts, args["sample_max_new_tokens"],
                                              context_length, args["seed"])
        write_samples(results["samples"], output_dir / "samples.txt")
        if args["save_model"]:
            eval_scope = ("the whole validation split" if not args["final_eval_blocks"]
                          else f"the first {len(validation_loader.dataset)} blocks of the validation split")
            model_dir = output_dir / "model"
            with atomic_directory(model_dir) as folder:  # never a half-written model
                unwrapped.save_pretrained(folder)
                tokenizer.save_pretrained(folder)
            card = causal_lm_model_card(
                unwrapped.config,
                {"loss": val_loss, "perplexity": perplexity(val_loss)},
                dataset_name=DATASET_NAME if args["data_dir"] == "" else f"*.rst.txt files of {args['data_dir']}",
                dataset_id=DATASET_ID,
                hyperparameters={
                    "parameters (nanoGPT count)": f"{parameters:,}",
                    **{k: args[k] for k in ("context_length", "batch_size", "max_tokens", "learning_rate",
                                            "min_lr_ratio", "weight_decay", "adam_beta1", "adam_beta2",
                                            "warmup_steps", "max_grad_norm", "mixed_precision", "seed")},
                    "tokenizer": f"byte-level BPE, {len(tokenizer)} tokens",
                },
                training_summary=(
                    f"Trained from scratch on {progress.tokens:,} tokens ({progress.step} steps, "
                    f"{results['epochs']:.2f} epochs of the train split) with `training/train_causal_lm.py` "
                    f"({accelerator.num_processes} process(es), {results['num_threads']} thread(s), "
                    f"{progress.train_seconds / 60:.1f} min of training, "
                    f"{results['tokens_per_second']:.0f} tokens/s). Loss and perplexity are per token of the "
                    f"tokenizer, on {eval_scope} ({val_tokens:,} tokens)."
                ),
                model_name=f"{args['model']}-python-docs",  # the family key, as the run folder and the report
                repo_path=str(model_dir),
            )
            card.save(str(model_dir / "README.md"))
        results["wall_seconds_this_run"] = time.time() - started
        (output_dir / "evaluation.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    else:
        accelerator.end_training()
        results["wall_seconds_this_run"] = time.time() - started
    return results


if __name__ == "__main__":
    run_script(main)
