"""The networks of the theme by name (`build_network`). The full profile's CIFAR-10 models, VGG and
ResNet-20, live in the shared `shammie.models` (re-exported here, so `shammie.connectivity.VGG` and
`shammie.connectivity.models.ResNet20` keep working); the quick profile uses MLP and CNN1d.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from ..models import MLP, VGG, VGG_CONFIGS, CNN1d, ResNet20
from .config import parse_network

__all__ = ["VGG", "VGG_CONFIGS", "ResNet20", "build_network"]


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
