"""The reconstruction scores of `whitebox_hf.evaluation.shape_reconstruction`: 1 and 0 where they must be, inf for
a field without a surface, NaN IoU without an inside, and bad inputs refused by name."""

import math

import numpy as np
import pytest
import torch
import trimesh

from whitebox_hf.data.shapes import load_procedural_shapes
from whitebox_hf.evaluation.shape_reconstruction import (
    cgal_reconstruction_scores,
    procedural_reconstruction_scores,
    reconstruction_scores,
    render_reconstructions,
    summarise_scores,
)
from whitebox_hf.models.sita_vae import SitaVaeConfig, SitaVaeModel


class SphereDecoder(torch.nn.Module):
    """A stand-in decoder: the "latent" is a radius (the first coordinate's norm of the input cloud's first point),
    the logits ``sign · (radius − |q|)``, i.e. exactly a sphere's occupancy (or its complement)."""

    def __init__(self, sign=1.0, offset=0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.sign, self.offset = sign, offset

    def encode(self, points, sample_posterior=None):
        radius = points[:, :1, :3].norm(dim=-1, keepdim=True)  # (B, 1, 1)
        return type("Encoded", (), {"latents": radius})()

    def decode(self, latents, queries):
        return self.sign * (latents[:, :, 0] - queries.norm(dim=-1)) + self.offset


def sphere_cloud(radius, count=512, seed=0):
    rng = np.random.default_rng(seed)
    normals = rng.standard_normal((count, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return torch.from_numpy(np.concatenate([radius * normals, normals], axis=1)).float()[None], radius * normals


def inside_sphere(radius):
    return lambda points: np.linalg.norm(points, axis=1) < radius


def test_an_exact_decoder_scores_one_and_its_complement_zero():
    cloud, reference = sphere_cloud(0.6, count=20_000)
    model = SphereDecoder().train()
    (exact,) = reconstruction_scores(model, cloud, [inside_sphere(0.6)], [reference], grid_depth=4)
    assert exact["iou"] == 1.0
    # Marching cubes of the exact field on a 17³ grid: within ~0.01 of the sphere, so the F-score at 0.02 is ~1.
    assert exact["has_surface"] and exact["f_score"] > 0.97 and exact["chamfer_l1"] < 0.01
    assert exact["vertices"].shape[1] == 3 and exact["faces"].shape[1] == 3
    assert model.training  # the model's mode is restored
    (inverted,) = reconstruction_scores(SphereDecoder(sign=-1.0), cloud, [inside_sphere(0.6)], [reference],
                                        grid_depth=4)
    assert inverted["iou"] == 0.0


def test_a_field_without_surface_has_infinite_chamfer_and_no_inside_gives_nan_iou():
    cloud, reference = sphere_cloud(0.6)
    (empty,) = reconstruction_scores(SphereDecoder(offset=-10.0), cloud, [inside_sphere(0.6)], [reference],
                                     grid_depth=3)
    assert not empty["has_surface"] and math.isinf(empty["chamfer_l1"]) and empty["f_score"] == 0.0
    assert empty["iou"] == 0.0 and empty["vertices"] is None
    (open_mesh,) = reconstruction_scores(SphereDecoder(), cloud, [None], [reference], grid_depth=3)
    assert math.isnan(open_mesh["iou"]) and math.isfinite(open_mesh["chamfer_l1"])
    summary = summarise_scores([empty, open_mesh])
    assert summary["iou"] == 0.0 and math.isinf(summary["chamfer_l1"]) and summary["num_without_surface"] == 1


def test_precomputed_grid_labels_score_like_the_callable():
    cloud, reference = sphere_cloud(0.5)
    axis = np.linspace(-1, 1, 9)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    labels = np.linalg.norm(grid, axis=-1) < 0.5
    by_grid, by_fn = (reconstruction_scores(SphereDecoder(sign=1.0, offset=0.1), cloud, [occ], [reference],
                                            grid_depth=3, keep_meshes=False)[0]
                      for occ in (labels, inside_sphere(0.5)))
    assert by_grid == by_fn and 0 < by_grid["iou"] < 1


@pytest.mark.parametrize("kwargs, name", [
    (dict(surface_points=torch.zeros(1, 8, 3)), "`surface_points`"),
    (dict(occupancy_fns=[]), "`occupancy_fns`"),
    (dict(occupancy_fns=[lambda p: (np.linalg.norm(p, axis=1) < 0.5).astype(np.uint8)]), r"`occupancy_fns\[0\]`"),
    (dict(reference_surfaces=[np.zeros((4, 2))]), r"`reference_surfaces\[0\]`"),
    (dict(grid_depth=0), "`grid_depth`"),
    (dict(bound=-1.0), "`bound`"),
    (dict(f_score_threshold=0), "`f_score_threshold`"),
])
def test_bad_inputs_are_refused_by_name(kwargs, name):
    cloud, reference = sphere_cloud(0.5, count=16)
    arguments = dict(surface_points=cloud, occupancy_fns=[inside_sphere(0.5)], reference_surfaces=[reference],
                     grid_depth=3, **{})
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=name):
        reconstruction_scores(SphereDecoder(), **arguments)


def tiny_model():
    torch.manual_seed(0)
    return SitaVaeModel(SitaVaeConfig(num_latents=4, hidden_size=16, num_attention_heads=2, num_encoder_layers=1,
                                      num_decoder_layers=1, latent_channels=4, num_fourier_frequencies=2,
                                      alignment_dim=8))


def test_procedural_and_mesh_tables_of_a_real_model(tmp_path):
    model = tiny_model()
    shapes = load_procedural_shapes(4, 0, categories=["table", "mug"], num_surface_points=128,
                                    num_volume_queries=8, num_near_queries=8)["train"]
    result = procedural_reconstruction_scores(model, shapes, grid_depth=3, num_reference_points=128)
    assert set(result["per_category"]) == {"table", "mug"}
    assert result["overall"]["num_shapes"] == len(shapes) == len(result["per_shape"])
    assert all(0.0 <= s["iou"] <= 1.0 for s in result["per_shape"])
    assert sum("vertices" in s for s in result["per_shape"]) == 2  # one mesh kept per category
    meshes = {"sphere": trimesh.creation.icosphere(subdivisions=2, radius=0.8)}
    bowl = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    bowl.update_faces(bowl.vertices[bowl.faces].mean(axis=1)[:, 2] < 0.4)  # a cap cut off: too big a hole to fill
    meshes["bowl"] = bowl
    table = cgal_reconstruction_scores(model, meshes, grid_depth=3, num_surface_points=128,
                                       num_reference_points=128)
    assert table["per_mesh"]["sphere"]["watertight"] and 0 <= table["per_mesh"]["sphere"]["iou"] <= 1
    assert not table["per_mesh"]["bowl"]["watertight"] and math.isnan(table["per_mesh"]["bowl"]["iou"])
    assert math.isfinite(table["per_mesh"]["bowl"]["f_score"])
    assert table["overall"]["iou"] == table["per_mesh"]["sphere"]["iou"]  # the mean over meshes with an inside
    with pytest.raises(ValueError, match="`split_dataset`"):
        procedural_reconstruction_scores(model, [1, 2], grid_depth=3)
    with pytest.raises(ValueError, match="`meshes`"):
        cgal_reconstruction_scores(model, {}, grid_depth=3)
    # Pictures: one PNG, input and reconstruction side by side.
    shown = [s for s in result["per_shape"] if "vertices" in s]
    sphere = meshes["sphere"]
    pairs = [("sphere", (sphere.vertices, sphere.faces), (sphere.vertices * 0.9, sphere.faces)),
             ("empty", (sphere.vertices, sphere.faces), None)]
    pairs += [(s["category"], (sphere.vertices, sphere.faces),
               None if s["vertices"] is None else (s["vertices"], s["faces"])) for s in shown]
    render_reconstructions(pairs, tmp_path / "pairs.png")
    assert (tmp_path / "pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="`pairs`"):
        render_reconstructions([], tmp_path / "none.png")
