#!/usr/bin/env python
"""GPU benchmarks run by ``benchmarks/gpu_suite.sh``: three parts, each writing ``<part>.md`` and ``<part>.json``
into ``--out``.

  vision        CRATE-B vs ViT-B (transformers `ViTForImageClassification`, same width / depth / heads / patch,
                224², 1000 labels): inference images/s and training images/s (forward + cross-entropy +
                backward + AdamW), bf16 autocast, at two batch sizes.
  long-context  one batch-1 forward of causal ToST against AoT-MHSA with FlashAttention-backed SDPA (the flash
                kernel is required on CUDA: a run where it cannot be used fails rather than falling back), d 256,
                L 6, K 8, bf16 autocast, 4k…64k tokens: time and peak allocated memory above the weights.
  decode        greedy one-token decode steps after a prefill of 128…4096 tokens, CausalCRATE and GPT-2
                (`GPT2LMHeadModel`, same width / depth / heads) with a `DynamicCache` and a preallocated
                `StaticCache`, and ToST with its constant-size state; bf16 autocast; tokens/s.

Each page has the ratios and a log-log slope table of time and memory against the batch or the length.
``--dry-run`` runs every part with tiny sizes on the CPU (tests/test_gpu_suite.py), so the entry points are
exercised without a GPU; the numbers are then meaningless. Timings use CUDA events after warm-up on CUDA.

Usage::

    python benchmarks/bench_gpu.py vision --out docs/results/gpu
    python benchmarks/bench_gpu.py all --dry-run --out /tmp/gpu_dry
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import StaticCache, ViTConfig, ViTForImageClassification

from whitebox_hf import CrateConfig, CrateForImageClassification
from whitebox_hf.training.builders import build_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import now  # noqa: E402
from _slopes import loglog_slope, slope_cell  # noqa: E402

PARTS = ("vision", "long-context", "decode")


# --------------------------------------------------------------------------------------------------------------
# Timing and memory on CUDA or (dry run) CPU
# --------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn, device: torch.device) -> int | None:
    """Peak allocated memory one call adds above what was allocated before it (CUDA only; None on CPU)."""
    if device.type != "cuda":
        fn()
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# --------------------------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------------------------


def vision_part(args, device) -> dict:
    if args.dry_run:
        shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
        batches, labels = [2, 4], 10
    else:
        shape = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16)
        batches, labels = [64, 128], 1000
    torch.manual_seed(0)
    models = {
        "CRATE-B": CrateForImageClassification(CrateConfig(**shape, num_labels=labels)),
        "ViT-B": ViTForImageClassification(ViTConfig(**shape, intermediate_size=4 * shape["hidden_size"],
                                                     num_labels=labels, attn_implementation="sdpa")),
    }
    rows = {}
    for name, model in models.items():
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rows[name] = {}
        for b in batches:
            pixels = torch.randn(b, 3, shape["image_size"], shape["image_size"], device=device)
            targets = torch.randint(0, labels, (b,), device=device)

            def infer():
                with torch.inference_mode(), autocast(device):
                    model.eval()(pixel_values=pixels)

            def train():
                model.train()
                optimizer.zero_grad(set_to_none=True)
                with autocast(device):
                    loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits.float(), targets)
                loss.backward()
                optimizer.step()

            infer_s = median_seconds(infer, device, args.warmup, args.reps)
            train_s = median_seconds(train, device, args.warmup, args.reps)
            rows[name][b] = dict(inference_images_per_s=b / infer_s, training_images_per_s=b / train_s,
                                 inference_s=infer_s, training_step_s=train_s, training_peak_bytes=peak_bytes(train, device))
            print(f"[vision] {name} batch {b}: {b / infer_s:,.0f} img/s inference, {b / train_s:,.0f} img/s training",
                  flush=True)
        model.to("cpu")
        del optimizer
    lines = ["| batch | " + " | ".join(f"{n} inference img/s | {n} training img/s" for n in models) +
             " | CRATE/ViT inference | CRATE/ViT training |", "|---" * (2 * len(models) + 3) + "|"]
    for b in batches:
        c, v = rows["CRATE-B"][b], rows["ViT-B"][b]
        lines.append(f"| {b} | " + " | ".join(
            f"{rows[n][b]['inference_images_per_s']:,.0f} | {rows[n][b]['training_images_per_s']:,.0f}" for n in models)
            + f" | {c['inference_images_per_s'] / v['inference_images_per_s']:.2f}× | "
            f"{c['training_images_per_s'] / v['training_images_per_s']:.2f}× |")
    lines += ["", "Log-log slope against the batch (1 = time linear in the batch):", "",
              "| model | inference time | training time | training peak memory |", "|---|---|---|---|"]
    for n in models:
        r = rows[n]
        lines.append(f"| {n} | {slope_cell(loglog_slope(batches, [r[b]['inference_s'] for b in batches]))} | "
                     f"{slope_cell(loglog_slope(batches, [r[b]['training_step_s'] for b in batches]))} | "
                     f"{slope_cell(loglog_slope(batches, [r[b]['training_peak_bytes'] for b in batches]))} |")
    return dict(title="CRATE-B vs ViT-B, bf16 autocast", shape=shape, batches=batches, rows=rows, table=lines)


def lm_args(key: str, positions: int, dry_run: bool) -> dict:
    width = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4) if dry_run else dict(
        hidden_size=256, num_hidden_layers=6, num_attention_heads=8)
    return dict(model=key, num_hidden_layers=width["num_hidden_layers"], hidden_size=width["hidden_size"],
                num_attention_heads=width["num_attention_heads"], context_length=positions)


def long_context_part(args, device) -> dict:
    lengths = [256, 512] if args.dry_run else [4096, 8192, 16384, 32768, 65536]
    vocab = 64 if args.dry_run else 8192
    configs = {"ToST": "tost", "AoT-MHSA flash SDPA": "aot-mhsa"}
    rows = {name: {} for name in configs}
    for name, key in configs.items():
        torch.manual_seed(0)
        model = build_causal_lm(lm_args(key, lengths[-1], args.dry_run), vocab, attn_implementation="sdpa")
        model.to(device).eval()
        for n in lengths:
            ids = torch.randint(0, vocab, (1, n), device=device)
            # On CUDA the flash kernel is required for the softmax model: SDPA raises instead of using another.
            flash = (torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION)
                     if device.type == "cuda" and key != "tost" else nullcontext())

            def forward():
                with torch.inference_mode(), autocast(device), flash:
                    model(input_ids=ids, use_cache=False, logits_to_keep=1)

            try:
                seconds = median_seconds(forward, device, args.warmup, args.reps)
                rows[name][n] = dict(seconds=seconds, peak_bytes=peak_bytes(forward, device))
                print(f"[long-context] {name} N={n}: {seconds * 1e3:.1f} ms", flush=True)
            except RuntimeError as error:
                rows[name][n] = dict(error=("out of memory" if out_of_memory(error) else str(error)[:200]))
                print(f"[long-context] {name} N={n}: {rows[name][n]['error']}", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        model.to("cpu")
    names = list(configs)
    lines = ["| N | " + " | ".join(f"{n} ms | {n} peak MB" for n in names) + " | SDPA / ToST time | SDPA / ToST memory |",
             "|---" * (2 * len(names) + 3) + "|"]

    def cell(r, field, scale, fmt):
        return "–" if "error" in r or r.get(field) is None else fmt.format(r[field] * scale)

    for n in lengths:
        t, s = rows["ToST"][n], rows["AoT-MHSA flash SDPA"][n]
        both = "error" not in t and "error" not in s
        time_ratio = f"{s['seconds'] / t['seconds']:.2f}×" if both else "–"
        memory_ratio = (f"{s['peak_bytes'] / t['peak_bytes']:.2f}×" if both and t["peak_bytes"] and s["peak_bytes"]
                        else "–")
        lines.append(f"| {n:,} | " + " | ".join(
            f"{cell(rows[m][n], 'seconds', 1e3, '{:.1f}')} | {cell(rows[m][n], 'peak_bytes', 1e-6, '{:,.0f}')}"
            for m in names) + f" | {time_ratio} | {memory_ratio} |")
    lines += ["", "Log-log slope against N (1 = linear, 2 = quadratic):", "", "| model | time | peak memory |",
              "|---|---|---|"]
    for m in names:
        ran = [n for n in lengths if "error" not in rows[m][n]]
        lines.append(f"| {m} | {slope_cell(loglog_slope(ran, [rows[m][n]['seconds'] for n in ran]))} | "
                     f"{slope_cell(loglog_slope(ran, [rows[m][n]['peak_bytes'] for n in ran]))} |")
    return dict(title="ToST vs FlashAttention-backed SDPA, batch 1 forward, bf16 autocast", lengths=lengths,
                rows=rows, table=lines)


def decode_part(args, device) -> dict:
    contexts = [16, 32] if args.dry_run else [128, 256, 512, 1024, 2048, 4096]
    steps = 4 if args.dry_run else 32
    vocab = 64 if args.dry_run else 8192
    series = {"CausalCRATE dyn": ("causal-crate", "dynamic"), "CausalCRATE static": ("causal-crate", "static"),
              "GPT-2 dyn": ("gpt2", "dynamic"), "GPT-2 static": ("gpt2", "static"), "ToST": ("tost", "dynamic")}
    models = {}
    for key in {k for k, _ in series.values()}:
        torch.manual_seed(0)
        models[key] = build_causal_lm(lm_args(key, contexts[-1] + steps, args.dry_run), vocab,
                                      attn_implementation="sdpa").to(device).eval()
    rows = {name: {} for name in series}
    for name, (key, cache_kind) in series.items():
        model = models[key]
        for c in contexts:
            ids = torch.randint(0, vocab, (1, c), device=device)
            state = {}

            def prefill():
                cache = StaticCache(config=model.config, max_cache_len=c + steps) if cache_kind == "static" else None
                out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
                state.update(cache=out.past_key_values, token=out.logits[:, -1].argmax(-1, keepdim=True))

            def decode():
                with torch.inference_mode(), autocast(device):
                    prefill()
                    synchronize(device)
                    t0 = time.perf_counter()
                    token, cache = state["token"], state["cache"]
                    for _ in range(steps):
                        out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
                        token = out.logits[:, -1].argmax(-1, keepdim=True)
                    synchronize(device)
                    return time.perf_counter() - t0

            for _ in range(args.warmup):
                decode()
            seconds = statistics.median(decode() for _ in range(args.reps))
            rows[name][c] = dict(ms_per_token=1e3 * seconds / steps, tokens_per_s=steps / seconds)
        print(f"[decode] {name}: " + ", ".join(f"{c}: {rows[name][c]['tokens_per_s']:,.0f} tok/s" for c in contexts),
              flush=True)
    names = list(series)
    lines = ["| context | " + " | ".join(f"{n} tok/s" for n in names) +
             " | CRATE/GPT-2 dyn | CRATE/GPT-2 static |", "|---" * (len(names) + 3) + "|"]
    for c in contexts:
        r = {n: rows[n][c]["tokens_per_s"] for n in names}
        lines.append(f"| {c:,} | " + " | ".join(f"{r[n]:,.0f}" for n in names) +
                     f" | {r['CausalCRATE dyn'] / r['GPT-2 dyn']:.2f}× | {r['CausalCRATE static'] / r['GPT-2 static']:.2f}× |")
    tost = [rows["ToST"][c]["ms_per_token"] for c in contexts]
    lines += ["", f"ToST ms/token, context {contexts[-1]} / context {contexts[0]}: {tost[-1] / tost[0]:.2f}× (target ≤ 1.5×).",
              "", "Log-log slope of ms/token against the context (0 = flat):", "", "| series | slope |", "|---|---|"]
    for n in names:
        lines.append(f"| {n} | {slope_cell(loglog_slope(contexts, [rows[n][c]['ms_per_token'] for c in contexts]))} |")
    return dict(title=f"Greedy decode, batch 1, {steps} steps after the prefill, bf16 autocast", contexts=contexts,
                steps=steps, rows=rows, table=lines)


RUNNERS = {"vision": vision_part, "long-context": long_context_part, "decode": decode_part}


def write_part(name: str, result: dict, args, device) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    described = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    header = [f"# GPU suite: {result['title']}", "", f"* command: `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`",
              f"* date: {now()}; device: {described}; torch {torch.__version__}; warm-up {args.warmup}, "
              f"median of {args.reps}", ""]
    if args.dry_run:
        header += ["> **DRY RUN** on the CPU with tiny sizes: the numbers only show that the entry point works.", ""]
    (out / f"{name}.md").write_text("\n".join(header + result["table"]) + "\n")
    (out / f"{name}.json").write_text(json.dumps(dict(result, device=described, dry_run=args.dry_run,
                                                      date=now()), indent=2, default=str) + "\n")
    return out / f"{name}.md"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=[*PARTS, "all"])
    p.add_argument("--out", default="docs/results/gpu", help="folder for <part>.md and <part>.json")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the entry point only")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 3; 1 with --dry-run)")
    p.add_argument("--reps", type=int, default=None, help="timed calls, median reported (default 10; 2 with --dry-run)")
    args = p.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.dry_run else 3)
    args.reps = args.reps if args.reps is not None else (2 if args.dry_run else 10)
    if args.warmup < 0 or args.reps < 1:
        p.error(f"--warmup must be ≥ 0 and --reps ≥ 1, got {args.warmup} and {args.reps}")
    return args


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("bench_gpu.py: no CUDA device is visible (torch.cuda.is_available() is False); run on a "
                         "GPU machine, or pass --dry-run to check the entry points on the CPU")
    written = []
    for name in (PARTS if args.part == "all" else (args.part,)):
        written.append(write_part(name, RUNNERS[name](args, device), args, device))
        print(f"wrote {written[-1]}", flush=True)
    return written


if __name__ == "__main__":
    main()
