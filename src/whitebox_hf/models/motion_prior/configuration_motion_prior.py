"""EgoAllo motion-prior configuration: a conditional x₀-predicting diffusion transformer over body motion given the
head trajectory (spec threed_and_motion.md §3.1-3.4, §4 "EgoAllo")."""

from transformers import PreTrainedConfig

from ..validation import (
    check_choice,
    check_positive,
    check_positive_int,
    check_probability,
    strict_config,
)

__all__ = ["HEAD_CONDITIONINGS", "HEAD_CONDITIONING_DIMS", "MOTION_PRIOR_PRESETS", "MotionPriorConfig"]

# Per-frame widths of the head features of the book's Table 8.15 (`head_conditioning.head_condition_features`), in
# the table's order (best first, as the book reports it). Here rather than in that module so that the configuration
# imports no torch code.
HEAD_CONDITIONING_DIMS = {
    "ours": 22,
    "absolute_relative": 24,
    "absolute_global_deltas": 24,
    "sequence_canonical": 12,
    "absolute": 12,
}
HEAD_CONDITIONINGS = tuple(HEAD_CONDITIONING_DIMS)

MOTION_PRIOR_PRESETS: dict[str, dict] = {
    # EgoAllo's denoiser (spec §3.3): width 512, FF 2048, 4 heads, 6 encoder + 6 decoder layers, Embedding(1000,
    # 1024) noise level.
    "motion-prior-egoallo": dict(hidden_size=512, intermediate_size=2048, num_attention_heads=4, num_encoder_layers=6,
                                 num_decoder_layers=6, noise_embedding_dim=1024),
    # Spec §4's CPU scale: width 128, 2 + 2 layers.
    "motion-prior-cpu": dict(hidden_size=128, intermediate_size=512, num_attention_heads=4, num_encoder_layers=2,
                             num_decoder_layers=2, noise_embedding_dim=256),
}


@strict_config
class MotionPriorConfig(PreTrainedConfig):
    r"""
    Configuration of a `MotionPriorModel`, EgoAllo's motion prior (Yi et al., arXiv 2410.03665; book §8.10): a
    conditional diffusion model of body motion given the 6-DoF trajectory of a head-mounted device, predicting the
    clean motion x₀.

    **What is denoised.** Per frame: the local rotations of the ``num_body_joints`` body joints (joints 1..21 of
    `whitebox_hf.data.JOINT_NAMES`, each a 3×3 matrix relative to its parent flattened row-major: 9D, spec §3.1) and
    the ``num_contacts`` foot contacts (`whitebox_hf.data.FOOT_JOINTS`, 0/1). The pelvis is not denoised: as in
    EgoAllo its world pose follows from placing the skeleton's head frame on the observed head pose
    (`place_root_from_head`). EgoAllo's SMPL-H shape coefficients and hands are absent: the BVH skeletons carry
    their own bone offsets, given to forward kinematics (spec §3.7). A frame's vector is ``[body 21·9 ‖ contacts
    4]`` (193 numbers).

    **Condition.** The head poses become per-frame features (``head_conditioning``, one of the five variants of
    the book's Table 8.15, `whitebox_hf.models.motion_prior.head_conditioning`), Fourier-encoded as ``[x, sin
    2^k x, cos 2^k x]`` for k < ``num_fourier_frequencies`` and mapped by one linear layer to ``hidden_size``.

    **Network** (spec §3.3). Each modality has a ``modality_mlp_layers``-layer GELU MLP encoder; their outputs are
    summed into one token per frame, and each modality has its own MLP decoder. The noise level ``t`` indexes a
    learned ``Embedding(num_train_timesteps, noise_embedding_dim)``, projected to a token prepended to both the
    condition and the motion streams. The encoder is ``num_encoder_layers`` pre-LN self-attention layers over the
    condition tokens; the decoder is ``num_decoder_layers`` layers of self-attention, cross-attention (queries:
    motion tokens; keys and values: the encoder output) and a GELU feed-forward. Positions enter as rotary
    embeddings of the frame index (the noise token at position 0) in every attention; padded frames are masked out
    of the keys.

    **Diffusion** (spec §3.4): the cosine schedule (diffusers ``squaredcos_cap_v2``) over ``num_train_timesteps``
    steps, x₀ prediction, loss ``Σ_m weight_m·mean((x̂₀ − x₀)²)`` weighted per example by the noise-level weight
    ``w_t = ᾱ_t/(1 − ᾱ_t)`` normalised by its value at the first step and mapped linearly to
    ``[min_noise_weight, 1]`` (it emulates ε-prediction).

    Args:
        head_conditioning (`str`, *optional*, defaults to `"ours"`):
            The head-pose features: ``"ours"`` (per-timestep invariant canonicalisation), ``"absolute_relative"``,
            ``"absolute_global_deltas"``, ``"sequence_canonical"`` or ``"absolute"``.
        num_fourier_frequencies (`int`, *optional*, defaults to 3):
            Octaves ``k = 0..n-1`` of the Fourier features of the head features.
        num_body_joints (`int`, *optional*, defaults to 21):
            Body joints whose local rotations are denoised (the skeleton's joints after the pelvis).
        num_contacts (`int`, *optional*, defaults to 4):
            Foot-contact channels.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the encoder and decoder.
        intermediate_size (`int`, *optional*, defaults to 512):
            Width of the feed-forward layers.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads; ``hidden_size / num_attention_heads`` must be even (rotary pairs).
        num_encoder_layers (`int`, *optional*, defaults to 2):
            Self-attention layers over the condition tokens.
        num_decoder_layers (`int`, *optional*, defaults to 2):
            Self- + cross-attention layers over the motion tokens.
        modality_mlp_layers (`int`, *optional*, defaults to 3):
            Linear layers of each modality's encoder and decoder MLP.
        noise_embedding_dim (`int`, *optional*, defaults to 256):
            Width of the learned noise-level embedding before its projection to ``hidden_size``.
        num_train_timesteps (`int`, *optional*, defaults to 1000):
            Diffusion steps ``T`` of the training schedule (and rows of the noise-level embedding).
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Base of the rotary position frequencies.
        body_loss_weight (`float`, *optional*, defaults to 1.0):
            Loss weight of the body rotations.
        contacts_loss_weight (`float`, *optional*, defaults to 0.1):
            Loss weight of the foot contacts.
        min_noise_weight (`float`, *optional*, defaults to 0.01):
            Lower end of the noise-level loss weight's range ``[min_noise_weight, 1]``; must be in (0, 1].
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout of the attention outputs and feed-forward layers (EgoAllo: 0).
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of linear layers and embeddings.

    Example:

    ```python
    >>> from whitebox_hf import MotionPriorConfig, MotionPriorModel

    >>> model = MotionPriorModel(MotionPriorConfig.from_preset("motion-prior-cpu"))
    >>> model.config.motion_size, model.config.condition_size
    (193, 154)
    ```"""

    model_type = "motion_prior"

    head_conditioning: str = "ours"
    num_fourier_frequencies: int = 3
    num_body_joints: int = 21
    num_contacts: int = 4
    hidden_size: int = 128
    intermediate_size: int = 512
    num_attention_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    modality_mlp_layers: int = 3
    noise_embedding_dim: int = 256
    num_train_timesteps: int = 1000
    rope_theta: float = 10000.0
    body_loss_weight: float = 1.0
    contacts_loss_weight: float = 0.1
    min_noise_weight: float = 0.01
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_choice(self, "head_conditioning", HEAD_CONDITIONINGS)
        check_positive_int(self, "num_fourier_frequencies", "num_body_joints", "num_contacts", "hidden_size",
                           "intermediate_size", "num_attention_heads", "num_encoder_layers", "num_decoder_layers",
                           "modality_mlp_layers", "noise_embedding_dim", "num_train_timesteps")
        if self.hidden_size % (2 * self.num_attention_heads):
            raise ValueError(f"`hidden_size` ({self.hidden_size}) must be divisible by 2·`num_attention_heads` "
                             f"({2 * self.num_attention_heads}): rotary embeddings rotate pairs of head channels")
        check_positive(self, "rope_theta", "body_loss_weight", "contacts_loss_weight", "min_noise_weight",
                       "layer_norm_eps", "initializer_range")
        if self.min_noise_weight > 1:
            raise ValueError(f"`min_noise_weight` must be in (0, 1], got {self.min_noise_weight!r}")
        check_probability(self, "dropout")
        super().__post_init__(**kwargs)

    @property
    def motion_size(self) -> int:
        """Numbers per motion frame: ``num_body_joints·9 + num_contacts``."""
        return self.num_body_joints * 9 + self.num_contacts

    @property
    def condition_size(self) -> int:
        """Width of the Fourier-encoded head features of ``head_conditioning``."""
        return HEAD_CONDITIONING_DIMS[self.head_conditioning] * (1 + 2 * self.num_fourier_frequencies)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MotionPriorConfig":
        """The configuration ``name`` (one of `MOTION_PRIOR_PRESETS`), with any field overridden by keyword."""
        if name not in MOTION_PRIOR_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(MOTION_PRIOR_PRESETS)}")
        return cls(**{**MOTION_PRIOR_PRESETS[name], **overrides})
