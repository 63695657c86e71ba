"""DeepLabV3 networks from torchvision with one burned logit and a first conv for our channels.

Nothing is ever downloaded: ``weights_backbone`` names a torchvision weights enum (e.g.
``IMAGENET1K_V1``) that must already sit in the torch hub cache, and ``weights_path`` is a local
file (a torchvision backbone state dict, or a DeepLabV3 state dict with ``backbone.`` keys, or a
Lightning checkpoint of ours).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
)
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
)
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3

from firedpy_nrt.config.train import (
    DECODERS,
    NORMS,
    TORCHVISION_ASPP_CHANNELS,
    TORCHVISION_ATROUS_RATES,
)
from firedpy_nrt.errors import ConfigError

log = logging.getLogger(__name__)

#: backbone name -> (torchvision builder, backbone weights enum)
BACKBONES: dict[str, tuple[Any, Any]] = {
    "resnet50": (deeplabv3_resnet50, ResNet50_Weights),
    "resnet101": (deeplabv3_resnet101, ResNet101_Weights),
    "mobilenet_v3_large": (deeplabv3_mobilenet_v3_large, MobileNet_V3_Large_Weights),
}


#: backbone -> (the backbone module whose output is at stride 4, its channels): DeepLabV3+'s skip
LOW_LEVEL: dict[str, tuple[str, int]] = {
    "resnet50": ("layer1", 256),
    "resnet101": ("layer1", 256),
    "mobilenet_v3_large": ("3", 24),
}


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al., 2018) on a torchvision DeepLabV3's backbone and ASPP.

    The ASPP output is upsampled to the stride-4 features of the backbone, concatenated with
    them (reduced to 48 channels), refined by two 3x3 convolutions and classified; the logits
    are upsampled the last 4x. Returns ``{"out": logits}`` as torchvision's models do.
    """

    def __init__(self, base: DeepLabV3, backbone: str) -> None:
        super().__init__()
        self.low_name, low_channels = LOW_LEVEL[backbone]
        self.backbone = base.backbone  # the same modules: first-conv and weight handling agree
        self.aspp = base.classifier[0]  # ASPP -> its channels
        width = aspp_width(self.aspp)
        self.low = _conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(
            _conv_bn_relu(width + 48, width, 3), _conv_bn_relu(width, width, 3)
        )
        self.classifier = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        low = None
        for name, module in self.backbone.items():
            x = module(x)
            if name == self.low_name:
                low = x
        assert low is not None
        y = self.aspp(x)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([y, self.low(low)], dim=1))
        out = F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)
        return {"out": out}


def group_count(channels: int) -> int:
    """GroupNorm groups for ``channels``: 32 (Wu & He, 2018) or fewer, so that every group holds
    at least 8 channels (16 -> 2, 40 -> 4, 72 -> 8, 960 -> 32). With fewer channels a group
    (MobileNetV3's 16-channel stem would be InstanceNorm at 32 groups or 16) a chip's mean
    level is normalised away: a chip wholly inside a burn looks like one wholly outside. On the
    shifted populations, seed 7: 0.767 / 0.803 (B4 / B5) with as many groups as divide the
    channels up to 32, 0.812 / 0.849 with 8 channels a group at least."""
    return next((g for g in (32, 16, 8, 4, 2) if channels % g == 0 and channels // g >= 8), 1)


def batch_to_group_norm(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d of ``model`` replaced by a GroupNorm over the same channels, keeping
    its affine weight and bias (loaded pretrained values carry over; the running statistics
    have no counterpart and go). GroupNorm normalises each sample over its own channels and
    pixels, so a chip is treated the same in training and in evaluation, in a batch of 1 or 64."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            gn = nn.GroupNorm(group_count(c), c, eps=child.eps, affine=child.affine)
            if child.affine:
                with torch.no_grad():
                    gn.weight.copy_(child.weight)
                    gn.bias.copy_(child.bias)
            setattr(model, name, gn)
        else:
            batch_to_group_norm(child)
    return model


def aspp_width(aspp: ASPP) -> int:
    """The channels an ASPP module puts out (its projection's)."""
    return aspp.project[0].out_channels


def deeplab_head(in_channels: int, channels: int, atrous_rates: list[int]) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` (ASPP, 3x3 conv, BN, ReLU, 1x1 to one logit) with a chosen
    width and dilation rates."""
    return nn.Sequential(
        ASPP(in_channels, list(atrous_rates), channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, 1, 1),
    )


def first_conv_slot(model: nn.Module) -> tuple[nn.Module, str]:
    """``(parent, name)`` such that ``getattr(parent, name)`` is the backbone's first Conv2d."""
    backbone = model.backbone
    if hasattr(backbone, "conv1"):  # ResNet
        return backbone, "conv1"
    return backbone["0"], "0"  # MobileNetV3: features[0] is Conv2dNormActivation, [0] its conv


def _adapt_first_conv(
    model: nn.Module, in_channels: int, weight: torch.Tensor | None, pretrained: bool
) -> None:
    """Replace the first conv by one taking ``in_channels``.

    ``weight`` (from a weights file made for this many channels) is copied as is. With pretrained
    RGB filters, their mean is copied to every input channel and rescaled by old/new channel count
    so activations keep their magnitude (the usual recipe for multispectral inputs, as in
    torchgeo). Without pretrained weights the new conv gets its own He init, like torchvision's.
    """
    parent, name = first_conv_slot(model)
    old: nn.Conv2d = getattr(parent, name)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        if weight is not None:
            new.weight.copy_(weight)
        elif pretrained:
            mean = old.weight.mean(dim=1, keepdim=True)
            new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (old.in_channels / in_channels))
        else:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if old.bias is not None:
            new.bias.copy_(old.bias) if pretrained else new.bias.zero_()
    setattr(parent, name, new)


def _weights_enum(backbone: str, weights_backbone: str) -> Any:
    enum = BACKBONES[backbone][1]
    try:
        weights = enum[weights_backbone] if weights_backbone != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ConfigError(
            f"config key 'model.net.weights_backbone': {weights_backbone!r} is not a weights "
            f"name for {backbone} (choose from: {names}, or null)"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise ConfigError(
            f"config key 'model.net.weights_backbone': {weights_backbone} is not in the local "
            f"cache ({cached}); nothing is downloaded: put the file there or set "
            "model.net.weights_path"
        )
    return weights


def _backbone_state(path: Path, backbone: str) -> tuple[dict[str, torch.Tensor], bool]:
    """Read a weights file; return (state dict, whether its keys are full-model keys)."""
    if not path.is_file():
        raise ConfigError(f"config key 'model.net.weights_path': no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise ConfigError(
            f"config key 'model.net.weights_path': cannot read {path}: {exc}".splitlines()[0]
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"config key 'model.net.weights_path': {path} holds no state dict")
    # Our own Lightning checkpoints prefix the network with "net."
    if any(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    if any(k.startswith("backbone.") for k in state):
        return state, True
    if backbone == "mobilenet_v3_large":
        # torchvision MobileNetV3 keys "features.N..." are "N..." inside DeepLabV3's backbone
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    else:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return state, False


def build_deeplabv3(
    backbone: str = "resnet50",
    in_channels: int = 6,
    weights_backbone: str | None = None,
    weights_path: str | None = None,
    bn_momentum: float | None = 0.1,
    decoder: str = "deeplabv3",
    aspp_channels: int = TORCHVISION_ASPP_CHANNELS,
    atrous_rates: list[int] | tuple[int, ...] = TORCHVISION_ATROUS_RATES,
    norm: str = "batch",
) -> nn.Module:
    """A torchvision DeepLabV3 with one output logit and ``in_channels`` inputs; with
    ``decoder="deeplabv3plus"`` its backbone and ASPP under DeepLabV3+'s decoder.

    ``bn_momentum`` sets every BatchNorm's running-statistics momentum (torchvision's
    MobileNetV3 uses 0.01, meant for long ImageNet runs: after a few hundred steps its running
    statistics are still near their initial values and evaluation collapses); None keeps them.

    ``norm="group"`` puts GroupNorm where torchvision has BatchNorm (:func:`batch_to_group_norm`),
    after any weights are loaded.
    """
    if backbone not in BACKBONES:
        raise ConfigError(
            f"config key 'model.net.backbone': unknown backbone {backbone!r} "
            f"(choose from: {', '.join(BACKBONES)})"
        )
    if decoder not in DECODERS:
        raise ConfigError(
            f"config key 'model.net.decoder': unknown decoder {decoder!r} "
            f"(choose from: {', '.join(DECODERS)})"
        )
    if norm not in NORMS:
        raise ConfigError(
            f"config key 'model.net.norm': unknown norm {norm!r} (choose from: {', '.join(NORMS)})"
        )
    builder, _ = BACKBONES[backbone]
    weights = _weights_enum(backbone, weights_backbone) if weights_backbone else None
    model = builder(weights=None, weights_backbone=weights, num_classes=1, aux_loss=False)
    if (aspp_channels, tuple(atrous_rates)) != (
        TORCHVISION_ASPP_CHANNELS,
        TORCHVISION_ATROUS_RATES,
    ):
        in_aspp = model.classifier[0].convs[0][0].in_channels
        model.classifier = deeplab_head(in_aspp, aspp_channels, list(atrous_rates))
    if decoder == "deeplabv3plus":
        model = DeepLabV3Plus(model, backbone)
    first_weight: torch.Tensor | None = None
    if weights_path:
        state, full = _backbone_state(Path(weights_path), backbone)
        target = model if full else model.backbone
        own = target.state_dict()
        # Shapes that differ (the first conv of a 6-channel model, another head) are skipped
        # here and re-made below; everything else must match or it is not this backbone's file.
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = [k for k in state if k not in usable]
        if not usable:
            raise ConfigError(
                f"config key 'model.net.weights_path': {weights_path} has no weights for "
                f"a {backbone} DeepLabV3"
            )
        target.load_state_dict(usable, strict=False)
        log.info(
            "loaded %d tensors from %s (%d skipped: %s)",
            len(usable),
            weights_path,
            len(skipped),
            ", ".join(skipped[:5]),
        )
        # A file made for our channel count (e.g. a model of ours) keeps its first conv as is.
        conv_key = ("backbone." if full else "") + (
            "0.0.weight" if backbone == "mobilenet_v3_large" else "conv1.weight"
        )
        candidate = state.get(conv_key)
        if candidate is not None and candidate.ndim == 4 and candidate.shape[1] == in_channels:
            first_weight = candidate
    pretrained = weights is not None or bool(weights_path)
    _adapt_first_conv(model, in_channels, first_weight, pretrained)
    if norm == "group":
        return batch_to_group_norm(model)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model
