#!/usr/bin/env python
"""Time per generated shape of a `ShapeGenerationPipeline` on CPU, in float32 and bfloat16; writes the results page.

The pipeline (``--pipeline``: a folder written by ``train_shape_diffusion.py``) is loaded once per dtype
(``from_pretrained(..., torch_dtype=dtype)``) and conditioned on one held-out item of the procedural shapes' test
split (a render for an image pipeline, `whitebox_hf.data.shape_renders`; its caption for a text pipeline). Timed,
interleaved across the dtypes (median of ``--repeats`` after ``--warmup``):

  * sampling: ``pipe(..., output_type="latent")``: encoding the condition and ``--steps`` DDIM steps of the denoiser
    under classifier-free guidance (both branches in one batch of 2 when ``--guidance`` is not 0 or 1);
  * extraction: the SITA-VAE decoder on the dense ``(2^depth + 1)³`` grid (`SitaVaeModel.occupancy_grid`) and
    marching cubes (`ShapeGenerationPipeline.to_meshes`), from the sampled latents;
  * together: ``pipe(..., output_type="mesh")`` end to end (what a user waits for);
  * one denoiser call on the guidance batch, against the Hugging Face baseline of the same size: diffusers'
    `PriorTransformer` (Shap-E's latent denoiser) with the same width, heads, number of blocks and feed-forward
    ratio, over the same token sequence (the condition tokens, one condition / one timestep token, the L latents;
    output on the latents), with random weights (only its cost is compared). The ratio is ours / baseline.

Marching cubes has no Hugging Face counterpart (it is scikit-image's, the same call for both), and no diffusers or
transformers model decodes a SITA-VAE latent; extraction is reported without a baseline. The bfloat16 shapes are
compared with the float32 ones from the same initial noise (occupancy IoU of the grids), so that a speed-up does not
hide a different shape. bfloat16 is measured only where the CPU multiplies it natively (``--bf16 auto``, the default;
see `_common.resolve_bf16`).

Cost growth: one denoiser call (ours and the baseline) at each batch of ``--growth-batches``, and the dense decoder
grid and marching cubes at each depth of ``--growth-depths``, time and resident-memory increase, with the log-log
slopes against the work. Every number on the page comes from this run.

Usage (``training/run_shape_bench_pipeline.sh`` trains the pipeline of the page in about 40 minutes; any pipeline
folder of ``train_shape_diffusion.py`` works, e.g. ``runs/shapes/diffusion_image/pipeline``)::

    bash training/run_shape_bench_pipeline.sh
    .venv/bin/python benchmarks/bench_shape_generation.py --pipeline runs/shapes_bench/diffusion_image/pipeline \\
        --output docs/results/benchmark_shape_generation.md
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _slopes import loglog_slope, slope_cell

from whitebox_hf.evaluation import volumetric_iou
from whitebox_hf.pipelines import ShapeGenerationPipeline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PIPELINE = ROOT / "runs" / "shapes" / "diffusion_image" / "pipeline"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE, help="a ShapeGenerationPipeline folder")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (the pipeline's default)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument("--depth", type=int, default=7, help="octree depth of the extraction grid (the default)")
    parser.add_argument("--bound", type=float, default=1.1)
    parser.add_argument("--item", type=int, default=0, help="index of the test-split item that conditions the run")
    parser.add_argument("--image", type=Path, default=None,
                        help="an image file to condition an image pipeline on instead of the test-split render")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forward-repeats", type=int, default=20, help="repeats of the single denoiser calls")
    parser.add_argument("--growth-batches", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                        help="denoiser batch sizes of the cost-growth table")
    parser.add_argument("--growth-depths", type=int, nargs="+", default=[5, 6, 7],
                        help="octree depths of the extraction cost-growth table")
    parser.add_argument("--threads", type=int, default=1)
    _common.add_bf16_argument(parser)
    parser.add_argument("--output", type=Path, default=None, help="the .md page (a .json beside it)")
    args = parser.parse_args(argv)
    for name in ("steps", "depth", "repeats", "forward_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("growth_batches", "growth_depths"):
        values = getattr(args, name)
        if min(values) < 1 or len(set(values)) < 2:
            parser.error(f"--{name.replace('_', '-')} needs at least two distinct values ≥ 1, got {values}")
    if args.guidance < 0:
        parser.error(f"--guidance must be ≥ 0, got {args.guidance}")
    return args


def held_out_condition(pipe: ShapeGenerationPipeline, item: int, image_file: Path | None = None) -> tuple[dict, str]:
    """The pipeline's condition from test-split item ``item``: ``({"image": PIL} or {"prompt": caption}, text)``, or
    from ``image_file`` (image pipelines)."""
    from PIL import Image

    from whitebox_hf.data.shape_renders import load_shape_renders

    if image_file is not None and pipe.condition_kind == "image":
        image = Image.open(image_file)
        image.load()
        return {"image": image}, f"the image `{image_file.name}` ({image.width}×{image.height}, {image.mode})"

    if pipe.condition_kind == "text":
        row = load_shape_renders()["test"][item]
        return {"prompt": row["caption"]}, f"the caption of test item {item} (“{row['caption']}”)"
    vision = getattr(pipe.image_encoder.config, "vision_config", pipe.image_encoder.config)
    row = load_shape_renders(size=int(vision.image_size))["test"][item]
    image = Image.fromarray(np.asarray(row["images"][0], dtype=np.uint8))
    if int(vision.num_channels) == 1:
        image = image.convert("L")
    return {"image": image}, (f"view 0 of the render of test item {item} ({row['category']}, "
                              f"{image.width}×{image.height})")


def same_size_baseline(denoiser):
    """diffusers' `PriorTransformer` with the denoiser's width, heads, block count and MLP ratio (inner width
    ``heads × head_dim``), reading the latents (``latent_channels`` wide) and returning them, with the condition
    tokens passed as ``encoder_hidden_states`` at the inner width (no projection) and one pooled condition
    embedding (``proj_embedding``)."""
    from diffusers import PriorTransformer

    config = denoiser.config
    width, heads = config.hidden_size, config.num_attention_heads
    blocks = len(denoiser.encoder_blocks) + 1 + len(denoiser.decoder_blocks)
    if config.mlp_ratio != 4.0:  # diffusers' BasicTransformerBlock (PriorTransformer's) has a 4× GELU MLP
        raise ValueError(f"the baseline has a 4× feed-forward; the denoiser's `mlp_ratio` is {config.mlp_ratio}")
    baseline = PriorTransformer(num_attention_heads=heads, attention_head_dim=width // heads, num_layers=blocks,
                                embedding_dim=config.latent_channels, num_embeddings=config.num_latents,
                                additional_embeddings=0, time_embed_dim=width, embedding_proj_dim=config.condition_dim,
                                clip_embed_dim=config.latent_channels, norm_in_type="layer",
                                encoder_hid_proj_type=None, added_emb_type=None)
    return baseline.eval(), blocks


def training_note(pipeline: Path) -> str:
    """What the pipeline's training run wrote (``metrics.json`` beside the folder, as `train_shape_diffusion.py`
    saves it): steps and training time; the timings on the page do not depend on the weights."""
    metrics = pipeline.parent / "metrics.json"
    if not metrics.is_file():
        return "Training of the pipeline: unknown (no metrics.json beside it); the timings do not depend on the weights."
    facts = json.loads(metrics.read_text())
    shown = lambda path: path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path  # noqa: E731
    vae_evaluation = Path(facts.get("autoencoder") or "").parent / "evaluation.json"
    vae = ""
    if facts.get("autoencoder") and vae_evaluation.is_file():  # train_sita_vae.py's scores of the autoencoder
        scores = json.loads(vae_evaluation.read_text())
        vae = (f", in the latent space of a SITA-VAE trained for {scores['steps']:,} steps (volumetric IoU "
               f"{scores['volumetric_iou']:.3f} on its {scores['eval_split']} shapes, `{shown(vae_evaluation)}`)")
    return (f"The denoiser was trained for {facts['steps']:,} steps ({facts['epochs']:.1f} epochs, "
            f"{facts['train_seconds_total'] / 60:.1f} min) on {facts['num_train_shapes']:,} procedural shapes "
            f"(`{shown(metrics)}`){vae}; the timings do not depend on the weights, the occupancy IoU and the mesh "
            "sizes do.")


def cost_growth(pipes: dict, baselines: dict, tokens: torch.Tensor, latents: dict, args) -> dict:
    """Time and peak memory against the work: one denoiser call (ours and the baseline) at each batch of
    ``--growth-batches``, and the dense decoder grid (`SitaVaeModel.occupancy_grid`) and marching cubes at each depth
    of ``--growth-depths`` (work: the ``(2^depth + 1)³`` queries). Time: median of ``--repeats`` (denoiser:
    ``--forward-repeats``), interleaved across models and dtypes; memory: the resident-set increase of one call."""
    first = next(iter(pipes.values()))
    config = first.denoiser.config
    generator = torch.Generator().manual_seed(args.seed)
    denoiser = {}
    for batch in args.growth_batches:
        sample = torch.randn(batch, config.num_latents, config.latent_channels, generator=generator)
        cond = tokens.expand(batch, -1, -1).float()
        timestep = torch.full((batch,), 500, dtype=torch.long)
        context = torch.randn(batch, tokens.shape[1], config.hidden_size, generator=generator)
        fns = {}
        for name, pipe in pipes.items():
            dtype = DTYPES[name]
            fns[f"ours {name}"] = (lambda p=pipe, d=dtype, x=sample, c=cond, t=timestep:
                                   p.denoiser(x.to(d), t, c.to(d), return_dict=False))
            fns[f"baseline {name}"] = (lambda m=baselines[name], d=dtype, x=sample, c=cond, t=timestep, e=context:
                                       m(x.to(d), t, proj_embedding=c.mean(1).to(d), encoder_hidden_states=e.to(d)))
        times = _common.interleaved(fns, warmup=args.warmup, reps=args.forward_repeats)
        denoiser[batch] = {key: dict(**_common.summarize(values), peak_bytes=_common.peak_increase_bytes(fns[key]))
                           for key, values in times.items()}
    extraction = {}
    for depth in args.growth_depths:
        fns, grids = {}, {}
        for name, pipe in pipes.items():
            shape = latents[name].to(pipe.vae.dtype)
            grids[name] = pipe.vae.occupancy_grid(shape, octree_depth=depth, bound=args.bound)
            fns[f"grid {name}"] = (lambda p=pipe, z=shape, k=depth:
                                   p.vae.occupancy_grid(z, octree_depth=k, bound=args.bound))
            fns[f"marching cubes {name}"] = lambda p=pipe, g=grids[name]: p.to_meshes(g, args.bound)
        times = _common.interleaved(fns, warmup=args.warmup, reps=args.repeats)
        extraction[depth] = dict(points=(2**depth + 1) ** 3, **{
            key: dict(**_common.summarize(values), peak_bytes=_common.peak_increase_bytes(fns[key]))
            for key, values in times.items()})
    return dict(denoiser=denoiser, extraction=extraction)


def growth_lines(growth: dict, dtypes: list[str]) -> list[str]:
    """The cost-growth section of the page: per-point tables and the log-log slopes against the work."""
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    batches = sorted(growth["denoiser"])
    lines = ["", "## Cost growth", "",
             "How time and resident memory grow with the work: a log-log slope of 1 is linear, 0 flat. Memory is the "
             "resident-set increase of one call over the resident set just before it (after `gc.collect()` and "
             "`malloc_trim`); allocations below the allocator's reuse threshold do not show, so small calls read 0.",
             "", "### Denoiser call against batch", "",
             "| batch | dtype | ours (ms) | baseline (ms) | ours / baseline | ours peak (MB) | baseline peak (MB) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for batch in batches:
        for name in dtypes:
            ours, base = growth["denoiser"][batch][f"ours {name}"], growth["denoiser"][batch][f"baseline {name}"]
            lines.append(f"| {batch} | {name} | {1e3 * ours['median_s']:.2f} | {1e3 * base['median_s']:.2f} | "
                         f"{ours['median_s'] / base['median_s']:.2f}× | {mb(ours['peak_bytes'])} | "
                         f"{mb(base['peak_bytes'])} |")
    lines += ["", "| model | dtype | time slope vs batch | memory slope vs batch |", "|---|---|---:|---:|"]
    for who, label in (("ours", "`AlignedShapeLatentDenoiser`"), ("baseline", "`PriorTransformer`")):
        for name in dtypes:
            entries = [growth["denoiser"][b][f"{who} {name}"] for b in batches]
            lines.append(f"| {label} | {name} | {slope_cell(loglog_slope(batches, [e['median_s'] for e in entries]))} "
                         f"| {slope_cell(loglog_slope(batches, [e['peak_bytes'] for e in entries]))} |")
    depths = sorted(growth["extraction"])
    points = [growth["extraction"][k]["points"] for k in depths]
    lines += ["", "### Extraction against grid size", "",
              "The dense decoder grid (`SitaVaeModel.occupancy_grid`, 10,000 queries a chunk) and marching cubes "
              "(`ShapeGenerationPipeline.to_meshes`, scikit-image) from the sampled latents; the work is the number "
              "of grid points. `benchmark_mesh_extraction.md` compares the dense grid with coarse-to-fine refinement.",
              "", "| depth | grid points | dtype | grid (s) | marching cubes (s) | grid peak (MB) |",
              "|---:|---:|---|---:|---:|---:|"]
    for depth in depths:
        entry = growth["extraction"][depth]
        for name in dtypes:
            grid, cubes = entry[f"grid {name}"], entry[f"marching cubes {name}"]
            lines.append(f"| {depth} | {entry['points']:,} | {name} | {grid['median_s']:.3f} | "
                         f"{cubes['median_s']:.3f} | {mb(grid['peak_bytes'])} |")
    lines += ["", "| part | dtype | time slope vs grid points | memory slope vs grid points |", "|---|---|---:|---:|"]
    for part in ("grid", "marching cubes"):
        for name in dtypes:
            entries = [growth["extraction"][k][f"{part} {name}"] for k in depths]
            lines.append(f"| {part} | {name} | {slope_cell(loglog_slope(points, [e['median_s'] for e in entries]))} | "
                         f"{slope_cell(loglog_slope(points, [e['peak_bytes'] for e in entries]))} |")
    return lines


def main(argv=None):
    args = parse_args(argv)
    command, env = _common.start(args, argv, "benchmarks/bench_shape_generation.py")
    if not (args.pipeline / "model_index.json").is_file():
        raise SystemExit(f"--pipeline {args.pipeline} holds no model_index.json (train one with "
                         "training/train_shape_diffusion.py)")
    bf16 = _common.resolve_bf16(args.bf16) if "bfloat16" in args.dtypes else None
    dtypes = [name for name in args.dtypes if name != "bfloat16" or bf16["enabled"]]
    if not dtypes:
        raise SystemExit(f"--dtypes {' '.join(args.dtypes)}: nothing to measure ({bf16['reason']})")
    pipes = {}
    for name in dtypes:
        pipe = ShapeGenerationPipeline.from_pretrained(args.pipeline, torch_dtype=DTYPES[name])
        pipe.set_progress_bar_config(disable=True)
        pipes[name] = pipe
    first = next(iter(pipes.values()))
    condition, condition_text = held_out_condition(first, args.item, args.image)
    call = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, octree_depth=args.depth,
                bound=args.bound)
    generator = lambda: torch.Generator().manual_seed(args.seed)
    latents = {name: pipe(**condition, **call, generator=generator(), output_type="latent").shapes
               for name, pipe in pipes.items()}

    def extract(name):
        pipe = pipes[name]
        grids = pipe.vae.occupancy_grid(latents[name].to(pipe.vae.dtype), octree_depth=args.depth, bound=args.bound)
        return grids, pipe.to_meshes(grids, args.bound)

    # the denoiser calls of one guided step: a batch of 2 (conditional, unconditional), as the pipeline runs them
    tokens = first.encode_condition(**({"prompt": [condition["prompt"]]} if "prompt" in condition else
                                       {"image": [condition["image"]]}))[0]
    den_config = first.denoiser.config
    baseline, blocks = same_size_baseline(first.denoiser)
    batch = 2 if args.guidance not in (0, 1) else 1
    sample = torch.randn(batch, den_config.num_latents, den_config.latent_channels, generator=generator())
    cond = tokens.expand(batch, -1, -1).float()
    timestep = torch.full((batch,), 500, dtype=torch.long)
    baseline_context = torch.randn(batch, tokens.shape[1], den_config.hidden_size, generator=generator())
    baseline_pooled = cond.mean(1)
    # (diffusers warns on a cast by `.to()` of a model that names no modules to keep in float32; it names none)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    baselines = {name: copy.deepcopy(baseline).to(DTYPES[name]) for name in dtypes}
    diffusers_logging.set_verbosity(verbosity)

    fns_sample, fns_extract, fns_total, fns_forward = {}, {}, {}, {}
    for name, pipe in pipes.items():
        dtype = DTYPES[name]
        fns_sample[name] = lambda p=pipe: p(**condition, **call, generator=generator(), output_type="latent")
        fns_extract[name] = lambda n=name: extract(n)
        fns_total[name] = lambda p=pipe: p(**condition, **call, generator=generator(), output_type="mesh")
        fns_forward[f"ours {name}"] = (lambda p=pipe, d=dtype: p.denoiser(sample.to(d), timestep, cond.to(d),
                                                                          return_dict=False))
        fns_forward[f"baseline {name}"] = (lambda m=baselines[name], d=dtype: m(
            sample.to(d), timestep, proj_embedding=baseline_pooled.to(d), encoder_hidden_states=baseline_context.to(d)))
    with torch.inference_mode():
        times = {
            "sampling": _common.interleaved(fns_sample, warmup=args.warmup, reps=args.repeats),
            "extraction": _common.interleaved(fns_extract, warmup=args.warmup, reps=args.repeats),
            "together": _common.interleaved(fns_total, warmup=args.warmup, reps=args.repeats),
            "denoiser call": _common.interleaved(fns_forward, warmup=args.warmup, reps=args.forward_repeats),
        }
        grids = {name: extract(name) for name in pipes}
        growth = cost_growth(pipes, baselines, tokens, latents, args)
    env["loadavg_end"] = _common.loadavg()

    summary = {part: {name: _common.summarize(values) for name, values in group.items()}
               for part, group in times.items()}
    meshes = {name: grids[name][1][0] for name in pipes}
    agreement = {}
    if "float32" in pipes:
        reference = (grids["float32"][0][0] > 0).numpy()
        for name in pipes:
            if name != "float32":
                agreement[name] = volumetric_iou((grids[name][0][0].float() > 0).numpy(), reference)
    params = {"ours": sum(p.numel() for p in first.denoiser.parameters()),
              "baseline": sum(p.numel() for p in baseline.parameters())}
    side = 2**args.depth + 1
    report = dict(command=command, date=_common.now(), environment=env, pipeline=str(args.pipeline),
                  condition=condition_text, condition_kind=first.condition_kind, steps=args.steps,
                  guidance_scale=args.guidance, octree_depth=args.depth, grid_points=side**3, bound=args.bound,
                  seed=args.seed, denoiser_parameters=params["ours"], baseline_parameters=params["baseline"],
                  baseline_blocks=blocks, condition_tokens=int(tokens.shape[1]), guidance_batch=batch,
                  timings=summary, iou_vs_float32=agreement, cost_growth=growth, bf16=bf16,
                  meshes={name: None if mesh is None else dict(vertices=len(mesh.vertices), faces=len(mesh.faces))
                          for name, mesh in meshes.items()})

    def median(part, name):
        return summary[part][name]["median_s"]

    def row(part, name, label):
        entry = summary[part][name]
        return (f"| {label} | {name} | {entry['median_s']:.3f} | {entry['q25_s']:.3f}–{entry['q75_s']:.3f} | "
                f"{', '.join(f'{t:.3f}' for t in entry['times_s'])} |")

    config = first.denoiser.config
    n_cond = int(tokens.shape[1])
    ours_tokens = (f"ours: 1 + {n_cond} + {config.num_latents} in one sequence" if config.conditioning == "in_context"
                   else f"ours: 1 + {config.num_latents} attending to the {n_cond} condition tokens")
    resolved = args.pipeline.resolve()
    shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else args.pipeline
    report["pipeline"] = str(shown)
    lines = [
        f"# Shape generation: time per shape on CPU, {' and '.join(pipes)}", "",
        f"Pipeline: `{shown}` "
        f"({first.condition_kind}-conditioned; denoiser `{type(first.denoiser).__name__}`, {config.block_type} blocks, "
        f"{config.conditioning} conditioning, width {config.hidden_size}, {params['ours']:,} parameters). "
        f"Condition: {condition_text}. {args.steps} DDIM steps, guidance {args.guidance:g} (denoiser batch "
        f"{batch}), extraction on the dense {side}³ grid (±{args.bound}, {side**3:,} decoder queries) + marching "
        f"cubes, seed {args.seed}. Median of {args.repeats} (after {args.warmup} warm-up), interleaved across dtypes. "
        f"{training_note(args.pipeline)}",
        "",
        "| part | dtype | median (s) | q25–q75 (s) | all times (s) |", "|---|---|---:|---|---|",
        *[row(part, name, part) for part in ("sampling", "extraction", "together") for name in pipes], "",
    ]
    if "float32" in pipes:
        for name in pipes:
            if name == "float32":
                continue
            ratio = {part: median(part, name) / median(part, "float32")
                     for part in ("sampling", "extraction", "together")}
            lines.append(f"* {name} / float32 time: sampling {ratio['sampling']:.2f}×, extraction "
                         f"{ratio['extraction']:.2f}×, together {ratio['together']:.2f}×; occupancy IoU of its shape "
                         f"with the float32 one (same noise): {agreement[name]:.3f}")
    for name, mesh in meshes.items():
        lines.append(f"* {name} mesh: " + ("no surface (a one-signed grid)" if mesh is None else
                                           f"{len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces"))
    lines += [
        "", "## Denoiser against a Hugging Face baseline of the same size", "",
        f"One denoiser call on a batch of {batch} at t = 500 ({int(tokens.shape[1])} condition tokens, "
        f"{config.num_latents} latents; median of {args.forward_repeats}). Baseline: diffusers' `PriorTransformer` "
        f"(Shap-E's latent denoiser) with width {config.hidden_size}, {config.num_attention_heads} heads, {blocks} "
        f"blocks (ours: {len(first.denoiser.encoder_blocks)} + 1 + {len(first.denoiser.decoder_blocks)} with long "
        f"skips), a 4× MLP, over {int(tokens.shape[1])} + 2 + {config.num_latents} tokens ({ours_tokens}); "
        f"{params['baseline']:,} parameters, random weights.", "",
        "| model | dtype | median (ms) | q25–q75 (ms) | ours / baseline |", "|---|---|---:|---|---:|",
    ]
    for name in pipes:
        for who in ("ours", "baseline"):
            entry = summary["denoiser call"][f"{who} {name}"]
            ratio = entry["median_s"] / summary["denoiser call"][f"baseline {name}"]["median_s"]
            lines.append(f"| {'`AlignedShapeLatentDenoiser`' if who == 'ours' else '`PriorTransformer`'} | {name} | "
                         f"{1e3 * entry['median_s']:.2f} | {1e3 * entry['q25_s']:.2f}–{1e3 * entry['q75_s']:.2f} | "
                         f"{ratio:.2f}× |" if who == "ours" else
                         f"| `PriorTransformer` | {name} | {1e3 * entry['median_s']:.2f} | "
                         f"{1e3 * entry['q25_s']:.2f}–{1e3 * entry['q75_s']:.2f} | 1 |")
    lines += [
        "", "Extraction has no baseline: no diffusers or transformers model decodes a SITA-VAE latent, and marching "
        "cubes is scikit-image's, the same call whichever model made the grid.",
        *growth_lines(growth, list(pipes)), "",
        *_common.environment_lines(report),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
        args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
