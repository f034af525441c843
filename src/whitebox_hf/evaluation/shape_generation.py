"""Alignment of generated shapes with their conditions (spec ``threed_and_motion.md`` §1.4, §4): sample shapes with a
`ShapeGenerationPipeline`, sample points with normals on each marching-cubes mesh, re-encode them with the SITA-VAE
to its shape embedding, and score the cosine similarity with the condition's embedding in the alignment space:
ST-S against the caption's frozen MiniLM embedding, SI-S against the LIFT image embedding of the render.

Used by ``training/train_shape_diffusion.py`` at the end of a run and by the results scripts. The re-encoding is
what makes the score about the *shape*: it never looks at the latents the sampler produced, only at the surface
that the decoder made of them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["generated_shape_embeddings", "mesh_surface_samples", "shape_alignment_scores"]


def mesh_surface_samples(mesh, num_points: int, seed: int = 0) -> torch.Tensor:
    """``(num_points, 6)`` float32: points drawn uniformly by area on a `trimesh.Trimesh`, then the unit normals of
    the faces they lie on (the SITA-VAE's input layout: xyz then normals; `whitebox_hf.evaluation.shapes.
    sample_mesh_surface` gives the points only).

    Raises:
        ValueError: ``num_points`` is not a positive integer, or the mesh has no faces.
    """
    import trimesh.sample

    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points <= 0:
        raise ValueError(f"`num_points` must be a positive integer, got {num_points!r}")
    if len(getattr(mesh, "faces", ())) == 0:
        raise ValueError("`mesh` must have at least one face, got an empty mesh")
    points, faces = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    normals = np.asarray(mesh.face_normals)[faces]
    return torch.from_numpy(np.concatenate([points, normals], axis=1).astype(np.float32))


@torch.no_grad()
def generated_shape_embeddings(pipeline, vae, prompts: list[str] | None = None, images: torch.Tensor | None = None,
                               num_surface_points: int = 2048, seed: int = 0, **call_kwargs):
    """Generate one shape per prompt (text pipeline) or per image ``(n, C, H, W)`` in [0, 1] (image pipeline), one
    generator per shape seeded ``seed + i`` (so a subset reproduces), and re-encode each mesh's surface samples with
    ``vae`` (posterior mean). ``call_kwargs`` go to the pipeline (``num_inference_steps``, ``guidance_scale``,
    ``octree_depth``, ...).

    Returns:
        ``(shape_embeds (n, d) float32, has_surface (n,) bool)``; rows without a surface (the decoded field has no
        level-0 crossing) are zero.

    Raises:
        ValueError: neither or both of ``prompts`` and ``images``.
    """
    if (prompts is None) == (images is None):
        raise ValueError("give exactly one of `prompts` and `images`, got " + ("neither" if prompts is None else "both"))
    count = len(prompts) if prompts is not None else len(images)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(count)]
    condition = {"prompt": list(prompts)} if prompts is not None else {"image": images}
    meshes = pipeline(**condition, generator=generators, output_type="mesh", **call_kwargs).shapes
    device = next(vae.parameters()).device
    embeds = torch.zeros(count, vae.config.alignment_dim)
    has_surface = torch.tensor([mesh is not None and len(mesh.faces) > 0 for mesh in meshes])
    for index, mesh in enumerate(meshes):
        if has_surface[index]:
            points = mesh_surface_samples(mesh, num_surface_points, seed=seed + index)[None].to(device, vae.dtype)
            embeds[index] = vae.encode(points, sample_posterior=False).shape_embeds[0].float().cpu()
    return embeds, has_surface


def shape_alignment_scores(shape_embeds: torch.Tensor, has_surface: torch.Tensor,
                           text_embeds: torch.Tensor | None = None,
                           image_embeds: torch.Tensor | None = None) -> dict:
    """Mean cosine similarity of each generated shape with its own condition's embedding, over the shapes that have
    a surface: ``st_s`` (text: MiniLM caption embeddings ``(n, d)``) and/or ``si_s`` (LIFT image embeddings
    ``(n, d)``), with ``num_shapes`` and ``num_without_surface`` (a shape without a surface has no embedding, so
    it is counted, not scored). A score is None when no shape has a surface.

    Raises:
        ValueError: an embedding set whose shape differs from ``shape_embeds``', or ``has_surface`` of another
            length.
    """
    if has_surface.shape != (shape_embeds.shape[0],):
        raise ValueError(f"`has_surface` must have shape ({shape_embeds.shape[0]},), got {tuple(has_surface.shape)}")
    scores = {"num_shapes": int(shape_embeds.shape[0]), "num_without_surface": int((~has_surface).sum())}
    for key, targets in (("st_s", text_embeds), ("si_s", image_embeds)):
        if targets is None:
            continue
        if targets.shape != shape_embeds.shape:
            raise ValueError(f"the `{key}` targets must have shape {tuple(shape_embeds.shape)}, got "
                             f"{tuple(targets.shape)}")
        if not has_surface.any():
            scores[key] = None
            continue
        cosine = F.cosine_similarity(shape_embeds[has_surface].float(), targets[has_surface].float(), dim=-1)
        scores[key] = cosine.mean().item()
    return scores
