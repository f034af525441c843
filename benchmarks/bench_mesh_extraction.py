#!/usr/bin/env python
"""Dense against coarse-to-fine mesh extraction from a SITA-VAE decoder; writes the results page.

A ``sita-vae-cpu`` `SitaVaeModel` (loaded from ``--checkpoint``, or initialised with ``--seed`` and fitted to the one
procedural shape for ``--fit-steps`` Adam steps, because an untrained decoder's field is noise whose level set
fills the whole cube) encodes the surface of one procedural shape (`whitebox_hf.data.shapes.sample_shape`). Its occupancy logits are then
decoded on the ``(2^depth + 1)³`` grid two ways:

  * dense: `SitaVaeModel.occupancy_grid` (every grid point);
  * coarse-to-fine: `coarse_to_fine_occupancy` from a ``2^coarse_depth + 1`` grid, refining only the coarse cells
    the level set crosses (plus ``--dilation`` cells).

Reported: wall time of each (median of ``--repeats``, interleaved), decoder queries, the occupancy IoU of the two
grids, whether their marching-cubes meshes have the same vertex count, and the Chamfer distance between the two
meshes (`whitebox_hf.evaluation.chamfer_distance` on surface samples). Every number on the page comes from this run.

The level is 0 (``--level``).

Usage::

    .venv/bin/python benchmarks/bench_mesh_extraction.py --output docs/results/benchmark_mesh_extraction.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _slopes import loglog_slope, slope_cell

from whitebox_hf.data.shapes import sample_shape
from whitebox_hf.evaluation import chamfer_distance, sample_mesh_surface, volumetric_iou
from whitebox_hf.models.sita_vae import SitaVaeConfig, SitaVaeModel
from whitebox_hf.models.sita_vae.mesh_extraction import (
    coarse_to_fine_occupancy,
    meshes_from_occupancy_grid,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a saved SitaVaeModel folder (default: random init)")
    parser.add_argument("--category", default="chair")
    parser.add_argument("--shape-seed", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the random initialisation")
    parser.add_argument("--depth", type=int, default=7)
    parser.add_argument("--coarse-depth", type=int, default=5)
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--bound", type=float, default=1.25)
    parser.add_argument("--fit-steps", type=int, default=150, help="Adam steps fitting a fresh model to the shape")
    parser.add_argument("--level", type=float, default=0.0)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--growth-depths", type=int, nargs="*", default=[5, 6],
                        help="smaller grid depths for the cost-growth table, beside --depth (coarse depth lowered alike)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    offset = args.depth - args.coarse_depth
    if offset < 1:
        parser.error(f"--coarse-depth must be below --depth ({args.depth}), got {args.coarse_depth}")
    bad = [d for d in args.growth_depths if not offset < d < args.depth]
    if bad:
        parser.error(f"--growth-depths must lie between {offset} and --depth {args.depth} (exclusive, so the coarse "
                     f"grid of each keeps depth - {offset} >= 1), got {bad}")
    return args


def growth_row(depth: int, coarse_depth: int, dense_times: list[float], fine_times: list[float], queries: int) -> dict:
    return dict(depth=depth, coarse_depth=coarse_depth, grid_points=(2**depth + 1) ** 3, coarse_to_fine_queries=queries,
                dense_s=statistics.median(dense_times), coarse_to_fine_s=statistics.median(fine_times))


def growth_rows(model, latents, args, level: float) -> list[dict]:
    """Dense and coarse-to-fine extraction at every depth of ``--growth-depths`` (the coarse grid ``depth - coarse
    offset``): median time and decoder queries of each. The row at ``--depth`` is the main measurement's."""
    rows = []
    for depth in sorted(set(args.growth_depths)):
        coarse = depth - (args.depth - args.coarse_depth)
        counted = []

        def decode_fn(query_points):
            counted.append(len(query_points))
            return model.decode(latents, query_points[None])[0]

        times = _common.interleaved(
            {"dense": lambda: model.occupancy_grid(latents, depth, args.bound, args.chunk_size),
             "coarse-to-fine": lambda: coarse_to_fine_occupancy(decode_fn, depth, args.bound, coarse, level=level,
                                                                dilation=args.dilation, chunk_size=args.chunk_size)},
            warmup=0, reps=args.repeats)
        rows.append(growth_row(depth, coarse, times["dense"], times["coarse-to-fine"], sum(counted) // args.repeats))
    return rows


def growth_lines(rows: list[dict]) -> list[str]:
    points = [r["grid_points"] for r in rows]
    slope = lambda ys: slope_cell(loglog_slope(points, ys))  # noqa: E731
    lines = [
        "## Cost growth with the grid", "",
        "| depth | grid points | dense (s) | coarse-to-fine queries | coarse-to-fine (s) | speed-up |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['depth']} (coarse {r['coarse_depth']}) | {r['grid_points']:,} | {r['dense_s']:.3f} | "
              f"{r['coarse_to_fine_queries']:,} | {r['coarse_to_fine_s']:.3f} | {r['dense_s'] / r['coarse_to_fine_s']:.2f}× |"
              for r in rows]
    lines += [
        f"| **log-log slope against grid points** | 1.00 | {slope([r['dense_s'] for r in rows])} | "
        f"{slope([r['coarse_to_fine_queries'] for r in rows])} | {slope([r['coarse_to_fine_s'] for r in rows])} | |",
        "",
        "Dense extraction queries every grid point, so its time should grow with slope 1; coarse-to-fine refines only "
        "the cells the level set crosses, whose number grows like the surface area, (grid points)^(2/3), for a smooth "
        "field, so its queries should grow with a slope near 0.67 there; a rough field (an untrained or briefly "
        "fitted decoder) crosses the level in many small pockets, and the slope rises toward 1. Medians of "
        "`--repeats`; the row at the full depth is the measurement of the first table.",
        "",
    ]
    return lines


def main(argv=None):
    args = parse_args(argv)
    command, env = _common.start(args, argv, "benchmarks/bench_mesh_extraction.py")
    if args.checkpoint:
        model = SitaVaeModel.from_pretrained(args.checkpoint).eval()
    else:
        torch.manual_seed(args.seed)
        model = SitaVaeModel(SitaVaeConfig.from_preset("sita-vae-cpu"))
    shape = sample_shape(args.category, args.shape_seed)
    rng = np.random.default_rng(args.shape_seed)
    points, normals = shape.sample_surface(4096, rng)
    surface = torch.from_numpy(np.concatenate([points, normals], axis=1)).float()[None]
    fit_seconds = 0.0
    if not args.checkpoint and args.fit_steps:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        fit_seconds = -_common.time.perf_counter()
        for _ in range(args.fit_steps):
            item = shape.training_item(rng, num_surface_points=1024, num_volume_queries=512, num_near_queries=512)
            queries = np.concatenate([item["volume_queries"], item["near_queries"]])
            labels = np.concatenate([item["volume_occupancy"], item["near_occupancy"]]).astype(np.float32)
            loss = model(surface[:, ::4], torch.from_numpy(queries)[None], torch.from_numpy(labels)[None]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        fit_seconds += _common.time.perf_counter()
        final_loss = float(loss.detach())
    model.eval()

    with torch.no_grad():
        latents = model.encode(surface, sample_posterior=False).latents
        dense = model.occupancy_grid(latents, args.depth, args.bound, args.chunk_size)[0]
        level = args.level
        calls = []

        def decode_fn(query_points):
            calls.append(len(query_points))
            return model.decode(latents, query_points[None])[0]

        def run_dense():
            return model.occupancy_grid(latents, args.depth, args.bound, args.chunk_size)[0]

        def run_coarse_to_fine():
            return coarse_to_fine_occupancy(decode_fn, args.depth, args.bound, args.coarse_depth, level=level,
                                            dilation=args.dilation, chunk_size=args.chunk_size)

        times = _common.interleaved({"dense": run_dense, "coarse-to-fine": run_coarse_to_fine}, warmup=0,
                                    reps=args.repeats)
        calls.clear()
        fine, queries = run_coarse_to_fine()
        growth = growth_rows(model, latents, args, level)
    assert queries == sum(calls)
    growth.append(growth_row(args.depth, args.coarse_depth, times["dense"], times["coarse-to-fine"], queries))
    env["loadavg_end"] = _common.loadavg()

    dense_queries = dense.numel()
    inside_fine, inside_dense = (fine > level).numpy(), (dense > level).numpy()
    # A field with no point above the level (an untrained decoder, a smoke run) has no surface: the IoU is undefined.
    iou = volumetric_iou(inside_fine, inside_dense) if inside_fine.any() or inside_dense.any() else None
    dense_mesh, fine_mesh = meshes_from_occupancy_grid(torch.stack([dense, fine]), args.bound, level)
    if dense_mesh is None or fine_mesh is None:
        mesh_lines = ["* the field has no surface at this level: no meshes to compare"]
    else:
        a = sample_mesh_surface(*dense_mesh, 20_000, seed=0)
        b = sample_mesh_surface(*fine_mesh, 20_000, seed=1)
        self_noise = chamfer_distance(a, sample_mesh_surface(*dense_mesh, 20_000, seed=1))
        mesh_lines = [
            f"* dense mesh: {len(dense_mesh[0])} vertices, {len(dense_mesh[1])} faces; coarse-to-fine mesh: "
            f"{len(fine_mesh[0])} vertices, {len(fine_mesh[1])} faces",
            f"* Chamfer distance (mean L2 both ways, 20,000 surface samples each) dense vs coarse-to-fine: "
            f"{chamfer_distance(a, b):.5f}; dense vs a second sampling of itself (the sampling noise floor): "
            f"{self_noise:.5f}; grid spacing {2 * args.bound / 2**args.depth:.5f}",
        ]
    t_dense, t_fine = statistics.median(times["dense"]), statistics.median(times["coarse-to-fine"])
    report = dict(command=command, date=_common.now(), environment=env)
    model_line = (f"checkpoint `{args.checkpoint}`" if args.checkpoint else
                  f"`sita-vae-cpu` (torch seed {args.seed}) fitted to this one shape for {args.fit_steps} Adam steps "
                  f"(lr 1e-3, 1,024 surface points, 512 volume + 512 near queries a step; {fit_seconds:.1f} s, final "
                  f"loss {final_loss:.4f}): a stand-in for a trained model, whose field may be smoother or rougher, "
                  "so the query ratio on a trained model will differ" if args.fit_steps else
                  f"`sita-vae-cpu`, untrained (torch seed {args.seed})")
    lines = [
        "# Mesh extraction: dense grid against coarse-to-fine", "",
        f"Model: {model_line}. Shape: `{args.category}` seed {args.shape_seed} (`data.shapes.sample_shape`), 4,096 "
        f"surface points with normals encoded by the posterior mean. Grid depth {args.depth} "
        f"({2**args.depth + 1}³ points, ±{args.bound}), coarse depth {args.coarse_depth}, dilation {args.dilation}, "
        f"level {level:.5f}, chunk size {args.chunk_size}.", "",
        "| extraction | decoder queries | median wall time (s) | all times (s) |",
        "|---|---:|---:|---|",
        f"| dense (`occupancy_grid`) | {dense_queries:,} | {t_dense:.3f} | "
        f"{', '.join(f'{t:.3f}' for t in times['dense'])} |",
        f"| coarse-to-fine (`coarse_to_fine_occupancy`) | {queries:,} | {t_fine:.3f} | "
        f"{', '.join(f'{t:.3f}' for t in times['coarse-to-fine'])} |", "",
        f"* query reduction: {dense_queries / queries:.2f}× (target ≥ 5×: {_common.pf(dense_queries / queries >= 5)});"
        f" speed-up {t_dense / t_fine:.2f}×",
        f"* occupancy IoU of the two grids at the level: {iou:.5f} (target ≥ 0.99: {_common.pf(iou >= 0.99)})"
        if iou is not None else "* occupancy IoU: undefined, no grid point lies above the level in either grid "
        "(target ≥ 0.99: not measured)",
        *mesh_lines, "",
        *growth_lines(growth),
        *_common.environment_lines(report),
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
