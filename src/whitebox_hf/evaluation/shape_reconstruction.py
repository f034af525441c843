"""Reconstruction scores of a SITA-VAE (issue 13; spec ``threed_and_motion.md`` §4: "held-out occupancy IoU on a
33³ or 65³ grid"), one definition for the training script, the results page and the model card.

Per shape, the surface points are encoded (posterior mean), the occupancy logits decoded on the ``(2^d + 1)³`` grid
over ``[-bound, bound]³`` (`whitebox_hf.models.sita_vae.dense_query_grid`, in chunks, no grad, eval mode), and

- ``iou``: volumetric IoU of ``logit > 0`` against the exact occupancy at the same grid points (the analytic SDF of
  a procedural shape, the winding number of a watertight mesh). A shape whose labels and prediction are both empty
  scores 1 (as ``training/train_sita_vae.py``); a shape with no exact inside (an open mesh) scores NaN.
- ``chamfer_l1`` and ``f_score``: between points sampled uniformly on the marching-cubes mesh of the decoded grid
  and reference points on the true surface (`whitebox_hf.evaluation.shapes`). **A decoded field with no surface
  (never crossing 0 on the grid) has no mesh: its Chamfer-L1 is ``inf`` and its F-score 0**, so a mean over shapes
  is ``inf`` whenever one reconstruction is empty; tables count such shapes (``num_without_surface``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ..models.sita_vae import dense_query_grid, meshes_from_occupancy_grid
from .shapes import chamfer_distance, f_score, sample_mesh_surface, volumetric_iou

# Points sampled on each surface for Chamfer-L1 and F-score. Two independent samples of a perfect reconstruction
# are apart by about half the sample spacing, ~0.5·sqrt(area / K): with K = 30,000 on a shape of area ~4 that is
# ~0.006, well under the F-score's 0.02, so the scores measure the surfaces, not the sampling (4,096 would leave
# a perfect reconstruction an F-score near 0.7).
REFERENCE_POINTS = 30_000

__all__ = ["REFERENCE_POINTS", "cgal_reconstruction_scores", "procedural_reconstruction_scores", "reconstruction_scores",
           "summarise_scores"]


def _check_depth(grid_depth) -> None:
    if isinstance(grid_depth, bool) or not isinstance(grid_depth, int) or not 1 <= grid_depth <= 8:
        raise ValueError(f"`grid_depth` must be an integer in [1, 8] (a (2^d + 1)³ grid), got {grid_depth!r}")


def _check_positive(name: str, value, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a {'positive integer' if integer else 'finite number > 0'}, "
                         f"got {value!r}")


def _exact_labels(name: str, occupancy, grid: np.ndarray) -> np.ndarray | None:
    """The exact ``(G, G, G)`` labels from a callable, a precomputed grid, or None (no inside is defined)."""
    if occupancy is None:
        return None
    size = grid.shape[0]
    if callable(occupancy):
        labels = occupancy(grid.reshape(-1, 3))
        if not isinstance(labels, np.ndarray) or labels.dtype != np.bool_ or labels.shape != (size**3,):
            raise ValueError(f"`{name}` must map points (M, 3) to a boolean array (M,), got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')} "
                             f"for M = {size**3}")
        return labels.reshape(size, size, size)
    if isinstance(occupancy, np.ndarray) and occupancy.dtype == np.bool_ and occupancy.shape == (size,) * 3:
        return occupancy
    raise ValueError(f"`{name}` must be a callable points (M, 3) -> bool (M,), a boolean ({size}, {size}, {size}) "
                     f"grid or None, got {type(occupancy).__name__} {getattr(occupancy, 'shape', '')}")


def reconstruction_scores(model, surface_points: torch.Tensor, occupancy_fns: Sequence, reference_surfaces: Sequence,
                          grid_depth: int = 6, bound: float = 1.0, f_score_threshold: float = 0.02,
                          num_mesh_points: int | None = None, chunk_size: int = 20_000, seed: int = 0,
                          keep_meshes: bool = True) -> list[dict]:
    """Scores of each shape of ``surface_points`` ``(B, N, 6)`` (xyz then normals) reconstructed by ``model`` (a
    `SitaVaeModel`, or anything with its ``encode(points, sample_posterior=False).latents`` and
    ``decode(latents, queries)``).

    Args:
        occupancy_fns: B exact occupancies: a callable mapping grid points ``(M, 3)`` float64 to a boolean ``(M,)``,
            a boolean ``(G, G, G)`` array of the labels on the grid already, or None where no inside is defined.
        reference_surfaces: B arrays ``(K, 3)`` of points on the true surfaces.
        grid_depth: the grid has ``G = 2^grid_depth + 1`` points a side (6: 65³).
        f_score_threshold: the F-score's distance (in the unit of the shapes, which span 1.8).
        num_mesh_points: points sampled on a reconstructed mesh (default: as many as its reference).
        keep_meshes: include ``vertices``/``faces`` (None without a surface) in each result, for pictures.

    Returns:
        One dict per shape: ``iou``, ``chamfer_l1``, ``f_score``, ``has_surface`` (and ``vertices``, ``faces``).

    Raises:
        ValueError: a tensor, a length or a setting is wrong (named).
    """
    for method in ("encode", "decode"):
        if not callable(getattr(model, method, None)):
            raise TypeError(f"`model` must have an `{method}` method (a SitaVaeModel), got {type(model).__name__}")
    if not isinstance(surface_points, torch.Tensor) or surface_points.ndim != 3 or surface_points.shape[-1] != 6 \
            or surface_points.shape[0] == 0:
        raise ValueError(f"`surface_points` must be a (B, N, 6) tensor (xyz then normals), got "
                         f"{tuple(surface_points.shape) if isinstance(surface_points, torch.Tensor) else type(surface_points).__name__}")
    count = surface_points.shape[0]
    for name, value in (("occupancy_fns", occupancy_fns), ("reference_surfaces", reference_surfaces)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != count:
            raise ValueError(f"`{name}` must be a sequence of one entry per shape ({count}), got "
                             f"{len(value) if isinstance(value, Sequence) else type(value).__name__}")
    _check_depth(grid_depth)
    _check_positive("bound", bound)
    _check_positive("f_score_threshold", f_score_threshold)
    _check_positive("chunk_size", chunk_size, integer=True)
    if num_mesh_points is not None:
        _check_positive("num_mesh_points", num_mesh_points, integer=True)
    references = []
    for index, reference in enumerate(reference_surfaces):
        reference = np.asarray(reference)
        if reference.ndim != 2 or reference.shape[1] != 3 or len(reference) == 0 or not np.isfinite(reference).all():
            raise ValueError(f"`reference_surfaces[{index}]` must be finite points (K, 3) with K >= 1, got "
                             f"{reference.shape}")
        references.append(reference)

    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = parameter.device if parameter is not None else surface_points.device
    dtype = parameter.dtype if parameter is not None else torch.float32
    grid = dense_query_grid(grid_depth, float(bound), device=device, dtype=dtype)
    size = grid.shape[0]
    queries = grid.reshape(1, -1, 3)
    grid_numpy = grid.double().cpu().numpy()
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    results = []
    try:
        with torch.no_grad():
            for index in range(count):
                latents = model.encode(surface_points[index:index + 1].to(device, dtype),
                                       sample_posterior=False).latents
                logits = torch.cat([model.decode(latents, queries[:, start:start + chunk_size]).float().cpu()
                                    for start in range(0, queries.shape[1], chunk_size)], dim=1)
                logits = logits.view(1, size, size, size)
                if not torch.isfinite(logits).all():
                    raise ValueError(f"the model decoded non-finite logits for shape {index}")
                labels = _exact_labels(f"occupancy_fns[{index}]", occupancy_fns[index], grid_numpy)
                predicted = (logits[0] > 0).numpy()
                if labels is None:
                    iou = float("nan")
                elif not (predicted.any() or labels.any()):
                    iou = 1.0
                else:
                    iou = volumetric_iou(predicted, labels)
                mesh = meshes_from_occupancy_grid(logits, float(bound))[0]
                result = {"iou": iou, "has_surface": mesh is not None}
                if mesh is None:
                    result.update(chamfer_l1=float("inf"), f_score=0.0)
                else:
                    points = sample_mesh_surface(mesh[0], mesh[1], num_mesh_points or len(references[index]),
                                                 seed=seed + index)
                    result.update(chamfer_l1=chamfer_distance(points, references[index]),
                                  f_score=f_score(points, references[index], f_score_threshold))
                if keep_meshes:
                    result.update(vertices=None if mesh is None else mesh[0], faces=None if mesh is None else mesh[1])
                results.append(result)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return results


def summarise_scores(scores: Sequence[Mapping]) -> dict:
    """Means of ``iou`` (over the shapes where it is defined), ``chamfer_l1`` (``inf`` when a shape has no surface)
    and ``f_score``, with ``num_shapes`` and ``num_without_surface``."""
    if not scores:
        raise ValueError("`scores` must hold at least one shape's scores, got none")
    ious = [s["iou"] for s in scores if not math.isnan(s["iou"])]
    return {"iou": float(np.mean(ious)) if ious else float("nan"),
            "chamfer_l1": float(np.mean([s["chamfer_l1"] for s in scores])),
            "f_score": float(np.mean([s["f_score"] for s in scores])),
            "num_shapes": len(scores), "num_without_surface": sum(not s["has_surface"] for s in scores)}


def _surface_tensor(rows) -> torch.Tensor:
    return torch.cat([torch.as_tensor(np.asarray(rows["surface_points"], dtype=np.float32)),
                      torch.as_tensor(np.asarray(rows["surface_normals"], dtype=np.float32))], dim=-1)


def procedural_reconstruction_scores(model, split_dataset, grid_depth: int = 6, bound: float = 1.0,
                                     f_score_threshold: float = 0.02, num_reference_points: int = REFERENCE_POINTS,
                                     batch_size: int = 8, keep_meshes: int = 1) -> dict:
    """`reconstruction_scores` of every procedural shape of ``split_dataset`` (a split of
    `whitebox_hf.data.load_procedural_shapes`), labels from each shape's exact SDF (rebuilt by `make_shape` from
    its ``parameters``) and reference points freshly sampled on its exact surface (not the encoder's input).

    Returns ``{"per_shape": [...], "per_category": {category: summary}, "overall": summary}`` (`summarise_scores`);
    each per-shape entry adds ``category``, ``caption``, ``instance_seed``, and keeps its mesh for the first
    ``keep_meshes`` shapes of each category only (memory)."""
    from ..data.shapes import make_shape

    if not hasattr(split_dataset, "column_names") or "parameters" not in split_dataset.column_names:
        raise ValueError("`split_dataset` must be a split of load_procedural_shapes (with a `parameters` column), got "
                         f"{type(split_dataset).__name__}")
    if len(split_dataset) == 0:
        raise ValueError("`split_dataset` is empty")
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("num_reference_points", num_reference_points, integer=True)
    per_shape = []
    for start in range(0, len(split_dataset), batch_size):
        rows = split_dataset[start:start + batch_size]
        shapes = [make_shape(c, json.loads(p)) for c, p in zip(rows["category"], rows["parameters"])]
        references = [shape.sample_surface(num_reference_points, np.random.default_rng([int(seed), 2]))[0]
                      for shape, seed in zip(shapes, rows["instance_seed"])]
        # Inside is sdf < 0, as Shape.occupancy, kept boolean.
        occupancy = [lambda points, shape=shape: shape.sdf(points) < 0 for shape in shapes]
        scores = reconstruction_scores(model, _surface_tensor(rows), occupancy, references, grid_depth, bound,
                                       f_score_threshold, keep_meshes=True)
        for offset, score in enumerate(scores):
            if sum(s["category"] == rows["category"][offset] for s in per_shape) >= keep_meshes:
                score.pop("vertices"), score.pop("faces")
            score.update(category=rows["category"][offset], caption=rows["caption"][offset],
                         instance_seed=int(rows["instance_seed"][offset]))
            per_shape.append(score)
    categories = list(dict.fromkeys(s["category"] for s in per_shape))
    return {"per_shape": per_shape,
            "per_category": {c: summarise_scores([s for s in per_shape if s["category"] == c]) for c in categories},
            "overall": summarise_scores(per_shape)}


def cgal_reconstruction_scores(model, meshes: Mapping, grid_depth: int = 6, bound: float = 1.0,
                               f_score_threshold: float = 0.02, num_surface_points: int = 4096,
                               num_reference_points: int = REFERENCE_POINTS, seed: int = 0, keep_meshes: int = 8,
                               label_fn: Callable | None = None) -> dict:
    """`reconstruction_scores` of real meshes ``{name: trimesh.Trimesh}`` (normalised, e.g. by
    `whitebox_hf.data.load_cgal_mesh`): the input is ``num_surface_points`` area-uniform surface points with their
    face normals, the reference an independent sample, the labels `whitebox_hf.data.meshes.grid_occupancy` (the
    winding number). A mesh that is not watertight even after `trimesh.repair.fill_holes` (on a copy) has no
    inside: its IoU is NaN, its Chamfer-L1 and F-score are still measured.

    Returns ``{"per_mesh": {name: scores + num_faces, watertight}, "overall": summary}``."""
    import trimesh

    from ..data.meshes import grid_occupancy

    if not isinstance(meshes, Mapping) or not meshes:
        raise ValueError(f"`meshes` must be a non-empty mapping of name -> trimesh.Trimesh, got {type(meshes).__name__}")
    label_fn = label_fn or grid_occupancy
    per_mesh = {}
    for index, (name, mesh) in enumerate(meshes.items()):
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ValueError(f"`meshes[{name!r}]` must be a trimesh.Trimesh with faces, got {type(mesh).__name__}")
        closed = mesh
        if not mesh.is_watertight:
            closed = mesh.copy()
            trimesh.repair.fill_holes(closed)
        labels = label_fn(closed, grid_depth, float(bound)) if closed.is_watertight else None
        rng = np.random.default_rng([seed, index])
        points, face_index = trimesh.sample.sample_surface(mesh, num_surface_points, seed=rng)
        surface = np.concatenate([points, mesh.face_normals[face_index]], axis=-1).astype(np.float32)
        reference, _ = trimesh.sample.sample_surface(mesh, num_reference_points, seed=rng)
        score = reconstruction_scores(model, torch.from_numpy(surface)[None], [labels], [reference], grid_depth, bound,
                                      f_score_threshold, seed=seed + index, keep_meshes=index < keep_meshes)[0]
        score.update(num_faces=len(mesh.faces), watertight=bool(closed.is_watertight))
        per_mesh[name] = score
    return {"per_mesh": per_mesh, "overall": summarise_scores(list(per_mesh.values()))}


def _draw_mesh(axis, vertices, faces, colour) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    triangles = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    light = np.array([0.4, -0.5, 0.77])
    # Two-sided Lambert shading: marching-cubes and scanned meshes do not agree on which way faces point.
    shade = 0.3 + 0.7 * np.abs(normals @ (light / np.linalg.norm(light)))
    axis.add_collection3d(Poly3DCollection(triangles, facecolors=np.asarray(colour)[None] * shade[:, None],
                                           edgecolors="none"))


def render_reconstructions(pairs: Sequence, path, bound: float = 1.0, max_faces: int = 30_000) -> None:
    """One PNG of ``pairs`` side by side, one row each: ``(title, (vertices, faces) of the input, (vertices, faces)
    of the reconstruction or None)``, drawn with matplotlib (shaded triangles, the same view and
    ``[-bound, bound]³`` box for both). A mesh of more than ``max_faces`` faces is drawn from an even subset of its
    faces (the picture is small; the scores use every face)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise ValueError(f"`pairs` must be a non-empty sequence of (title, input mesh, reconstruction), got {pairs!r}")
    _check_positive("bound", bound)
    _check_positive("max_faces", max_faces, integer=True)
    figure = plt.figure(figsize=(4.4, 2.2 * len(pairs)))
    for row, pair in enumerate(pairs):
        if not isinstance(pair, Sequence) or len(pair) != 3:
            raise ValueError(f"`pairs[{row}]` must be (title, (vertices, faces), (vertices, faces) or None), got {pair!r}")
        title, truth, reconstruction = pair
        for column, (mesh, label, colour) in enumerate(((truth, "input", (0.55, 0.7, 0.9)),
                                                        (reconstruction, "reconstruction", (0.95, 0.7, 0.45)))):
            axis = figure.add_subplot(len(pairs), 2, 2 * row + column + 1, projection="3d")
            if mesh is not None:
                vertices, faces = mesh
                faces = np.asarray(faces)
                if len(faces) > max_faces:
                    faces = faces[:: math.ceil(len(faces) / max_faces)]
                # y up in the shapes' frame: draw (x, z, y) so matplotlib's vertical z axis is the shapes' y.
                _draw_mesh(axis, np.asarray(vertices)[:, [0, 2, 1]], faces, colour)
            else:
                axis.text(0, 0, 0, "no surface", ha="center")
            axis.set_xlim(-bound, bound), axis.set_ylim(-bound, bound), axis.set_zlim(-bound, bound)
            axis.set_box_aspect((1, 1, 1))
            axis.view_init(elev=20, azim=-60)
            axis.set_axis_off()
            axis.set_title(f"{title}: {label}" if column == 0 else label, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
