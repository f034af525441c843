"""`WhiteboxFlowPipeline`: class-conditional rectified-flow sampling with classifier-free guidance, in pixel space
or in the latent space of an autoencoder (a diffusers `AutoencoderKL` or this package's RAE).

Components: ``transformer`` (diffusers `DiTTransformer2DModel` or `CrateDenoiserTransformer`, anything with the
DiT call signature ``transformer(x, timestep, class_labels=..., return_dict=False)[0]`` predicting the velocity
v = noise − x₀), ``scheduler`` (`FlowMatchEulerDiscreteScheduler`: σ = 1 is noise, the model sees
``timestep = σ·1000``, Euler steps ``x ← x + (σ_next − σ)·v``) and the optional ``autoencoder``. The configuration
also holds ``num_classes`` (the null class of guidance is id ``num_classes``, never diffusers' hard-coded 1000)
and ``id2label``.

Saving and loading (`ClassConditionalPipelineMixin.save_pretrained`): the folder carries the pipeline's code and that
of a non-diffusers component (``pipeline_whitebox_flow.py``, ``transformer/crate_denoiser.py``,
``autoencoder/rae.py``), so it loads with ``DiffusionPipeline.from_pretrained(folder_or_repo,
trust_remote_code=True)`` where whitebox_hf is not installed, and with ``WhiteboxFlowPipeline.from_pretrained``
(the package's classes, no code of the folder run) where it is. A pipeline saved without an autoencoder records
``"autoencoder": [null, null]`` and reloads with None.

LoRA: `save_lora_weights` / `load_lora_weights` / `unload_lora_weights` manage a peft LoRA adapter on the
transformer (diffusers' DiT has no `PeftAdapterMixin`): ``pytorch_lora_weights.safetensors`` (keys prefixed
``transformer.``) plus peft's ``adapter_config.json``. Save an adapted pipeline as base folder + adapter folder:
``save_pretrained`` of a pipeline whose transformer still holds LoRA layers writes peft's module names, which
the plain transformer class cannot reload (call `unload_lora_weights` first, or merge the adapter yourself).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .class_conditional import ClassConditionalPipelineMixin, decode_latents, encode_to_latents

__all__ = ["LORA_WEIGHT_NAME", "WhiteboxFlowPipeline"]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
LORA_PREFIX = "transformer."


class WhiteboxFlowPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Class-conditional flow-matching pipeline (see the module docstring).

    Args:
        transformer: the velocity model; its config gives ``in_channels`` and ``sample_size`` of the latents.
        scheduler (`FlowMatchEulerDiscreteScheduler`): the ODE solver.
        autoencoder (*optional*): `AutoencoderKL`, an RAE-like `ModelMixin`, or None for pixel space.
        num_classes (`int`, *optional*): number of classes (default: the transformer's ``num_embeds_ada_norm``
            or ``num_classes``); the null class id is ``num_classes``.
        id2label (`dict`, *optional*): class id → name, for ``class_labels`` given as names.
    """

    model_cpu_offload_seq = "transformer->autoencoder"
    _optional_components = ["autoencoder"]

    def __init__(self, transformer, scheduler: FlowMatchEulerDiscreteScheduler, autoencoder=None,
                 num_classes: int | None = None, id2label: dict | None = None):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, autoencoder=autoencoder)
        config = transformer.config
        default = getattr(config, "num_embeds_ada_norm", None) or getattr(config, "num_classes", None)
        if num_classes is None and default is None:
            raise ValueError("`num_classes` is required: the transformer's config has neither `num_embeds_ada_norm` "
                             "nor `num_classes`")
        if num_classes is not None and default is not None and int(num_classes) != int(default):
            # The null id is `num_classes`: it must be the transformer's null row, not one of its classes.
            raise ValueError(f"`num_classes` ({num_classes}) must match the transformer's class count ({default})")
        self._register_labels(num_classes, id2label, default)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of what the transformer denoises."""
        config = self.transformer.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return int(config.in_channels), int(height), int(width)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised latents of pixels in [-1, 1] (the pixels in pixel space)."""
        return encode_to_latents(self.autoencoder, pixel_values)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in about [-1, 1] from normalised latents."""
        return decode_latents(self.autoencoder, latents)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample one image per entry of ``class_labels``.

        Args:
            class_labels: class ids in ``[0, num_classes)`` (int, list, 1-D tensor) or names from ``id2label``.
            num_inference_steps: Euler steps (≥ 1).
            guidance_scale: classifier-free guidance ``g`` (≥ 0): ``uncond + g·(cond − uncond)``; 1 is plain
                conditional sampling (one model pass per step), 0 unconditional.
            generator: torch generator(s) for the initial noise.
            latents: initial noise of shape ``(B, C, H, W)`` (``latent_shape``) instead of drawing it.
            output_type: ``"pil"``, ``"np"`` (B, H, W, C) or ``"pt"`` (B, C, H, W), values in [0, 1]; or
                ``"latent"`` for the final latents.
            return_dict: return an `ImagePipelineOutput` (else a 1-tuple).

        Raises:
            ValueError: a class id out of range (checked for CPU labels) or an empty ``class_labels``,
                ``num_inference_steps`` not an integer ≥ 1, a negative or non-finite ``guidance_scale``, an unknown
                ``output_type``, ``latents`` of the wrong shape or (CPU) not finite, a list of generators whose
                length is not the batch size.
            TypeError: ``class_labels`` that are not integer ids or names, ``latents`` not a floating-point tensor,
                ``generator`` not a `torch.Generator` (or a list of them).
        """
        self._check_call_arguments(num_inference_steps, guidance_scale, output_type)
        labels = self._prepare_class_labels(class_labels)
        device, dtype = self._execution_device, self.transformer.dtype
        shape = (labels.shape[0], *self.latent_shape)
        self._check_latents(latents, shape)
        self._check_generator(generator, shape[0])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            velocity = self._guided_prediction(self.transformer, latents, t, labels, guidance_scale)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]

        if output_type == "latent":
            images = latents
        else:
            images = self._to_output_type(self.decode(latents), output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    # ------------------------------------------------------------------------------------------------------------
    # LoRA adapters on the transformer (peft)
    # ------------------------------------------------------------------------------------------------------------

    def add_lora_adapter(self, lora_config, adapter_name: str = "default") -> None:
        """Inject a fresh peft LoRA adapter (a `peft.LoraConfig`) into the transformer, in place."""
        from peft import inject_adapter_in_model

        inject_adapter_in_model(lora_config, self.transformer, adapter_name=adapter_name)
        self._lora_configs = {**getattr(self, "_lora_configs", {}), adapter_name: lora_config}

    def save_lora_weights(self, save_directory: str | os.PathLike, adapter_name: str = "default") -> Path:
        """Write the transformer's LoRA adapter ``adapter_name`` to ``save_directory``: the LoRA tensors
        (``pytorch_lora_weights.safetensors``, keys ``transformer.<module>.lora_A.weight``…) and peft's
        ``adapter_config.json``. Returns the weights file.

        Raises:
            ValueError: the transformer holds no adapter of that name.
        """
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        config = getattr(self, "_lora_configs", {}).get(adapter_name)
        if config is None:
            raise ValueError(f"the transformer has no LoRA adapter named {adapter_name!r}; add or load one first")
        state = get_peft_model_state_dict(self.transformer, adapter_name=adapter_name)
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        path = save_directory / LORA_WEIGHT_NAME
        save_file({LORA_PREFIX + key: value.detach().contiguous().cpu() for key, value in state.items()}, path,
                  metadata={"format": "pt"})
        config.save_pretrained(str(save_directory))
        return path

    def load_lora_weights(self, directory: str | os.PathLike, adapter_name: str = "default") -> None:
        """Load a LoRA adapter written by `save_lora_weights` into the transformer (injecting its layers first).

        Raises:
            FileNotFoundError: the folder lacks the weights or ``adapter_config.json``.
            ValueError: the file holds tensors the adapter does not expect.
        """
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / LORA_WEIGHT_NAME
        if not weights.is_file() or not (directory / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{directory} must hold {LORA_WEIGHT_NAME} and adapter_config.json")
        config = LoraConfig.from_pretrained(str(directory))
        state = {key.removeprefix(LORA_PREFIX): value for key, value in load_file(weights).items()}
        if adapter_name not in getattr(self, "_lora_configs", {}):
            inject_adapter_in_model(config, self.transformer, adapter_name=adapter_name)
        result = set_peft_model_state_dict(self.transformer, state, adapter_name=adapter_name)
        unexpected = getattr(result, "unexpected_keys", None) or []
        if unexpected:
            raise ValueError(f"unexpected LoRA tensors in {weights}: {unexpected[:5]}")
        self._lora_configs = {**getattr(self, "_lora_configs", {}), adapter_name: config}
        self.transformer.to(self._execution_device)

    def unload_lora_weights(self) -> None:
        """Remove every LoRA layer, restoring the transformer's original modules (weights unchanged)."""
        from peft.tuners.lora import LoraLayer

        for name, module in list(self.transformer.named_modules()):
            if isinstance(module, LoraLayer):
                parent_name, _, child = name.rpartition(".")
                parent = self.transformer.get_submodule(parent_name) if parent_name else self.transformer
                setattr(parent, child, module.get_base_layer())
        self._lora_configs = {}
