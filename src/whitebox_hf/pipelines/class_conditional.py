"""What the class-conditional pipelines of this package share: class-label validation, classifier-free guidance
with the null class taken from the configuration, output conversion, and the autoencoder helpers that move
pixels in and out of latent space.

Autoencoder contract (used by the pipelines *and* by the training scripts, so both see the same latents):

* a diffusers autoencoder (`AutoencoderKL`, or any class from the diffusers package): ``encode(x).latent_dist``
  gives the posterior, its mode (or a sample) is normalised as ``(z − shift_factor)·scaling_factor`` from the
  autoencoder's config (``shift_factor`` None → 0); decoding inverts that, then ``decode(z).sample``;
* any other `ModelMixin` (e.g. this package's RAE) with ``encode(pixel_values) -> Tensor`` returning latents that
  are *already* normalised and ``decode(latents) -> Tensor`` returning pixels;
* ``None``: pixel space; the "latents" are the pixels.

Pixels are in [-1, 1], shape ``(B, C, H, W)``.

Saved folders carry their own code (diffusers' custom pipelines and components), so that they load both ways::

    pipe.save_pretrained("folder")
    DiffusionPipeline.from_pretrained("folder", trust_remote_code=True)  # anywhere with torch + diffusers
    WhiteboxFlowPipeline.from_pretrained("folder")                       # with whitebox_hf: the package's classes

`ClassConditionalPipelineMixin.save_pretrained` writes, next to diffusers' usual folder, one self-contained module per
class that diffusers cannot import by name: the pipeline's at the root (``pipeline_whitebox_flow.py``,
``"_class_name": ["pipeline_whitebox_flow", "WhiteboxFlowPipeline"]``) and each such component's in its folder
(``transformer/crate_denoiser.py``, ``"transformer": ["crate_denoiser", "CrateDenoiserTransformer"]``). A module of
whitebox_hf is bundled with the package modules it imports (`whitebox_hf.utils.vendoring.bundle_module`, code
unchanged, only the package's import statements removed); a class that diffusers loaded from such a file is saved by
copying that file. diffusers fetches a component's code as that one file, hence one file per class.

This module is itself bundled into the saved pipeline modules: it imports torch and diffusers only, and reaches
whitebox_hf (the bundler, the package's component classes) by name at run time, only when running from the package.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from pathlib import Path

import torch
from diffusers.image_processor import VaeImageProcessor

__all__ = ["ClassConditionalPipelineMixin", "decode_latents", "encode_to_latents"]

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

