"""`WhiteboxDDPMPipeline`: class-conditional DDPM sampling in pixel space for the `UNet2DModel` baseline.

diffusers' `DDPMPipeline` is unconditional (it never passes ``class_labels``), so this small pipeline adds class
conditioning and classifier-free guidance. The U-Net is class-conditional through ``num_class_embeds =
num_classes + 1``: its last class embedding is the null class (id ``num_classes``, stored in the config).
Save/load exactly as `WhiteboxFlowPipeline`: ``WhiteboxDDPMPipeline.from_pretrained(folder)``, or
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without whitebox_hf. The scheduler may be any
epsilon-predicting diffusers scheduler (`DDPMScheduler`, `DDIMScheduler`, ...).
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from .class_conditional import ClassConditionalPipelineMixin

__all__ = ["WhiteboxDDPMPipeline"]


class WhiteboxDDPMPipeline(ClassConditionalPipelineMixin, DiffusionPipeline):
    """Class-conditional pixel-space DDPM pipeline.

    Args:
        unet (`UNet2DModel`): the noise predictor with ``num_class_embeds = num_classes + 1``.
        scheduler (`DDPMScheduler` or another epsilon scheduler).
        num_classes (`int`, *optional*): default ``unet.config.num_class_embeds − 1``.
        id2label (`dict`, *optional*): class id → name.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, num_classes: int | None = None,
                 id2label: dict | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        embeds = unet.config.num_class_embeds
        if num_classes is None and not embeds:
            raise ValueError("the U-Net must be class-conditional (`num_class_embeds` = num_classes + 1)")
        if embeds and num_classes is not None and int(num_classes) + 1 != embeds:
            raise ValueError(f"`num_classes` ({num_classes}) needs a U-Net with `num_class_embeds` = "
                             f"{int(num_classes) + 1} (the last one is the null class), got {embeds}")
        self._register_labels(num_classes, id2label, (embeds or 1) - 1)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        num_inference_steps: int = 1000,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample one image per class label; same arguments and errors as `WhiteboxFlowPipeline.__call__`
        (``latents`` is the initial pixel noise, shape ``(B, C, H, W)``)."""
        self._check_call_arguments(num_inference_steps, guidance_scale, output_type)
        labels = self._prepare_class_labels(class_labels)
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        shape = (labels.shape[0], config.in_channels, height, width)
        self._check_latents(latents, shape)
        self._check_generator(generator, shape[0])
        device, dtype = self._execution_device, self.unet.dtype
        if latents is None:
            image = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            image = latents.to(device=device, dtype=dtype)
        image = image * getattr(self.scheduler, "init_noise_sigma", 1.0)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(image, t) if hasattr(self.scheduler, "scale_model_input") \
                else image
            noise = self._guided_prediction(self.unet, model_input, t, labels, guidance_scale)
            image = self.scheduler.step(noise, t, image, generator=generator, return_dict=False)[0]

        images = image if output_type == "latent" else self._to_output_type(image, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
