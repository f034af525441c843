"""CRATE and CRATE-α model configuration."""

from transformers import PreTrainedConfig

from ..validation import check_choice, check_positive, check_positive_int, check_probability, resolve_head_dim, strict_config

__all__ = ["CrateConfig", "CRATE_PRESETS", "check_sparse_coding_fields"]

_BLOCK_TYPES = ("ista", "odl")
_POOLING = ("cls", "mean")
_PATCH_EMBEDDING_TYPES = ("linear", "conv")
_POSITION_EMBEDDING_TYPES = (None, "learned", "sincos")

# Book Table 8.5 (CRATE) and UCSC-VLAA/CRATE-alpha (CRATE-α): width / depth / heads at 224², patch 16.
_CRATE_SHAPES = {"tiny": (384, 12, 6), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_SHAPES = {"tiny": (192, 12, 3), "small": (576, 12, 12), "base": (768, 12, 12), "large": (1024, 24, 16)}
_CRATE_ALPHA_ARCHITECTURE = dict(
    block_type="odl",
    patch_embedding_type="conv",
    attention_output_bias=False,
    layer_norm_eps=1e-6,
    position_embedding_init_std=0.02,
)
CRATE_PRESETS: dict[str, dict] = {
    **{
        f"crate-{size}": dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads)
        for size, (d, layers, heads) in _CRATE_SHAPES.items()
    },
    **{
        f"crate-alpha-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, **_CRATE_ALPHA_ARCHITECTURE
        )
        for size, (d, layers, heads) in _CRATE_ALPHA_SHAPES.items()
    },
    # Spec crate_family.md §6 (Ma-Lab-Berkeley/CRATE `model/crate_ae/`): conv stem, λ = 0.5 in the encoder
    # (the authors' constructor default), a decoder as deep as the encoder, 75% of the patches masked.
    **{
        f"crate-mae-{size}": dict(
            hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, decoder_num_hidden_layers=layers,
            patch_embedding_type="conv", ista_lambda=0.5, mask_ratio=0.75, position_embedding_type="sincos",
        )
        for size, (d, layers, heads) in _CRATE_SHAPES.items() if size in ("small", "base")
    },
}


def check_sparse_coding_fields(config) -> None:
    """Validate the fields a CRATE layer reads for its sparse-coding block (shared with the causal CRATE LM)."""
    check_choice(config, "block_type", _BLOCK_TYPES)
    check_positive_int(config, "odl_expansion", "odl_steps")
    check_positive(config, "ista_step_size")
    if config.ista_lambda < 0:
        raise ValueError(f"`ista_lambda` must be non-negative, got {config.ista_lambda!r}")


@strict_config
class CrateConfig(PreTrainedConfig):
    r"""
    Configuration of a CRATE (*Coding RAte reduction TransformEr*) or CRATE-α image model.

    A CRATE layer (book §8.4.1) compresses tokens with multi-head subspace self-attention (MSSA) and then
    sparsifies them with one ISTA step: ``Z½ = Z + MSSA(LN(Z))``, ``Z⁺ = ISTA(LN(Z½))``. A CRATE-α layer
    replaces ISTA with overcomplete dictionary learning plus a residual: ``Z⁺ = Z½ + ODL(LN(Z½))``.
    Defaults give CRATE-Base at 224², patch 16; `CrateConfig.from_preset(name)` gives every preset.

    Args:
        hidden_size (`int`, *optional*, defaults to 768):
            Token width ``d``.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of CRATE layers ``L``.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of MSSA subspaces ``K``.
        head_dim (`int`, *optional*):
            Subspace dimension ``p``; defaults to ``hidden_size // num_attention_heads``, which must then divide
            exactly. Set it to use ``K·p ≠ d``.
        block_type (`str`, *optional*, defaults to `"ista"`):
            Sparse-coding block: `"ista"` (CRATE: one ISTA step, no residual, non-negative output) or `"odl"`
            (CRATE-α: overcomplete dictionary, ``odl_steps`` steps from zero, separate decoder, residual).
        ista_step_size (`float`, *optional*, defaults to 0.1):
            ISTA/ODL step size ``η``.
        ista_lambda (`float`, *optional*, defaults to 0.1):
            ℓ₁ weight ``λ`` of the sparse-coding objective.
        ista_residual (`bool`, *optional*, defaults to `False`):
            Ablation, not in the book or the authors' code: add the layer input back after ISTA
            (``Z⁺ = Z½ + ISTA(LN Z½)``), as CRATE-α does after ODL. The output is then no longer a sparse code.
        odl_expansion (`int`, *optional*, defaults to 4):
            ODL dictionary width ``s / d``.
        odl_steps (`int`, *optional*, defaults to 2):
            ODL proximal-gradient steps ``T``.
        pooling (`str`, *optional*, defaults to `"cls"`):
            Feature extractor f^ext: `"cls"` takes the class token, `"mean"` averages all tokens.
        patch_embedding_type (`str`, *optional*, defaults to `"linear"`):
            `"linear"`: CRATE's ``LN → Linear → LN`` on flattened patches; `"conv"`: CRATE-α's strided conv.
        position_embedding_type (`str`, *optional*):
            `"learned"`: CRATE's learned position table (a parameter, interpolated for other image sizes);
            `"sincos"`: CRATE-MAE's fixed 2-D sin-cos table (a non-persistent buffer, evaluated on other grids),
            which also selects MAE's initialisation (xavier-uniform linears, normal(``initializer_range``) class
            and mask tokens) for the whole model. `None` lets the architecture choose and records the choice:
            `"learned"` for `CrateModel` / `CrateForImageClassification`, `"sincos"` for
            `CrateForMaskedImageModeling`, so that `AutoModel` rebuilds a saved CRATE-MAE's encoder exactly.
        attention_output_bias (`bool`, *optional*, defaults to `True`):
            Bias on the MSSA output projection (CRATE yes, CRATE-α no).
        image_size (`int`, *optional*, defaults to 224):
            Image side the position table is built for; other sizes divisible by the patch are interpolated.
        patch_size (`int`, *optional*, defaults to 16):
            Patch side.
        num_channels (`int`, *optional*, defaults to 3):
            Input channels.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the embeddings and after the MSSA output projection.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon (1e-5 in CRATE, 1e-6 in CRATE-α).
        pooler_layer_norm_eps (`float`, *optional*):
            Epsilon of the feature extractor's LayerNorm (``pooler_norm``, the head's ``LN``); defaults to
            ``layer_norm_eps``. Checkpoints converted from the CRATE-α torch port (UCSC-VLAA/CRATE-alpha
            ``torch_inference``) set 1e-5: that port's head keeps PyTorch's default while its layers use 1e-6.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers.
        position_embedding_init_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of the class-token and position-table init (1.0 in the CRATE code, 0.02 in
            CRATE-α). CRATE-MAE ignores it: its class and mask tokens use ``initializer_range`` and its
            positions are fixed sin-cos tables.
        mask_ratio (`float`, *optional*, defaults to 0.75):
            CRATE-MAE only: fraction of patches replaced by the mask token when `CrateForMaskedImageModeling` is
            called without `bool_masked_pos` (in ``[0, 1)``; spec ``crate_family.md`` §6).
        decoder_num_hidden_layers (`int`, *optional*):
            CRATE-MAE only: number of decoder layers; defaults to ``num_hidden_layers`` (the authors build the
            decoder as deep as the encoder).
        norm_pix_loss (`bool`, *optional*, defaults to `False`):
            CRATE-MAE only: standardise each target patch by its own mean and variance before the loss (He et
            al.'s ``norm_pix_loss``; off in CRATE-MAE).

    The CRATE-MAE encoder uses ``ista_lambda=0.5`` (spec §6): the `crate-mae-*` presets set it, a hand-built
    configuration must set it explicitly.

    Example:

    ```python
    >>> from whitebox_hf import CrateConfig, CrateForImageClassification

    >>> config = CrateConfig.from_preset("crate-tiny")
    >>> model = CrateForImageClassification(config)
    >>> model.num_parameters()
    6090856
    ```"""

    model_type = "crate"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    head_dim: int | None = None
    block_type: str = "ista"
    ista_step_size: float = 0.1
    ista_lambda: float = 0.1
    ista_residual: bool = False
    odl_expansion: int = 4
    odl_steps: int = 2
    pooling: str = "cls"
    patch_embedding_type: str = "linear"
    position_embedding_type: str | None = None
    attention_output_bias: bool = True
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-5
    pooler_layer_norm_eps: float | None = None
    initializer_range: float = 0.02
    position_embedding_init_std: float = 1.0
    mask_ratio: float = 0.75
    decoder_num_hidden_layers: int | None = None
    norm_pix_loss: bool = False

    def __post_init__(self, **kwargs):
        check_positive_int(self, "hidden_size", "num_hidden_layers", "num_attention_heads", "image_size",
                           "patch_size", "num_channels")
        resolve_head_dim(self)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"`patch_size` ({self.patch_size}) must divide `image_size` ({self.image_size})"
            )
        check_choice(self, "pooling", _POOLING)
        check_choice(self, "patch_embedding_type", _PATCH_EMBEDDING_TYPES)
        check_choice(self, "position_embedding_type", _POSITION_EMBEDDING_TYPES)
        if self.position_embedding_type == "sincos" and self.hidden_size % 4:
            raise ValueError(f"`position_embedding_type='sincos'` (2-D sin-cos positions) needs `hidden_size` "
                             f"divisible by 4, got {self.hidden_size}")
        check_sparse_coding_fields(self)
        check_positive(self, "layer_norm_eps", "initializer_range", "position_embedding_init_std")
        if self.pooler_layer_norm_eps is not None:
            check_positive(self, "pooler_layer_norm_eps")
        check_probability(self, "hidden_dropout_prob", "attention_probs_dropout_prob", "mask_ratio")
        if self.decoder_num_hidden_layers is None:
            self.decoder_num_hidden_layers = self.num_hidden_layers
        check_positive_int(self, "decoder_num_hidden_layers")
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CrateConfig":
        """The book's configuration ``name`` (one of `CRATE_PRESETS`: 224², patch 16, 1000 labels), with
        any field overridden by keyword."""
        if name not in CRATE_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(CRATE_PRESETS)}")
        kwargs = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000)
        kwargs.update(CRATE_PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)
