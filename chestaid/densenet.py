"""DenseNet-121's body, laid out as torchvision's, for networks whose weights are loaded.

Loading a bundle only needs the layers in the right places with the right names:
every weight is then replaced. Importing torchvision for that costs about 190 MiB of
resident memory in ``chestaid predict`` and the daemon (it brings in ``torch._dynamo``),
so the bundle loader builds DenseNet-121 from this module. The modules, their names
and the order of operations are those of torchvision's (Huang et al., "Densely
Connected Convolutional Networks", 2017: growth rate 32, blocks of 6, 12, 24 and 16
layers, bottleneck width 4x, compression 0.5), so its state dicts load here unchanged
and give the same outputs; a test compares the two. Training builds torchvision's own
(its random initialisation is part of what a seed reproduces).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

GROWTH_RATE = 32
BLOCK_LAYERS = (6, 12, 24, 16)
STEM_FEATURES = 64
BOTTLENECK_WIDTH = 4
NUM_FEATURES = 1024


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck), BN-ReLU-3x3 conv: ``GROWTH_RATE`` new channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        width = BOTTLENECK_WIDTH * GROWTH_RATE
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, GROWTH_RATE, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The new channels from every earlier map of the block."""
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))
        out: torch.Tensor = self.conv2(self.relu2(self.norm2(bottleneck)))
        return out


class DenseBlock(nn.ModuleDict):
    """Layers each fed with the concatenation of all maps before it."""

    def __init__(self, layers: int, in_channels: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * GROWTH_RATE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The input and every layer's new channels, concatenated."""
        maps = [x]
        for layer in self.values():
            maps.append(layer(maps))
        return torch.cat(maps, 1)


def _transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling."""
    return nn.Sequential(
        OrderedDict(
            [
                ("norm", nn.BatchNorm2d(in_channels)),
                ("relu", nn.ReLU(inplace=True)),
                ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)),
                ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
            ]
        )
    )


def densenet121_features(in_channels: int = 1) -> nn.Sequential:
    """DenseNet-121's ``features`` (stem to ``norm5``, no final ReLU), as torchvision names them."""
    parts: list[tuple[str, nn.Module]] = [
        (
            "conv0",
            nn.Conv2d(in_channels, STEM_FEATURES, kernel_size=7, stride=2, padding=3, bias=False),
        ),
        ("norm0", nn.BatchNorm2d(STEM_FEATURES)),
        ("relu0", nn.ReLU(inplace=True)),
        ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
    ]
    channels = STEM_FEATURES
    for i, layers in enumerate(BLOCK_LAYERS, start=1):
        parts.append((f"denseblock{i}", DenseBlock(layers, channels)))
        channels += layers * GROWTH_RATE
        if i < len(BLOCK_LAYERS):
            parts.append((f"transition{i}", _transition(channels, channels // 2)))
            channels //= 2
    parts.append(("norm5", nn.BatchNorm2d(channels)))
    assert channels == NUM_FEATURES
    return nn.Sequential(OrderedDict(parts))
