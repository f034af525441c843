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

import inspect
import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..models.denoisers.shape_conditions import (
    encode_image_condition,
    encode_text_condition,
    images_to_pixel_values,
    null_image_condition,
)
from ..models.sita_vae.mesh_extraction import meshes_from_occupancy_grid
from .class_conditional import ClassConditionalPipelineMixin

__all__ = [
    "SHAPE_OUTPUT_TYPES",
    "ShapeGenerationPipeline",
    "ShapeGenerationPipelineOutput",
    "default_shape_scheduler",
    "training_noise_scheduler",
]

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
