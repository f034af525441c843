#!/usr/bin/env python
"""Sampling throughput of `WhiteboxFlowPipeline` against diffusers' `DiTPipeline` with the *same* transformer,
VAE, batch, number of steps and guidance, as a ratio measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/benchmark_flow_pipeline.py            # writes docs/results/benchmark_generation.md

Setup (the shapes of ``training/configs/flow_vae_dit.yaml``): a randomly initialised (perturbed, so nothing is
trivially zero) `DiTTransformer2DModel` of width 192, 6 blocks, 3 heads on 4×7×7 latents with patch 1, and an
`AutoencoderKL` with ``block_out_channels=(32, 64, 64)`` (28×28×1 ↔ 4×7×7), as ``autoencoder_vae.yaml``.

Each pipeline runs in its own conventions:

* `DiTPipeline` cannot use the flow scheduler (it calls ``scale_model_input``, which `FlowMatchEulerDiscreteScheduler`
  lacks) and hard-codes the null class id 1000, so the transformer is built with ``num_embeds_ada_norm=1000``
  (1001 class rows) and `DiTPipeline` gets a `DDIMScheduler`; it applies guidance to the first 3 channels and
  steps both halves of its doubled batch.
* `WhiteboxFlowPipeline` gets `FlowMatchEulerDiscreteScheduler` and ``num_classes=1000`` (null id 1000 too).

Both therefore run the same number of transformer passes on the same batch shapes (2B rows with guidance > 1,
B rows — only WhiteboxFlowPipeline — at guidance 1, where `DiTPipeline` also runs B rows). The ratio reports
pipeline overhead, not model quality. Timings: one warm-up call each, then ``repeats`` alternating timed calls;
the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, FlowMatchEulerDiscreteScheduler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from whitebox_hf.models.denoisers import build_dit_transformer  # noqa: E402
from whitebox_hf.pipelines import WhiteboxFlowPipeline  # noqa: E402


def build_components(args):
    torch.manual_seed(0)
    transformer = build_dit_transformer(args.latent_size, args.latent_channels, 1000, hidden_size=args.hidden_size,
                                        num_layers=args.num_layers, num_attention_heads=args.num_heads,
                                        patch_size=args.patch_size)
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64), layers_per_block=1,
                        latent_channels=args.latent_channels, norm_num_groups=32, sample_size=28)
    return transformer.eval(), vae.eval()


def time_call(pipe, labels, args, guidance_scale, dtype: str = "float32") -> float:
    # bf16 as users run it on CPU: autocast around the whole call (weights stay float32).
    context = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()
    start = time.perf_counter()
    with context:
        pipe(labels, num_inference_steps=args.steps, guidance_scale=guidance_scale,
             generator=torch.Generator().manual_seed(0), output_type="np")
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance_scales", default="4.0,1.0")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden_size", type=int, default=192)
    parser.add_argument("--num_layers", type=int, default=6)
    parser.add_argument("--num_heads", type=int, default=3)
    parser.add_argument("--patch_size", type=int, default=1)
    parser.add_argument("--latent_channels", type=int, default=4)
    parser.add_argument("--latent_size", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="float32 and/or bfloat16 (CPU autocast)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "benchmark_generation.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    transformer, vae = build_components(args)
    ours = WhiteboxFlowPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                autoencoder=vae, num_classes=1000)
    theirs = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    labels = [i % 10 for i in range(args.batch_size)]

    rows = []
    for dtype in args.dtypes.split(","):
        for guidance in (float(g) for g in args.guidance_scales.split(",")):
            time_call(ours, labels, args, guidance, dtype)
            time_call(theirs, labels, args, guidance, dtype)
            ours_times, theirs_times = [], []
            for _ in range(args.repeats):
                ours_times.append(time_call(ours, labels, args, guidance, dtype))
                theirs_times.append(time_call(theirs, labels, args, guidance, dtype))
            ours_rate = args.batch_size / statistics.median(ours_times)
            theirs_rate = args.batch_size / statistics.median(theirs_times)
            rows.append({"dtype": dtype, "guidance_scale": guidance, "whitebox_flow_samples_per_s": ours_rate,
                         "dit_pipeline_samples_per_s": theirs_rate, "ratio": ours_rate / theirs_rate,
                         "whitebox_flow_times_s": ours_times, "dit_pipeline_times_s": theirs_times})
            print(f"{dtype} guidance {guidance}: WhiteboxFlowPipeline {ours_rate:.2f} samples/s, DiTPipeline "
                  f"{theirs_rate:.2f} samples/s, ratio {ours_rate / theirs_rate:.3f}")

    command = "OMP_NUM_THREADS=1 python benchmarks/benchmark_flow_pipeline.py " + " ".join(argv or sys.argv[1:])
    lines = [
        "# Sampling throughput: WhiteboxFlowPipeline vs diffusers DiTPipeline (same transformer)",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, {args.threads} thread(s). Batch {args.batch_size}, {args.steps} steps, DiT width "
        f"{args.hidden_size} × {args.num_layers} blocks × {args.num_heads} heads on {args.latent_channels}×"
        f"{args.latent_size}×{args.latent_size} latents (patch {args.patch_size}), AutoencoderKL (32, 64, 64) decoder.",
        "Median of " + str(args.repeats) + " alternating timed calls after one warm-up each.",
        "",
        "| dtype | guidance | WhiteboxFlowPipeline (samples/s) | DiTPipeline (samples/s) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['dtype']} | {row['guidance_scale']:g} | {row['whitebox_flow_samples_per_s']:.2f} | "
                     f"{row['dit_pipeline_samples_per_s']:.2f} | {row['ratio']:.3f} |")
    lines += [
        "",
        "Both pipelines make the same number of transformer passes on the same batch shapes, so the ratio measures "
        "pipeline overhead (scheduler step, guidance arithmetic, decoding). DiTPipeline runs with a DDIMScheduler "
        "(it cannot drive the flow-matching scheduler) and its hard-coded null class 1000, hence a 1000-class "
        "transformer for both; at guidance 1 both skip the unconditional pass.",
        "",
        "Raw timings (s): " + json.dumps([{k: row[k] for k in ("dtype", "guidance_scale", "whitebox_flow_times_s",
                                                                "dit_pipeline_times_s")} for row in rows]),
        "",
    ]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines))
    return {"rows": rows}


if __name__ == "__main__":
    main()
