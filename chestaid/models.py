"""The backbone registry and :class:`ChestNet`, the network every ChestAid model is.

Each backbone is a torchvision architecture with its stem changed to one grey input
channel and its head replaced by global average pooling and one linear layer (one
logit for pneumonia vs normal, or N logits for N classes). Keeping that head shape
for every backbone is what makes Grad-CAM computable from the forward pass alone
(see :mod:`chestaid.gradcam`).

Weights start random, or from a local file the user passes (for example torchvision's
ImageNet weights); nothing is ever downloaded. A network whose weights are all loaded
next (a bundle's) is built without torchvision where ChestAid lays the body out itself
(:mod:`chestaid.densenet`): torchvision is imported only when it is needed.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chestaid.densenet import NUM_FEATURES as DENSENET121_FEATURES
from chestaid.densenet import densenet121_features
from chestaid.errors import ModelError

logger = logging.getLogger(__name__)


class ChestNet(nn.Module):
    """A convolutional body, global average pooling, dropout and one linear head.

    ``features`` returns the last feature map *as the pool sees it* (after the
    final activation), so the class activation map computed from it equals
    Grad-CAM exactly.
    """

    def __init__(
        self,
        features: nn.Module,
        num_features: int,
        num_outputs: int,
        dropout: float,
        *,
        orientation_outputs: int = 0,
    ) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(num_features, num_outputs)
        # An optional second head on the same pooled features: which way the image is
        # turned and whether its grey scale is inverted (an auxiliary task in training,
        # the orientation check in service). It costs one small matrix product.
        self.orientation: nn.Linear | None = (
            nn.Linear(num_features, orientation_outputs) if orientation_outputs else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (N, num_outputs) for inputs of shape (N, 1, H, W)."""
        logits, _ = self.forward_with_features(x)
        return logits

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, feature_map)``; the map has shape (N, C, h, w)."""
        heads = self.forward_heads(x)
        return heads.logits, heads.feature_map

    def forward_heads(self, x: torch.Tensor) -> Heads:
        """Every output of one forward pass: logits, orientation logits, features."""
        fmap = self.features(x)
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        orientation = self.orientation(pooled) if self.orientation is not None else None
        return Heads(self.classifier(self.dropout(pooled)), orientation, fmap, pooled)


@dataclass(frozen=True)
class Heads:
    """What one forward pass of a :class:`ChestNet` gives."""

    logits: torch.Tensor  # (N, num_outputs)
    orientation: torch.Tensor | None  # (N, orientation classes) or None without that head
    feature_map: torch.Tensor  # (N, C, h, w), as the pool sees it
    pooled: torch.Tensor  # (N, C)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and find its parts.

    ``grey_body``, where given, builds the one-channel body (and its feature count)
    without torchvision, for a network whose weights are all loaded next.
    """

    name: str
    constructor: Callable[..., nn.Module]
    stem_path: tuple[str | int, ...]
    body: Callable[[nn.Module], tuple[nn.Module, int]]
    grey_body: Callable[[], tuple[nn.Module, int]] | None = None


def _torchvision() -> Any:
    import torchvision

    return torchvision


def _constructor(name: str) -> Callable[..., nn.Module]:
    """torchvision's ``models.<name>``, imported when first called."""

    def build(**kwargs: Any) -> nn.Module:
        net: nn.Module = getattr(_torchvision().models, name)(**kwargs)
        return net

    return build


def _densenet_body(net: nn.Module) -> tuple[nn.Module, int]:
    # torchvision's DenseNet applies its last ReLU in forward(), after `features`;
    # the pool sees the post-ReLU map, so it belongs in the body.
    assert isinstance(net, _torchvision().models.DenseNet)
    classifier = net.classifier
    assert isinstance(classifier, nn.Linear)
    return _densenet_with_relu(net.features), classifier.in_features


def _densenet_with_relu(features: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("body", features), ("relu", nn.ReLU())]))


def _densenet_grey_body() -> tuple[nn.Module, int]:
    return _densenet_with_relu(densenet121_features(in_channels=1)), DENSENET121_FEATURES


def _resnet_body(net: nn.Module) -> tuple[nn.Module, int]:
    assert isinstance(net, _torchvision().models.ResNet)
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    body = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
    return body, net.fc.in_features


def _efficientnet_body(net: nn.Module) -> tuple[nn.Module, int]:
    assert isinstance(net, _torchvision().models.EfficientNet)
    linear = net.classifier[1]
    assert isinstance(linear, nn.Linear)
    return net.features, linear.in_features


def _vgg_body(net: nn.Module) -> tuple[nn.Module, int]:
    # The convolutional part, ending in its last pooling; the pooled-linear head replaces
    # VGG's three dense layers, as for every backbone (what keeps Grad-CAM exact).
    assert isinstance(net, _torchvision().models.VGG)
    last = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)][-1]
    return net.features, last.out_channels


_INCEPTION_LAYERS = [
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
]


def _inception(**kwargs: Any) -> nn.Module:
    # No auxiliary head (the pooled-linear head is the only one) and no ImageNet input
    # transform (a grey model input is already normalised).
    net: nn.Module = _torchvision().models.inception_v3(
        aux_logits=False, transform_input=False, init_weights=True, **kwargs
    )
    return net


def _inception_body(net: nn.Module) -> tuple[nn.Module, int]:
    assert isinstance(net, _torchvision().models.Inception3)
    body = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in _INCEPTION_LAYERS))
    return body, net.fc.in_features


class _FeaturesOf(nn.Module):
    """A timm network's ``forward_features`` (last map, after its activation) as a body."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net.forward_features(x)  # type: ignore[operator]
        return out


def _timm(name: str) -> Callable[..., nn.Module]:
    """timm's ``name`` with its classifier and pooling removed; imported when first called."""

    def build(weights: None = None) -> nn.Module:
        try:
            import timm
        except ImportError as exc:
            raise ModelError(
                f"the {name} backbone needs timm: pip install 'chestaid[models]'"
            ) from exc
        net: nn.Module = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        return net

    return build


def _timm_body(net: nn.Module) -> tuple[nn.Module, int]:
    return _FeaturesOf(net), int(net.num_features)  # type: ignore[arg-type]


class SmallNet(nn.Module):
    """A small network for training from scratch: four blocks of two 3x3 convolutions.

    Each block doubles the channels (32 to 256) and halves the size; about 1.2 M
    parameters, against DenseNet-121's 7 M. Its three-channel stem is made grey like
    every other backbone's.
    """

    def __init__(self, weights: None = None, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for i, width in enumerate(widths):
            for j in range(2):
                conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
                layers["stem" if (i, j) == (0, 0) else f"conv{i}{j}"] = conv
                layers[f"norm{i}{j}"] = nn.BatchNorm2d(width)
                layers[f"relu{i}{j}"] = nn.ReLU(inplace=True)
                channels = width
            if i < len(widths) - 1:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x)
        return out


def _small_body(net: nn.Module) -> tuple[nn.Module, int]:
    assert isinstance(net, SmallNet)
    return net.features, net.num_features


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "densenet121",
            _constructor("densenet121"),
            ("features", "conv0"),
            _densenet_body,
            grey_body=_densenet_grey_body,
        ),
        BackboneSpec("resnet50", _constructor("resnet50"), ("conv1",), _resnet_body),
        BackboneSpec(
            "efficientnet_b0",
            _constructor("efficientnet_b0"),
            ("features", 0, 0),
            _efficientnet_body,
        ),
        BackboneSpec("vgg16", _constructor("vgg16"), ("features", 0), _vgg_body),
        BackboneSpec("vgg16_bn", _constructor("vgg16_bn"), ("features", 0), _vgg_body),
        BackboneSpec("inception_v3", _inception, ("Conv2d_1a_3x3", "conv"), _inception_body),
        BackboneSpec("xception", _timm("legacy_xception"), ("conv1",), _timm_body),
        BackboneSpec("small_cnn", SmallNet, ("features", "stem"), _small_body),
    )
}
DEFAULT_ARCHITECTURE = "densenet121"


def available_architectures() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(BACKBONES)


def _get_child(module: nn.Module, path: tuple[str | int, ...]) -> nn.Module:
    for step in path:
        if isinstance(step, int):
            assert isinstance(module, nn.Sequential)
            module = module[step]
        else:
            module = getattr(module, step)
    return module


def _set_child(module: nn.Module, path: tuple[str | int, ...], new: nn.Module) -> None:
    parent = _get_child(module, path[:-1])
    last = path[-1]
    if isinstance(last, int):
        assert isinstance(parent, nn.Sequential)
        parent[last] = new
    else:
        setattr(parent, last, new)


def _grey_stem(conv: nn.Conv2d) -> nn.Conv2d:
    """A one-channel copy of an RGB stem whose kernel is the sum over the channels.

    Summing keeps the response of a pretrained stem to a grey image (R = G = B)
    unchanged, so ImageNet weights stay meaningful on one channel.
    """
    grey = nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        grey.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None and grey.bias is not None:
            grey.bias.copy_(conv.bias)
    return grey


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file, never running code.

    Raises:
        ModelError: the file is missing or is not a plain tensor state dict.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p)))
        loaded = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise ModelError(f"cannot read weights file {p}: {exc}") from exc
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ModelError(f"{p} does not hold a tensor state dict")
    return {str(k): v for k, v in loaded.items()}


def build_model(
    architecture: str = DEFAULT_ARCHITECTURE,
    *,
    num_outputs: int = 1,
    dropout: float = 0.0,
    pretrained_path: str | os.PathLike[str] | None = None,
    orientation_outputs: int = 0,
    weights_follow: bool = False,
) -> ChestNet:
    """Build a one-channel :class:`ChestNet` with random weights or local pretrained ones.

    Args:
        architecture: a name from :func:`available_architectures`.
        num_outputs: 1 for pneumonia vs normal (one logit), N for N classes.
        dropout: dropout before the linear head (training only).
        pretrained_path: optional local file with the torchvision model's own state
            dict (e.g. ImageNet weights, RGB stem and 1000-class head); its stem is
            summed to one channel and its head is discarded.
        weights_follow: the caller loads every weight next (a bundle's), so the
            starting weights do not matter: the body is built without torchvision
            where the backbone allows (the same layers, names and outputs).

    Returns:
        The network, in training mode.

    Raises:
        ModelError: unknown architecture, bad output count, or weights that do not fit.
    """
    spec = BACKBONES.get(architecture)
    if spec is None:
        raise ModelError(
            f"unknown architecture {architecture!r}; available: {', '.join(available_architectures())}"
        )
    if num_outputs < 1:
        raise ModelError(f"num_outputs must be at least 1, got {num_outputs}")
    if weights_follow and pretrained_path is None and spec.grey_body is not None:
        body, num_features = spec.grey_body()
        return ChestNet(
            body, num_features, num_outputs, dropout, orientation_outputs=orientation_outputs
        )
    net = spec.constructor(weights=None)
    if pretrained_path is not None:
        state = load_state_dict_file(pretrained_path)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(
                f"{pretrained_path} does not fit torchvision's {architecture}: {exc}"
            ) from exc
        logger.info("loaded pretrained %s weights from %s", architecture, pretrained_path)
    stem = _get_child(net, spec.stem_path)
    assert isinstance(stem, nn.Conv2d)
    _set_child(net, spec.stem_path, _grey_stem(stem))
    body, num_features = spec.body(net)
    return ChestNet(
        body, num_features, num_outputs, dropout, orientation_outputs=orientation_outputs
    )


def reinitialise(model: ChestNet, *, seed: int) -> ChestNet:
    """Reset every parameter and buffer of ``model`` in place, deterministically.

    Used by the model-randomisation sanity check of saliency maps.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    finally:
        torch.random.set_rng_state(generator_state)
    return model
