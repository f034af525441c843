#!/usr/bin/env python
"""Evaluate the text/image-to-3D diffusion runs (issue 14) into docs/results/shape_generation.md, its JSON and
pictures of generated shapes.

    python training/report_shape_generation.py                         # every run under runs/shapes/diffusion_<variant>/
    python training/report_shape_generation.py --shapes_per_prompt 8 --octree_depth 6   # a larger budget

Each run folder ``runs/shapes/diffusion_<variant>/`` (variants `VARIANTS`; absent ones are skipped with a line saying
so) holds ``pipeline/`` and ``metrics.json`` (``training/train_shape_diffusion.py``). For a handful of held-out
**test** captions (``--prompts_per_category`` distinct ones per category of the test split of
``load_procedural_shapes(num_per_category, data_seed)``, the runs' own data settings) every run generates
``--shapes_per_prompt`` shapes per caption (an image run: per render of the same test shapes, view 0), the shape
``k`` of every run and guidance scale from the same seed, and each generated mesh is scored:

* ST-S / SI-S (book Table 8.10's measures): cosine similarity, in the aligned space, of the shape's embedding with its
  caption's frozen-MiniLM embedding / its render's LIFT image embedding. The shape embedding is always that of the
  **aligned** SITA-VAE's encoder (``--vae_model``) applied to points sampled on the generated mesh, for every
  variant — also for the one diffusing in the unaligned VAE's latent space — so that the numbers compare;
* category accuracy: the category a PointNet trained on the real training shapes' surface points
  (`whitebox_hf.evaluation.point_cloud_classifier`; its own test accuracy is on the page) gives the mesh's surface
  samples, against the caption's category; a shape without a surface counts as wrong;
* diversity: mean pairwise Chamfer-L1 between the surface samples of the shapes of one prompt;
* the fraction without a surface (no level-0 crossing in the decoded grid), and the time per generated shape
  (sampling + decoding + marching cubes, this machine, one thread unless told).

The aligned variant is also run at each ``--guidance_sweep`` scale. The defaults (2 captions per category, 3 shapes
each, 25 DDIM steps, a 33³ grid) are sized for about 7 minutes on one loaded CPU thread with the CPU-preset models
(measured: about 1 s per shape for the 4.5M-parameter denoiser and the sita-vae-cpu decoder, 7 passes of 48 shapes,
plus about half a minute to train the classifier the first time). Every number on the page is computed here or
read from a run's ``metrics.json`` (training time); none is typed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run folder diffusion_<key> -> what the variant is (issue 14, item 6: (a)-(d), and the image condition).
VARIANTS = {
    "aligned": "text, aligned SITA-VAE latent space",
    "unaligned": "text, unaligned VAE latent space (3DS2V-like)",
    "cross_attention": "text, aligned, cross-attention conditioning",
    "crate": "text, aligned, white-box denoiser (MSSA + ISTA)",
    "image": "image, aligned SITA-VAE latent space",
}
PICTURED = ("aligned", "image")
MAX_PICTURE_COLUMNS = 4


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _portable_arg(arg: str) -> str:
    """A command-line argument as the page may show it: paths under the repository relative to it."""
    if os.path.isabs(arg):
        absolute = os.path.abspath(arg)
        return os.path.relpath(absolute, ROOT) if absolute.startswith(str(ROOT) + os.sep) else Path(arg).name
    return arg


def _shown(path: Path, runs_dir: Path) -> str:
    """A path as the page shows it: relative to the repository, else to the runs folder as the command gave it."""
    absolute, runs = Path(os.path.abspath(path)), Path(os.path.abspath(runs_dir))
    if not str(absolute).startswith(str(ROOT) + os.sep) and str(absolute).startswith(str(runs) + os.sep):
        return f"{_portable_arg(str(runs_dir))}/{absolute.relative_to(runs).as_posix()}"
    return _portable_arg(str(path))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs_dir", default=str(ROOT / "runs" / "shapes"))
    parser.add_argument("--output", default=str(ROOT / "docs" / "results" / "shape_generation.md"))
    parser.add_argument("--vae_model", default=None,
                        help="the aligned SITA-VAE that re-encodes every generated shape (default: RUNS/sita_vae/model)")
    parser.add_argument("--alignment_model", default=None,
                        help="the LIFT model for SI-S of image runs (default: RUNS/shape_lift/model, if present)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--prompts_per_category", type=int, default=2)
    parser.add_argument("--shapes_per_prompt", type=int, default=3)
    parser.add_argument("--num_inference_steps", type=int, default=25)
    parser.add_argument("--guidance_scale", type=float, default=7.5, help="the scale every variant is compared at")
    parser.add_argument("--guidance_sweep", type=float, nargs="*", default=[1.0, 3.0, 7.5],
                        help="scales the aligned variant is also run at")
    parser.add_argument("--octree_depth", type=int, default=5, help="decoding grid (2^d + 1)³; 5: 33³")
    parser.add_argument("--num_surface_points", type=int, default=1024,
                        help="points sampled on each generated mesh (re-encoding, classifier, Chamfer)")
    parser.add_argument("--render_views", type=int, default=4, help="num_views of the renders the image run used")
    parser.add_argument("--classifier_dir", default=None,
                        help="where the point-cloud classifier is kept (default: RUNS/point_cloud_classifier); "
                             "trained there when absent or trained on other data")
    parser.add_argument("--classifier_epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("prompts_per_category", "num_inference_steps", "num_surface_points", "render_views",
                 "classifier_epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {getattr(args, name)!r}")
    if args.shapes_per_prompt < 2:
        raise ValueError(f"`shapes_per_prompt` must be at least 2 (diversity compares shapes of one prompt), got "
                         f"{args.shapes_per_prompt!r}")
    if args.octree_depth < 2:
        raise ValueError(f"`octree_depth` must be at least 2, got {args.octree_depth!r}")
    if args.seed < 0:
        raise ValueError(f"`seed` must be >= 0, got {args.seed!r}")
    for name, scales in (("guidance_scale", [args.guidance_scale]), ("guidance_sweep", args.guidance_sweep)):
        if any(not math.isfinite(s) or s < 0 for s in scales):
            raise ValueError(f"`{name}` must hold finite scales >= 0, got {scales!r}")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        raise ValueError(f"`variants` must be a non-empty list of {list(VARIANTS)}, got {args.variants!r}")
    return args


def read_run(run_dir: Path) -> dict | None:
    """The run's ``metrics.json``, or None when the run (or its pipeline) is absent."""
    path = run_dir / "metrics.json"
    if not path.is_file() or not (run_dir / "pipeline" / "model_index.json").is_file():
        return None
    # Paths the run recorded (its VAE, its pipeline) are shown relative to the repository, never absolute.
    run = {k: _portable_arg(v) if isinstance(v, str) else v for k, v in json.loads(path.read_text()).items()}
    for key in ("num_per_category", "data_seed"):
        if not isinstance(run.get(key), int):
            raise SystemExit(f"{path} has no integer {key!r}: the data settings must come from the run")
    return run


def select_prompts(test_split, per_category: int) -> list[dict]:
    """The first ``per_category`` distinct captions of each category of the test split, in category order: dicts of
    ``caption``, ``category``, ``row`` (the test row whose render an image run is conditioned on)."""
    chosen, seen = [], set()
    counts: dict[str, int] = {}
    for row, (caption, category) in enumerate(zip(test_split["caption"], test_split["category"])):
        if caption in seen or counts.get(category, 0) >= per_category:
            continue
        seen.add(caption)
        counts[category] = counts.get(category, 0) + 1
        chosen.append({"caption": caption, "category": category, "row": row})
    if not chosen:
        raise ValueError("the test split holds no shapes to take captions from")
    order = list(dict.fromkeys(p["category"] for p in chosen))
    return sorted(chosen, key=lambda p: order.index(p["category"]))


def mean_pairwise_chamfer(clouds: list) -> float | None:
    """Mean Chamfer-L1 over the pairs of ``clouds`` (None with fewer than two)."""
    from whitebox_hf.evaluation.shapes import chamfer_distance

    distances = [chamfer_distance(clouds[i], clouds[j]) for i in range(len(clouds)) for j in range(i + 1, len(clouds))]
    return sum(distances) / len(distances) if distances else None


def summarise(shapes: list[dict]) -> dict:
    """Means over generated shapes (each ``st_s``, ``si_s`` None without a surface; ``correct``; ``has_surface``)
    and over prompts (``diversity``)."""
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    return {"num_shapes": len(shapes), "st_s": mean(s["st_s"] for s in shapes),
            "si_s": mean(s.get("si_s") for s in shapes),
            "category_accuracy": sum(s["correct"] for s in shapes) / len(shapes),
            "no_surface_fraction": sum(not s["has_surface"] for s in shapes) / len(shapes)}


def evaluate_variant(pipeline, vae, classifier, prompts: list[dict], shapes_per_prompt: int, guidance_scale: float,
                     args, images=None, image_embeds=None, keep_meshes: bool = False) -> dict:
    """Generate ``shapes_per_prompt`` shapes per prompt (or per image ``(P, C, H, W)`` in [0, 1]) and score them
    (module docstring). Returns ``per_prompt`` (a summary + ``diversity`` each), ``overall`` (+ mean
    ``diversity``), ``seconds_per_shape``, and with ``keep_meshes`` the meshes per prompt."""
    import torch
    from torch.nn import functional as F

    from whitebox_hf.evaluation.alignment import embed_texts
    from whitebox_hf.evaluation.point_cloud_classifier import classify_point_clouds
    from whitebox_hf.evaluation.shape_generation import mesh_surface_samples

    count = len(prompts) * shapes_per_prompt
    generators = [torch.Generator().manual_seed(args.seed + k) for k in range(count)]
    condition = {"prompt": [p["caption"] for p in prompts]} if images is None else {"image": images}
    pipeline.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    meshes = pipeline(**condition, num_shapes_per_prompt=shapes_per_prompt, generator=generators,
                      num_inference_steps=args.num_inference_steps, guidance_scale=guidance_scale,
                      octree_depth=args.octree_depth, output_type="mesh").shapes
    seconds_per_shape = (time.perf_counter() - start) / count
    text_embeds = embed_texts([p["caption"] for p in prompts])
    device = next(vae.parameters()).device
    samples, shapes = [], []
    for k, mesh in enumerate(meshes):
        prompt = k // shapes_per_prompt
        has_surface = mesh is not None and len(mesh.faces) > 0 and mesh.area > 0
        score = {"prompt": prompt, "has_surface": has_surface, "st_s": None, "si_s": None, "predicted": None}
        points = None
        if has_surface:
            surface = mesh_surface_samples(mesh, args.num_surface_points, seed=args.seed + k)
            with torch.no_grad():
                embed = vae.encode(surface[None].to(device, vae.dtype), sample_posterior=False).shape_embeds[0]
            embed = embed.float().cpu()
            if embed.shape[0] == text_embeds.shape[1]:
                score["st_s"] = F.cosine_similarity(embed, text_embeds[prompt], dim=0).item()
            if image_embeds is not None and embed.shape[0] == image_embeds.shape[1]:
                score["si_s"] = F.cosine_similarity(embed, image_embeds[prompt], dim=0).item()
            points = surface[:, :3].numpy()
        samples.append(points)
        shapes.append(score)
    with_surface = [k for k, points in enumerate(samples) if points is not None]
    if with_surface:
        for k, predicted in zip(with_surface, classify_point_clouds(classifier, [samples[k] for k in with_surface],
                                                                    seed=args.seed)):
            shapes[k]["predicted"] = predicted
    for score in shapes:
        score["correct"] = score["predicted"] == prompts[score["prompt"]]["category"]
    per_prompt = []
    for index, prompt in enumerate(prompts):
        mine = [s for s in shapes if s["prompt"] == index]
        clouds = [samples[k] for k, s in enumerate(shapes) if s["prompt"] == index and samples[k] is not None]
        per_prompt.append({**{key: prompt[key] for key in ("caption", "category")}, **summarise(mine),
                           "diversity": mean_pairwise_chamfer(clouds),
                           "predicted": [s["predicted"] for s in mine]})
    diversities = [p["diversity"] for p in per_prompt if p["diversity"] is not None]
    overall = {**summarise(shapes), "diversity": sum(diversities) / len(diversities) if diversities else None}
    result = {"per_prompt": per_prompt, "overall": overall, "seconds_per_shape": seconds_per_shape,
              "guidance_scale": guidance_scale}
    if keep_meshes:
        result["meshes"] = [meshes[i * shapes_per_prompt:(i + 1) * shapes_per_prompt] for i in range(len(prompts))]
    return result


def alignment_verdict(aligned: float | None, unaligned: float | None) -> str:
    """The book's claim (§8.8, Table 8.10): diffusion in the aligned space gives higher ST-S than in the unaligned."""
    claim = "The book's claim, higher ST-S from the aligned latent space than from the unaligned one"
    if aligned is None or unaligned is None:
        return f"{claim}: not judged (a run, or a shape with a surface, is missing)."
    held = aligned > unaligned
    return (f"{claim}: **{'held' if held else 'did not hold'}** here (ST-S {aligned:.3f} aligned vs {unaligned:.3f} "
            f"unaligned, a difference of {aligned - unaligned:+.3f}).")


def guidance_verdict(scales: list[float], accuracies: list[float | None]) -> str:
    """Whether category accuracy rises with the guidance scale (largest scale against the smallest, and whether
    every step up the sweep is non-decreasing)."""
    claim = "Category accuracy rising with guidance"
    pairs = sorted((s, a) for s, a in zip(scales, accuracies) if a is not None)
    if len(pairs) < 2 or pairs[0][0] == pairs[-1][0]:
        return f"{claim}: not judged (fewer than two guidance scales measured)."
    along = " → ".join(f"{100 * a:.1f} % (g = {s:g})" for s, a in pairs)
    held = pairs[-1][1] > pairs[0][1]
    monotone = all(b[1] >= a[1] for a, b in itertools.pairwise(pairs))
    shape = "" if not held else (", monotonically" if monotone else ", though not at every step")
    return f"{claim}: **{'held' if held else 'did not hold'}**{shape}: {along}."


def comparison_line(name: str, first: str, second: str, results: dict) -> str | None:
    """``first`` vs ``second`` (variant keys) in ST-S and category accuracy, or None when either is missing."""
    if first not in results or second not in results:
        return None
    a, b = results[first]["overall"], results[second]["overall"]
    if a["st_s"] is None or b["st_s"] is None:
        return f"{name}: not judged (no shape with a surface in one of the runs)."
    higher = VARIANTS[first] if a["st_s"] > b["st_s"] else VARIANTS[second]
    return (f"{name}: ST-S {a['st_s']:.3f} vs {b['st_s']:.3f}, category accuracy {_pct(a['category_accuracy'])} vs "
            f"{_pct(b['category_accuracy'])}; higher ST-S: {higher}.")


def render_grid(rows: list[tuple[str, object, list]], path: Path, bound: float = 1.1) -> None:
    """One PNG, a row per prompt: ``(title, input image (H, W, 3) uint8 or None, meshes)``; shaded with the helper
    of `whitebox_hf.evaluation.shape_reconstruction` (one view, the ``[-bound, bound]³`` box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from whitebox_hf.evaluation.shape_reconstruction import _draw_mesh

    images = any(image is not None for _, image, _ in rows)
    columns = int(images) + max(min(len(meshes), MAX_PICTURE_COLUMNS) for _, _, meshes in rows)
    figure = plt.figure(figsize=(1.8 * columns, 1.9 * len(rows)))
    for r, (title, image, meshes) in enumerate(rows):
        if images:
            axis = figure.add_subplot(len(rows), columns, r * columns + 1)
            if image is not None:
                axis.imshow(np.asarray(image))
            axis.set_axis_off()
            axis.set_title("input", fontsize=6)
        for c, mesh in enumerate(meshes[:MAX_PICTURE_COLUMNS]):
            axis = figure.add_subplot(len(rows), columns, r * columns + int(images) + c + 1, projection="3d")
            if mesh is not None:
                # y up in the shapes' frame: draw (x, z, y) so matplotlib's vertical z axis is the shapes' y.
                _draw_mesh(axis, np.asarray(mesh.vertices)[:, [0, 2, 1]], np.asarray(mesh.faces), (0.95, 0.7, 0.45))
            else:
                axis.text(0, 0, 0, "no surface", ha="center", fontsize=6)
            axis.set_xlim(-bound, bound), axis.set_ylim(-bound, bound), axis.set_zlim(-bound, bound)
            axis.set_box_aspect((1, 1, 1))
            axis.view_init(elev=20, azim=-60)
            axis.set_axis_off()
            if c == 0:
                axis.set_title(title[:48], fontsize=6, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _classifier(args, data_key, train_split, test_split, runs_dir: Path):
    """The point-cloud judge: loaded from ``classifier_dir`` when it was trained on these data with these
    settings, else trained (and saved) now."""
    from whitebox_hf.evaluation.point_cloud_classifier import (
        load_point_cloud_classifier,
        save_point_cloud_classifier,
        train_point_cloud_classifier,
    )

    folder = Path(args.classifier_dir) if args.classifier_dir else runs_dir / "point_cloud_classifier"
    wanted = {"num_per_category": data_key[0], "data_seed": data_key[1], "epochs": args.classifier_epochs,
              "seed": args.seed, "num_train_shapes": len(train_split)}
    try:
        model, metrics = load_point_cloud_classifier(folder)
        if all(metrics.get(k) == v for k, v in wanted.items()):
            return model, metrics
    except OSError:
        pass
    model, metrics = train_point_cloud_classifier(train_split, test_split, epochs=args.classifier_epochs,
                                                  seed=args.seed)
    metrics.update(num_per_category=data_key[0], data_seed=data_key[1])
    save_point_cloud_classifier(model, folder, metrics)
    return model, metrics


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items() if k != "meshes"}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def main(argv=None, data=None, renders=None) -> Path:
    """Write the page. ``data`` (tests) replaces the shapes (a `DatasetDict` like `load_procedural_shapes`'s),
    ``renders`` the renders (like `load_shape_renders`')."""
    args = parse_args(argv)
    command = "python training/report_shape_generation.py" + "".join(
        f" {_portable_arg(a)}" for a in (sys.argv[1:] if argv is None else argv))
    begin = time.time()

    import numpy as np
    import torch
    from transformers import AutoModel

    from whitebox_hf import ShapeGenerationPipeline
    from whitebox_hf.evaluation.alignment import embed_images

    runs_dir, output = Path(args.runs_dir), Path(args.output)
    runs, notes = {}, []
    for variant in args.variants:
        run = read_run(runs_dir / f"diffusion_{variant}")
        if run is None:
            line = f"{variant}: no finished run in {_shown(runs_dir / f'diffusion_{variant}', runs_dir)} (skipped)"
            print(line)
            notes.append(line)
        else:
            runs[variant] = run
    if not runs:
        raise SystemExit(f"no finished run under {runs_dir}/diffusion_{{{','.join(args.variants)}}}")
    data_keys = {(run["num_per_category"], run["data_seed"]) for run in runs.values()}
    if len(data_keys) != 1:
        raise SystemExit(f"the runs were trained on different data (num_per_category, data_seed): {sorted(data_keys)}")
    data_key = data_keys.pop()

    vae_path = Path(args.vae_model) if args.vae_model else runs_dir / "sita_vae" / "model"
    if not (vae_path / "config.json").is_file():
        raise OSError(f"no aligned SITA-VAE at {str(vae_path)!r} (`vae_model`): it re-encodes every generated shape")
    vae = AutoModel.from_pretrained(vae_path).eval()
    alignment_path = Path(args.alignment_model) if args.alignment_model else runs_dir / "shape_lift" / "model"
    alignment = AutoModel.from_pretrained(alignment_path).eval() if (alignment_path / "config.json").is_file() else None
    if data is None:
        from whitebox_hf.data.shapes import load_procedural_shapes

        # The classifier and the re-encoding need surface points only; the query pools are kept at their minimum.
        data = load_procedural_shapes(num_per_category=data_key[0], seed=data_key[1], num_surface_points=1024,
                                      num_volume_queries=1, num_near_queries=1)
    classifier, classifier_metrics = _classifier(args, data_key, data["train"], data["test"], runs_dir)
    print(f"point-cloud classifier: test accuracy {_pct(classifier_metrics['test_accuracy'])}")
    prompts = select_prompts(data["test"], args.prompts_per_category)

    results, sweep, pictures = {}, [], {}
    for variant, run in runs.items():
        pipeline = ShapeGenerationPipeline.from_pretrained(runs_dir / f"diffusion_{variant}" / "pipeline")
        images = image_embeds = views = None
        if pipeline.condition_kind == "image":
            if renders is None:
                from whitebox_hf.data.shape_renders import load_shape_renders

                size = pipeline.image_encoder.config.image_size
                renders = load_shape_renders(num_per_category=data_key[0], seed=data_key[1],
                                             num_views=args.render_views, size=size)
            by_seed = {seed: row for row, seed in enumerate(renders["test"]["instance_seed"])}
            seeds = [data["test"][p["row"]]["instance_seed"] for p in prompts]
            views = np.stack([np.asarray(renders["test"][by_seed[s]]["images"], dtype=np.uint8)[0] for s in seeds])
            images = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255.0
            if alignment is not None:
                image_embeds = embed_images(alignment, torch.from_numpy(views))
        scales = [args.guidance_scale] + ([s for s in args.guidance_sweep if s != args.guidance_scale]
                                          if variant == "aligned" else [])
        for scale in scales:
            result = evaluate_variant(pipeline, vae, classifier, prompts, args.shapes_per_prompt, scale, args,
                                      images=images, image_embeds=image_embeds,
                                      keep_meshes=variant in PICTURED and scale == args.guidance_scale)
            if scale == args.guidance_scale:
                results[variant] = result
            if variant == "aligned" and (scale in args.guidance_sweep):
                sweep.append(result)
            overall = result["overall"]
            print(f"{variant} g={scale:g}: ST-S {_fmt(overall['st_s'])}, accuracy {_pct(overall['category_accuracy'])}, "
                  f"{result['seconds_per_shape']:.2f} s/shape")
        if variant in PICTURED:
            pictures[variant] = (results[variant].pop("meshes"), views)
    sweep.sort(key=lambda r: r["guidance_scale"])

    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.stem
    picture_files = {}
    for variant, (meshes, views) in pictures.items():
        shown = [i for i, p in enumerate(prompts) if i == 0 or prompts[i - 1]["category"] != p["category"]]
        rows = [(prompts[i]["caption"], None if views is None else views[i], meshes[i]) for i in shown]
        path = output.with_name(f"{stem}_{variant}.png")
        render_grid(rows, path)
        picture_files[variant] = path.name

    overall = {v: r["overall"] for v, r in results.items()}
    verdicts = [alignment_verdict((overall.get("aligned") or {}).get("st_s"),
                                  (overall.get("unaligned") or {}).get("st_s")),
                guidance_verdict([r["guidance_scale"] for r in sweep],
                                 [r["overall"]["category_accuracy"] for r in sweep])]
    verdicts += [line for line in (
        comparison_line("Cross-attention vs in-context conditioning", "cross_attention", "aligned", results),
        comparison_line("White-box (MSSA + ISTA) vs transformer denoiser", "crate", "aligned", results)) if line]

    grid = 2**args.octree_depth + 1
    lines = [
        "# Text/image-to-3D: aligned shape latent diffusion (issue 14)",
        "",
        f"Generated by `{command}` from `{_shown(runs_dir, ROOT)}/diffusion_<variant>/` (`pipeline/`, `metrics.json`; "
        "`training/run_shape_generation_comparison.sh` trains them).",
        "",
        f"Prompts: {len(prompts)} distinct held-out **test** captions ({args.prompts_per_category} per category) of "
        f"`load_procedural_shapes({data_key[0]}, seed={data_key[1]})`; the image run is conditioned on view 0 of the "
        f"render of the test shape each caption belongs to. {args.shapes_per_prompt} shapes per prompt, shape k seeded "
        f"{args.seed} + k for every run and scale; DDIM, {args.num_inference_steps} steps; guidance "
        f"{args.guidance_scale:g} unless stated; decoded on a {grid}³ grid over [-1.1, 1.1]³; "
        f"{args.num_surface_points:,} points sampled on each generated mesh.",
        "",
        "**ST-S / SI-S are measured in the aligned space for every variant**: each generated mesh is re-encoded by "
        f"the *aligned* SITA-VAE's encoder (`{_shown(vae_path, runs_dir)}`), also for the run that diffuses in the "
        "unaligned VAE's latent space, and compared (cosine) with its caption's frozen-MiniLM embedding (ST-S) or "
        "its input render's LIFT image embedding (SI-S). The mean is over the shapes with a surface.",
        "",
        f"Category accuracy: judged by a PointNet trained on the surface points of the "
        f"{classifier_metrics['num_train_shapes']} real training shapes (`whitebox_hf.evaluation."
        f"point_cloud_classifier`, {classifier_metrics['epochs']} epochs, {classifier_metrics['train_seconds']:.0f} s); "
        f"its own accuracy on the {classifier_metrics['num_test_shapes']} held-out real test shapes is "
        f"**{_pct(classifier_metrics['test_accuracy'])}**. A generated shape without a surface counts as wrong. "
        "Diversity: mean pairwise Chamfer-L1 between the shapes of one prompt (higher: more varied).",
        "",
        "## Runs",
        "",
        "| variant | condition | conditioning | blocks | parameters | steps | train time | s per shape here |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, run in runs.items():
        seconds = run.get("train_seconds_total", run.get("train_seconds_this_run"))
        lines.append(f"| {VARIANTS[variant]} | {run.get('condition', '?')} | {run.get('conditioning', '?')} "
                     f"| {run.get('block_type', '?')} | {run.get('num_parameters', 0) / 1e6:.2f} M "
                     f"| {run.get('steps', '?')} | {_fmt(None if seconds is None else seconds / 60, 1)} min "
                     f"| {results[variant]['seconds_per_shape']:.2f} |")
    lines += ["", *(f"- {note}" for note in notes), ""] if notes else [""]
    lines += [f"## Generated shapes (guidance {args.guidance_scale:g})", "",
              "| variant | shapes | ST-S | SI-S | category accuracy | diversity | no surface |",
              "|---|---|---|---|---|---|---|"]
    for variant, result in results.items():
        o = result["overall"]
        lines.append(f"| {VARIANTS[variant]} | {o['num_shapes']} | {_fmt(o['st_s'])} | {_fmt(o['si_s'])} "
                     f"| {_pct(o['category_accuracy'])} | {_fmt(o['diversity'], 4)} | {_pct(o['no_surface_fraction'])} |")
    if sweep:
        lines += ["", f"## Guidance sweep ({VARIANTS['aligned']})", "",
                  "| guidance | ST-S | category accuracy | diversity | no surface | s per shape |",
                  "|---|---|---|---|---|---|"]
        for result in sweep:
            o = result["overall"]
            lines.append(f"| {result['guidance_scale']:g} | {_fmt(o['st_s'])} | {_pct(o['category_accuracy'])} "
                         f"| {_fmt(o['diversity'], 4)} | {_pct(o['no_surface_fraction'])} "
                         f"| {result['seconds_per_shape']:.2f} |")
    first = "aligned" if "aligned" in results else next(iter(results))
    lines += ["", f"## Per prompt ({VARIANTS[first]}, guidance {args.guidance_scale:g})", "",
              "| caption | category | ST-S | category accuracy | predicted | diversity | no surface |",
              "|---|---|---|---|---|---|---|"]
    for p in results[first]["per_prompt"]:
        predicted = ", ".join(x or "none" for x in p["predicted"])
        lines.append(f"| {p['caption']} | {p['category']} | {_fmt(p['st_s'])} | {_pct(p['category_accuracy'])} "
                     f"| {predicted} | {_fmt(p['diversity'], 4)} | {_pct(p['no_surface_fraction'])} |")
    lines += ["", "## Verdicts", "", *(f"- {line}" for line in verdicts), ""]
    if picture_files:
        lines += ["## Pictures", ""]
        for variant, name in picture_files.items():
            lines += [f"{VARIANTS[variant]}: the first prompt of each category, up to {MAX_PICTURE_COLUMNS} of its "
                      "shapes" + (" (left: the input render)" if variant == "image" else "") + ".", "",
                      f"![generated shapes, {variant}]({name})", ""]
    elapsed = time.time() - begin
    lines += [f"Report time: {elapsed / 60:.1f} min on this machine.", ""]
    output.write_text("\n".join(lines))
    output.with_name(f"{stem}.json").write_text(json.dumps(_json_ready({
        "command": command, "settings": {k: v for k, v in vars(args).items()
                                         if k not in ("runs_dir", "output", "vae_model", "alignment_model",
                                                      "classifier_dir")},
        "prompts": prompts, "classifier": classifier_metrics, "runs": runs, "results": results, "guidance_sweep": sweep,
        "verdicts": verdicts, "notes": notes, "report_seconds": elapsed,
    }), indent=2) + "\n")
    return output


if __name__ == "__main__":
    print(main())
