"""SITA-VAE (Michelangelo's shape-image-text-aligned variational autoencoder) configuration."""

from transformers import PreTrainedConfig

from ..validation import (
    check_choice,
    check_positive,
    check_positive_int,
    resolve_head_dim,
    strict_config,
)

__all__ = ["SITA_VAE_PRESETS", "SitaVaeConfig"]

_BLOCK_TYPES = ("transformer", "crate")

SITA_VAE_PRESETS: dict[str, dict] = {
    # NeuralCarver/Michelangelo configs/aligned_shape_latents/shapevae-256.yaml (spec threed_and_motion.md §1.1):
    # 1 + 256 queries of width 768, 12 heads, 8 encoder and 16 decoder layers, d0 = 64, CLIP ViT-L/14 space (768).
    "sita-vae-256": dict(
        num_latents=256, hidden_size=768, num_attention_heads=12, num_encoder_layers=8, num_decoder_layers=16,
        latent_channels=64, num_fourier_frequencies=8, alignment_dim=768, qkv_bias=False, init_scale=0.25,
    ),
    # Spec §4's tiny SITA-VAE, sized for a 2-core CPU: 1 + 32 latents, width 128, 4 heads, 2 + 4 layers, d0 = 16.
    # init_scale 1 (std width^-½), not the authors' 0.25: with 0.25 the attention logits start near zero, every
    # query reads the same average of the points, and in a CPU budget the decoder stays on the average shape (64
    # shapes, 500 steps: training-shape IoU 0.10 with 0.25, 0.42 with 1; single shapes fit either way).
    # initial_posterior_logvar −4 (posterior std ≈ 0.14 at the start), not the authors' 0 (std 1): with std 1 and a
    # 3,500-step budget the decoder learned to expect the sampling noise, and decoding the posterior mean scored
    # validation IoU 0.13 where decoding samples scored 0.47 (32 shapes, docs/results/shapes.md's first run).
    "sita-vae-cpu": dict(
        num_latents=32, hidden_size=128, num_attention_heads=4, num_encoder_layers=2, num_decoder_layers=4,
        latent_channels=16, num_fourier_frequencies=8, alignment_dim=128, qkv_bias=False, init_scale=1.0,
        initial_posterior_logvar=-4.0,
    ),
}


@strict_config
class SitaVaeConfig(PreTrainedConfig):
    r"""
    Configuration of a SITA-VAE, the shape-image-text-aligned variational autoencoder of Michelangelo (Zhao et
    al., NeurIPS 2023; book Chapter 8).

    Surface points with normals ``(B, N, 6)`` are Fourier-embedded and read by ``1 + num_latents`` learned queries
    through one cross-attention block, followed by ``num_encoder_layers`` self-attention blocks. Token 0 is the
    global shape embedding, projected into the image/text alignment space; tokens ``1..num_latents`` go through a
    diagonal-Gaussian (KL) bottleneck of ``latent_channels`` channels. The decoder runs ``num_decoder_layers``
    self-attention blocks on the latents, then one cross-attention from Fourier-embedded query points to an
    occupancy logit. The training loss is ``BCE_vol + near_loss_weight·BCE_near + kl_loss_weight·KL +
    contrastive_loss_weight·L_con``.

    Defaults give the authors' 256-latent model (``SitaVaeConfig.from_preset("sita-vae-256")``: 185,249,409
    parameters; ``"sita-vae-cpu"`` is a 2-core CPU size).

    Args:
        num_latents (`int`, *optional*, defaults to 256):
            Number ``L`` of local latent tokens (the encoder has ``1 + L`` queries; the first is the global token).
        hidden_size (`int`, *optional*, defaults to 768):
            Token width of the encoder and decoder.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads (MSSA subspaces for ``block_type="crate"``); must divide ``hidden_size``.
        head_dim (`int`, *optional*):
            MSSA subspace dimension for ``block_type="crate"``; defaults to ``hidden_size // num_attention_heads``.
            The softmax attention blocks always use ``hidden_size // num_attention_heads``.
        num_encoder_layers (`int`, *optional*, defaults to 8):
            Self-attention blocks after the encoder's cross-attention.
        num_decoder_layers (`int`, *optional*, defaults to 16):
            Self-attention blocks of the decoder, on the local latents.
        latent_channels (`int`, *optional*, defaults to 64):
            Channels ``d₀`` of each local latent token (the diffusion latent is ``(L, d₀)``).
        num_fourier_frequencies (`int`, *optional*, defaults to 8):
            Frequencies ``2⁰ … 2^(F−1)`` of the Fourier point embedding (no π factor, the raw coordinates kept):
            ``3·(2F + 1)`` features per point, plus the 3 normal components in the encoder.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size`` (unused by ``block_type="crate"``).
        qkv_bias (`bool`, *optional*, defaults to `False`):
            Biases on the query/key/value projections (the output projections always have one).
        alignment_dim (`int`, *optional*, defaults to 768):
            Width of the image/text alignment space (CLIP ViT-L/14's 768 in the paper) the global token is
            projected into.
        block_type (`str`, *optional*, defaults to `"transformer"`):
            `"transformer"`: the authors' pre-LN softmax attention + GELU MLP blocks. `"crate"`: the white-box
            variant, whose self-attention blocks are CRATE layers (``Z½ = Z + MSSA(LN Z)``, ``Z⁺ = ISTA(LN Z½)``)
            and whose cross-attention blocks sparsify with ISTA in place of the MLP.
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA step size ``η`` (``block_type="crate"`` only).
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ISTA ℓ₁ weight ``λ`` (``block_type="crate"`` only).
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon.
        init_scale (`float`, *optional*, defaults to 0.25):
            Linear weights are initialised normal with std ``init_scale·hidden_size^-½`` (the authors' scheme);
            the queries use std 0.02 and the alignment projection std ``hidden_size^-½``.
        initial_posterior_logvar (`float`, *optional*, defaults to 0.0):
            Initial bias of the posterior log-variance (the authors' zero bias: posterior std 1 at the start); within
            the clamp range [−30, 20]. A negative value starts training with little sampling noise on the latents.
        near_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of the BCE on the near-surface half of the query points.
        kl_loss_weight (`float`, *optional*, defaults to 0.001):
            Weight of the KL to ``N(0, I)``, averaged over tokens and channels.
        contrastive_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of ``L_con``, the symmetric InfoNCE between the shape embedding and the given image and/or text
            embeddings.
        contrastive_logit_scale (`float`, *optional*, defaults to 100.0):
            Fixed scale of the InfoNCE logits (the frozen CLIP's ``logit_scale.exp()``, i.e. τ = 0.01).

    Example:

    ```python
    >>> from whitebox_hf import SitaVaeConfig, SitaVaeModel

    >>> model = SitaVaeModel(SitaVaeConfig.from_preset("sita-vae-cpu"))
    >>> model.num_parameters()
    1624865
    ```"""

    model_type = "sita_vae"

    num_latents: int = 256
    hidden_size: int = 768
    num_attention_heads: int = 12
    head_dim: int | None = None
    num_encoder_layers: int = 8
    num_decoder_layers: int = 16
    latent_channels: int = 64
    num_fourier_frequencies: int = 8
    mlp_ratio: int = 4
    qkv_bias: bool = False
    alignment_dim: int = 768
    block_type: str = "transformer"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    layer_norm_eps: float = 1e-5
    init_scale: float = 0.25
    initial_posterior_logvar: float = 0.0
    near_loss_weight: float = 0.1
    kl_loss_weight: float = 0.001
    contrastive_loss_weight: float = 0.1
    contrastive_logit_scale: float = 100.0

    def __post_init__(self, **kwargs):
        check_positive_int(self, "num_latents", "hidden_size", "num_attention_heads", "num_encoder_layers",
                           "num_decoder_layers", "latent_channels", "num_fourier_frequencies", "mlp_ratio",
                           "alignment_dim")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        resolve_head_dim(self)
        check_choice(self, "block_type", _BLOCK_TYPES)
        check_positive(self, "ista_step_size", "layer_norm_eps", "init_scale", "contrastive_logit_scale")
        if not isinstance(self.initial_posterior_logvar, (int, float)) or isinstance(self.initial_posterior_logvar, bool) \
                or not -30.0 <= self.initial_posterior_logvar <= 20.0:
            raise ValueError("`initial_posterior_logvar` must be a number in the log-variance clamp range [-30, 20], "
                             f"got {self.initial_posterior_logvar!r}")
        for name in ("ista_lambda", "near_loss_weight", "kl_loss_weight", "contrastive_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be non-negative, got {getattr(self, name)!r}")
        super().__post_init__(**kwargs)

    @property
    def point_embedding_dim(self) -> int:
        """Features of one Fourier-embedded coordinate triple: the raw xyz plus a sine and cosine per frequency."""
        return 3 * (2 * self.num_fourier_frequencies + 1)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SitaVaeConfig":
        """The configuration ``name`` (one of `SITA_VAE_PRESETS`), with any field overridden by keyword."""
        if name not in SITA_VAE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(SITA_VAE_PRESETS)}")
        return cls(**{**SITA_VAE_PRESETS[name], **overrides})
