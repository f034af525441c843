"""Cupid stage-1 flow configuration: a rectified-flow transformer over the occupancy + UV cube (spec
threed_and_motion.md §2.1-2.3, §4 "Cupid")."""

from transformers import PreTrainedConfig

from ..crate.configuration_crate import CrateConfig
from ..validation import (
    check_positive,
    check_positive_int,
    check_probability,
    strict_config,
)

__all__ = ["CUPID_FLOW_PRESETS", "DEFAULT_IMAGE_ENCODER_CONFIG", "CupidFlowConfig"]

# A small CRATE for the 64² renders of `load_shape_renders`: 8×8 patches, so 1 + 64 image tokens of width 128.
DEFAULT_IMAGE_ENCODER_CONFIG = dict(image_size=64, patch_size=8, num_channels=3, hidden_size=128, num_hidden_layers=4,
                                    num_attention_heads=4)

CUPID_FLOW_PRESETS: dict[str, dict] = {
    # TRELLIS's stage-1 DiT-L sizes (spec §2.1: 24 blocks, width 1024, 16 heads, 16³ = 4096 tokens) on the cube
    # itself: a 64³ cube in 4³ patches gives TRELLIS's 16³ tokens without its conv VAE. Cupid conditions on DINOv2
    # ViT-L/14; a CRATE-Base-sized image encoder stands in (no pretrained DINOv2 offline).
    "cupid-flow-l": dict(
        cube_resolution=64, patch_size=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        image_encoder_config=dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12),
    ),
    # Spec §4's CPU scale: a 32³ cube in 4³ patches, so 8³ = 512 tokens of width 128, 4 blocks; the 64² renders
    # read by the small CRATE of `DEFAULT_IMAGE_ENCODER_CONFIG`.
    "cupid-flow-cpu": dict(
        cube_resolution=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        image_encoder_config=dict(DEFAULT_IMAGE_ENCODER_CONFIG),
    ),
}


@strict_config
class CupidFlowConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidFlowModel`, Cupid's stage 1 (Huang et al., arXiv 2510.20776; book §8.9): a rectified
    flow that generates the occupancy + UV cube of `whitebox_hf.models.cupid.uv_cube` from one image, so that the
    camera follows from the generated 2D-3D correspondences by PnP.

    **What is denoised.** Cupid compresses a 64³ occupancy grid and a 64³ UV cube with two 3D-conv VAEs into a
    16³×16 latent and denoises that. Here the ``(occupancy, u, v)`` cube (mapped to [−1, 1]) is denoised *directly*
    at a coarse resolution: a 3D patch embedding (a strided ``Conv3d``) turns the ``cube_resolution³`` cube into
    ``(cube_resolution / patch_size)³`` tokens (8³ = 512 for the CPU preset's 32³ cube in 4³ patches). Why: on a
    2-core CPU, a cube VAE would be a second model to train and evaluate before the flow can start, and its
    reconstruction error would add to the pose error; the patch embedding gives the transformer the same coarse
    token grid a VAE would, and the cube's three channels need no learned compression.

    **Image condition.** The package's own CRATE image encoder (a `CrateModel` built from
    ``image_encoder_config``, kept inside the model so one folder holds everything) replaces DINOv2: its
    ``last_hidden_state`` (class token + patch tokens) goes through LayerNorm and a linear map to ``hidden_size``
    and every block cross-attends to it. Pretrain it separately (e.g. SimDINO) and copy its weights into
    ``model.image_encoder``; with ``freeze_image_encoder`` it then stays fixed, as DINOv2 does in Cupid. Tokens from
    any encoder of the same width can be passed instead as ``encoder_hidden_states``. The null condition of
    classifier-free guidance is all-zero image tokens (Cupid and TRELLIS zero the DINOv2 features).

    **Blocks.** DiT blocks with adaptive LayerNorm-zero timestep conditioning (TRELLIS's ``ModulatedTransformer
    CrossBlock``): ``x += g₁·SelfAttn(mod₁(LN x))``, ``x += CrossAttn(LN x, image tokens)``, ``x += g₂·MLP(mod₂(LN
    x))``, the shifts, scales and gates from the timestep embedding (zero-initialised, so every block starts as the
    identity). The network receives ``timestep_scale·t`` (TRELLIS: 1000·t), sinusoidally embedded. Positions are a
    learned absolute embedding of the token grid. TRELLIS's QK-RMSNorm is not used.

    **Rectified flow** (spec §2.2): ``x_t = (1 − t)·x₀ + (σ_min + (1 − σ_min)·t)·ε`` (t = 1 is noise), target
    ``v = (1 − σ_min)·ε − x₀``, MSE; training t is logit-normal, ``sigmoid(logit_normal_mean + logit_normal_std·n)``;
    the condition is dropped with probability ``condition_dropout_prob``. Sampling is Euler on
    ``linspace(1, 0, S + 1)`` warped by ``t' = s·t / (1 + (s − 1)·t)`` with ``s = time_shift``, classifier-free
    guidance applied only for t in ``guidance_interval``.

    Args:
        cube_resolution (`int`, *optional*, defaults to 32):
            Side ``R`` of the cube ``(cube_channels, R, R, R)``.
        cube_channels (`int`, *optional*, defaults to 3):
            Channels of the cube: occupancy, u, v.
        dense_uv (`bool`, *optional*, defaults to `False`):
            What the u, v channels hold at *empty* voxels. `False` (Cupid): 0, so only occupied voxels carry a
            projection. `True` (this package's variant): every voxel carries the projection of its centre, so the
            u, v channels are a smooth projective field over the whole cube, the same function of the camera
            everywhere, instead of a field cut by the shape's silhouette. PnP still reads the occupied voxels; the
            flow no longer has to learn where the projection stops.
        patch_size (`int`, *optional*, defaults to 4):
            Side of the cubic patches of the 3D patch embedding; must divide ``cube_resolution``.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the flow transformer.
        num_hidden_layers (`int`, *optional*, defaults to 4):
            Number of DiT cross-attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the self- and cross-attention; must divide ``hidden_size``.
        mlp_ratio (`int`, *optional*, defaults to 4):
            Width of each block's GELU MLP relative to ``hidden_size``.
        image_encoder_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG` (64 px, 8×8 patches, width 128, 4
            layers).
        freeze_image_encoder (`bool`, *optional*, defaults to `True`):
            Run the image encoder without gradients and keep its parameters out of training (Cupid's frozen
            DINOv2). Set it to `False` to train the encoder jointly.
        timestep_scale (`float`, *optional*, defaults to 1000.0):
            The network receives ``timestep_scale·t`` for flow time ``t ∈ [0, 1]``.
        sigma_min (`float`, *optional*, defaults to 1e-5):
            ``σ_min`` of the rectified-flow path.
        logit_normal_mean (`float`, *optional*, defaults to 1.0):
            Mean of the normal whose sigmoid is the training time.
        logit_normal_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of that normal.
        condition_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability ``p_uncond`` that a training example sees the null (all-zero) condition.
        time_shift (`float`, *optional*, defaults to 3.0):
            The sampler's time warp ``s`` (TRELLIS's ``rescale_t``; diffusers' ``shift``).
        guidance_scale (`float`, *optional*, defaults to 8.5):
            Default classifier-free guidance scale ``g`` of `CupidFlowModel.sample`, diffusers' convention
            ``v̂ = v_u + g·(v_c − v_u)``; TRELLIS writes ``(1 + w)·v_c − w·v_u``, so ``g = 1 + w`` (stage 1: w = 7.5).
        guidance_interval (`list[float]`, *optional*, defaults to `[0.5, 1.0]`):
            Flow times ``[t_low, t_high]`` where guidance is applied; elsewhere the conditional velocity is used.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the linear layers and the position embedding.

    Example:

    ```python
    >>> from whitebox_hf import CupidFlowConfig, CupidFlowModel

    >>> model = CupidFlowModel(CupidFlowConfig.from_preset("cupid-flow-cpu"))
    >>> model.config.num_tokens
    512
    ```"""

    model_type = "cupid_flow"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    cube_resolution: int = 32
    cube_channels: int = 3
    dense_uv: bool = False
    patch_size: int = 4
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    mlp_ratio: int = 4
    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = True
    timestep_scale: float = 1000.0
    sigma_min: float = 1e-5
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    condition_dropout_prob: float = 0.1
    time_shift: float = 3.0
    guidance_scale: float = 8.5
    guidance_interval: list[float] | None = None
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_positive_int(self, "cube_resolution", "cube_channels", "patch_size", "hidden_size", "num_hidden_layers",
                           "num_attention_heads", "mlp_ratio")
        if self.cube_resolution % self.patch_size:
            raise ValueError(f"`patch_size` ({self.patch_size}) must divide `cube_resolution` "
                             f"({self.cube_resolution})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                             f"({self.hidden_size})")
        if self.image_encoder_config is None:
            self.image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if not isinstance(self.image_encoder_config, (dict, CrateConfig)):
            raise TypeError(f"`image_encoder_config` must be a dict or a CrateConfig, got "
                            f"{type(self.image_encoder_config).__name__}")
        check_positive(self, "timestep_scale", "logit_normal_std", "time_shift", "layer_norm_eps",
                       "initializer_range")
        check_probability(self, "condition_dropout_prob")
        if not 0 <= self.sigma_min < 1:
            raise ValueError(f"`sigma_min` must lie in [0, 1), got {self.sigma_min!r}")
        if self.guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 turns guidance off), got {self.guidance_scale!r}")
        if self.guidance_interval is None:
            self.guidance_interval = [0.5, 1.0]
        interval = self.guidance_interval
        if (len(interval) != 2 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in interval)
                or not 0 <= interval[0] <= interval[1] <= 1):
            raise ValueError(f"`guidance_interval` must be [t_low, t_high] with 0 <= t_low <= t_high <= 1, got "
                             f"{interval!r}")
        self.guidance_interval = [float(x) for x in interval]
        super().__post_init__(**kwargs)

    @property
    def tokens_per_side(self) -> int:
        """Tokens along each axis of the cube: ``cube_resolution / patch_size``."""
        return self.cube_resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the flow transformer: ``tokens_per_side³``."""
        return self.tokens_per_side**3

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CupidFlowConfig":
        """The configuration ``name`` (one of `CUPID_FLOW_PRESETS`), with any field overridden by keyword."""
        if name not in CUPID_FLOW_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CUPID_FLOW_PRESETS)}")
        return cls(**{**CUPID_FLOW_PRESETS[name], **overrides})
