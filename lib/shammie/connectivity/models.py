"""Models of the full profile (CIFAR-10): VGG and ResNet-20; the quick profile uses shammie.models.MLP and CNN1d.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..core import ShammieError
from ..models import MLP, CNN1d
from .config import parse_network

VGG_CONFIGS = {
    "VGG11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "VGG13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "VGG16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
}


class VGG(nn.Module):
    """VGG for 32x32 images (the kuangliu/pytorch-cifar layout the REPAIR paper uses), width multiplier `width`.

    Each block is Conv3x3 -> (BatchNorm) -> ReLU -> (MaxPool2), a max-pool joining the conv before it;
    the head is one Linear on the flattened 1x1 feature map.
    """

    def __init__(
        self,
        config: str = "VGG11",
        width: int = 1,
        num_classes: int = 10,
        batchnorm: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ShammieError(
                f"unknown VGG config {config!r}: choose one of {', '.join(VGG_CONFIGS)}"
            )
        if width < 1:
            raise ShammieError(f"width must be >= 1, got {width}")
        self.blocks = nn.ModuleList()
        c = in_channels
        items = VGG_CONFIGS[config]
        for i, item in enumerate(items):
            if item == "M":
                continue
            out = int(item) * width
            layers: list[nn.Module] = [nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            if i + 1 < len(items) and items[i + 1] == "M":
                layers.append(nn.MaxPool2d(2))
            self.blocks.append(nn.Sequential(*layers))
            c = out
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


class _ResBlock2d(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 conv + BatchNorm) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, batchnorm: bool):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not batchnorm), norm(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for 32x32 images (He et al. 2016, CIFAR layout) with `width` x (16, 32, 64) channels.

    Three stages of three residual blocks; a 1x1 conv + BatchNorm shortcut where the shape changes.
    """

    def __init__(
        self, width: int = 1, num_classes: int = 10, batchnorm: bool = True, in_channels: int = 3
    ):
        super().__init__()
        if width < 1:
            raise ShammieError(f"width must be >= 1, got {width}")
        widths = [16 * width, 32 * width, 64 * width]
        norm = nn.BatchNorm2d(widths[0]) if batchnorm else nn.Identity()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=not batchnorm), norm, nn.ReLU()
        )
        self.blocks = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(3):
                self.blocks.append(_ResBlock2d(c, w, 2 if (i > 0 and j == 0) else 1, batchnorm))
                c = w
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(-2, -1)))




def build_network(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    mlp_depth: int = 6,
    batchnorm: bool = True,
) -> nn.Module:
    """The network `name` (`family-width`, see `ConnectivityConfig`) for inputs of `input_shape`."""
    family, width = parse_network(name)
    if family == "mlp":
        return MLP(
            int(np.prod(input_shape)), num_classes, hidden=(width,) * mlp_depth, batchnorm=batchnorm
        )
    if family == "cnn":
        return CNN1d(
            int(input_shape[-1]),
            num_classes,
            channels=(width, width, 2 * width, 2 * width),
            kernel_size=5,
            strides=(1, 2, 1, 2),
            batchnorm=batchnorm,
            head="gap",
            in_channels=1 if len(input_shape) == 1 else int(input_shape[0]),
        )
    if family == "vgg11":
        return VGG(
            "VGG11", width, num_classes, batchnorm=batchnorm, in_channels=int(input_shape[0])
        )
    return ResNet20(width, num_classes, batchnorm=batchnorm, in_channels=int(input_shape[0]))
