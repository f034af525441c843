"""Cupid stage-2 appearance configuration: a rectified flow over per-voxel colour with pose-aligned conditioning
(spec threed_and_motion.md §2.5, §4 "Cupid")."""

from transformers import PreTrainedConfig

from ..crate.configuration_crate import CrateConfig
from ..validation import (
    check_positive,
    check_positive_int,
    check_probability,
    strict_config,
)
from .configuration_cupid_flow import DEFAULT_IMAGE_ENCODER_CONFIG

__all__ = ["CUPID_APPEARANCE_PRESETS", "CupidAppearanceConfig"]

CUPID_APPEARANCE_PRESETS: dict[str, dict] = {
    # Cupid's stage-2 sizes where they have a counterpart: the 64³ structure read at 4³ patches (TRELLIS's 16³ token
    # grid), DiT-L width/depth, an 8-dim observed latent per voxel (the frozen SLat encoder's width) and 4 pixel
    # convolutions of 4 channels (16 pixel channels), the ViT-L-sized image encoder of `cupid-flow-l`.
    "cupid-appearance-l": dict(
        cube_resolution=64, patch_size=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        image_encoder_config=dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                                  num_attention_heads=12),
    ),
    # The CPU scale of `cupid-flow-cpu`: the same 32³ grid in 4³ patches (512 tokens of width 128, 4 blocks) and the
    # same small CRATE, so stage 2 reads the stage-1 model's voxels and image encoder unchanged.
    "cupid-appearance-cpu": dict(
        cube_resolution=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        image_encoder_config=dict(DEFAULT_IMAGE_ENCODER_CONFIG),
    ),
}


@strict_config
class CupidAppearanceConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidAppearanceModel`, Cupid's stage 2 (Huang et al., arXiv 2510.20776; book §8.9): given
    the occupied voxels of the object (stage 1's, or the true ones in training) and the camera that saw it, a
    rectified flow generates a colour for every occupied voxel, conditioned on the image *at the voxel's projection*.

    **What is denoised.** A dense ``(color_channels, R, R, R)`` grid of colours mapped to [−1, 1], zero and ignored
    (masked out of the input and the loss) at empty voxels. Cupid (after TRELLIS) generates an 8-dim structured
    latent per active voxel with a sparse transformer and decodes it to Gaussians or a mesh; with no decoder to train
    on a CPU the voxel colour itself is generated, and the grid is read as stage 1 reads its cube (a ``Conv3d``
    patch embedding into ``(R / patch_size)³`` tokens), so the two stages share one network layout.

    **Pose-aligned conditioning** (``pose_aligned=True``; Cupid's ``structured_latent_flow.py``). Every voxel centre
    ``x_i`` (the grid of `voxel_grid_points`, side ``extent``) is projected with the camera ``(K, R, t)`` (K in
    normalised uv units) to ``u_i ∈ [0, 1]²`` (clamped, as Cupid does), and at ``u_i`` the model bilinearly samples
    (``torch.nn.functional.grid_sample``, ``align_corners=False``: uv 0 and 1 are the image's edges):

    * the image encoder's patch tokens (class token dropped), through LayerNorm and a linear map to
      ``observed_channels`` — in place of Cupid's frozen TRELLIS SLat encoder, which maps DINOv2 features to 8 dims;
    * low-level pixel features: the input RGB itself (3 channels) and the ``pixel_feature_layers`` maps of a stack of
      3×3 convolutions of ``pixel_feature_channels`` channels each (Cupid: 4 layers × 4 channels = 16).

    They are concatenated to the noisy colour and the occupancy at every voxel (zero at empty voxels). Global image
    tokens are cross-attended by every block in either mode; with ``pose_aligned=False`` they are the *only* condition
    (Table 8.14's baseline: no projected features, the camera is unused). The null condition of classifier-free
    guidance zeros the global tokens and the projected features (Cupid zeros both the visual and DINO inputs).

    **Blocks and flow**: as `CupidFlowConfig` (DiT blocks with AdaLN-zero, the rectified-flow path of spec §2.2,
    logit-normal t, Euler with the time shift and interval guidance); the loss is the MSE over occupied voxels only.

    Args:
        cube_resolution (`int`, *optional*, defaults to 32):
            Side ``R`` of the voxel grid (that of the stage-1 cube).
        color_channels (`int`, *optional*, defaults to 3):
            Channels generated per voxel (RGB).
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
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG` (that of the ``cupid-flow-cpu``
            stage 1). Its ``num_channels`` must be 3 (the pixel features read RGB).
        freeze_image_encoder (`bool`, *optional*, defaults to `True`):
            Run the image encoder without gradients and keep its parameters out of training.
        pose_aligned (`bool`, *optional*, defaults to `True`):
            Condition on the image features and pixels sampled at each voxel's projection; `False` is the
            global-tokens-only baseline.
        observed_channels (`int`, *optional*, defaults to 8):
            Width of the projected patch features per voxel (Cupid's 8-dim observed latent).
        pixel_feature_layers (`int`, *optional*, defaults to 4):
            3×3 convolutions on the input image whose maps are all sampled (0: the RGB alone).
        pixel_feature_channels (`int`, *optional*, defaults to 4):
            Channels of each of those convolutions.
        extent (`float`, *optional*, defaults to 2.0):
            Side of the canonical cube the voxels span (the procedural shapes lie in [−1, 1]³).
        timestep_scale (`float`, *optional*, defaults to 1000.0):
            The network receives ``timestep_scale·t`` for flow time ``t ∈ [0, 1]``.
        sigma_min (`float`, *optional*, defaults to 1e-5):
            ``σ_min`` of the rectified-flow path.
        logit_normal_mean (`float`, *optional*, defaults to 1.0):
            Mean of the normal whose sigmoid is the training time.
        logit_normal_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of that normal.
        condition_dropout_prob (`float`, *optional*, defaults to 0.1):
            Probability ``p_uncond`` that a training example sees the null condition.
        time_shift (`float`, *optional*, defaults to 3.0):
            The sampler's time warp ``s`` (TRELLIS's ``rescale_t``; diffusers' ``shift``).
        guidance_scale (`float`, *optional*, defaults to 4.0):
            Default guidance scale ``g`` (diffusers' convention; TRELLIS stage 2 uses w = 3, g = 1 + w).
        guidance_interval (`list[float]`, *optional*, defaults to `[0.5, 1.0]`):
            Flow times ``[t_low, t_high]`` where guidance is applied.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the linear layers and the position embedding.

    Example:

    ```python
    >>> from whitebox_hf.models.cupid import CupidAppearanceConfig, CupidAppearanceModel

    >>> model = CupidAppearanceModel(CupidAppearanceConfig.from_preset("cupid-appearance-cpu"))
    >>> model.config.input_channels  # noisy RGB, occupancy, 8 observed, RGB + 4 × 4 pixel features
    31
    ```"""

    model_type = "cupid_appearance"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    cube_resolution: int = 32
    color_channels: int = 3
    patch_size: int = 4
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    mlp_ratio: int = 4
    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = True
    pose_aligned: bool = True
    observed_channels: int = 8
    pixel_feature_layers: int = 4
    pixel_feature_channels: int = 4
    extent: float = 2.0
    timestep_scale: float = 1000.0
    sigma_min: float = 1e-5
    logit_normal_mean: float = 1.0
    logit_normal_std: float = 1.0
    condition_dropout_prob: float = 0.1
    time_shift: float = 3.0
    guidance_scale: float = 4.0
    guidance_interval: list[float] | None = None
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_positive_int(self, "cube_resolution", "color_channels", "patch_size", "hidden_size",
                           "num_hidden_layers", "num_attention_heads", "mlp_ratio", "observed_channels",
                           "pixel_feature_channels")
        if (isinstance(self.pixel_feature_layers, bool) or not isinstance(self.pixel_feature_layers, int)
                or self.pixel_feature_layers < 0):
            raise ValueError(f"`pixel_feature_layers` must be an integer >= 0, got {self.pixel_feature_layers!r}")
        if not isinstance(self.pose_aligned, bool):
            raise TypeError(f"`pose_aligned` must be a bool, got {type(self.pose_aligned).__name__}")
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
        check_positive(self, "extent", "timestep_scale", "logit_normal_std", "time_shift", "layer_norm_eps",
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
        channels = self.image_encoder_config.num_channels
        if channels != 3:
            raise ValueError(f"`image_encoder_config.num_channels` must be 3 (the pixel features read RGB), got "
                             f"{channels}")

    @property
    def tokens_per_side(self) -> int:
        """Tokens along each axis of the grid: ``cube_resolution / patch_size``."""
        return self.cube_resolution // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the flow transformer: ``tokens_per_side³``."""
        return self.tokens_per_side**3

    @property
    def pixel_channels(self) -> int:
        """Sampled low-level channels per voxel: RGB and every pixel convolution's map (0 without pose alignment)."""
        return 3 + self.pixel_feature_layers * self.pixel_feature_channels if self.pose_aligned else 0

    @property
    def input_channels(self) -> int:
        """Channels per voxel the patch embedding reads: noisy colour, occupancy and the projected features."""
        projected = self.observed_channels + self.pixel_channels if self.pose_aligned else 0
        return self.color_channels + 1 + projected

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CupidAppearanceConfig":
        """The configuration ``name`` (one of `CUPID_APPEARANCE_PRESETS`), with any field overridden by keyword."""
        if name not in CUPID_APPEARANCE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CUPID_APPEARANCE_PRESETS)}")
        return cls(**{**CUPID_APPEARANCE_PRESETS[name], **overrides})
