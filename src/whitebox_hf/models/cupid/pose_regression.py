"""The direct pose-regression baseline of Cupid's comparison (issue 15, baseline (c)): the same CRATE image encoder
as `CupidFlowModel`, pooled, and an MLP that predicts the camera ``(R, t, f)`` from one image, with no geometry and
no PnP. It answers the question "does generating the UV cube and solving PnP beat regressing the camera?".

    image (B, 3, H, W) ─CrateModel→ class token ─LN → MLP→ 6D rotation (roma.special_gramschmidt → R, det +1),
    t (3), log f (1) → K = [[f, 0, ½], [0, f, ½], [0, 0, 1]] (normalised uv units)

The principal point is fixed at the image centre, where every render of `load_shape_renders` has it; PnP on the
UV cube estimates it (and the skew) as well, so this baseline is handed that much.

Not registered with the Auto classes: a baseline of the results page, loaded by its own class
(``CupidPoseRegressionModel.from_pretrained(folder)``).
"""

from dataclasses import dataclass

import roma
import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.utils import ModelOutput

from ...utils.validation import check_finite_tensor, check_floating_tensor, check_tensor
from ..crate.configuration_crate import CrateConfig
from ..crate.modeling_crate import CrateModel
from ..modeling_utils import WhiteboxPreTrainedModel
from ..validation import check_positive, check_positive_int, strict_config
from .configuration_cupid_flow import DEFAULT_IMAGE_ENCODER_CONFIG

__all__ = ["CupidPoseRegressionConfig", "CupidPoseRegressionModel", "CupidPoseRegressionOutput"]


@strict_config
class CupidPoseRegressionConfig(PreTrainedConfig):
    r"""
    Configuration of a `CupidPoseRegressionModel`: Cupid's image encoder and an MLP regressing the camera.

    Args:
        image_encoder_config (`dict` or `CrateConfig`, *optional*):
            The CRATE image encoder; defaults to `DEFAULT_IMAGE_ENCODER_CONFIG`, the one of the ``cupid-flow-cpu``
            preset, so that both models of the comparison read the image with the same network.
        freeze_image_encoder (`bool`, *optional*, defaults to `False`):
            Keep the encoder's parameters fixed (for a pretrained encoder); by default it is trained with the head.
        mlp_hidden_size (`int`, *optional*, defaults to 256):
            Width of the MLP's hidden layers.
        mlp_num_layers (`int`, *optional*, defaults to 2):
            Hidden layers of the MLP (GELU), before the linear output of 6 + 3 + 1 numbers.
        initial_translation (`list[float]`, *optional*, defaults to `[0.0, 0.0, 2.5]`):
            The translation predicted at initialisation (the output bias): the renders' cameras look at the origin
            from distance 2.5, so the head starts there rather than at a camera inside the object.
        initial_focal (`float`, *optional*, defaults to 1.0):
            The focal length (normalised uv units) predicted at initialisation.
        rotation_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``‖R̂ − R‖²_F`` in the loss.
        translation_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``‖t̂ − t‖²``.
        focal_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``(log f̂ − log f)²``.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of the MLP's linear layers.

    Example:

    ```python
    >>> from whitebox_hf.models.cupid.pose_regression import CupidPoseRegressionConfig, CupidPoseRegressionModel

    >>> model = CupidPoseRegressionModel(CupidPoseRegressionConfig())
    >>> model.config.image_encoder_config.image_size
    64
    ```"""

    model_type = "cupid_pose_regression"
    sub_configs_defaults = {"image_encoder_config": CrateConfig}

    image_encoder_config: dict | CrateConfig | None = None
    freeze_image_encoder: bool = False
    mlp_hidden_size: int = 256
    mlp_num_layers: int = 2
    initial_translation: list[float] | None = None
    initial_focal: float = 1.0
    rotation_loss_weight: float = 1.0
    translation_loss_weight: float = 1.0
    focal_loss_weight: float = 1.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_positive_int(self, "mlp_hidden_size", "mlp_num_layers")
        if self.image_encoder_config is None:
            self.image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if not isinstance(self.image_encoder_config, (dict, CrateConfig)):
            raise TypeError(f"`image_encoder_config` must be a dict or a CrateConfig, got "
                            f"{type(self.image_encoder_config).__name__}")
        if self.initial_translation is None:
            self.initial_translation = [0.0, 0.0, 2.5]
        values = self.initial_translation
        if len(values) != 3 or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in values):
            raise ValueError(f"`initial_translation` must be 3 numbers, got {values!r}")
        self.initial_translation = [float(x) for x in values]
        check_positive(self, "initial_focal", "layer_norm_eps", "initializer_range")
        for name in ("rotation_loss_weight", "translation_loss_weight", "focal_loss_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        super().__post_init__(**kwargs)


@dataclass
class CupidPoseRegressionOutput(ModelOutput):
    """What `CupidPoseRegressionModel.forward` returns.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the weighted pose loss, when targets are given.
        rotations (`torch.FloatTensor` of shape `(B, 3, 3)`): world-to-camera R (det +1).
        translations (`torch.FloatTensor` of shape `(B, 3)`): world-to-camera t (``x_cam = R·x + t``).
        intrinsics (`torch.FloatTensor` of shape `(B, 3, 3)`): K in normalised uv units.
    """

    loss: torch.FloatTensor | None = None
    rotations: torch.FloatTensor | None = None
    translations: torch.FloatTensor | None = None
    intrinsics: torch.FloatTensor | None = None


class CupidPoseRegressionModel(WhiteboxPreTrainedModel):
    """Image → camera ``(K, R, t)`` by regression (see `CupidPoseRegressionConfig`)."""

    config: CupidPoseRegressionConfig
    config_class = CupidPoseRegressionConfig
    base_model_prefix = "cupid_pose_regression"
    main_input_name = "pixel_values"

    def __init__(self, config: CupidPoseRegressionConfig):
        super().__init__(config)
        self.image_encoder = CrateModel(config.image_encoder_config)
        if config.freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        width = config.image_encoder_config.hidden_size
        layers, previous = [nn.LayerNorm(width, eps=config.layer_norm_eps)], width
        for _ in range(config.mlp_num_layers):
            layers += [nn.Linear(previous, config.mlp_hidden_size), nn.GELU()]
            previous = config.mlp_hidden_size
        self.head = nn.Sequential(*layers)
        self.output = nn.Linear(previous, 10)  # 6D rotation, t (3), log f (1)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`WhiteboxPreTrainedModel.from_pretrained`, the encoder frozen again when ``freeze_image_encoder``."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module):
        if module is getattr(self, "output", None):
            # Zero weights, a bias giving the identity rotation's first two columns, the initial t and log f: every
            # image starts at the same sensible camera.
            module.weight.zero_()
            bias = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, *self.config.initial_translation,
                                 float(torch.log(torch.tensor(self.config.initial_focal)))])
            module.bias.copy_(bias.to(module.bias))
        elif isinstance(module, nn.Linear):
            module.weight.normal_(mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, CrateModel):
            pass  # initialised by its own post_init
        else:
            super()._init_weights(module)

    def forward(self, pixel_values: torch.Tensor, rotations: torch.Tensor | None = None,
                translations: torch.Tensor | None = None, intrinsics: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> CupidPoseRegressionOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): normalised images.
        rotations, translations, intrinsics (*optional*, all or none): the true cameras ``(B, 3, 3)``, ``(B, 3)``,
            ``(B, 3, 3)`` (K in uv units; its focal is the mean of ``K[0, 0]`` and ``K[1, 1]``); the loss is returned.
        """
        if kwargs:
            raise TypeError(f"CupidPoseRegressionModel.forward got unexpected arguments {sorted(kwargs)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        check_tensor("pixel_values", pixel_values, ndim=4, shape_doc="(batch, channels, height, width)")
        check_floating_tensor("pixel_values", pixel_values)
        batch_size = pixel_values.shape[0]
        targets = (rotations, translations, intrinsics)
        if any(t is not None for t in targets) and any(t is None for t in targets):
            raise ValueError("pass all of `rotations`, `translations` and `intrinsics` (the true cameras) or none")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_encoder):
            tokens = self.image_encoder(pixel_values=pixel_values).last_hidden_state
        raw = self.output(self.head(tokens[:, 0]))
        # The 6 numbers are R's first two columns (Zhou et al.'s 6D representation); the clamp keeps a degenerate
        # (colinear) pair from giving NaN.
        rotation = roma.special_gramschmidt(raw[:, :6].reshape(batch_size, 2, 3).transpose(1, 2), epsilon=1e-8)
        translation = raw[:, 6:9]
        log_focal = raw[:, 9]
        focal = log_focal.exp()
        k = torch.zeros(batch_size, 3, 3, dtype=raw.dtype, device=raw.device)
        k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = focal, focal, 0.5, 0.5, 1.0
        loss = None
        if rotations is not None:
            for name, value, shape in (("rotations", rotations, (batch_size, 3, 3)),
                                       ("translations", translations, (batch_size, 3)),
                                       ("intrinsics", intrinsics, (batch_size, 3, 3))):
                check_tensor(name, value)
                check_floating_tensor(name, value)
                if tuple(value.shape) != shape:
                    raise ValueError(f"`{name}` must have shape {shape}, got {tuple(value.shape)}")
                check_finite_tensor(name, value)
            true_focal = (intrinsics[:, 0, 0] + intrinsics[:, 1, 1]) / 2
            if not bool((true_focal > 0).all()):
                raise ValueError("`intrinsics` must have positive focal lengths")
            config = self.config
            loss = (config.rotation_loss_weight * (rotation - rotations.to(raw)).square().sum((1, 2)).mean()
                    + config.translation_loss_weight * (translation - translations.to(raw)).square().sum(1).mean()
                    + config.focal_loss_weight * (log_focal - true_focal.to(raw).log()).square().mean())
        output = CupidPoseRegressionOutput(loss=loss, rotations=rotation, translations=translation, intrinsics=k)
        return output if return_dict else output.to_tuple()
