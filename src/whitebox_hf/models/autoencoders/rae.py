"""A representation autoencoder (RAE, spec ``ssl_and_generation.md`` §3) whose encoder is a frozen, trained
white-box `CrateModel` and whose decoder is a small ViT-MAE-style transformer.

Encoder (frozen, never trained): pixels in [-1, 1] → the CRATE's own input normalisation → `CrateModel` →
``last_hidden_state`` (class token + patch tokens) → the class token is dropped → every patch token is
standardised over its channels (a LayerNorm **without** affine: RAE drops the final norm's weight and bias) →
tokens reshaped to a ``(C, H/p, W/p)`` latent map (192 × 7 × 7 for the Fashion-MNIST CRATE, patch 4 on 28²).

Latent normalisation: ``z' = (z − latents_mean) / latents_std`` with **per-channel** statistics (C numbers
each) computed on training images (`compute_latent_statistics`) and stored in the config. The RAE paper uses
per-element (C, H, W) statistics; per-channel ones are what a 7 × 7 map of 28² images needs (49× fewer numbers
in the config, and the spatial positions of the standardised tokens already have similar scales). ``latents_std``
is ``sqrt(var + 1e-5)``, so `encode` and `decode` are exact inverses (no extra epsilon at use time).

Decoder: Linear(C → width), fixed 2-D sin-cos positions, a trainable class token prepended, ``decoder_layers``
pre-norm transformer layers (`torch.nn.TransformerEncoderLayer`, GELU), LayerNorm, Linear(width → p²·channels),
class token dropped, unpatchify. Output pixels are in the [-1, 1] scale (not clamped).

Noise augmentation: in training mode `forward` adds ``σ·ε`` to the standardised tokens before decoding, with a
per-sample ``σ = noise_tau · U(0, 1)``; `encode`/`decode` never add noise.

```python
>>> rae = CrateRepresentationAutoencoder.from_crate_encoder("runs/fashion_mnist_crate_long/model")
>>> rae.compute_latent_statistics(train_pixels)           # pixels (N, 1, 28, 28) in [-1, 1]
>>> latents = rae.encode(pixels)                          # (N, 192, 7, 7), normalised
>>> images = rae.decode(latents)                          # (N, 1, 28, 28) in [-1, 1]
>>> rae.save_pretrained("rae"); CrateRepresentationAutoencoder.from_pretrained("rae")
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin  # at top level: diffusers resolves loaders by name here
from diffusers.utils import BaseOutput
from torch import nn

from ...nn import sincos_position_embedding_2d, unpatchify
from ..crate import CrateConfig, CrateModel
from ..safe_loading import SafetensorsOnlyModelMixin

__all__ = ["CrateRepresentationAutoencoder", "RAEOutput"]


@dataclass
class RAEOutput(BaseOutput):
    """``sample``: reconstructed pixels ``(B, C, H, W)``; ``latents``: the (normalised) latents that were
    decoded, noise included in training mode."""

    sample: torch.Tensor
    latents: torch.Tensor | None = None


class CrateRepresentationAutoencoder(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """RAE with a frozen CRATE encoder; see the module docstring. ``from_pretrained`` loads safetensors weights
    only (a pickled ``.bin`` is refused: `SafetensorsOnlyModelMixin`).

    Args:
        encoder_config: the `CrateConfig` of the encoder as a dict (``config.to_dict()``).
        encoder_image_mean / encoder_image_std: the per-channel normalisation the encoder was trained with
            (on [0, 1] pixels); the RAE's own pixels are in [-1, 1].
        decoder_hidden_size, decoder_num_layers, decoder_num_heads, decoder_mlp_ratio: decoder shape.
        noise_tau: train-time noise scale τ (σ = τ·U(0, 1) per sample); 0 disables it.
        latents_mean / latents_std: per-channel latent statistics (lists of C floats), or None (identity).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        encoder_config: dict | None = None,
        encoder_image_mean: tuple[float, ...] = (0.5,),
        encoder_image_std: tuple[float, ...] = (0.5,),
        decoder_hidden_size: int = 192,
        decoder_num_layers: int = 4,
        decoder_num_heads: int = 6,
        decoder_mlp_ratio: float = 4.0,
        noise_tau: float = 0.8,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        if encoder_config is None:
            raise ValueError("`encoder_config` (the CrateConfig of the encoder, as a dict) is required")
        crate_config = CrateConfig.from_dict(dict(encoder_config))
        if crate_config.image_size % crate_config.patch_size:
            raise ValueError("the encoder's image_size must be a multiple of its patch_size")
        self.encoder = CrateModel(crate_config)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.latent_channels = crate_config.hidden_size
        self.grid_size = crate_config.image_size // crate_config.patch_size
        self.patch_size = crate_config.patch_size
        self.num_channels = crate_config.num_channels
        self.image_size = crate_config.image_size
        self.token_norm_eps = crate_config.layer_norm_eps
        if len(encoder_image_mean) != self.num_channels or len(encoder_image_std) != self.num_channels:
            raise ValueError(f"encoder_image_mean/std need {self.num_channels} values")
        self.register_buffer("pixel_mean", torch.tensor(encoder_image_mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(encoder_image_std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

        width = decoder_hidden_size
        self.decoder_embed = nn.Linear(self.latent_channels, width)
        self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        # The shared MAE table (column channels first) with its halves swapped: the RAE decoder was trained with
        # the row channels first, and the buffer is recomputed on load, so saved decoders need this layout.
        positions = sincos_position_embedding_2d(width, self.grid_size, self.grid_size, num_prefix_tokens=1)
        positions = torch.cat([positions[..., width // 2:], positions[..., : width // 2]], dim=-1)
        self.register_buffer("decoder_position_embeddings", positions, persistent=False)
        self.decoder_layers = nn.ModuleList([
            nn.TransformerEncoderLayer(width, decoder_num_heads, dim_feedforward=int(width * decoder_mlp_ratio),
                                       dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(decoder_num_layers)
        ])
        self.decoder_norm = nn.LayerNorm(width)
        self.decoder_pred = nn.Linear(width, self.patch_size ** 2 * self.num_channels)
        nn.init.normal_(self.decoder_cls_token, std=0.02)

        self.register_buffer("latents_mean_buffer", torch.zeros(1, self.latent_channels, 1, 1), persistent=False)
        self.register_buffer("latents_std_buffer", torch.ones(1, self.latent_channels, 1, 1), persistent=False)
        self._set_statistic_buffers(latents_mean, latents_std)

    # -- latent statistics ------------------------------------------------------------------------------------
    def _set_statistic_buffers(self, mean, std) -> None:
        for name, values, fill in (("latents_mean_buffer", mean, 0.0), ("latents_std_buffer", std, 1.0)):
            buffer = getattr(self, name)
            if values is None:
                buffer.fill_(fill)
                continue
            values = torch.as_tensor(values, dtype=torch.float32).flatten()
            if values.numel() != self.latent_channels:
                raise ValueError(f"latent statistics need {self.latent_channels} values, got {values.numel()}")
            buffer.copy_(values.view(1, -1, 1, 1).to(buffer.device))
        if std is not None and not torch.all(self.latents_std_buffer > 0):
            raise ValueError("latents_std must be positive")

    def set_latent_statistics(self, mean, std) -> None:
        """Store per-channel ``mean``/``std`` (C values each) in the config and use them from now on."""
        mean = [float(v) for v in torch.as_tensor(mean).flatten()]
        std = [float(v) for v in torch.as_tensor(std).flatten()]
        self._set_statistic_buffers(mean, std)
        self.register_to_config(latents_mean=mean, latents_std=std)

    @torch.no_grad()
    def compute_latent_statistics(self, pixel_values: torch.Tensor, batch_size: int = 500, eps: float = 1e-5):
        """Per-channel mean and ``sqrt(var + eps)`` of the raw (un-normalised) latents of ``pixel_values``
        (N, C, H, W) in [-1, 1], over images and positions (float64 sums); stored with `set_latent_statistics`.
        Returns ``(mean, std)`` tensors of shape (C,)."""
        total = torch.zeros(self.latent_channels, dtype=torch.float64)
        total_sq = torch.zeros(self.latent_channels, dtype=torch.float64)
        count = 0
        for start in range(0, pixel_values.shape[0], batch_size):
            z = self.encode_raw(pixel_values[start:start + batch_size].to(self.device)).double().cpu()
            total += z.sum(dim=(0, 2, 3))
            total_sq += (z ** 2).sum(dim=(0, 2, 3))
            count += z.shape[0] * z.shape[2] * z.shape[3]
        if count < 2:
            raise ValueError("need at least one image to compute latent statistics")
        mean = total / count
        var = (total_sq / count - mean ** 2).clamp_min(0.0)
        std = (var + eps).sqrt()
        self.set_latent_statistics(mean, std)
        return mean.float(), std.float()

    # -- encoder ----------------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.grid_size, self.grid_size)

    @staticmethod
    def _check_tensor(name: str, value, expected: tuple[int, ...]) -> None:
        """``value`` must be a floating-point ``(B ≥ 1, *expected)`` tensor, finite (checked on CPU only: reading
        the values of an accelerator tensor would synchronise the host)."""
        shape = f"(B, {', '.join(map(str, expected))})"
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}")
        if value.ndim != 4 or tuple(value.shape[1:]) != expected or value.shape[0] == 0:
            raise ValueError(f"`{name}` must have shape {shape} with B ≥ 1, got {tuple(value.shape)}")
        if value.device.type == "cpu" and not torch.isfinite(value).all():
            raise ValueError(f"`{name}` must be finite, got NaN or infinite values")

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        self._check_tensor("pixel_values", pixel_values, (self.num_channels, self.image_size, self.image_size))

    @torch.no_grad()
    def encode_raw(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Standardised encoder tokens ``(B, C, h, w)`` before the dataset normalisation (no gradient)."""
        self._check_pixels(pixel_values)
        x = ((pixel_values.float() + 1.0) / 2.0 - self.pixel_mean) / self.pixel_std
        tokens = self.encoder(pixel_values=x).last_hidden_state[:, 1:]  # drop the class token
        tokens = F.layer_norm(tokens, (tokens.shape[-1],), eps=self.token_norm_eps)  # no affine
        batch = tokens.shape[0]
        return tokens.transpose(1, 2).reshape(batch, self.latent_channels, self.grid_size, self.grid_size)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latents_mean_buffer) / self.latents_std_buffer

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latents_std_buffer + self.latents_mean_buffer

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``(B, C, h, w)`` of pixels ``(B, channels, H, W)`` in [-1, 1]; deterministic."""
        return self.normalize_latents(self.encode_raw(pixel_values))

    # -- decoder ----------------------------------------------------------------------------------------------
    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        tokens = self.decoder_embed(z.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.decoder_cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + self.decoder_position_embeddings
        for layer in self.decoder_layers:
            tokens = layer(tokens)
        patches = self.decoder_pred(self.decoder_norm(tokens))[:, 1:]
        return unpatchify(patches, self.patch_size, self.num_channels, (self.grid_size, self.grid_size))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, channels, H, W)`` (in the [-1, 1] scale, unclamped) of normalised latents.

        Raises:
            TypeError: latents not a floating-point tensor.
            ValueError: latents not of shape ``(B, *latent_shape)``, or (CPU) not finite.
        """
        self._check_tensor("latents", latents, self.latent_shape)
        return self._decode_raw(self.denormalize_latents(latents.to(self.decoder_embed.weight.dtype)))

    def forward(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None,
                return_dict: bool = True) -> RAEOutput | tuple:
        """Reconstruct ``pixel_values``; in training mode the standardised tokens get per-sample Gaussian noise
        ``σ·ε``, ``σ = noise_tau·U(0, 1)``, before decoding (RAE's noise augmentation)."""
        z = self.encode_raw(pixel_values)
        if self.training and self.config.noise_tau > 0:
            # Drawn where the generator lives (a CUDA generator cannot draw on the CPU, nor the reverse), so that a
            # seeded generator gives the same noise whatever device the model is on.
            noise_device = generator.device if generator is not None else z.device
            sigma = self.config.noise_tau * torch.rand(z.shape[0], 1, 1, 1, generator=generator, device=noise_device)
            noise = torch.randn(z.shape, generator=generator, device=noise_device)
            z = z + (sigma * noise).to(z.device, z.dtype)
        sample = self._decode_raw(z)
        latents = self.normalize_latents(z)
        if not return_dict:
            return (sample, latents)
        return RAEOutput(sample=sample, latents=latents)

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_crate_encoder(cls, encoder_path: str | Path, image_mean=None, image_std=None, **kwargs):
        """An RAE around the trained CRATE saved in ``encoder_path`` (a `CrateModel` or
        `CrateForImageClassification` folder; the backbone is taken). The encoder's pixel normalisation is read
        from ``preprocessor_config.json`` there unless ``image_mean``/``image_std`` are given; ``kwargs`` go to
        the constructor (decoder shape, ``noise_tau``). The decoder is freshly initialised."""
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a classifier folder's head weights are expected to be unused
        try:
            encoder = CrateModel.from_pretrained(str(encoder_path))
        finally:
            hf_logging.set_verbosity(verbosity)
        processor_file = Path(encoder_path) / "preprocessor_config.json"
        if (image_mean is None or image_std is None) and processor_file.is_file():
            processor = json.loads(processor_file.read_text())
            image_mean = image_mean if image_mean is not None else processor.get("image_mean")
            image_std = image_std if image_std is not None else processor.get("image_std")
        channels = encoder.config.num_channels
        image_mean = tuple(image_mean) if image_mean is not None else (0.5,) * channels
        image_std = tuple(image_std) if image_std is not None else (0.5,) * channels
        config = encoder.config.to_dict()
        for key in ("architectures", "id2label", "label2id", "transformers_version", "dtype", "torch_dtype"):
            config.pop(key, None)
        model = cls(encoder_config=config, encoder_image_mean=image_mean, encoder_image_std=image_std, **kwargs)
        model.encoder.load_state_dict(encoder.state_dict(), strict=True)
        model.encoder.requires_grad_(False)
        model.encoder.eval()
        return model

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

