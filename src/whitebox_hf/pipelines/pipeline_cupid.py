"""`CupidPipeline`: pose-grounded single-image 3D generation, Cupid's stage 1 (book §8.9; spec ``threed_and_motion.md``
§2.3-2.4).

One image → the `CupidFlowModel` samples the occupancy + UV cube (Euler on diffusers'
`FlowMatchEulerDiscreteScheduler` with the time shift, classifier-free guidance on the guidance interval) → the
occupied voxels and the pixel each one projects to → the camera ``(K, R, t)`` by PnP
(`whitebox_hf.models.cupid.uv_cube.camera_from_uv_cube`, the occupancy threshold lowered as the authors do when too
few voxels pass) → the shape in the object's canonical frame (a marching-cubes mesh of the occupancy channel, the
occupied voxels, or the cube itself) and an overlay: the input image with the generated object's silhouette
re-projected at the recovered camera.

**Stage 2 (optional ``appearance_model``).** With a `CupidAppearanceModel`, one more step runs once the camera is
recovered (`CupidPipeline.generate_appearance`): a colour for every occupied voxel, from a second flow conditioned on
the image features sampled at each voxel's projection under the *recovered* camera. The outputs then carry
``colors`` (per voxel), coloured meshes (vertex colours of the nearest occupied voxel) and ``renderings``: the coloured
voxels drawn at the recovered camera over the input image. Without it the mesh is uncoloured and the overlay is the
silhouette alone.

**Beyond the released code** (`whitebox_hf.pipelines.cupid_extensions`): ``multi_view=True`` reads the images as views
of one object (the spec's multi-view *approximation*: one shared occupancy by averaging its velocity over the views,
a UV cube and a PnP pose per view); ``camera=(K, R, t)`` keeps the UV channels consistent with known cameras by
RePaint-style inpainting during sampling and returns those cameras; `compose_cupid_scene` places several objects by
similarities fitted to depth.

Save/load as the package's other pipelines: ``pipe.save_pretrained(folder)``, then
``CupidPipeline.from_pretrained(folder)`` with whitebox_hf or ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..geometry import intrinsics_uv_to_pixels, project_points, world_to_camera
from ..models.cupid.uv_cube import (
    camera_from_uv_cube,
    decode_uv_cube,
    denormalize_cube,
    voxel_grid_points,
)
from ..models.denoisers.shape_conditions import images_to_pixel_values
from ..models.sita_vae.mesh_extraction import meshes_from_occupancy_grid
from .class_conditional import ClassConditionalPipelineMixin
from .cupid_extensions import (
    MULTI_VIEW_APPROXIMATION,
    average_shared_velocity,
    check_known_camera,
    inpaint_known_uv,
    known_uv_channels,
    share_initial_occupancy,
)

__all__ = ["CUPID_OUTPUT_TYPES", "CupidPipeline", "CupidPipelineOutput"]

CUPID_OUTPUT_TYPES = ("mesh", "voxels", "latent")
# Overlay colour (RGB in [0, 1]) and opacity of the re-projected silhouette.
OVERLAY_COLOR = (1.0, 0.1, 0.1)
OVERLAY_ALPHA = 0.5
# Voxels rasterised at once for the overlay (bounds the (voxels, pixels) comparison's memory).
RASTER_CHUNK = 2048


@dataclass
class CupidPipelineOutput(BaseOutput):
    """Output of `CupidPipeline` (one entry per input image).

    Args:
        shapes: ``output_type="mesh"``: a list of `trimesh.Trimesh` in the canonical frame (``None`` where the
            occupancy has no surface); ``"voxels"``: the occupied voxels, a bool tensor ``(B, R, R, R)`` at each
            item's (possibly lowered) threshold; ``"latent"``: the generated cube ``(B, 3, R, R, R)`` (occupancy, u, v)
            in [0, 1] units (`denormalize_cube` of the sample), as `build_uv_cube` writes it.
        intrinsics: ``(B, 3, 3)`` float64, K in normalised uv units (`intrinsics_uv_to_pixels` gives pixels).
        rotations: ``(B, 3, 3)`` float64, world-to-camera R (det +1).
        translations: ``(B, 3)`` float64, world-to-camera t (``x_cam = R·x + t``).
        reprojection_errors: ``(B,)`` float64, PnP's RMS reprojection error in uv units.
        thresholds: the occupancy threshold each item's voxels were selected at.
        overlays: the input images (PIL RGB) with the generated silhouette at the recovered camera tinted over them.
        silhouettes: ``(B, H, W)`` bool, that silhouette (the union of the occupied voxels' projected boxes).
        approximation (`str`, *optional*): set when the result is the spec's multi-view approximation
            (`MULTI_VIEW_APPROXIMATION`); ``None`` otherwise (and then left out of `to_tuple`).
        colors: with an ``appearance_model``, the generated colours ``(B, 3, R, R, R)`` in [0, 1] (zero at empty
            voxels); else ``None``.
        renderings: with an ``appearance_model``, the input images (PIL RGB) with the coloured voxels drawn over them
            at the recovered camera; else ``None``.
    """

    shapes: list | torch.Tensor
    intrinsics: torch.Tensor
    rotations: torch.Tensor
    translations: torch.Tensor
    reprojection_errors: torch.Tensor
    thresholds: list
    overlays: list
    silhouettes: torch.Tensor
    approximation: str | None = None
    colors: torch.Tensor | None = None
    renderings: list | None = None


def _check_number(name: str, value, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"`{name}` must be a finite number ≥ {minimum}, got {value!r}")


class CupidPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Cupid: image → canonical shape + camera (stage 1), and with an ``appearance_model`` per-voxel colour (stage 2;
    see the module docstring).

    Args:
        flow_model (`CupidFlowModel`): the stage-1 flow with its CRATE image encoder.
        scheduler (`FlowMatchEulerDiscreteScheduler`): ``flow_model.make_scheduler()`` (shift = ``time_shift``);
            the pipeline gives it the grid ``linspace(1, 0, S + 1)``, as `CupidFlowModel.sample` does.
        image_mean, image_std (`list[float]`, *optional*): per-channel normalisation of input images in [0, 1]
            (default 0.5 / 0.5); must be the image encoder's training normalisation.
        extent (`float`, defaults to 2.0): side of the canonical cube the voxels span (the procedural shapes lie in
            [−1, 1]³).
        background (`float`, defaults to 1.0): grey level in [0, 1] put outside ``mask`` (the renders' white).
        appearance_model (`CupidAppearanceModel`, *optional*): Cupid's stage 2, on the same voxel grid, image size
            and canonical cube; see the module docstring.
    """

    model_cpu_offload_seq = "flow_model->appearance_model"
    _optional_components = ["appearance_model"]

    def __init__(self, flow_model, scheduler, image_mean: list | None = None, image_std: list | None = None,
                 extent: float = 2.0, background: float = 1.0, appearance_model=None):
        super().__init__()
        encoder_config = flow_model.config.image_encoder_config
        channels = encoder_config.num_channels
        image_mean = [0.5] * channels if image_mean is None else [float(v) for v in image_mean]
        image_std = [0.5] * channels if image_std is None else [float(v) for v in image_std]
        if len(image_mean) != channels or len(image_std) != channels or min(image_std) <= 0:
            raise ValueError(f"`image_mean` / `image_std` must hold {channels} values (std > 0), got "
                             f"{image_mean!r} / {image_std!r}")
        _check_number("extent", extent, 0.0)
        if extent == 0:
            raise ValueError("`extent` must be positive (the side of the canonical cube), got 0")
        _check_number("background", background, 0.0)
        if background > 1:
            raise ValueError(f"`background` must lie in [0, 1], got {background!r}")
        if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            raise TypeError(f"`scheduler` must be a FlowMatchEulerDiscreteScheduler (the sampler of spec §2.2), got "
                            f"{type(scheduler).__name__}")
        if appearance_model is not None:
            stage2 = appearance_model.config
            stage2_encoder = stage2.image_encoder_config
            for name, own, expected in (
                    ("cube_resolution", stage2.cube_resolution, flow_model.config.cube_resolution),
                    ("image_encoder_config.image_size", stage2_encoder.image_size, encoder_config.image_size),
                    ("extent", stage2.extent, float(extent))):
                if own != expected:
                    raise ValueError(f"`appearance_model` must have {name} = {expected!r} (that of the stage-1 "
                                     f"pipeline), got {own!r}")
        self.register_modules(flow_model=flow_model, scheduler=scheduler, appearance_model=appearance_model)
        self.register_to_config(image_mean=image_mean, image_std=image_std, extent=float(extent),
                                background=float(background))

    # -- inputs ----------------------------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        """Side of the square images the encoder reads (never resized)."""
        return int(self.flow_model.config.image_encoder_config.image_size)

    def _images(self, image) -> torch.Tensor:
        """Images in [0, 1] ``(B, C, S, S)`` (validated by `images_to_pixel_values` with identity normalisation)."""
        channels = self.flow_model.config.image_encoder_config.num_channels
        if isinstance(image, torch.Tensor) and image.ndim == 3:
            image = image[None]
        return images_to_pixel_values(image, channels, self.image_size, [0.0] * channels, [1.0] * channels)

    def _mask(self, mask, batch_size: int) -> torch.Tensor:
        """``mask`` as a float tensor ``(B, 1, S, S)`` in [0, 1]: a PIL image (mode ``L`` or ``1``) or a list of
        them, or a tensor ``(S, S)`` / ``(B, S, S)`` / ``(B, 1, S, S)`` (bool or float in [0, 1])."""
        from PIL import Image

        size = self.image_size
        if isinstance(mask, Image.Image) or (isinstance(mask, (list, tuple)) and mask
                                             and all(isinstance(m, Image.Image) for m in mask)):
            items = [mask] if isinstance(mask, Image.Image) else list(mask)
            for item in items:
                if item.mode not in ("L", "1"):
                    raise ValueError(f"`mask` must be a PIL image of mode 'L' or '1', got mode {item.mode!r}")
                if item.size != (size, size):
                    raise ValueError(f"`mask` must be {size}×{size} pixels (the image's size), got "
                                     f"{item.size[0]}×{item.size[1]}")
            mask = torch.from_numpy(np.stack([np.asarray(item.convert("L"), dtype=np.float32) / 255.0
                                              for item in items]))
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"`mask` must be a PIL image, a list of them, or a tensor, got {type(mask).__name__}")
        if mask.dtype == torch.bool:
            mask = mask.float()
        if not mask.is_floating_point():
            raise TypeError(f"`mask` as a tensor must be bool or floating point in [0, 1], got dtype {mask.dtype}")
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if mask.ndim != 3 or tuple(mask.shape[1:]) != (size, size):
            raise ValueError(f"`mask` must have shape ({size}, {size}) or (batch_size, {size}, {size}) (the image's "
                             f"size), got {tuple(mask.shape)}")
        if mask.shape[0] != batch_size:
            raise ValueError(f"`mask` must hold one mask per image ({batch_size}), got {mask.shape[0]}")
        if not (torch.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1):
            raise ValueError("`mask` must hold finite values in [0, 1]")
        empty = [i for i, m in enumerate(mask) if not bool((m > 0).any())]
        if empty:
            raise ValueError(f"`mask` is empty (no foreground pixel) for image(s) {empty}: there is no object to "
                             "reconstruct")
        return mask[:, None]

    def _check_call(self, num_inference_steps, guidance_scale, occupancy_threshold, output_type) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer ≥ 1, got {num_inference_steps!r}")
        _check_number("guidance_scale", guidance_scale, 0.0)
        if (isinstance(occupancy_threshold, bool) or not isinstance(occupancy_threshold, (int, float))
                or not 0 < occupancy_threshold < 1):
            raise ValueError(f"`occupancy_threshold` must be a number in (0, 1), got {occupancy_threshold!r}")
        if not isinstance(output_type, str) or output_type not in CUPID_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {CUPID_OUTPUT_TYPES}, got {output_type!r}")

    # -- sampling --------------------------------------------------------------------------------------------

    def _velocity(self, sample, t, tokens, guidance_scale: float) -> torch.Tensor:
        """The flow's guided velocity. ``g = 0`` is the unconditional velocity, which `guided_velocity` (``g ≥ 1``
        in the model's own sampler) has no shortcut for; otherwise it is `CupidFlowModel.guided_velocity`."""
        model = self.flow_model
        interval = tuple(model.config.guidance_interval)
        if guidance_scale == 0 and interval[0] <= float(t[0]) <= interval[1]:
            return model(sample=sample, timestep=t, encoder_hidden_states=torch.zeros_like(tokens),
                         return_dict=True).velocity
        return model.guided_velocity(sample, t, tokens, guidance_scale, interval)

    @torch.no_grad()
    def __call__(
        self,
        image,
        mask=None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        occupancy_threshold: float = 0.5,
        output_type: str = "mesh",
        latents: torch.Tensor | None = None,
        return_dict: bool = True,
        multi_view: bool = False,
        camera: tuple | None = None,
    ) -> CupidPipelineOutput | tuple:
        """Generate the shape and the camera of the object in each image.

        Args:
            image (PIL RGB image, list of them, or a float tensor ``(B, 3, S, S)`` / ``(3, S, S)`` in [0, 1]): of the
                encoder's ``image_size`` S exactly (never resized).
            mask (PIL ``L``/``1`` image, list of them, or a tensor ``(S, S)`` / ``(B, S, S)``, *optional*): the
                object's foreground; pixels outside it are set to ``background`` (Cupid reads background-removed
                images) before encoding.
            num_inference_steps (`int`, defaults to 25): Euler steps.
            guidance_scale (`float`, *optional*): ``g`` of ``v_u + g·(v_c − v_u)`` on the guidance interval (default
                the model's ``guidance_scale``); 1 = conditional only, 0 = unconditional there.
            generator (`torch.Generator` or a list of one per image, *optional*): the initial noise.
            occupancy_threshold (`float`, defaults to 0.5): occupied voxels have occupancy above it; lowered in steps
                of 0.05 when fewer than 10 voxels pass (then a ValueError naming ``cube``).
            output_type (`str`, defaults to `"mesh"`): ``"mesh"``, ``"voxels"`` or ``"latent"`` (the cube).
            latents (`torch.Tensor`, *optional*): initial noise ``(B, 3, R, R, R)`` instead of drawing it.
            return_dict (`bool`, defaults to `True`): a `CupidPipelineOutput` or a tuple of its fields.
            multi_view (`bool`, defaults to `False`): the images are views of **one** object. The spec's multi-view
                approximation (not the paper's joint model; the output's ``approximation`` says so): the occupancy
                channel starts from view 0's noise and its velocity is averaged over the views at every step, so all
                views share one occupancy; each view keeps its own u, v channels and gets its own camera by PnP.
            camera (`tuple`, *optional*): known cameras ``(K, R, t)``, ``(B, 3, 3)``, ``(B, 3, 3)``, ``(B, 3)`` (or
                unbatched for one image), K in normalised uv units, world-to-camera R, t of the canonical frame.
                The u, v channels are then inpainted with each voxel's projection at every step (RePaint-style, see
                `cupid_extensions.inpaint_known_uv`), no PnP is run and the returned camera is the given one
                (``reprojection_errors``: the cube's uv against it).

        Raises:
            ValueError: an image of the wrong mode or size, a mask of the wrong size or empty,
                ``num_inference_steps < 1``, a negative ``guidance_scale``, a bad ``occupancy_threshold`` /
                ``output_type`` / ``latents``, or a generated cube with too few occupied voxels (or degenerate ones)
                for PnP; a ``camera`` of the wrong shape, with a non-rotation R or a bad K, or one that does not see
                the canonical cube in front of it.
            TypeError: a ``camera`` that is not a tuple of floating tensors, a non-bool ``multi_view``.
        """
        model = self.flow_model
        guidance_scale = model.config.guidance_scale if guidance_scale is None else guidance_scale
        self._check_call(num_inference_steps, guidance_scale, occupancy_threshold, output_type)
        if not isinstance(multi_view, bool):
            raise TypeError(f"`multi_view` must be a bool, got {type(multi_view).__name__}")
        images = self._images(image)
        batch_size = images.shape[0]
        known = None if camera is None else check_known_camera(camera, batch_size)
        if mask is not None:
            masks = self._mask(mask, batch_size).to(images.dtype)
            images = images * masks + self.config.background * (1 - masks)
        mean = torch.tensor(self.config.image_mean, dtype=images.dtype).reshape(1, -1, 1, 1)
        std = torch.tensor(self.config.image_std, dtype=images.dtype).reshape(1, -1, 1, 1)
        device, dtype = self._execution_device, model.dtype
        pixel_values = ((images - mean) / std).to(device=device, dtype=dtype)
        tokens = model.encode_image(pixel_values)

        config = model.config
        resolution = config.cube_resolution
        shape = (batch_size, config.cube_channels, resolution, resolution, resolution)
        self._check_generator(generator, batch_size)
        if latents is not None:
            if not isinstance(latents, torch.Tensor) or not latents.is_floating_point() \
                    or tuple(latents.shape) != shape or not bool(torch.isfinite(latents).all()):
                raise ValueError(f"`latents` must be a finite floating-point tensor of shape {shape}, got "
                                 f"{getattr(latents, 'shape', type(latents).__name__)}")
            sample = latents.to(device=device, dtype=dtype)
        else:
            sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if multi_view:
            sample = share_initial_occupancy(sample)
        if known is not None:
            # Normalised like the cube the flow denoises (`normalize_cube`).
            known_uv = 2 * known_uv_channels(*known, resolution, self.config.extent).to(device=device, dtype=dtype) - 1
            noise = sample

        scheduler = self.scheduler
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1], device=device)
        for timestep in self.progress_bar(scheduler.timesteps):
            t = (timestep / scheduler.config.num_train_timesteps).expand(batch_size).to(dtype)
            velocity = self._velocity(sample, t, tokens, float(guidance_scale))
            if multi_view:
                velocity = average_shared_velocity(velocity)
            previous = sample
            sample = scheduler.step(velocity, timestep, sample, return_dict=False)[0]
            if known is not None:
                t_next = float(scheduler.sigmas[scheduler.step_index])
                sample = inpaint_known_uv(sample, previous, velocity, float(t[0]), t_next, known_uv, noise,
                                          dense=self.flow_model.config.dense_uv)

        cubes = denormalize_cube(sample.to(device="cpu", dtype=torch.float64))
        extent = self.config.extent
        cameras, thresholds, occupied = [], [], []
        for index, cube in enumerate(cubes):
            if known is None:
                solution, correspondences = camera_from_uv_cube(cube, threshold=float(occupancy_threshold),
                                                                extent=extent)
                cameras.append((solution.intrinsics, solution.rotation, solution.translation, solution.rmse))
            else:
                # The camera is known: only the voxels are decoded (same threshold lowering), and the cube's uv is
                # scored against the camera instead of solved for it.
                correspondences = decode_uv_cube(cube, threshold=float(occupancy_threshold), extent=extent)
                k, r, t = (value[index] for value in known)
                residual = correspondences.uv - project_points(correspondences.points, k, r, t)
                cameras.append((k, r, t, residual.square().sum(dim=1).mean().sqrt()))
            thresholds.append(correspondences.threshold)
            occupied.append(cube[0] > correspondences.threshold)
        occupied = torch.stack(occupied)
        intrinsics = torch.stack([c[0] for c in cameras])
        rotations = torch.stack([c[1] for c in cameras])
        translations = torch.stack([c[2] for c in cameras])
        silhouettes = torch.stack([self.silhouette(o, k, r, t, extent, self.image_size)
                                   for o, k, r, t in zip(occupied, intrinsics, rotations, translations)])
        overlays = self.overlay(images.float().cpu(), silhouettes)

        # -- Stage 2 (optional): colours from the image at the voxels' projections under the recovered camera. ----
        colors = renderings = None
        if self.appearance_model is not None:
            colors = self.generate_appearance(pixel_values, occupied, intrinsics, rotations, translations,
                                              num_inference_steps, generator)
            renderings = self.draw_colored_voxels(images.float().cpu(), occupied, colors, intrinsics, rotations,
                                                  translations, extent)
        # -- end of stage 2 --------------------------------------------------------------------------------------

        if output_type == "latent":
            shapes = cubes
        elif output_type == "voxels":
            shapes = occupied
        else:
            shapes = self.to_meshes(cubes[:, 0], thresholds, extent)
            if colors is not None:
                self.color_meshes(shapes, occupied, colors, extent)
        self.maybe_free_model_hooks()
        output = CupidPipelineOutput(shapes=shapes, intrinsics=intrinsics, rotations=rotations,
                                     translations=translations,
                                     reprojection_errors=torch.stack([c[3] for c in cameras]),
                                     thresholds=thresholds, overlays=overlays, silhouettes=silhouettes,
                                     approximation=MULTI_VIEW_APPROXIMATION if multi_view else None,
                                     colors=colors, renderings=renderings)
        return output if return_dict else output.to_tuple()

    # -- stage 2 ---------------------------------------------------------------------------------------------

    def generate_appearance(self, pixel_values: torch.Tensor, occupied: torch.Tensor, intrinsics: torch.Tensor,
                            rotations: torch.Tensor, translations: torch.Tensor, num_inference_steps: int,
                            generator=None) -> torch.Tensor:
        """Per-voxel colours ``(B, 3, R, R, R)`` in [0, 1] (CPU, float32) from the ``appearance_model`` at the
        recovered cameras (its own default guidance scale; the same number of steps as stage 1). The noise comes
        from ``generator`` after stage 1 drew its own, so a seeded call stays reproducible."""
        model = self.appearance_model
        device, dtype = self._execution_device, model.dtype
        colors = model.sample(pixel_values.to(device=device, dtype=dtype), occupied.to(device),
                              intrinsics.to(device=device, dtype=dtype), rotations.to(device=device, dtype=dtype),
                              translations.to(device=device, dtype=dtype), num_inference_steps=num_inference_steps,
                              generator=generator, progress=self.progress_bar)
        return colors.float().cpu()

    @staticmethod
    def draw_colored_voxels(images: torch.Tensor, occupied: torch.Tensor, colors: torch.Tensor,
                            intrinsics: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor,
                            extent: float) -> list:
        """PIL RGB images: ``images`` ``(B, 3, S, S)`` with the coloured voxels drawn opaquely over them at the
        cameras (`render_voxel_colors`)."""
        from PIL import Image

        from ..models.cupid import render_voxel_colors

        pictures = []
        for image, grid, color, k, r, t in zip(images, occupied, colors, intrinsics, rotations, translations):
            drawn = render_voxel_colors(grid, color, k, r, t, size=image.shape[-1], extent=extent)
            rgb = image.permute(1, 2, 0).expand(-1, -1, 3)
            picture = torch.where(drawn["mask"][..., None], drawn["rgb"][..., :3], rgb)
            pictures.append(Image.fromarray((picture.clamp(0, 1).numpy() * 255).round().astype(np.uint8), mode="RGB"))
        return pictures

    @staticmethod
    def color_meshes(meshes: list, occupied: torch.Tensor, colors: torch.Tensor, extent: float) -> None:
        """Give each mesh (in place) vertex colours: the colour of the occupied voxel nearest each vertex."""
        from scipy.spatial import cKDTree

        for mesh, grid, color in zip(meshes, occupied, colors):
            if mesh is None:
                continue
            _, centres = voxel_grid_points(grid.shape[0], extent)
            inside = grid.reshape(-1)
            _, nearest = cKDTree(centres[inside].numpy()).query(np.asarray(mesh.vertices))
            rgb = color.reshape(color.shape[0], -1)[:, inside].T[nearest].clamp(0, 1).numpy()
            alpha = np.ones((rgb.shape[0], 1))
            mesh.visual.vertex_colors = (np.concatenate([rgb[:, :3], alpha], axis=1) * 255).round().astype(np.uint8)

    # -- outputs ---------------------------------------------------------------------------------------------

    @staticmethod
    def silhouette(occupied: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                   translation: torch.Tensor, extent: float, image_size: int) -> torch.Tensor:
        """The ``(S, S)`` bool silhouette of the occupied voxels ``(R, R, R)`` seen by the camera (K in uv units):
        every pixel whose centre lies in the bounding box of some voxel's 8 projected corners. The box contains the
        voxel's projection, so the silhouette covers the voxelised object's (slightly more, by under a voxel's
        projected size); corners on or behind the camera plane are left out."""
        resolution = occupied.shape[0]
        _, centres = voxel_grid_points(resolution, extent)
        centres = centres[occupied.reshape(-1)]
        half = extent / resolution / 2
        signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                             dtype=torch.float64)
        corners = (centres[:, None, :] + half * signs[None]).reshape(-1, 3)
        in_front = (world_to_camera(corners, rotation, translation)[:, 2] > 0).reshape(-1, 8).all(dim=1)
        corners = corners.reshape(-1, 8, 3)[in_front].reshape(-1, 3)
        mask = torch.zeros(image_size * image_size, dtype=torch.bool)
        if corners.shape[0] == 0:
            return mask.reshape(image_size, image_size)
        pixels_k = intrinsics_uv_to_pixels(intrinsics, (image_size, image_size))
        projected = project_points(corners, pixels_k, rotation, translation).reshape(-1, 8, 2)
        low, high = projected.min(dim=1).values, projected.max(dim=1).values
        axis = torch.arange(image_size, dtype=torch.float64) + 0.5  # pixel centres, origin top-left
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
        for start in range(0, low.shape[0], RASTER_CHUNK):
            lo, hi = low[start:start + RASTER_CHUNK], high[start:start + RASTER_CHUNK]
            inside = ((grid[None] >= lo[:, None]) & (grid[None] <= hi[:, None])).all(dim=-1)
            mask |= inside.any(dim=0)
        return mask.reshape(image_size, image_size)

    @staticmethod
    def overlay(images: torch.Tensor, silhouettes: torch.Tensor) -> list:
        """PIL RGB images: ``images`` ``(B, C, S, S)`` in [0, 1] with ``OVERLAY_COLOR`` blended at ``OVERLAY_ALPHA``
        over the silhouettes ``(B, S, S)``."""
        from PIL import Image

        rgb = images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1)
        color = torch.tensor(OVERLAY_COLOR, dtype=rgb.dtype).reshape(1, 3, 1, 1)
        alpha = OVERLAY_ALPHA * silhouettes[:, None].to(rgb.dtype)
        blended = (1 - alpha) * rgb + alpha * color
        arrays = (blended.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(array, mode="RGB") for array in arrays]

    @staticmethod
    def to_meshes(occupancy: torch.Tensor, thresholds: list, extent: float) -> list:
        """Marching-cubes `trimesh.Trimesh` of each occupancy grid ``(R, R, R)`` (values at the voxel centres) at its
        threshold, in the canonical frame; the grid is padded with one layer of empty voxels so that the surface is
        closed where the object touches the cube's faces. ``None`` where nothing is occupied."""
        import trimesh

        resolution = occupancy.shape[1]
        voxel = extent / resolution
        # Padded centres run from −extent/2 − voxel/2 to extent/2 + voxel/2: that is the marching-cubes bound.
        bound = extent / 2 + voxel / 2
        meshes = []
        for grid, threshold in zip(occupancy, thresholds):
            padded = torch.nn.functional.pad(grid - threshold, (1, 1, 1, 1, 1, 1), value=-float(threshold))
            mesh = meshes_from_occupancy_grid(padded[None], bound)[0]
            meshes.append(None if mesh is None else trimesh.Trimesh(vertices=mesh[0], faces=mesh[1], process=False))
        return meshes
