#!/usr/bin/env python
"""Sampling throughput of `WhiteboxFlowPipeline` against diffusers' `DiTPipeline` with the *same* transformer,
VAE, batch, number of steps and guidance, as a ratio measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/benchmark_flow_pipeline.py    # writes docs/results/benchmark_generation.{md,json}
    python benchmarks/benchmark_flow_pipeline.py --hidden_size 16 --num_layers 1 --steps 2 --growth_batch_sizes 2 4 \
        --repeats 1 --output /tmp/flow.md                                 # smoke run

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

Cost growth: both pipelines at every batch size of ``--growth_batch_sizes`` (float32, the first guidance scale; the
main table's measurement where the batch is ``--batch_size``), with the log-log slope of the time per call against the batch (1 = linear: the work per sample does not change).
bf16 rows run where a bf16 matmul is at least as fast as an fp32 one (``--bf16 auto``; see `_common.resolve_bf16`).
Memory is not measured here: both pipelines run the same transformer and VAE on the same batch shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, FlowMatchEulerDiscreteScheduler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, whatever the working directory

from _common import add_bf16_argument, environment_lines, interleaved, loadavg, now, resolve_bf16, start, summarize  # noqa: E402
from _common import write_report  # noqa: E402
from _slopes import loglog_slope, slope_cell  # noqa: E402
from whitebox_hf.models.denoisers import build_dit_transformer  # noqa: E402
from whitebox_hf.pipelines import WhiteboxFlowPipeline  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "results" / "benchmark_generation.md"


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


def sampler(pipe, batch_size: int, args, guidance_scale: float, dtype: str):
    """One sampling call as users run it; bf16 on CPU is autocast around the whole call (weights stay float32)."""
    labels = [i % 10 for i in range(batch_size)]

    def call():
        context = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()
        with context:
            pipe(labels, num_inference_steps=args.steps, guidance_scale=guidance_scale,
                 generator=torch.Generator().manual_seed(0), output_type="np")

    return call


def measure(pipes: dict, batch_size: int, args, guidance_scale: float, dtype: str) -> dict:
    times = interleaved({name: sampler(pipe, batch_size, args, guidance_scale, dtype) for name, pipe in pipes.items()},
                        warmup=1, reps=args.repeats)
    row = {"dtype": dtype, "guidance_scale": guidance_scale, "batch_size": batch_size}
    for name, series in times.items():
        row[name] = dict(samples_per_s=batch_size / summarize(series)["median_s"], **summarize(series))
    row["ratio"] = row["whitebox_flow"]["samples_per_s"] / row["dit_pipeline"]["samples_per_s"]
    return row


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument("--steps", type=positive_int, default=25)
    parser.add_argument("--guidance_scales", default="4.0,1.0")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--growth_batch_sizes", type=positive_int, nargs="+", default=[8, 16, 32],
                        help="batch sizes of the cost-growth table (float32, the first guidance scale)")
    parser.add_argument("--hidden_size", type=positive_int, default=192)
    parser.add_argument("--num_layers", type=positive_int, default=6)
    parser.add_argument("--num_heads", type=positive_int, default=3)
    parser.add_argument("--patch_size", type=positive_int, default=1)
    parser.add_argument("--latent_channels", type=positive_int, default=4)
    parser.add_argument("--latent_size", type=positive_int, default=7)
    parser.add_argument("--threads", type=positive_int, default=1)
    add_bf16_argument(parser)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="markdown page; the numbers go next to it as .json")
    args = parser.parse_args(argv)
    try:
        args.guidance_scales = [float(g) for g in args.guidance_scales.split(",")]
    except ValueError:
        parser.error(f"--guidance_scales: expected comma-separated numbers, got {args.guidance_scales!r}")
    if len(set(args.growth_batch_sizes)) < 2:
        parser.error(f"--growth_batch_sizes: a slope needs two different sizes, got {args.growth_batch_sizes}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    command, env = start(args, argv, "benchmarks/benchmark_flow_pipeline.py")
    bf16 = resolve_bf16(args.bf16)
    dtypes = ["float32"] + (["bfloat16"] if bf16["enabled"] else [])

    transformer, vae = build_components(args)
    pipes = {"whitebox_flow": WhiteboxFlowPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                                   autoencoder=vae, num_classes=1000),
             "dit_pipeline": DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler())}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)

    rows = []
    for dtype in dtypes:
        for guidance in args.guidance_scales:
            row = measure(pipes, args.batch_size, args, guidance, dtype)
            rows.append(row)
            print(f"{dtype} guidance {guidance:g}: WhiteboxFlowPipeline {row['whitebox_flow']['samples_per_s']:.2f} "
                  f"samples/s, DiTPipeline {row['dit_pipeline']['samples_per_s']:.2f} samples/s, "
                  f"ratio {row['ratio']:.3f}", flush=True)
    growth = []
    for batch_size in sorted(set(args.growth_batch_sizes)):
        # The row of the main table with this batch (float32, first guidance scale) is not measured again.
        row = rows[0] if batch_size == args.batch_size else measure(pipes, batch_size, args, args.guidance_scales[0],
                                                                    "float32")
        growth.append(row)
        print(f"growth: batch {batch_size}: WhiteboxFlowPipeline {row['whitebox_flow']['median_s']:.3f} s, "
              f"DiTPipeline {row['dit_pipeline']['median_s']:.3f} s", flush=True)
    slopes = {name: loglog_slope([r["batch_size"] for r in growth], [r[name]["median_s"] for r in growth])
              for name in pipes}
    env["loadavg_end"] = loadavg()
    # The output path stays out of the report: the page is where it is, and an absolute path would name this machine.
    config = {key: value for key, value in vars(args).items() if key != "output"}
    report = dict(command=command, date=now(), environment=env, bf16=bf16, config=config, rows=rows,
                  growth=growth, growth_slopes=slopes)
    write_report(args.output, report, lambda: render(report))
    return report


def render(report: dict) -> str:
    config = report["config"]
    lines = [
        "# Sampling throughput: WhiteboxFlowPipeline vs diffusers DiTPipeline (same transformer)",
        "",
        f"Written by `benchmarks/benchmark_flow_pipeline.py` (numbers in the `.json` beside this page). Batch "
        f"{config['batch_size']}, {config['steps']} steps, DiT width {config['hidden_size']} × {config['num_layers']} "
        f"blocks × {config['num_heads']} heads on {config['latent_channels']}×{config['latent_size']}×"
        f"{config['latent_size']} latents (patch {config['patch_size']}), AutoencoderKL (32, 64, 64) decoder. Median "
        f"of {config['repeats']} alternating timed calls after one warm-up each.",
        "",
        "| dtype | guidance | WhiteboxFlowPipeline (samples/s) | DiTPipeline (samples/s) | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['dtype']} | {row['guidance_scale']:g} | {row['whitebox_flow']['samples_per_s']:.2f} | "
                     f"{row['dit_pipeline']['samples_per_s']:.2f} | {row['ratio']:.3f} |")
    lines += [
        "",
        "Both pipelines make the same number of transformer passes on the same batch shapes, so the ratio measures "
        "pipeline overhead (scheduler step, guidance arithmetic, decoding). DiTPipeline runs with a DDIMScheduler "
        "(it cannot drive the flow-matching scheduler) and its hard-coded null class 1000, hence a 1000-class "
        "transformer for both; at guidance 1 both skip the unconditional pass.",
        "",
        f"## Cost growth with the batch (float32, guidance {config['guidance_scales'][0]:g})",
        "",
        "| batch | WhiteboxFlowPipeline (s per call) | DiTPipeline (s per call) | ratio (samples/s) |",
        "|---:|---:|---:|---:|",
    ]
    for row in report["growth"]:
        lines.append(f"| {row['batch_size']} | {row['whitebox_flow']['median_s']:.3f} | "
                     f"{row['dit_pipeline']['median_s']:.3f} | {row['ratio']:.3f} |")
    slopes = report["growth_slopes"]
    lines += [
        f"| **log-log slope of time against batch** | {slope_cell(slopes['whitebox_flow'])} | "
        f"{slope_cell(slopes['dit_pipeline'])} | |",
        "",
        "A slope of 1 is linear growth (the same cost per sample at every batch); below 1, the larger batches use "
        "the cores better. Memory is not measured: both pipelines hold the same models and batch shapes.",
        "",
        *environment_lines(report),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
