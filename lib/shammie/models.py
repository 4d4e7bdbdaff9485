"""Models shared by the themes: MLP (logistic regression when it has no hidden layer), a 1D CNN with
optional BatchNorm and dropout, a small 1D ResNet, torchvision's ResNet-18 adapted to 32x32 images, and
for 32x32 images VGG (11/13/16) and ResNet-20 with a width multiplier and optional BatchNorm.

Every model exposes its hidden blocks as `model.blocks` (an nn.ModuleList, in forward order) and its
classifier as `model.head`, so themes can hook per-layer features or permute units without special cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .core import ShammieError

__all__ = ["MLP", "CNN1d", "ResNet1d", "VGG", "VGG_CONFIGS", "ResNet20", "cifar_resnet18", "count_parameters",
           "build_model"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class MLP(nn.Module):
    """Fully connected network: Flatten -> [Linear -> (BatchNorm) -> ReLU -> (Dropout)] per hidden width -> Linear.

    With `hidden=()` it is multinomial logistic regression.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        batchnorm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ShammieError(f"MLP needs in_features >= 1 and num_classes >= 2, got {in_features}, {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ShammieError(f"dropout must be in [0, 1), got {dropout}")
        self.flatten = nn.Flatten()
        self.blocks = nn.ModuleList()
        width = in_features
        for h in hidden:
            layers: list[nn.Module] = [nn.Linear(width, h, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.blocks.append(nn.Sequential(*layers))
            width = h
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class CNN1d(nn.Module):
    """1D CNN for signals of shape (N, L) or (N, C, L).

    Each block is Conv1d(kernel, stride, 'same'-style padding) -> (BatchNorm) -> ReLU -> (Dropout).
    The head either flattens the last feature map (position-aware, as in the MNIST-1D paper's CNN) or
    global-average-pools it.
    """

    def __init__(
        self,
        input_length: int,
        num_classes: int,
        channels: Sequence[int] = (32, 32, 32),
        kernel_size: int = 5,
        strides: Sequence[int] | None = None,
        in_channels: int = 1,
        batchnorm: bool = False,
        dropout: float = 0.0,
        head: str = "flatten",
    ):
        super().__init__()
        if head not in ("flatten", "gap"):
            raise ShammieError(f"head must be 'flatten' or 'gap', got {head!r}")
        if not channels:
            raise ShammieError("CNN1d needs at least one conv block")
        strides = tuple(strides) if strides is not None else (2,) * len(channels)
        if len(strides) != len(channels):
            raise ShammieError(f"strides ({len(strides)}) and channels ({len(channels)}) differ in length")
        if not 0.0 <= dropout < 1.0:
            raise ShammieError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.blocks = nn.ModuleList()
        c, length = in_channels, input_length
        pad = kernel_size // 2
        for out_c, s in zip(channels, strides):
            layers: list[nn.Module] = [nn.Conv1d(c, out_c, kernel_size, stride=s, padding=pad, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(out_c))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.blocks.append(nn.Sequential(*layers))
            c = out_c
            length = (length + 2 * pad - kernel_size) // s + 1
        if length < 1:
            raise ShammieError(f"input_length {input_length} is too short for {len(channels)} strided blocks")
        self.head_kind = head
        self.head = nn.Linear(c * length if head == "flatten" else c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature map, (N, C, L')."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = h.flatten(1) if self.head_kind == "flatten" else h.mean(dim=-1)
        return self.head(h)


class _ResBlock1d(nn.Module):
    """Two 3-tap convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet1d(nn.Module):
    """A small residual network for 1D signals: a stem, stages of residual blocks, average pooling, Linear."""

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (32, 64, 64),
        blocks_per_stage: int = 1,
        in_channels: int = 1,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, widths[0], 5, padding=2, bias=False), nn.BatchNorm1d(widths[0]), nn.ReLU()
        )
        self.blocks = nn.ModuleList()
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                self.blocks.append(_ResBlock1d(c, w, stride=2 if (i > 0 and j == 0) else 1))
                c = w
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=-1))


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


def cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 inputs: a 3x3 stride-1 stem and no max-pool (the usual CIFAR variant).

    `model.blocks` lists the stem's output tap and the four residual stages, each a module that
    `forward` calls (so forward hooks on them fire); `model.head` is the classifier.
    """
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()  # runs right after conv1 -> bn1 -> relu: its output is the stem's
    model.blocks = nn.ModuleList([model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4])
    model.head = model.fc
    return model


def build_model(name: str, input_length: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a model by name: 'logistic', 'mlp', 'cnn', 'resnet' (1D inputs of length `input_length`)."""
    if name == "logistic":
        return MLP(input_length, num_classes, hidden=(), **kwargs)
    if name == "mlp":
        return MLP(input_length, num_classes, **kwargs)
    if name == "cnn":
        return CNN1d(input_length, num_classes, **kwargs)
    if name == "resnet":
        return ResNet1d(num_classes, **kwargs)
    raise ShammieError(f"unknown model {name!r}: choose logistic, mlp, cnn or resnet")
