#!/usr/bin/env python
"""Collect the SITA-VAE runs (issue 13) into docs/results/shapes.md, shapes.json and shapes_reconstructions.png.

    python training/report_shapes.py                       # every run under runs/shapes/<variant>/
    python training/report_shapes.py --grid_depth 5        # 33³ grids: about 8× cheaper than the 65³ default

Each run folder ``runs/shapes/<variant>/`` (variants `VARIANTS`; absent ones are skipped with a line saying so)
holds ``model/`` (``save_pretrained``) and ``evaluation.json`` (``training/train_sita_vae.py``). The model is
evaluated here, by `whitebox_hf.evaluation.shape_reconstruction` (the one definition of the scores): on the held-out
test split of ``load_procedural_shapes(num_per_category, data_seed)`` (the run's own settings), per category, and on
every CGAL mesh (evaluation only). Training time, steps and the retrieval table come from ``evaluation.json``.
Every number on the page is computed; none is typed here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run folder name -> what the variant is (issue 13, "Results": (a)-(d)).
VARIANTS = {
    "sita_vae": "SITA-VAE",
    "no_alignment": "SITA-VAE without alignment (L_con weight 0)",
    "no_kl": "SITA-VAE without the KL bottleneck",
    "crate": "SITA-VAE with CRATE blocks (MSSA + ISTA)",
}
IOU_TARGET = 0.90  # issue 13: IoU >= 0.90 on held-out procedural shapes (the book: 0.966 on ShapeNet, Table 8.9)
ALIGNMENT_COST = 0.01  # issue 13: alignment costs at most 0.01 IoU
CLEARLY_ABOVE_CHANCE = 2.0  # "clearly above chance": shape->text R@1 at least this many times the chance R@1
NUM_PICTURES = 6


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _portable_arg(arg: str) -> str:
    """A command-line argument as the page may show it: paths under the repository relative to it."""
    if os.path.isabs(arg):
        absolute = os.path.abspath(arg)
        return os.path.relpath(absolute, ROOT) if absolute.startswith(str(ROOT) + os.sep) else Path(arg).name
    return arg


def read_run(run_dir: Path) -> dict | None:
    """The run's ``evaluation.json``, or None when the run (or its model) is absent."""
    path = run_dir / "evaluation.json"
    if not path.is_file() or not (run_dir / "model" / "config.json").is_file():
        return None
    run = json.loads(path.read_text())
    for key in ("num_per_category", "data_seed"):
        if not isinstance(run.get(key), int):
            raise SystemExit(f"{path} has no integer {key!r}: the data settings must come from the run")
    return run


def verdict_rows(overall: dict[str, dict], runs: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """``(target, threshold, measured, verdict)`` for each target the finished runs can judge."""
    rows = []
    if "sita_vae" in overall:
        iou = overall["sita_vae"]["iou"]
        rows.append(("held-out procedural IoU, SITA-VAE", f"≥ {IOU_TARGET:.2f}", f"{iou:.4f}",
                     "met" if iou >= IOU_TARGET else "missed"))
    if {"sita_vae", "no_alignment"} <= set(overall):
        cost = overall["no_alignment"]["iou"] - overall["sita_vae"]["iou"]
        rows.append(("IoU cost of alignment (without − with)", f"≤ {ALIGNMENT_COST:.2f}", f"{cost:.4f}",
                     "met" if cost <= ALIGNMENT_COST else "missed"))
    retrieval = (runs.get("sita_vae") or {}).get("retrieval") or {}
    shape_to_text = retrieval.get("shape_to_text")
    if shape_to_text and shape_to_text.get("chance_r@1"):
        ratio = shape_to_text["r@1"] / shape_to_text["chance_r@1"]
        rows.append(("shape→text R@1 over chance, SITA-VAE", f"≥ {CLEARLY_ABOVE_CHANCE:.1f}",
                     f"{ratio:.2f} (R@1 {shape_to_text['r@1']:.3f}, chance {shape_to_text['chance_r@1']:.3f})",
                     "met" if ratio >= CLEARLY_ABOVE_CHANCE else "missed"))
    return rows


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items() if k not in ("vertices", "faces")}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf / NaN: null, with the page saying what it means
    return value


def _truth_mesh(shape, grid_depth: int):
    import torch

    from whitebox_hf.models.sita_vae import dense_query_grid, meshes_from_occupancy_grid

    grid = dense_query_grid(grid_depth, 1.0, dtype=torch.float64).numpy()
    size = grid.shape[0]
    field = -shape.sdf(grid.reshape(-1, 3)).reshape(size, size, size)
    return meshes_from_occupancy_grid(torch.from_numpy(field)[None], 1.0)[0]


def cgal_grid_labels(mesh, grid_depth: int, bound: float, cache_dir: Path):
    """`grid_occupancy` of one CGAL mesh, kept in ``cache_dir`` as safetensors (the winding numbers of the large
    meshes take minutes; the labels depend on the mesh and the grid alone), under a digest of the mesh's vertices
    and faces: the mesh labelled may be a hole-filled copy, and an edited mesh is labelled afresh."""
    import hashlib

    import numpy as np
    from safetensors.numpy import load_file, save_file

    from whitebox_hf.data.meshes import grid_occupancy

    digest = hashlib.sha256(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes()
                            + np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes()).hexdigest()[:16]
    path = cache_dir / f"{digest}_depth{grid_depth}_bound{bound:g}.safetensors"
    if path.is_file():
        return load_file(path)["occupancy"].astype(bool)
    labels = grid_occupancy(mesh, grid_depth, bound)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({"occupancy": labels.astype(np.uint8)}, partial)
    partial.replace(path)  # never a half-written file under the final name
    return labels


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_dir", default=str(ROOT / "runs" / "shapes"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "shapes.md"))
    parser.add_argument("--grid_depth", type=int, default=6, help="procedural grid (2^d + 1)³; 6: 65³")
    parser.add_argument("--cgal_grid_depth", type=int, default=5,
                        help="CGAL grid; 5: 33³ (winding-number labels of 800k faces cost minutes)")
    parser.add_argument("--f_score_threshold", type=float, default=0.02)
    parser.add_argument("--num_reference_points", type=int, default=None,
                        help="points per surface for Chamfer / F-score (default: REFERENCE_POINTS, 30,000)")
    parser.add_argument("--max_test_shapes", type=int, default=None, help="the first N test shapes only")
    parser.add_argument("--cgal_mesh_dir", default=None, help="a folder of .off meshes (default: the CGAL cache)")
    parser.add_argument("--cgal_meshes", nargs="*", default=None, help="mesh names (default: all, >= 500 faces)")
    parser.add_argument("--no_cgal", action="store_true")
    args = parser.parse_args(argv)
    command = "python training/report_shapes.py" + "".join(
        f" {_portable_arg(a)}" for a in (sys.argv[1:] if argv is None else argv))

    import torch
    from transformers import AutoModel

    from whitebox_hf.data.cgal_meshes import cgal_mesh_names, load_cgal_mesh
    from whitebox_hf.data.meshes import grid_occupancy
    from whitebox_hf.data.shapes import load_procedural_shapes, make_shape
    from whitebox_hf.evaluation.shape_reconstruction import (
        REFERENCE_POINTS,
        cgal_reconstruction_scores,
        procedural_reconstruction_scores,
        render_reconstructions,
    )

    reference_points = args.num_reference_points or REFERENCE_POINTS
    runs_dir, output = Path(args.runs_dir), Path(args.output)
    runs, notes = {}, []
    for variant in VARIANTS:
        run = read_run(runs_dir / variant)
        if run is None:
            line = f"{variant}: no finished run in {_portable_arg(str(runs_dir / variant))} (skipped)"
            print(line)
            notes.append(line)
        else:
            runs[variant] = run
    if not runs:
        raise SystemExit(f"no finished run under {runs_dir}/{{{','.join(VARIANTS)}}}")

    meshes = {}
    if not args.no_cgal:
        names = args.cgal_meshes or cgal_mesh_names(args.cgal_mesh_dir)
        for name in names:
            try:
                mesh = load_cgal_mesh(name, mesh_dir=args.cgal_mesh_dir)
            except OSError as error:
                # The message names the cached file: shown relative to the home folder, not as this machine's path.
                notes.append(f"CGAL mesh {name}: unreadable ({str(error).replace(str(Path.home()), '~')}); left out")
                continue
            if args.cgal_meshes or len(mesh.faces) >= 500:  # as load_cgal_meshes: no tiny test primitives
                meshes[name] = mesh
    def cached_labels(mesh, depth, bound):  # the exact labels do not depend on the model: once per mesh, on disk
        return cgal_grid_labels(mesh, depth, bound, runs_dir / "cgal_labels")

    datasets_cache, results, timings = {}, {}, {}
    for variant, run in runs.items():
        start = time.time()
        model = AutoModel.from_pretrained(runs_dir / variant / "model")
        key = (run["num_per_category"], run["data_seed"])
        if key not in datasets_cache:
            datasets_cache[key] = load_procedural_shapes(*key)["test"]
        test = datasets_cache[key]
        if args.max_test_shapes:
            test = test.select(range(min(args.max_test_shapes, len(test))))
        procedural = procedural_reconstruction_scores(model, test, grid_depth=args.grid_depth,
                                                      f_score_threshold=args.f_score_threshold,
                                                      num_reference_points=reference_points)
        cgal = None
        if meshes:
            # The CGAL cache is per mesh object, so the mesh objects are reused by every variant.
            cgal = cgal_reconstruction_scores(model, meshes, grid_depth=args.cgal_grid_depth,
                                              f_score_threshold=args.f_score_threshold, label_fn=cached_labels,
                                              num_reference_points=reference_points,
                                              keep_meshes=len(meshes))
        results[variant] = {"procedural": procedural, "cgal": cgal, "num_test_shapes": len(test)}
        timings[variant] = time.time() - start
        print(f"{variant}: IoU {procedural['overall']['iou']:.4f} on {len(test)} test shapes "
              f"({timings[variant]:.0f} s)")

    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.stem
    picture = output.with_name(f"{stem}_reconstructions.png")
    shown = "sita_vae" if "sita_vae" in results else next(iter(results))
    pairs = []
    for score in results[shown]["procedural"]["per_shape"]:
        if "vertices" in score and len(pairs) < NUM_PICTURES:
            row = test.filter(lambda r, s=score["instance_seed"]: r["instance_seed"] == s)[0]
            shape = make_shape(row["category"], json.loads(row["parameters"]))
            reconstruction = None if score["vertices"] is None else (score["vertices"], score["faces"])
            pairs.append((f"{score['category']} (IoU {score['iou']:.2f})", _truth_mesh(shape, args.grid_depth),
                          reconstruction))
    if results[shown]["cgal"]:
        for name, score in list(results[shown]["cgal"]["per_mesh"].items())[:2]:
            mesh = meshes[name]
            reconstruction = None if score.get("vertices") is None else (score["vertices"], score["faces"])
            pairs.append((f"{name} (IoU {_fmt(score['iou'], 2)})", (mesh.vertices, mesh.faces), reconstruction))
    render_reconstructions(pairs, picture)

    any_run = next(iter(runs.values()))
    grid = 2**args.grid_depth + 1
    lines = [
        "# SITA-VAE: shape reconstruction and alignment (issue 13)",
        "",
        f"Generated by `{command}` from `{_portable_arg(str(runs_dir))}/<variant>/` (`model/`, `evaluation.json`). Every model is "
        "evaluated by this script with `whitebox_hf.evaluation.shape_reconstruction` (posterior mean, no sampling).",
        "",
        "Data: **procedural shapes** (`whitebox_hf.data.shapes`: eight ShapeNet-like families built from primitives "
        "with an exact signed distance, so the occupancy labels are exact, not estimated), held-out **test** split "
        f"of `load_procedural_shapes({any_run['num_per_category']}, seed={any_run['data_seed']})`; and the **CGAL "
        "sample meshes** (real scanned and CAD shapes that none of us made, normalised to the same cube, never "
        "trained on), labelled by the generalised winding number.",
        "",
        f"Scores: IoU of decoded occupancy (logit > 0) against the exact labels on the {grid}³ grid over [-1, 1]³ "
        f"(CGAL meshes: {2**args.cgal_grid_depth + 1}³); Chamfer-L1 (mean of the two directions' mean nearest-point "
        "distances) and F-score at distance "
        f"{args.f_score_threshold} between {reference_points:,} points sampled on the marching-cubes mesh of the decoded "
        f"grid and {reference_points:,} points sampled on the true surface. A decoded field with no surface has Chamfer-L1 = inf and F-score 0 (`inf` in "
        "a mean means at least one such shape; the column 'no surface' counts them). IoU '—': an open mesh, no "
        "inside defined.",
        "",
        "## Runs",
        "",
        "| variant | parameters | steps | epochs | train shapes | train time | evaluation time here |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, run in runs.items():
        lines.append(f"| {VARIANTS[variant]} | {run.get('num_parameters', 0) / 1e6:.2f} M | {run.get('steps', '?')} "
                     f"| {_fmt(run.get('epochs'), 1)} | {run.get('num_train_shapes', '?')} "
                     f"| {run.get('train_seconds_this_run', float('nan')) / 60:.1f} min | {timings[variant]:.0f} s |")
    lines += ["", *(f"- {note}" for note in notes), ""] if notes else [""]

    lines += ["## Held-out procedural shapes", "",
              "| variant | category | shapes | IoU | Chamfer-L1 | F-score | no surface |", "|---|---|---|---|---|---|---|"]
    for variant, result in results.items():
        procedural = result["procedural"]
        for category, summary in [*procedural["per_category"].items(), ("**overall**", procedural["overall"])]:
            lines.append(f"| {VARIANTS[variant]} | {category} | {summary['num_shapes']} | {_fmt(summary['iou'], 4)} "
                         f"| {_fmt(summary['chamfer_l1'], 4)} | {_fmt(summary['f_score'])} "
                         f"| {summary['num_without_surface']} |")
    if any(result["cgal"] for result in results.values()):
        variants = [v for v in results if results[v]["cgal"]]
        lines += ["", "## CGAL meshes (evaluation only)", "",
                  "IoU / Chamfer-L1 / F-score per variant.", "",
                  "| mesh | faces | watertight | " + " | ".join(VARIANTS[v] for v in variants) + " |",
                  "|---|---|---|" + "---|" * len(variants)]
        for name in meshes:
            first = results[variants[0]]["cgal"]["per_mesh"][name]
            cells = [f"{_fmt(s['iou'])} / {_fmt(s['chamfer_l1'])} / {_fmt(s['f_score'])}"
                     for s in (results[v]["cgal"]["per_mesh"][name] for v in variants)]
            lines.append(f"| {name} | {first['num_faces']} | {'yes' if first['watertight'] else 'no'} | "
                         + " | ".join(cells) + " |")
        overall = [results[v]["cgal"]["overall"] for v in variants]
        lines.append("| **mean** | | | " + " | ".join(
            f"{_fmt(o['iou'])} / {_fmt(o['chamfer_l1'])} / {_fmt(o['f_score'])}" for o in overall) + " |")
    retrieval_runs = {v: r["retrieval"] for v, r in runs.items() if isinstance(r.get("retrieval"), dict)}
    if retrieval_runs:
        lines += ["", "## Retrieval in the aligned space", "",
                  "From each run's `evaluation.json`, scored by the training script on its `eval_split` ("
                  + ", ".join(sorted({str(runs[v].get("eval_split", "?")) for v in retrieval_runs}))
                  + " split: galleries of that split's distinct captions and first renders; "
                  "`whitebox_hf.evaluation.alignment`).", "",
                  "| variant | direction | R@1 | R@5 | mean similarity | chance R@1 | queries |",
                  "|---|---|---|---|---|---|---|"]
        for variant, retrieval in retrieval_runs.items():
            for direction, label in (("shape_to_text", "shape→text (ST-S)"), ("shape_to_image", "shape→image (SI-S)")):
                if isinstance(retrieval.get(direction), dict):
                    m = retrieval[direction]
                    lines.append(f"| {VARIANTS[variant]} | {label} | {_fmt(m['r@1'])} | {_fmt(m['r@5'])} "
                                 f"| {_fmt(m['mean_similarity'])} | {_fmt(m['chance_r@1'])} | {m['num_queries']} |")
    overall = {v: r["procedural"]["overall"] for v, r in results.items()}
    rows = verdict_rows(overall, runs)
    lines += ["", "## Targets (issue 13)", ""]
    if rows:
        lines += ["| target | threshold | measured | verdict |", "|---|---|---|---|"]
        lines += [f"| {t} | {th} | {m} | **{v}** |" for t, th, m, v in rows]
    missing = [t for t, need in (("IoU ≥ 0.90 (needs sita_vae)", "sita_vae" in overall),
                                 ("alignment cost (needs sita_vae and no_alignment)",
                                  {"sita_vae", "no_alignment"} <= set(overall)),
                                 ("shape→text R@1 (needs the sita_vae run's retrieval)",
                                  any(r[0].startswith("shape→text") for r in rows))) if not need]
    if missing:
        lines += ["", "Not judged (no run to judge them from): " + "; ".join(missing) + "."]
    lines += ["", f"## Pictures ({VARIANTS[shown]})", "", f"![input and reconstruction]({picture.name})",
              "", "Input: the exact surface (marching cubes of the exact SDF on the same grid; a CGAL mesh as is). "
              "Reconstruction: the marching-cubes mesh of the decoded occupancy.", ""]
    output.write_text("\n".join(lines) + "\n")
    output.with_name(f"{stem}.json").write_text(json.dumps(_json_ready({
        "command": command, "grid_depth": args.grid_depth, "cgal_grid_depth": args.cgal_grid_depth,
        "f_score_threshold": args.f_score_threshold, "evaluation_seconds": timings, "runs": runs,
        "results": results, "notes": notes, "null_means": "an infinite Chamfer-L1 (no surface) or an undefined IoU",
    }), indent=2) + "\n")
    return output


if __name__ == "__main__":
    print(main())
