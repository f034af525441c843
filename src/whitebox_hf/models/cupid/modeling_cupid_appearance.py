"""PyTorch Cupid stage 2: a rectified-flow DiT over per-voxel colour with pose-aligned conditioning (spec
threed_and_motion.md §2.5; cupid3d/Cupid ``cupid/models/structured_latent_flow.py``).

    voxel centres x_i ─(K, R, t)→ u_i ∈ [0, 1]² (clamped)
    image ─CrateModel→ patch tokens ─grid_sample at u_i→ LN → Linear → observed (8 per voxel)
    image ─[Conv3×3 → SiLU] × 4→ maps; [RGB ‖ maps] ─grid_sample at u_i→ pixel features (3 + 16 per voxel)
    [noisy colour ‖ occupancy ‖ observed ‖ pixel] (zero at empty voxels) ─Conv3d patches→ DiT blocks (cross-attending
    to the global image tokens) → velocity of the colour (B, C, R, R, R)

The appearance *target* of the procedural-shape renders is `shaded_voxel_colors` (see its docstring), and
`render_voxel_colors` draws coloured voxels at a camera (the input-view re-rendering the evaluation scores).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...utils.validation import (
    check_finite_tensor,
    check_floating_tensor,
    check_positive_int,
    check_tensor,
)
from ..crate.modeling_crate import CrateModel
from ..modeling_utils import WhiteboxPreTrainedModel
from .configuration_cupid_appearance import CupidAppearanceConfig
from .modeling_cupid_flow import (
    CupidFlowBlock,
    _Modulation,
    _modulate,
    flow_matching_target,
    init_dit_weights,
    interpolate_flow_path,
    sample_logit_normal_timesteps,
)
from .uv_cube import voxel_grid_points

__all__ = [
    "CupidAppearanceCondition",
    "CupidAppearanceModel",
    "CupidAppearanceOutput",
    "CupidAppearancePreTrainedModel",
    "project_voxel_centers",
    "render_voxel_colors",
    "shaded_voxel_colors",
    "voxel_normals",
    "voxel_view_colors",
]


# -- the appearance target of the renders ---------------------------------------------------------------------------

def voxel_normals(sdf, occupied: torch.Tensor, extent: float = 2.0, step: float = 1e-4) -> torch.Tensor:
    """World-space unit normals ``(3, R, R, R)`` float32 at the centres of the ``occupied`` voxels ``(R, R, R)``
    (bool; zero elsewhere): the normalised central-difference gradient of ``sdf`` (float64 array ``(M, 3)`` →
    ``(M,)``, e.g. `Shape.sdf`) with the renderer's step, so that a voxel on the surface gets the normal the renderer
    shades with. Where the gradient vanishes (a medial point deep inside) the normal is zero."""
    import numpy as np

    if not callable(sdf):
        raise TypeError(f"`sdf` must be callable (points (M, 3) -> distances (M,)), got {type(sdf).__name__}")
    if not isinstance(occupied, torch.Tensor) or occupied.dtype != torch.bool or occupied.ndim != 3:
        raise ValueError(f"`occupied` must be a bool tensor (R, R, R), got "
                         f"{getattr(occupied, 'dtype', type(occupied).__name__)}")
    resolution = occupied.shape[0]
    _, centres = voxel_grid_points(resolution, extent)
    flat = occupied.reshape(-1)
    points = centres[flat].numpy()
    normals = torch.zeros(resolution**3, 3, dtype=torch.float64)
    if points.shape[0]:
        offsets = step * np.eye(3)
        gradient = np.stack([np.asarray(sdf(points + offsets[a])) - np.asarray(sdf(points - offsets[a]))
                             for a in range(3)], axis=-1)
        gradient = torch.from_numpy(gradient.astype(np.float64))
        normals[flat] = gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return normals.T.reshape(3, resolution, resolution, resolution).float()


def shaded_voxel_colors(normals: torch.Tensor, rotation: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """The colour ``(B, channels, R, R, R)`` in [0, 1] every voxel of normals ``(B, 3, R, R, R)`` (`voxel_normals`)
    has under the lighting of the view with world-to-camera rotations ``rotation`` ``(B, 3, 3)``.

    Why this target: the renders of `load_shape_renders` carry no texture. Their only appearance signal is
    Lambertian shading by a light fixed in the *camera* frame, with a grey albedo
    (`whitebox_hf.data.rendering.render_sdf`: ``albedo · (ambient + (1 − ambient)·max(0, n·l))``). This is that
    formula, with the renderer's own constants, evaluated at the voxel's normal and the input view's light: exactly
    the colour the renderer gives a surface through the voxel centre, defined at every occupied voxel (hidden ones
    too), where sampling the input image would only give the visible ones and blur them with their neighbours. The
    colour is view-dependent (the light moves with the camera), which the pose-aligned condition can see; a
    coloured mesh made from it has the input view's shading baked in."""
    from ...data.rendering import _ALBEDO, _LIGHT_DIRECTION_CAMERA, render_sdf

    check_tensor("normals", normals, ndim=5, shape_doc="(batch, 3, R, R, R)")
    check_tensor("rotation", rotation, ndim=3, shape_doc="(batch, 3, 3)")
    if normals.shape[1] != 3 or tuple(rotation.shape) != (normals.shape[0], 3, 3):
        raise ValueError(f"`normals` (B, 3, R, R, R) and `rotation` (B, 3, 3) must match, got "
                         f"{tuple(normals.shape)} and {tuple(rotation.shape)}")
    # The renderer's own constants (its default ambient term, light and albedo), so the target cannot drift from it.
    ambient = inspect.signature(render_sdf).parameters["ambient"].default
    light = torch.tensor(_LIGHT_DIRECTION_CAMERA, dtype=torch.float64)
    light = rotation.double().transpose(1, 2) @ (light / light.norm())  # camera frame → world frame, (B, 3)
    cosine = torch.einsum("bc,bcijk->bijk", light, normals.double()).clamp(min=0.0)
    albedo = torch.tensor(_ALBEDO, dtype=torch.float64)
    if channels != albedo.numel():
        albedo = albedo.mean().expand(channels)
    shade = ambient + (1 - ambient) * cosine
    return (albedo.reshape(1, -1, 1, 1, 1) * shade[:, None]).float()


def voxel_view_colors(sdf, occupied: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                      extent: float = 2.0, channels: int = 3, max_steps: int = 128,
                      tolerance: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """The appearance target of one view: colours ``(channels, R, R, R)`` in [0, 1] (zero at empty voxels) and the
    ``visible`` mask ``(R, R, R)`` of the ``occupied`` voxels seen by the camera (world-to-camera ``rotation``,
    ``translation``; the shape given by its NumPy ``sdf``).

    A voxel is *visible* when the ray from the camera centre through its centre, sphere-traced on ``sdf`` as
    `render_sdf` traces it, first meets the surface within the voxel's 3³ neighbourhood (the surface lies up to
    half a voxel beyond the occupied centres, so the hit is often in an empty neighbouring cell); it then gets the renderer's colour at
    that hit point (`shaded_voxel_colors` with the surface normal there): exactly what the input render shows along
    that ray. A hidden voxel has no colour in the input view; it gets the same shading formula at its own centre's
    SDF gradient (`voxel_normals`), the colour its nearest surface would have under this view's light, so that every
    occupied voxel has a defined target. The input-view re-rendering only ever shows visible voxels."""
    import numpy as np

    normals = voxel_normals(sdf, occupied, extent)
    colors = shaded_voxel_colors(normals[None], rotation[None].double(), channels)[0]
    resolution = occupied.shape[0]
    _, centres = voxel_grid_points(resolution, extent)
    flat = occupied.reshape(-1)
    targets = centres[flat]
    visible = torch.zeros(resolution**3, dtype=torch.bool)
    if targets.shape[0]:
        rotation, translation = rotation.double(), translation.double()
        origin = (-rotation.T @ translation).numpy()
        directions = targets.numpy() - origin
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        t = np.zeros(targets.shape[0])
        hit = np.zeros(targets.shape[0], dtype=bool)
        active = np.ones(targets.shape[0], dtype=bool)
        limit = np.linalg.norm(targets.numpy() - origin, axis=1) + extent  # past the voxel: it is hidden anyway
        for _ in range(max_steps):
            index = np.nonzero(active)[0]
            if index.size == 0:
                break
            distances = np.asarray(sdf(origin + t[index, None] * directions[index]), dtype=np.float64)
            converged = distances < tolerance
            hit[index[converged]] = True
            t[index[~converged]] += distances[~converged]
            active[index[converged | (t[index] > limit[index])]] = False
        points = origin + t[:, None] * directions
        # The surface passes up to half a voxel outside the occupied centres, so the ray to a surface voxel's centre
        # usually meets it in a neighbouring (empty) cell: "at this voxel" is within its 3³ neighbourhood.
        voxel = extent / resolution
        near_cell = np.abs(points - targets.numpy()).max(axis=1) <= 1.5 * voxel + tolerance
        seen = torch.from_numpy(hit & near_cell)
        if bool(seen.any()):
            surface = points[seen.numpy()]
            offsets = 1e-4 * np.eye(3)
            gradient = torch.from_numpy(np.stack([np.asarray(sdf(surface + offsets[a])) - np.asarray(
                sdf(surface - offsets[a])) for a in range(3)], axis=-1).astype(np.float64))
            surface_normals = gradient / gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            grid = surface_normals.T.reshape(1, 3, -1, 1, 1).float()
            shaded = shaded_voxel_colors(grid, rotation[None], channels)[0].reshape(channels, -1)
            voxel_index = flat.nonzero().squeeze(1)[seen]
            colors.reshape(channels, -1)[:, voxel_index] = shaded
            visible[voxel_index] = True
    return colors, visible.reshape(resolution, resolution, resolution)


def project_voxel_centers(centres: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                          translation: torch.Tensor) -> torch.Tensor:
    """Normalised pixels ``(B, M, 2)`` of points ``(M, 3)`` under cameras ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)``
    (K in uv units, world-to-camera), clamped to [0, 1] as Cupid does; a point on or behind the camera plane (only
    possible for a wild recovered camera) is clamped to depth 1e-6 first, so that it lands on the image's border
    rather than producing inf."""
    camera = torch.einsum("bij,mj->bmi", rotation, centres) + translation[:, None]
    homogeneous = torch.einsum("bij,bmj->bmi", intrinsics, camera)
    depth = homogeneous[..., 2:].clamp(min=1e-6)
    return (homogeneous[..., :2] / depth).clamp(0, 1)


@torch.no_grad()
def render_voxel_colors(occupied: torch.Tensor, colors: torch.Tensor, intrinsics: torch.Tensor,
                        rotation: torch.Tensor, translation: torch.Tensor, size: int, extent: float = 2.0,
                        background: float = 1.0, samples_per_voxel: int = 4) -> dict[str, torch.Tensor]:
    """Coloured voxels seen by one camera: ``rgb`` ``(size, size, C)`` and ``mask`` ``(size, size)``.

    Each pixel's ray (through the pixel centre; K in uv units, world-to-camera R, t) is sampled
    ``samples_per_voxel`` times per voxel side across the cube; the first sample inside an occupied voxel
    (``occupied`` ``(R, R, R)`` bool) gives that voxel's colour (``colors`` ``(C, R, R, R)``), otherwise the pixel
    is ``background``. That is the voxelised object as opaque cubes, to within a quarter voxel along the ray."""
    if not isinstance(occupied, torch.Tensor) or occupied.dtype != torch.bool or occupied.ndim != 3:
        raise ValueError("`occupied` must be a bool tensor (R, R, R)")
    if not isinstance(colors, torch.Tensor) or colors.ndim != 4 or tuple(colors.shape[1:]) != tuple(occupied.shape):
        raise ValueError(f"`colors` must have shape (C, {', '.join(map(str, occupied.shape))}), got "
                         f"{tuple(getattr(colors, 'shape', ()))}")
    check_positive_int("size", size)
    for name, value, shape in (("intrinsics", intrinsics, (3, 3)), ("rotation", rotation, (3, 3)),
                               ("translation", translation, (3,))):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or tuple(value.shape) != shape:
            raise ValueError(f"`{name}` must be a floating tensor of shape {shape}, got "
                             f"{getattr(value, 'dtype', type(value).__name__)} {tuple(getattr(value, 'shape', ()))}")
    resolution = occupied.shape[0]
    k, r, t = intrinsics.double(), rotation.double(), translation.double()
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    directions = (torch.linalg.solve(k, pixels.T).T) @ r  # camera rays in world coordinates (row form of Rᵀ·d)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = -r.T @ t
    half = extent / 2
    # Where each ray crosses the cube [−half, half]³ (slab method), so the samples cover only the cube.
    with torch.no_grad():
        inverse = 1 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t0, t1 = (-half - origin) * inverse, (half - origin) * inverse
        near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0)
        far = torch.maximum(t0, t1).amin(dim=-1)
    steps = samples_per_voxel * int(torch.ceil(torch.tensor(3**0.5 * resolution)).item()) + 1
    fractions = torch.linspace(0, 1, steps, dtype=torch.float64)
    depth = near[:, None] + (far - near).clamp(min=0)[:, None] * fractions[None]
    points = origin + depth[..., None] * directions[:, None]
    index = ((points + half) / extent * resolution).floor().long()
    inside = ((index >= 0) & (index < resolution)).all(dim=-1) & (far > near)[:, None]
    index = index.clamp(0, resolution - 1)
    flat = (index[..., 0] * resolution + index[..., 1]) * resolution + index[..., 2]
    hit = inside & occupied.reshape(-1)[flat]
    any_hit = hit.any(dim=1)
    first = torch.where(any_hit, hit.float().argmax(dim=1), torch.zeros_like(any_hit, dtype=torch.long))
    voxel = flat.gather(1, first[:, None])[:, 0]
    channels = colors.shape[0]
    rgb = torch.full((size * size, channels), float(background), dtype=torch.float32)
    rgb[any_hit] = colors.reshape(channels, -1).T.float()[voxel[any_hit]]
    return {"rgb": rgb.reshape(size, size, channels), "mask": any_hit.reshape(size, size)}


# -- the model -----------------------------------------------------------------------------------------------------

@dataclass
class CupidAppearanceOutput(ModelOutput):
    """What `CupidAppearanceModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the flow-matching MSE over occupied voxels.
        velocity (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the predicted velocity (zero at empty voxels).
    """

    loss: torch.FloatTensor | None = None
    velocity: torch.FloatTensor | None = None


@dataclass
class CupidAppearanceCondition(ModelOutput):
    """The condition of a batch, computed once per image and camera (`CupidAppearanceModel.encode_condition`).

    Args:
        image_tokens (`torch.FloatTensor` of shape `(B, 1 + N, D_image)`): the image encoder's tokens.
        voxel_features (`torch.FloatTensor` of shape `(B, F, R, R, R)`, *optional*): the projected features
            (observed ‖ pixel) at every voxel, zero at empty ones; `None` without pose alignment.
    """

    image_tokens: torch.FloatTensor | None = None
    voxel_features: torch.FloatTensor | None = None


class CupidAppearancePreTrainedModel(WhiteboxPreTrainedModel):
    config: CupidAppearanceConfig
    config_class = CupidAppearanceConfig
    base_model_prefix = "cupid_appearance"
    main_input_name = "sample"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CupidFlowBlock"]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, the image encoder frozen again when ``freeze_image_encoder``."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, CupidAppearanceModel) and model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        # Stage 1's DiT initialisation; here also the pixel convolutions (Conv2d).
        if not init_dit_weights(self, module, (nn.Linear, nn.Conv3d, nn.Conv2d)):
            super()._init_weights(module)


def _check_grid(name: str, value, channels: int, resolution: int, batch_size: int | None = None,
                dtype_kind: str = "float") -> None:
    shape_doc = f"(batch, {channels}, {resolution}, {resolution}, {resolution})" if channels else \
        f"(batch, {resolution}, {resolution}, {resolution})"
    check_tensor(name, value, ndim=5 if channels else 4, shape_doc=shape_doc)
    expected = (channels, resolution, resolution, resolution) if channels else (resolution,) * 3
    if tuple(value.shape[1:]) != expected:
        raise ValueError(f"`{name}` must have shape {shape_doc}, got {tuple(value.shape)}")
    if batch_size is not None and value.shape[0] != batch_size:
        raise ValueError(f"`{name}` must have batch size {batch_size} (that of `sample`), got {value.shape[0]}")
    if dtype_kind == "bool":
        if value.dtype != torch.bool:
            raise TypeError(f"`{name}` must be a bool tensor (the occupied voxels), got dtype {value.dtype}")
    else:
        check_floating_tensor(name, value)
        check_finite_tensor(name, value)


class CupidAppearanceModel(CupidAppearancePreTrainedModel):
    """Cupid stage 2 (see `CupidAppearanceConfig`): the rectified-flow velocity of noisy per-voxel colours given the
    occupied voxels, an image and (with pose alignment) the camera that saw it."""

    def __init__(self, config: CupidAppearanceConfig):
        super().__init__(config)
        width, patch = config.hidden_size, config.patch_size
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        encoder_width = config.image_encoder_config.hidden_size
        self.context_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
        self.context_projection = nn.Linear(encoder_width, width)
        if config.pose_aligned:
            self.observed_norm = nn.LayerNorm(encoder_width, eps=config.layer_norm_eps)
            self.observed_projection = nn.Linear(encoder_width, config.observed_channels)
            channels = [3] + [config.pixel_feature_channels] * config.pixel_feature_layers
            self.pixel_convs = nn.ModuleList(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
                                             for c_in, c_out in zip(channels[:-1], channels[1:]))
        self.patch_embedding = nn.Conv3d(config.input_channels, width, kernel_size=patch, stride=patch)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_tokens, width))
        self.time_projection = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.blocks = nn.ModuleList(CupidFlowBlock(config) for _ in range(config.num_hidden_layers))
        self.output_norm = nn.LayerNorm(width, eps=config.layer_norm_eps, elementwise_affine=False)
        self.output_modulation = _Modulation(width, 2)
        self.output_projection = nn.Linear(width, patch**3 * config.color_channels)
        self.gradient_checkpointing = False
        self.post_init()

    # -- conditioning ---------------------------------------------------------------------------------------------

    def encode_condition(self, pixel_values: torch.Tensor, occupancy: torch.Tensor,
                         intrinsics: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
                         translations: torch.Tensor | None = None) -> CupidAppearanceCondition:
        """The global image tokens and, with pose alignment, the features sampled at every occupied voxel's
        projection under the cameras (``intrinsics`` ``(B, 3, 3)`` in uv units, world-to-camera ``rotations``
        ``(B, 3, 3)`` and ``translations`` ``(B, 3)``; required then, ignored otherwise)."""
        config = self.config
        check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, 3, height, width)")
        check_floating_tensor("pixel_values", pixel_values)
        batch_size = pixel_values.shape[0]
        _check_grid("occupancy", occupancy, 0, config.cube_resolution, batch_size, dtype_kind="bool")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not config.freeze_image_encoder):
            tokens = self.image_encoder(pixel_values=pixel_values).last_hidden_state
        if not config.pose_aligned:
            return CupidAppearanceCondition(image_tokens=tokens, voxel_features=None)
        for name, value, shape in (("intrinsics", intrinsics, (batch_size, 3, 3)),
                                   ("rotations", rotations, (batch_size, 3, 3)),
                                   ("translations", translations, (batch_size, 3))):
            if value is None:
                raise ValueError(f"`{name}` is required with `pose_aligned=True` (the camera the voxels are "
                                 "projected with)")
            check_tensor(name, value)
            check_floating_tensor(name, value)
            if tuple(value.shape) != shape:
                raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
            check_finite_tensor(name, value)
        dtype = tokens.dtype
        # The centres of `voxel_grid_points` (derived from the config, so not a saved buffer).
        _, centres = voxel_grid_points(config.cube_resolution, config.extent)
        uv = project_voxel_centers(centres.to(device=tokens.device, dtype=dtype), intrinsics.to(dtype), rotations.to(dtype),
                                   translations.to(dtype))
        grid = (2 * uv - 1)[:, :, None, :]  # (B, R³, 1, 2) in grid_sample's [−1, 1], x = u, y = v
        side = config.image_encoder_config.image_size // config.image_encoder_config.patch_size
        patches = tokens[:, 1:]
        if patches.shape[1] != side * side:
            raise ValueError(f"the image encoder gave {patches.shape[1]} patch tokens, expected {side}² (a square "
                             "patch grid)")
        # CRATE's patches are row-major (y, then x), as the image's pixels.
        patch_grid = self.observed_norm(patches).reshape(batch_size, side, side, -1).permute(0, 3, 1, 2)
        observed = F.grid_sample(patch_grid, grid, mode="bilinear", align_corners=False)[..., 0]
        observed = self.observed_projection(observed.transpose(1, 2)).transpose(1, 2)
        maps, current = [pixel_values.to(dtype)], pixel_values.to(dtype)
        for conv in self.pixel_convs:
            current = F.silu(conv(current))
            maps.append(current)
        pixels = F.grid_sample(torch.cat(maps, dim=1), grid, mode="bilinear", align_corners=False)[..., 0]
        resolution = config.cube_resolution
        features = torch.cat([observed, pixels], dim=1).reshape(batch_size, -1, resolution, resolution, resolution)
        return CupidAppearanceCondition(image_tokens=tokens,
                                        voxel_features=features * occupancy[:, None].to(features.dtype))

    @staticmethod
    def null_condition(condition: CupidAppearanceCondition) -> CupidAppearanceCondition:
        """Classifier-free guidance's negative: zero image tokens and zero projected features."""
        features = condition.voxel_features
        return CupidAppearanceCondition(image_tokens=torch.zeros_like(condition.image_tokens),
                                        voxel_features=None if features is None else torch.zeros_like(features))

    # -- the network ----------------------------------------------------------------------------------------------

    def _velocity(self, sample: torch.Tensor, timestep: torch.Tensor, occupancy: torch.Tensor,
                  condition: CupidAppearanceCondition) -> torch.Tensor:
        config = self.config
        batch_size, side, patch = sample.shape[0], config.tokens_per_side, config.patch_size
        mask = occupancy[:, None].to(sample.dtype)
        inputs = [sample * mask, mask]
        if config.pose_aligned:
            inputs.append(condition.voxel_features.to(sample.dtype))
        tokens = self.patch_embedding(torch.cat(inputs, dim=1)).flatten(2).transpose(1, 2) + self.position_embedding
        time_embedding = self.time_embedding(
            self.time_projection(config.timestep_scale * timestep).to(tokens.dtype))
        context = self.context_projection(self.context_norm(condition.image_tokens.to(tokens.dtype)))
        for block in self.blocks:
            tokens = block(tokens, context, time_embedding)
        shift, scale = self.output_modulation(time_embedding).chunk(2, dim=-1)
        patches = self.output_projection(_modulate(self.output_norm(tokens), shift, scale))
        channels = config.color_channels
        patches = patches.view(batch_size, side, side, side, channels, patch, patch, patch)
        velocity = patches.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(sample.shape)
        return velocity * mask

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        occupancy: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        rotations: torch.Tensor | None = None,
        translations: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CupidAppearanceOutput | tuple:
        r"""
        sample (`torch.FloatTensor` of shape `(B, C, R, R, R)`): the noisy colours ``x_t`` (in [−1, 1] units).
        timestep (`torch.FloatTensor` of shape `(B,)`): flow times ``t ∈ [0, 1]`` (1 is noise).
        occupancy (`torch.BoolTensor` of shape `(B, R, R, R)`): the occupied voxels.
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): the normalised condition images.
        intrinsics, rotations, translations (*optional*): the cameras ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)`` (K in
            uv units, world-to-camera); required with ``pose_aligned``.
        drop_condition (`torch.BoolTensor` of shape `(B,)`, *optional*): rows that see the null condition.
        target (`torch.FloatTensor` of shape `(B, C, R, R, R)`, *optional*): the velocity target; the MSE over the
            occupied voxels is returned as `loss`.
        """
        if kwargs:
            raise TypeError(f"CupidAppearanceModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        _check_grid("sample", sample, config.color_channels, config.cube_resolution)
        batch_size = sample.shape[0]
        _check_timestep(timestep, batch_size)
        check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, 3, height, width)")
        if pixel_values.shape[0] != batch_size:
            raise ValueError(f"`pixel_values` must have batch size {batch_size} (that of `sample`), got "
                             f"{pixel_values.shape[0]}")
        condition = self.encode_condition(pixel_values, occupancy, intrinsics, rotations, translations)
        if drop_condition is not None:
            check_tensor("drop_condition", drop_condition, ndim=1, shape_doc=f"({batch_size},)")
            if drop_condition.dtype != torch.bool or drop_condition.shape[0] != batch_size:
                raise ValueError(f"`drop_condition` must be a bool tensor of shape ({batch_size},), got "
                                 f"{drop_condition.dtype} {tuple(drop_condition.shape)}")
            keep = (~drop_condition).to(condition.image_tokens.dtype)
            condition = CupidAppearanceCondition(
                image_tokens=condition.image_tokens * keep[:, None, None],
                voxel_features=None if condition.voxel_features is None
                else condition.voxel_features * keep[:, None, None, None, None])
        if target is not None:
            _check_grid("target", target, config.color_channels, config.cube_resolution, batch_size)
        velocity = self._velocity(sample, timestep, occupancy, condition)
        loss = None
        if target is not None:
            mask = occupancy[:, None].to(velocity.dtype)
            # The mean over occupied voxels and channels: empty voxels have no colour to learn.
            loss = ((velocity - target).square() * mask).sum() / (mask.sum() * config.color_channels).clamp(min=1)
        output = CupidAppearanceOutput(loss=loss, velocity=velocity)
        return output if return_dict else output.to_tuple()

    # -- training and sampling ------------------------------------------------------------------------------------

    def flow_matching_loss(self, colors: torch.Tensor, occupancy: torch.Tensor, pixel_values: torch.Tensor,
                           intrinsics: torch.Tensor | None = None, rotations: torch.Tensor | None = None,
                           translations: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, forward=None) -> torch.Tensor:
        """One training loss on clean colours ``(B, C, R, R, R)`` in [−1, 1] units (``2·rgb − 1``): logit-normal
        times, Gaussian noise, the condition dropped with probability ``condition_dropout_prob``, the MSE over the
        occupied voxels. ``forward`` runs the network (default: this model); pass its DDP wrapper so that the
        gradients synchronise across processes."""
        config = self.config
        _check_grid("colors", colors, config.color_channels, config.cube_resolution)
        batch_size = colors.shape[0]
        t = sample_logit_normal_timesteps(batch_size, config.logit_normal_mean, config.logit_normal_std,
                                          generator=generator).to(colors.device)
        noise = torch.randn(colors.shape, generator=generator, dtype=colors.dtype).to(colors.device)
        drop = (torch.rand(batch_size, generator=generator) < config.condition_dropout_prob).to(colors.device)
        return (forward or self)(sample=interpolate_flow_path(colors, noise, t, config.sigma_min),
                                 timestep=t.to(colors.dtype),
                    occupancy=occupancy, pixel_values=pixel_values, intrinsics=intrinsics, rotations=rotations,
                    translations=translations, drop_condition=drop,
                    target=flow_matching_target(colors, noise, config.sigma_min), return_dict=True).loss

    def guided_velocity(self, sample: torch.Tensor, timestep: torch.Tensor, occupancy: torch.Tensor,
                        condition: CupidAppearanceCondition, guidance_scale: float,
                        guidance_interval: tuple[float, float]) -> torch.Tensor:
        """``v̂ = v_u + g·(v_c − v_u)`` inside ``guidance_interval`` (``g = 0``: the unconditional velocity), the
        conditional velocity elsewhere or when ``g = 1``."""
        low, high = guidance_interval
        inside = bool(((timestep >= low) & (timestep <= high)).all())
        if guidance_scale == 0 and inside:
            return self._velocity(sample, timestep, occupancy, self.null_condition(condition))
        conditional = self._velocity(sample, timestep, occupancy, condition)
        if guidance_scale == 1 or not inside:
            return conditional
        unconditional = self._velocity(sample, timestep, occupancy, self.null_condition(condition))
        return unconditional + guidance_scale * (conditional - unconditional)

    def make_scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        """diffusers' Euler flow scheduler with the time warp ``shift = time_shift`` (see
        `CupidFlowModel.make_scheduler` for where it matches spec §2.2)."""
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=self.config.time_shift)

    @torch.no_grad()
    def sample(self, pixel_values: torch.Tensor, occupancy: torch.Tensor, intrinsics: torch.Tensor | None = None,
               rotations: torch.Tensor | None = None, translations: torch.Tensor | None = None,
               num_inference_steps: int = 25, guidance_scale: float | None = None,
               generator: torch.Generator | list[torch.Generator] | None = None,
               latents: torch.Tensor | None = None, progress=None) -> torch.Tensor:
        """Colours ``(B, C, R, R, R)`` in [0, 1] (zero at empty voxels) by Euler sampling on the shifted grid with
        interval guidance (``guidance_scale ≥ 0``; default the config's). ``generator`` may be one per item.
        ``progress`` wraps the timestep iterator (a pipeline's progress bar)."""
        from diffusers.utils.torch_utils import randn_tensor

        check_positive_int("num_inference_steps", num_inference_steps)
        config = self.config
        guidance_scale = config.guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}")
        dtype = self.dtype
        condition = self.encode_condition(pixel_values.to(device=self.device, dtype=dtype),
                                          occupancy.to(self.device),
                                          *(None if x is None else x.to(device=self.device, dtype=dtype)
                                            for x in (intrinsics, rotations, translations)))
        batch_size, resolution = pixel_values.shape[0], config.cube_resolution
        shape = (batch_size, config.color_channels, resolution, resolution, resolution)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype)
        else:
            _check_grid("latents", latents, config.color_channels, resolution, batch_size)
            latents = latents.to(device=self.device, dtype=dtype)
        occupancy = occupancy.to(self.device)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(sigmas=torch.linspace(1, 0, num_inference_steps + 1)[:-1].numpy(),
                                device=self.device)
        interval = tuple(config.guidance_interval)
        timesteps = scheduler.timesteps if progress is None else progress(scheduler.timesteps)
        for timestep in timesteps:
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self.guided_velocity(latents, t, occupancy, condition, float(guidance_scale), interval)
            latents = scheduler.step(velocity, timestep, latents, return_dict=False)[0]
        return ((latents + 1) / 2).clamp(0, 1) * occupancy[:, None].to(latents.dtype)


def _check_timestep(timestep, batch_size: int) -> None:
    check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch_size},)")
    check_floating_tensor("timestep", timestep)
    if timestep.shape[0] != batch_size:
        raise ValueError(f"`timestep` must have shape ({batch_size},) (one time per sample), got "
                         f"{tuple(timestep.shape)}")
    check_finite_tensor("timestep", timestep)
    if not bool(((timestep >= 0) & (timestep <= 1)).all()):
        raise ValueError(f"`timestep` must lie in [0, 1] (flow time, 1 is noise), got values in "
                         f"[{timestep.min().item():.4g}, {timestep.max().item():.4g}]")
