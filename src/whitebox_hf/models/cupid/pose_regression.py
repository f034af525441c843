"""The direct pose-regression baseline of Cupid's comparison (issue 15, baseline (c)): the same CRATE image encoder
as `CupidFlowModel`, pooled, and an MLP that predicts the camera ``(R, t, f)`` from one image, with no geometry and
no PnP. It answers the question "does generating the UV cube and solving PnP beat regressing the camera?".

    image (B, 3, H, W) ─CrateModel→ class token ─LN → MLP→ 6D rotation (roma.special_gramschmidt → R, det +1),
    t (3), log f (1) → K = [[f, 0, ½], [0, f, ½], [0, 0, 1]] (normalised uv units)

The principal point is fixed at the image centre, where every render of `load_shape_renders` has it; PnP on the
UV cube estimates it (and the skew) as well, so this baseline is handed that much.

A diffusers ``ModelMixin`` (as the package's denoisers), not a transformers Auto model: a baseline of the results
page, loaded by its own class (``CupidPoseRegressionModel.from_pretrained(folder)``).
"""

import dataclasses
import functools
import math
from dataclasses import dataclass

import roma
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers.utils import ModelOutput

from ...utils.validation import check_finite_tensor, check_floating_tensor, check_tensor
from ..crate.configuration_crate import CrateConfig
from ..crate.modeling_crate import CrateModel
from ..safe_loading import SafetensorsOnlyModelMixin
from .configuration_cupid_flow import DEFAULT_IMAGE_ENCODER_CONFIG

__all__ = ["CupidPoseRegressionModel", "CupidPoseRegressionOutput"]


@functools.cache
def _crate_fields() -> frozenset:
    """The CrateConfig fields: a saved config's dict also holds transformers' bookkeeping keys, left out here."""
    return frozenset(field.name for field in dataclasses.fields(CrateConfig))


def _check_number(name: str, value, minimum: float, open_low: bool) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < minimum or (open_low and value == minimum)):
        raise ValueError(f"`{name}` must be a finite number {'>' if open_low else '>='} {minimum}, got {value!r}")
    return float(value)


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


class CupidPoseRegressionModel(SafetensorsOnlyModelMixin, ModelMixin, ConfigMixin):
    """Image → camera ``(K, R, t)`` by regression (see the module docstring). A diffusers model (``save_pretrained``
    / ``from_pretrained``, safetensors only), as the package's other baselines and denoisers.

    Args:
        image_encoder_config (`dict`, *optional*): the `CrateConfig` of the image encoder (as a dict); defaults to
            `DEFAULT_IMAGE_ENCODER_CONFIG`, the one of the ``cupid-flow-cpu`` preset, so that both models of the
            comparison read the image with the same network.
        freeze_image_encoder (`bool`, defaults to `False`): keep the encoder's parameters fixed (for a pretrained
            encoder); by default it is trained with the head.
        mlp_hidden_size (`int`, defaults to 256): width of the MLP's hidden layers.
        mlp_num_layers (`int`, defaults to 2): hidden layers of the MLP (GELU), before the linear output of
            6 + 3 + 1 numbers.
        initial_translation (`list[float]`, defaults to `[0.0, 0.0, 2.5]`): the translation predicted at
            initialisation (the output bias): the renders' cameras look at the origin from distance 2.5, so the head
            starts there rather than at a camera inside the object.
        initial_focal (`float`, defaults to 1.0): the focal length (normalised uv units) predicted at initialisation.
        rotation_loss_weight, translation_loss_weight, focal_loss_weight (`float`, default 1.0): weights of
            ``‖R̂ − R‖²_F``, ``‖t̂ − t‖²`` and ``(log f̂ − log f)²`` in the loss.
        layer_norm_eps (`float`, defaults to 1e-6): LayerNorm epsilon.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of the MLP's linear layers.
    """

    @register_to_config
    def __init__(self, image_encoder_config: dict | None = None, freeze_image_encoder: bool = False,
                 mlp_hidden_size: int = 256, mlp_num_layers: int = 2, initial_translation: list | None = None,
                 initial_focal: float = 1.0, rotation_loss_weight: float = 1.0, translation_loss_weight: float = 1.0,
                 focal_loss_weight: float = 1.0, layer_norm_eps: float = 1e-6, initializer_range: float = 0.02):
        super().__init__()
        if image_encoder_config is None:
            image_encoder_config = dict(DEFAULT_IMAGE_ENCODER_CONFIG)
        if isinstance(image_encoder_config, CrateConfig):
            image_encoder_config = image_encoder_config.to_dict()
        if not isinstance(image_encoder_config, dict):
            raise TypeError(f"`image_encoder_config` must be a dict (a CrateConfig's fields), got "
                            f"{type(image_encoder_config).__name__}")
        for name, value in (("mlp_hidden_size", mlp_hidden_size), ("mlp_num_layers", mlp_num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        initial_translation = [0.0, 0.0, 2.5] if initial_translation is None else initial_translation
        if (not isinstance(initial_translation, (list, tuple)) or len(initial_translation) != 3
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in initial_translation)):
            raise ValueError(f"`initial_translation` must be 3 numbers, got {initial_translation!r}")
        self.initial_translation = [float(x) for x in initial_translation]
        self.initial_focal = _check_number("initial_focal", initial_focal, 0.0, True)
        self.loss_weights = tuple(_check_number(name, value, 0.0, False) for name, value in (
            ("rotation_loss_weight", rotation_loss_weight), ("translation_loss_weight", translation_loss_weight),
            ("focal_loss_weight", focal_loss_weight)))
        layer_norm_eps = _check_number("layer_norm_eps", layer_norm_eps, 0.0, True)
        std = _check_number("initializer_range", initializer_range, 0.0, True)
        self.image_encoder = CrateModel(CrateConfig(**{k: v for k, v in image_encoder_config.items()
                                                      if k in _crate_fields()}))
        if freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
        width = self.image_encoder.config.hidden_size
        layers, previous = [nn.LayerNorm(width, eps=layer_norm_eps)], width
        for _ in range(mlp_num_layers):
            layers += [nn.Linear(previous, mlp_hidden_size), nn.GELU()]
            previous = mlp_hidden_size
        self.head = nn.Sequential(*layers)
        self.output = nn.Linear(previous, 10)  # 6D rotation, t (3), log f (1)
        with torch.no_grad():
            for module in self.head:
                if isinstance(module, nn.Linear):
                    module.weight.normal_(mean=0.0, std=std)
                    module.bias.zero_()
            # Zero weights and a bias giving the identity rotation's first two columns, the initial t and log f:
            # every image starts at the same sensible camera.
            self.output.weight.zero_()
            self.output.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, *self.initial_translation,
                                                 math.log(self.initial_focal)]))

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Safetensors-only loading, the encoder frozen again when ``freeze_image_encoder``."""
        model = super().from_pretrained(*args, **kwargs)
        if model.config.freeze_image_encoder:
            model.image_encoder.requires_grad_(False)
        return model

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
        return_dict = True if return_dict is None else return_dict
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
            w_rotation, w_translation, w_focal = self.loss_weights
            loss = (w_rotation * (rotation - rotations.to(raw)).square().sum((1, 2)).mean()
                    + w_translation * (translation - translations.to(raw)).square().sum(1).mean()
                    + w_focal * (log_focal - true_focal.to(raw).log()).square().mean())
        output = CupidPoseRegressionOutput(loss=loss, rotations=rotation, translations=translation, intrinsics=k)
        return output if return_dict else output.to_tuple()
