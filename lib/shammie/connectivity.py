"""Linear mode connectivity and REPAIR: permutation specs, neuron alignment, interpolation, barriers,
and the renormalization of interpolated networks.

Papers: Jordan, Sedghi, Saukh, Entezari & Neyshabur, "REPAIR: REnormalizing Permuted Activations for
Interpolation Repair", ICLR 2023, arXiv 2211.08403; Ainsworth, Hayase & Srinivasa, "Git Re-Basin:
Merging Models modulo Permutation Symmetries", ICLR 2023, arXiv 2209.04836.

Conventions.
- A `PermSpec` (from `permutation_spec(model)`) names one permutation per group of hidden units and
  says, for every state-dict entry, which permutation acts on each of its axes. A residual stream is
  one group: every layer that writes into it shares its permutation.
- A permutation `perm` of a group of size n is a LongTensor in which `perm[i]` is the unit of network
  B matched to unit i of network A. Applying it to B puts B's units in A's order:
  `w.index_select(axis, perm)` on every axis the group touches.
- `alpha` interpolates from network A (alpha=0) to network B (alpha=1).
- Statistics are per channel: dimension 1 of a module's output, pooled over the batch and every
  spatial position, accumulated in float64.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .config import ConfigError, ProfileConfig
from .core import ShammieError
from .models import MLP, CNN1d, ResNet1d

__all__ = [
    "ConnectivityConfig",
    "UnsupportedLayerError",
    "ArchitectureMismatchError",
    "VGG",
    "ResNet20",
    "build_network",
    "parse_network",
    "Tap",
    "Unit",
    "PermSpec",
    "permutation_spec",
    "check_compatible",
    "random_permutations",
    "permute_state",
    "apply_permutation",
    "fold_batchnorm",
    "channel_stats",
    "Alignment",
    "match_activations",
    "match_weights",
    "align",
    "interpolate_state",
    "interpolate",
    "reset_bn_stats",
    "repair_points",
    "repair",
    "variance_ratios",
    "interpolation_curve",
    "barrier",
    "relative_reduction",
    "barrier_table",
    "barrier_summary",
    "collapse_profile",
    "ThemeData",
    "load_theme_data",
    "train_network",
    "NetworkStudy",
    "study_network",
    "plot_curves",
    "plot_variance_collapse",
    "plot_width_sweep",
    "plot_paper_comparison",
]


class UnsupportedLayerError(ShammieError, ValueError):
    """A model holds a layer (or is of a type) that the permutation spec does not know how to permute."""


class ArchitectureMismatchError(ShammieError, ValueError):
    """Two networks that should share an architecture (and widths) do not."""


# =============================================================================================
# Config


@dataclass(frozen=True)
class ConnectivityConfig(ProfileConfig):
    """Knobs of notebook 02 (mode connectivity and REPAIR). Defaults are the quick profile.

    A network is named `family-width`: `mlp-512` (a `mlp_depth`-hidden-layer MLP of width 512),
    `cnn-32` (a 1D CNN with channels 32, 32, 64, 64), `vgg11-1` and `resnet20-4` (CIFAR-10 models
    with a width multiplier). Every network is trained with BatchNorm; the study also folds the
    BatchNorm into the weights, which gives a network without normalization at interpolation time.
    """

    dataset: str = "mnist1d"  # mnist1d | cifar10
    num_samples: int = 5000  # MNIST-1D size (5000: the published 4000/1000 split)
    data_root: str | None = None  # where CIFAR-10 lives (None: data/)
    networks: tuple[str, ...] = ("cnn-32", "mlp-32", "mlp-128", "mlp-512")
    # the network shown with BatchNorm reset, the one shown folded (no norm), the family of the width
    # sweep; None (or a name not in `networks`): the widest conv network, the widest network of the
    # sweep family, and the most common family
    bn_network: str | None = "cnn-32"
    plain_network: str | None = "mlp-512"
    sweep_family: str | None = "mlp"
    mlp_depth: int = 6
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    alphas: int = 11  # points of the interpolation grid, 0..1
    calib_samples: int = 4000  # training inputs for matching and REPAIR statistics
    eval_train_samples: int = 4000  # training examples the curves are evaluated on
    stats_batch: int = 0  # batch size of the statistics passes (0: all at once)
    weight_matching: bool = True  # also align the plain network by weight matching

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "num_samples": 1000,
            "networks": ("cnn-8", "mlp-16", "mlp-32"),
            "bn_network": "cnn-8",
            "plain_network": "mlp-32",
            "mlp_depth": 3,
            "epochs": 2,
            "alphas": 3,
            "calib_samples": 400,
            "eval_train_samples": 400,
        },
        "quick": {},
        "full": {
            "dataset": "cifar10",
            "networks": ("vgg11-1", "resnet20-1", "resnet20-2", "resnet20-4"),
            "bn_network": "resnet20-4",
            "plain_network": "vgg11-1",
            "sweep_family": "resnet20",
            "epochs": 60,
            "lr": 0.1,
            "batch_size": 500,
            "alphas": 21,
            "calib_samples": 5000,
            "eval_train_samples": 10000,
            "stats_batch": 1000,
        },
    }

    def validate(self) -> None:
        if self.dataset not in ("mnist1d", "cifar10"):
            raise ConfigError(f"dataset must be 'mnist1d' or 'cifar10', got {self.dataset!r}")
        if not self.networks:
            raise ConfigError("networks is empty: name at least one, e.g. ('mlp-512',)")
        parsed = []
        for name in self.networks:
            family, width = parse_network(name)
            parsed.append((family, width, name))
            image = family in ("vgg11", "resnet20")
            if image != (self.dataset == "cifar10"):
                raise ConfigError(
                    f"network {name!r} does not fit dataset {self.dataset!r}: use mlp/cnn "
                    f"with mnist1d and vgg11/resnet20 with cifar10"
                )
        if len(set(self.networks)) != len(self.networks):
            raise ConfigError(f"networks {list(self.networks)} names a network twice")
        families = [f for f, _, _ in parsed]
        # a knob left at None (or not among networks after `networks` was overridden) takes a default
        # that fits the networks chosen; a frozen dataclass is completed here, once, at construction
        if self.sweep_family is None or self.sweep_family not in families:
            object.__setattr__(
                self, "sweep_family", max(dict.fromkeys(families), key=families.count)
            )
        if self.plain_network is None or self.plain_network not in self.networks:
            widest = max((w, n) for f, w, n in parsed if f == self.sweep_family)[1]
            object.__setattr__(self, "plain_network", widest)
        if self.bn_network is None or self.bn_network not in self.networks:
            conv = [(w, n) for f, w, n in parsed if f != "mlp"] or [(w, n) for _, w, n in parsed]
            object.__setattr__(self, "bn_network", max(conv)[1])
        if self.alphas < 3 or self.alphas % 2 == 0:
            raise ConfigError(
                f"alphas={self.alphas}: use an odd number >= 3 so that the grid holds 0.5"
            )
        for knob in ("epochs", "batch_size", "mlp_depth", "calib_samples", "eval_train_samples"):
            if getattr(self, knob) < 1:
                raise ConfigError(f"{knob} must be >= 1, got {getattr(self, knob)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.stats_batch < 0:
            raise ConfigError("lr must be positive, weight_decay and stats_batch non-negative")
        if self.dataset == "mnist1d" and self.num_samples < 100:
            raise ConfigError(f"num_samples={self.num_samples} is too small: use at least 100")

    def alpha_grid(self) -> list[float]:
        """The interpolation grid, `alphas` evenly spaced points from 0 to 1."""
        return [round(a, 6) for a in np.linspace(0.0, 1.0, self.alphas).tolist()]


# =============================================================================================
# Models of the full profile (CIFAR-10); the quick profile uses shammie.models.MLP and CNN1d.

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


_FAMILIES = ("mlp", "cnn", "vgg11", "resnet20")


def parse_network(name: str) -> tuple[str, int]:
    """Split a network name such as `mlp-512` or `resnet20-4` into (family, width)."""
    family, sep, width = str(name).rpartition("-")
    if not sep or family not in _FAMILIES or not width.isdigit() or int(width) < 1:
        raise ConfigError(
            f"network {name!r} is not `family-width` with family one of {', '.join(_FAMILIES)} "
            f"and a positive width, e.g. 'mlp-512' or 'resnet20-4'"
        )
    return family, int(width)


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


# =============================================================================================
# Permutation specs

_PRODUCERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASSIVE = (
    nn.ReLU,
    nn.Dropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.Identity,
)


@dataclass(frozen=True)
class Tap:
    """Where activation matching reads a permutation group's activations: a module's output (then ReLU)."""

    module: str
    relu: bool = False


@dataclass(frozen=True)
class Unit:
    """A producer (Linear or Conv) whose output channels belong to permutation `perm`, and the BatchNorm
    that normalizes them (None when there is none). Its pre-activation is `norm or producer`'s output."""

    perm: str
    producer: str
    norm: str | None

    @property
    def preactivation(self) -> str:
        """The module whose output is this unit's pre-activation (the BatchNorm when there is one)."""
        return self.norm or self.producer


@dataclass
class PermSpec:
    """Which permutation acts on which axis of which state-dict entry.

    `perms`: group name -> size. `axes`: state-dict key -> one group name (or None) per axis of the
    entry, viewed with the shape in `views` when it has one (a flattened head's input splits into
    channels x positions). `taps`: group -> activations used to match it. `units`: every
    producer/BatchNorm pair in forward order. `params`: the keys that are parameters (weight matching
    uses these; BatchNorm running statistics are permuted but not matched).
    """

    architecture: str
    perms: dict[str, int]
    axes: dict[str, tuple[str | None, ...]]
    views: dict[str, tuple[int, ...]] = field(default_factory=dict)
    taps: dict[str, list[Tap]] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)
    params: set[str] = field(default_factory=set)

    def entries(self, perm: str) -> list[tuple[str, int]]:
        """The (state-dict key, axis) pairs that permutation `perm` acts on."""
        return [(k, d) for k, axes in self.axes.items() for d, p in enumerate(axes) if p == perm]

    def preactivations(self) -> list[str]:
        """The modules whose outputs are the hidden pre-activations, in forward order."""
        return [u.preactivation for u in self.units]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}:{v}" for k, v in self.perms.items())
        return f"PermSpec({self.architecture}, {len(self.perms)} permutations [{sizes}], {len(self.axes)} entries)"


class _SpecBuilder:
    def __init__(self, model: nn.Module):
        self.model = model
        self.spec = PermSpec(type(model).__name__, {}, {})
        self.param_keys = {k for k, _ in model.named_parameters()}

    def new_perm(self, name: str, size: int) -> str:
        self.spec.perms[name] = int(size)
        self.spec.taps[name] = []
        return name

    def _set(
        self, key: str, axes: tuple[str | None, ...], tensor: torch.Tensor | None, view=None
    ) -> None:
        if tensor is None:
            return
        shape = tuple(view) if view is not None else tuple(tensor.shape)
        for d, p in enumerate(axes):
            if p is not None and shape[d] != self.spec.perms[p]:
                raise UnsupportedLayerError(
                    f"{key}: axis {d} has size {shape[d]} but permutation {p!r} has "
                    f"size {self.spec.perms[p]}; the layers do not chain"
                )
        self.spec.axes[key] = axes
        if view is not None:
            self.spec.views[key] = tuple(view)
        if key in self.param_keys:
            self.spec.params.add(key)

    def producer(self, name: str, module: nn.Module, out_perm: str, in_perm: str | None) -> None:
        _check_producer(name, module)
        extra = (None,) * (module.weight.dim() - 2)
        self._set(f"{name}.weight", (out_perm, in_perm, *extra), module.weight)
        self._set(f"{name}.bias", (out_perm,), module.bias)

    def norm(self, name: str, module: nn.Module, perm: str) -> None:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            self._set(f"{name}.{attr}", (perm,), getattr(module, attr, None))

    def head(self, name: str, module: nn.Module, in_perm: str) -> None:
        if not isinstance(module, nn.Linear):
            raise UnsupportedLayerError(
                f"{name}: unsupported layer type {type(module).__name__} as the "
                f"classifier; the spec expects an nn.Linear head"
            )
        size = self.spec.perms[in_perm]
        if module.in_features % size:
            raise UnsupportedLayerError(
                f"{name}: in_features {module.in_features} is not a multiple of the "
                f"last hidden width {size}"
            )
        inner = module.in_features // size
        if inner == 1:
            self._set(f"{name}.weight", (None, in_perm), module.weight)
        else:  # flattened (channels, positions) input: index c * inner + l
            self._set(
                f"{name}.weight",
                (None, in_perm, None),
                module.weight,
                view=(module.out_features, size, inner),
            )
        self._set(f"{name}.bias", (None,), module.bias)

    def finish(self) -> PermSpec:
        missing = sorted(self.param_keys - set(self.spec.axes))
        if missing:
            owner = missing[0].rsplit(".", 1)[0]
            kind = (
                type(self.model.get_submodule(owner)).__name__
                if owner
                else type(self.model).__name__
            )
            raise UnsupportedLayerError(
                f"unsupported layer type {kind} at {owner!r}: the permutation spec of "
                f"{self.spec.architecture} does not cover its parameters {missing[:4]}"
            )
        return self.spec


def _check_producer(name: str, module: nn.Module) -> None:
    if not isinstance(module, _PRODUCERS):
        raise UnsupportedLayerError(
            f"{name}: unsupported layer type {type(module).__name__}; a hidden layer must "
            f"start with nn.Linear, nn.Conv1d or nn.Conv2d"
        )
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups != 1:
        raise UnsupportedLayerError(
            f"{name}: unsupported layer type {type(module).__name__} with groups="
            f"{module.groups}; grouped convolutions do not fit one permutation per layer"
        )


def _stem_like(
    builder: _SpecBuilder, prefix: str, block: nn.Module, perm_name: str, in_perm: str | None
) -> tuple[str, Unit]:
    """A Sequential of producer -> (BatchNorm | Identity) -> passive layers; returns its permutation and unit."""
    if not isinstance(block, nn.Sequential) or len(block) == 0:
        raise UnsupportedLayerError(
            f"{prefix}: unsupported layer type {type(block).__name__}; expected an "
            f"nn.Sequential that starts with a Linear or Conv layer"
        )
    children = list(block.named_children())
    first_name, first = children[0]
    producer = f"{prefix}.{first_name}"
    _check_producer(producer, first)
    size = first.out_features if isinstance(first, nn.Linear) else first.out_channels
    p = builder.new_perm(perm_name, size)
    builder.producer(producer, first, p, in_perm)
    norm = None
    for cname, child in children[1:]:
        full = f"{prefix}.{cname}"
        if isinstance(child, _NORMS):
            if norm is not None:
                raise UnsupportedLayerError(
                    f"{full}: a second BatchNorm in one block is not supported"
                )
            builder.norm(full, child, p)
            norm = full
        elif isinstance(child, _PASSIVE):
            continue
        else:
            raise UnsupportedLayerError(
                f"{full}: unsupported layer type {type(child).__name__}; a block may hold "
                f"one Linear/Conv, one BatchNorm, and ReLU, Dropout, pooling or Identity"
            )
    return p, Unit(p, producer, norm)


def _chain_spec(model: nn.Module) -> PermSpec:
    b = _SpecBuilder(model)
    prev = None
    for i, block in enumerate(model.blocks):
        prefix = f"blocks.{i}"
        p, unit = _stem_like(b, prefix, block, prefix, prev)
        b.spec.units.append(unit)
        b.spec.taps[p].append(Tap(prefix))
        prev = p
    if prev is None:
        raise UnsupportedLayerError(
            f"{type(model).__name__} has no hidden layer: there is nothing to permute"
        )
    b.head("head", model.head, prev)
    return b.finish()


def _norm_or_identity(builder: _SpecBuilder, name: str, module: nn.Module, perm: str) -> str | None:
    if isinstance(module, _NORMS):
        builder.norm(name, module, perm)
        return name
    if isinstance(module, nn.Identity):
        return None
    raise UnsupportedLayerError(
        f"{name}: unsupported layer type {type(module).__name__}; expected BatchNorm or Identity"
    )


def _residual_spec(model: nn.Module) -> PermSpec:
    b = _SpecBuilder(model)
    stream, unit = _stem_like(b, "stem", model.stem, "stream0", None)
    b.spec.units.append(unit)
    b.spec.taps[stream].append(Tap("stem"))
    n_streams = 1
    for i, blk in enumerate(model.blocks):
        prefix = f"blocks.{i}"
        for attr in ("conv1", "bn1", "conv2", "bn2", "shortcut"):
            if not hasattr(blk, attr):
                raise UnsupportedLayerError(
                    f"{prefix}: unsupported layer type {type(blk).__name__}; a residual "
                    f"block needs conv1, bn1, conv2, bn2 and shortcut"
                )
        inner = b.new_perm(f"{prefix}.inner", blk.conv1.out_channels)
        b.producer(f"{prefix}.conv1", blk.conv1, inner, stream)
        norm1 = _norm_or_identity(b, f"{prefix}.bn1", blk.bn1, inner)
        b.spec.units.append(Unit(inner, f"{prefix}.conv1", norm1))
        b.spec.taps[inner].append(Tap(f"{prefix}.bn1", relu=True))
        out = stream
        if not isinstance(blk.shortcut, nn.Identity):
            sc = blk.shortcut
            if not (isinstance(sc, nn.Sequential) and len(sc) == 2):
                raise UnsupportedLayerError(
                    f"{prefix}.shortcut: unsupported layer type {type(sc).__name__}; expected "
                    f"Identity or Sequential(conv, BatchNorm or Identity)"
                )
            out = b.new_perm(f"stream{n_streams}", sc[0].out_channels)
            n_streams += 1
            b.producer(f"{prefix}.shortcut.0", sc[0], out, stream)
            norm_sc = _norm_or_identity(b, f"{prefix}.shortcut.1", sc[1], out)
            b.spec.units.append(Unit(out, f"{prefix}.shortcut.0", norm_sc))
        b.producer(f"{prefix}.conv2", blk.conv2, out, inner)
        norm2 = _norm_or_identity(b, f"{prefix}.bn2", blk.bn2, out)
        b.spec.units.append(Unit(out, f"{prefix}.conv2", norm2))
        b.spec.taps[out].append(Tap(prefix))
        stream = out
    b.head("head", model.head, stream)
    return b.finish()


def permutation_spec(model: nn.Module) -> PermSpec:
    """The permutation spec of `model`: MLP, CNN1d, VGG (chains of blocks) or ResNet1d, ResNet20 (residual).

    Raises UnsupportedLayerError naming the model or layer type it cannot permute.
    """
    if isinstance(model, (ResNet1d, ResNet20)) or (
        hasattr(model, "stem") and hasattr(model, "blocks")
    ):
        return _residual_spec(model)
    if isinstance(model, (MLP, CNN1d, VGG)) or (
        hasattr(model, "blocks") and hasattr(model, "head")
    ):
        if isinstance(model, CNN1d) and model.head_kind not in ("flatten", "gap"):
            raise UnsupportedLayerError(f"CNN1d head {model.head_kind!r} is not supported")
        return _chain_spec(model)
    raise UnsupportedLayerError(
        f"unsupported model type {type(model).__name__}: permutation specs exist for MLP, "
        f"CNN1d, VGG (blocks + head) and ResNet1d, ResNet20 (stem + residual blocks + head)"
    )


def check_compatible(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ArchitectureMismatchError unless the two networks share type, state-dict keys and shapes."""
    if type(model_a) is not type(model_b):
        raise ArchitectureMismatchError(
            f"the networks have different architectures: {type(model_a).__name__} vs "
            f"{type(model_b).__name__}; align two networks of the same architecture"
        )
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if list(sa) != list(sb):
        only_a = sorted(set(sa) - set(sb))[:3]
        only_b = sorted(set(sb) - set(sa))[:3]
        raise ArchitectureMismatchError(
            f"the networks have different layers (only in A: {only_a}, only in B: {only_b}); "
            f"align two networks of the same architecture and depth"
        )
    for k in sa:
        if sa[k].shape != sb[k].shape:
            raise ArchitectureMismatchError(
                f"the networks have different widths: {k} is {tuple(sa[k].shape)} in A but "
                f"{tuple(sb[k].shape)} in B; align two networks of the same widths"
            )


def random_permutations(
    spec: PermSpec, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """A uniformly random permutation for every group of `spec`."""
    return {p: torch.randperm(n, generator=generator) for p, n in spec.perms.items()}


def _check_perms(spec: PermSpec, perms: Mapping[str, torch.Tensor]) -> None:
    for p, n in spec.perms.items():
        if p not in perms:
            raise ShammieError(
                f"no permutation given for group {p!r}; groups are {list(spec.perms)}"
            )
        perm = perms[p]
        if perm.shape != (n,) or not torch.equal(torch.sort(perm.cpu()).values, torch.arange(n)):
            raise ShammieError(f"perms[{p!r}] is not a permutation of {n} units")


def permute_state(
    state: Mapping[str, torch.Tensor],
    spec: PermSpec,
    perms: Mapping[str, torch.Tensor],
    skip: tuple[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """A copy of `state` with every entry permuted along the axes `spec` assigns (optionally leaving out
    the one (key, axis) pair `skip`, as weight matching needs)."""
    out = {}
    for key, value in state.items():
        axes = spec.axes.get(key)
        if axes is None or all(p is None for p in axes):
            out[key] = value
            continue
        w = value.reshape(spec.views[key]) if key in spec.views else value
        for d, p in enumerate(axes):
            if p is not None and (key, d) != skip:
                w = w.index_select(d, perms[p].to(w.device))
        out[key] = w.reshape(value.shape)
    return out


def apply_permutation(
    model: nn.Module, perms: Mapping[str, torch.Tensor], spec: PermSpec | None = None
) -> nn.Module:
    """A copy of `model` with its hidden units reordered by `perms`; it computes the same function."""
    spec = spec or permutation_spec(model)
    _check_perms(spec, perms)
    out = copy.deepcopy(model)
    out.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return out


# =============================================================================================
# Folding BatchNorm into the weights


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` with every BatchNorm (in eval mode, with its running statistics) folded into the
    Linear/Conv before it, and replaced by nn.Identity: the same function, with no normalization layer.

    W' = W * gamma / sqrt(var + eps),  b' = beta + gamma * (b - mean) / sqrt(var + eps).
    """
    spec = permutation_spec(model)
    out = copy.deepcopy(model).eval()
    for unit in spec.units:
        if unit.norm is None:
            continue
        prod = out.get_submodule(unit.producer)
        bn = out.get_submodule(unit.norm)
        if not bn.track_running_stats or bn.running_var is None:
            raise UnsupportedLayerError(
                f"{unit.norm}: a BatchNorm without running statistics cannot be folded"
            )
        inv = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
        gamma = bn.weight.double() if bn.affine else torch.ones_like(inv)
        beta = bn.bias.double() if bn.affine else torch.zeros_like(inv)
        scale = gamma * inv
        bias = prod.bias.double() if prod.bias is not None else torch.zeros_like(inv)
        new = copy.deepcopy(prod)
        shape = (-1,) + (1,) * (prod.weight.dim() - 1)
        new.weight = nn.Parameter((prod.weight.double() * scale.view(shape)).to(prod.weight.dtype))
        new.bias = nn.Parameter(
            (beta + scale * (bias - bn.running_mean.double())).to(prod.weight.dtype)
        )
        _set_module(out, unit.producer, new)
        _set_module(out, unit.norm, nn.Identity())
    return out


# =============================================================================================
# Statistics


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _input_batches(x: Any, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Input batches from a tensor, an (inputs, labels) pair, or a DataLoader yielding (inputs, labels)."""
    if isinstance(x, (tuple, list)) and len(x) == 2 and torch.is_tensor(x[0]):
        x = x[0]
    if torch.is_tensor(x):
        if len(x) == 0:
            raise ShammieError("the calibration data is empty")
        step = len(x) if not batch_size else int(batch_size)
        for i in range(0, len(x), step):
            yield x[i : i + step]
        return
    if isinstance(x, torch.utils.data.DataLoader):
        for item in x:
            yield item[0] if isinstance(item, (tuple, list)) else item
        return
    raise ShammieError(
        f"calibration data must be a tensor, an (inputs, labels) pair or a DataLoader, "
        f"got {type(x).__name__}"
    )


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N * positions, C)."""
    if t.dim() == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


class _Moments:
    """Streaming per-channel mean and variance in float64."""

    def __init__(self):
        self.n = 0
        self.s = None
        self.ss = None

    def add(self, t: torch.Tensor) -> None:
        z = _channels_last(t.detach())
        s, ss = z.sum(0, dtype=torch.float64), z.square().sum(0, dtype=torch.float64)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += z.shape[0]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.s / self.n
        return mean, (self.ss / self.n - mean * mean).clamp_min(0.0)


def _moments_of(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = _Moments()
    m.add(t)
    return m.mean_var()


@torch.no_grad()
def channel_stats(
    model: nn.Module, x: Any, modules: Sequence[str], batch_size: int | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel (mean, std) of each named module's output over `x`, in eval mode (float64 tensors)."""
    model.eval()
    acc = {name: _Moments() for name in modules}
    handles = [
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: acc[name].add(o))
        for name in modules
    ]
    dev = _device_of(model)
    try:
        for xb in _input_batches(x, batch_size):
            model(xb.to(dev))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, m in acc.items():
        if m.n == 0:
            raise ShammieError(f"module {name!r} was never called in the forward pass")
        mean, var = m.mean_var()
        out[name] = (mean, var.sqrt())
    return out


class _Stop(Exception):
    """Ends a forward pass early once the module being measured has run."""


def _call_order(model: nn.Module, xb: torch.Tensor, names: Sequence[str]) -> list[str]:
    calls: list[str] = []
    handles = [
        model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: calls.append(n))
        for n in names
    ]
    try:
        with torch.no_grad():
            model(xb[:2].to(_device_of(model)))
    finally:
        for h in handles:
            h.remove()
    for n in names:
        if calls.count(n) != 1:
            raise ShammieError(
                f"module {n!r} runs {calls.count(n)} times per forward pass; each corrected "
                f"module must run exactly once"
            )
    return calls


@torch.no_grad()
def _sequential_update(
    model: nn.Module,
    x: Any,
    names: Sequence[str],
    kind: str,
    update: Callable[[str, nn.Module, torch.Tensor, torch.Tensor], tuple | None],
    batch_size: int | None,
) -> None:
    """For each module in `names`, in forward order, measure the per-channel mean and variance of its input
    (`kind="input"`) or output (`"output"`) on `x` with every earlier module already updated, then call
    `update(name, module, mean, var)`; for outputs it returns the (scale, shift) it folded into the module.

    With all of `x` in one batch this is one forward pass whose hooks correct the activations on the fly;
    otherwise one (early-stopped) pass per module.
    """
    model.eval()
    batches = list(_input_batches(x, batch_size))
    if not names:
        return
    order = _call_order(model, batches[0], names)
    dev = _device_of(model)

    def _affine(out, res):
        scale, shift = res
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * scale.to(out.dtype).view(shape) + shift.to(out.dtype).view(shape)

    if len(batches) == 1:
        handles = []
        for name in order:
            mod = model.get_submodule(name)
            if kind == "input":
                handles.append(
                    mod.register_forward_pre_hook(
                        lambda m, args, name=name: update(name, m, *_moments_of(args[0])) and None
                    )
                )
            else:

                def hook(m, args, out, name=name):
                    res = update(name, m, *_moments_of(out))
                    return _affine(out, res) if res is not None else None

                handles.append(mod.register_forward_hook(hook))
        try:
            model(batches[0].to(dev))
        finally:
            for h in handles:
                h.remove()
        return
    for name in order:
        mod = model.get_submodule(name)
        acc = _Moments()

        def grab(t, acc=acc):
            acc.add(t)
            raise _Stop

        if kind == "input":
            handle = mod.register_forward_pre_hook(lambda m, args, grab=grab: grab(args[0]))
        else:
            handle = mod.register_forward_hook(lambda m, args, out, grab=grab: grab(out))
        try:
            for xb in batches:
                try:
                    model(xb.to(dev))
                except _Stop:
                    pass
        finally:
            handle.remove()
        update(name, mod, *acc.mean_var())


# =============================================================================================
# Alignment


@dataclass
class Alignment:
    """The permutations that put network B's units in network A's order, and how they were found.

    `seconds` is the wall-clock time of the whole alignment, `lap_seconds` the part spent in
    `scipy.optimize.linear_sum_assignment` (`lap_calls` calls), and `stats_seconds` the part spent in the
    forward passes that gather activation statistics; `objective` per group is the mean matched
    correlation (activation matching) or the matched weight inner product (weight matching).
    """

    perms: dict[str, torch.Tensor]
    method: str
    seconds: float = 0.0
    lap_seconds: float = 0.0
    lap_calls: int = 0
    sweeps: int = 1
    objective: dict[str, float] = field(default_factory=dict)
    stats_seconds: float = (
        0.0  # activation matching: the pass over the data that gathers correlations
    )

    def is_identity(self) -> bool:
        """True when every permutation is the identity."""
        return all(torch.equal(p, torch.arange(len(p))) for p in self.perms.values())


class _LapTimer:
    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def solve(self, cost: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        rows, cols = linear_sum_assignment(cost, maximize=True)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        if not np.array_equal(
            rows, np.arange(cost.shape[0])
        ):  # pragma: no cover - scipy's contract
            raise ShammieError("linear_sum_assignment returned rows out of order")
        return cols


class _CrossMoments:
    """Streaming moments of two aligned activation matrices: means, variances, and E[a b^T]."""

    def __init__(self):
        self.n = 0
        self.sa = self.sb = self.ssa = self.ssb = self.cross = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = _channels_last(a), _channels_last(b)
        cross = (a.T @ b).double()  # float32 product per batch, float64 accumulation
        f64 = torch.float64
        parts = (
            a.sum(0, dtype=f64),
            b.sum(0, dtype=f64),
            a.square().sum(0, dtype=f64),
            b.square().sum(0, dtype=f64),
            cross,
        )
        if self.sa is None:
            self.sa, self.sb, self.ssa, self.ssb, self.cross = parts
        else:
            for mine, new in zip((self.sa, self.sb, self.ssa, self.ssb, self.cross), parts):
                mine += new
        self.n += a.shape[0]

    def correlation(self) -> torch.Tensor:
        """Pearson correlations, A's units in rows and B's in columns; 0 where a unit is constant."""
        n = self.n
        ma, mb = self.sa / n, self.sb / n
        sa = (self.ssa / n - ma * ma).clamp_min(0).sqrt()
        sb = (self.ssb / n - mb * mb).clamp_min(0).sqrt()
        inv_a = torch.where(sa > 0, 1.0 / sa.clamp_min(1e-300), torch.zeros_like(sa))
        inv_b = torch.where(sb > 0, 1.0 / sb.clamp_min(1e-300), torch.zeros_like(sb))
        corr = self.cross / n  # a fresh tensor: the accumulator is left alone
        corr.addr_(ma, mb, alpha=-1.0)
        corr.mul_(inv_a[:, None]).mul_(inv_b[None, :])
        return corr.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def _tap_output(out: torch.Tensor, tap: Tap) -> torch.Tensor:
    return torch.relu(out) if tap.relu else out


@torch.no_grad()
def match_activations(
    model_a: nn.Module,
    model_b: nn.Module,
    x: Any,
    spec: PermSpec | None = None,
    batch_size: int | None = 1000,
) -> Alignment:
    """Activation matching: for every permutation group, the Pearson correlation between A's and B's units
    over the inputs `x` (summed over the group's taps), then the assignment that maximizes the summed
    correlation (Hungarian algorithm, `scipy.optimize.linear_sum_assignment`)."""
    t_start = time.perf_counter()
    check_compatible(model_a, model_b)
    spec = spec or permutation_spec(model_a)
    taps = [(p, t) for p, ts in spec.taps.items() for t in ts]
    if any(not ts for ts in spec.taps.values()):
        raise ShammieError("every permutation group needs at least one activation tap")
    model_a.eval()
    model_b.eval()
    acc = {t: _CrossMoments() for _, t in taps}
    outs: dict[str, dict[Tap, torch.Tensor]] = {"a": {}, "b": {}}
    handles = []
    for side, model in (("a", model_a), ("b", model_b)):
        for _, tap in taps:
            handles.append(
                model.get_submodule(tap.module).register_forward_hook(
                    lambda m, i, o, side=side, tap=tap: outs[side].__setitem__(
                        tap, _tap_output(o, tap)
                    )
                )
            )
    dev_a, dev_b = _device_of(model_a), _device_of(model_b)
    try:
        for xb in _input_batches(x, batch_size):
            model_a(xb.to(dev_a))
            model_b(xb.to(dev_b))
            for _, tap in taps:
                acc[tap].add(
                    outs["a"][tap].float(), outs["b"][tap].float().to(outs["a"][tap].device)
                )
            outs["a"].clear()
            outs["b"].clear()
    finally:
        for h in handles:
            h.remove()
    stats_seconds = time.perf_counter() - t_start
    lap = _LapTimer()
    perms, objective = {}, {}
    for p, ts in spec.taps.items():
        corr = acc[ts[0]].correlation()
        for t in ts[1:]:
            corr += acc[t].correlation()
        if len(ts) > 1:
            corr /= len(ts)
        cost = corr.cpu().numpy()
        cols = lap.solve(cost)
        perms[p] = torch.as_tensor(cols, dtype=torch.long)
        objective[p] = float(cost[np.arange(len(cols)), cols].mean())
    return Alignment(
        perms,
        "activation",
        time.perf_counter() - t_start,
        lap.seconds,
        lap.calls,
        1,
        objective,
        stats_seconds,
    )


def _flat_along(w: torch.Tensor, axis: int) -> torch.Tensor:
    return w.movedim(axis, 0).reshape(w.shape[axis], -1)


@torch.no_grad()
def match_weights(
    model_a: nn.Module,
    model_b: nn.Module,
    spec: PermSpec | None = None,
    max_sweeps: int = 100,
    seed: int = 0,
    init: Mapping[str, torch.Tensor] | None = None,
) -> Alignment:
    """Weight matching (Git Re-Basin's permutation coordinate descent): repeatedly, for each group in a
    random order, choose the permutation that maximizes sum over the group's weights of <W_A, P W_B>
    with every other permutation held fixed; stop after a sweep that improves nothing. Data-free; a
    local optimum."""
    t_start = time.perf_counter()
    check_compatible(model_a, model_b)
    spec = spec or permutation_spec(model_a)
    if max_sweeps < 1:
        raise ShammieError(f"max_sweeps must be >= 1, got {max_sweeps}")
    sa = {k: v.detach().float().cpu() for k, v in model_a.state_dict().items() if k in spec.params}
    sb = {k: v.detach().float().cpu() for k, v in model_b.state_dict().items() if k in spec.params}
    for k in list(sa):
        if k in spec.views:
            sa[k], sb[k] = sa[k].reshape(spec.views[k]), sb[k].reshape(spec.views[k])
    names = list(spec.perms)
    perms = {
        p: (init[p].clone() if init is not None else torch.arange(n)) for p, n in spec.perms.items()
    }
    _check_perms(spec, perms)
    version = dict.fromkeys(names, 0)
    entries = {p: [(k, d) for k, d in spec.entries(p) if k in spec.params] for p in names}
    flat_a = {(k, d): _flat_along(sa[k], d) for p in names for k, d in entries[p]}
    # per (key, axis): the versions of the other axes' permutations, B's flattened weight and the product
    cache: dict[tuple[str, int], tuple[tuple, torch.Tensor, torch.Tensor]] = {}

    def term(key: str, axis: int) -> torch.Tensor:
        """<A's weight, B's weight with every other axis permuted> as an n x n matrix over `axis`."""
        others = tuple(
            (d, version[p]) for d, p in enumerate(spec.axes[key]) if p is not None and d != axis
        )
        hit = cache.get((key, axis))
        if hit is not None and hit[0] == others:
            return hit[2]
        w = sb[key]
        for d, p in enumerate(spec.axes[key]):
            if p is not None and d != axis:
                w = w.index_select(d, perms[p])
        fb = _flat_along(w, axis)
        fa = flat_a[(key, axis)]
        if (
            hit is not None
        ):  # a few units moved since: update the product by the columns that changed
            changed = (fb != hit[1]).any(0).nonzero().squeeze(1)
            if len(changed) * 3 < fb.shape[1]:
                value = hit[2].addmm_(fa[:, changed], (fb[:, changed] - hit[1][:, changed]).T)
                cache[(key, axis)] = (others, fb, value)
                return value
        value = fa @ fb.T
        cache[(key, axis)] = (others, fb, value)
        return value

    rng = np.random.default_rng(seed)
    lap = _LapTimer()
    objective: dict[str, float] = {}
    buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        improved = False
        for idx in rng.permutation(len(names)):
            p = names[idx]
            if not entries[p]:
                continue
            n = spec.perms[p]
            if n not in buffers:  # reused n x n buffers: no fresh 8n^2-byte allocation per step
                buffers[n] = (torch.empty(n, n), torch.empty(n, n, dtype=torch.float64))
            buf32, buf64 = buffers[n]
            terms = [term(k, d) for k, d in entries[p]]
            buf32.copy_(terms[0])
            for t in terms[1:]:
                buf32.add_(t)
            cost = buf64.copy_(buf32).numpy()
            cols = lap.solve(cost)
            rows = np.arange(len(cols))
            old = float(cost[rows, perms[p].numpy()].sum())
            new = float(cost[rows, cols].sum())
            objective[p] = max(old, new)
            if new > old + 1e-9 * abs(old) + 1e-12:
                perms[p] = torch.as_tensor(cols, dtype=torch.long)
                version[p] += 1
                improved = True
        if not improved:
            break
    return Alignment(
        perms, "weight", time.perf_counter() - t_start, lap.seconds, lap.calls, sweeps, objective
    )


def align(
    model_a: nn.Module, model_b: nn.Module, x: Any = None, method: str = "activation", **kwargs: Any
) -> tuple[nn.Module, Alignment]:
    """Match B's units to A's (`method` 'activation' needs inputs `x`; 'weight' is data-free) and return
    (B permuted into A's order, the Alignment)."""
    spec = permutation_spec(model_a)
    if method == "activation":
        if x is None:
            raise ShammieError(
                "activation matching needs inputs: pass x (a batch of training inputs)"
            )
        alignment = match_activations(model_a, model_b, x, spec, **kwargs)
    elif method == "weight":
        alignment = match_weights(model_a, model_b, spec, **kwargs)
    else:
        raise ShammieError(f"unknown alignment method {method!r}: choose 'activation' or 'weight'")
    return apply_permutation(model_b, alignment.perms, spec), alignment


# =============================================================================================
# Interpolation and REPAIR


def interpolate_state(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) * A + alpha * B for every floating-point entry (BatchNorm running statistics included);
    integer buffers (num_batches_tracked) are taken from A."""
    if list(state_a) != list(state_b):
        raise ArchitectureMismatchError(
            "the state dicts have different keys; interpolate two networks of one architecture"
        )
    alpha = float(alpha)
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        if a.shape != b.shape:
            raise ArchitectureMismatchError(
                f"{k} is {tuple(a.shape)} in A but {tuple(b.shape)} in B; "
                f"interpolate two networks of the same widths"
            )
        out[k] = (1.0 - alpha) * a + alpha * b.to(a.device) if a.is_floating_point() else a.clone()
    return out


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A new network with the weights (1 - alpha) * A + alpha * B, in eval mode."""
    check_compatible(model_a, model_b)
    out = copy.deepcopy(model_a)
    out.load_state_dict(interpolate_state(model_a.state_dict(), model_b.state_dict(), alpha))
    return out.eval()


@torch.no_grad()
def reset_bn_stats(model: nn.Module, x: Any, batch_size: int | None = None) -> nn.Module:
    """Recompute every BatchNorm's running mean and (biased) variance as the exact statistics of its input
    over `x`, layer by layer in forward order (each layer sees the already reset layers before it).
    Modifies `model` in place and returns it (REPAIR for BatchNorm networks: 'ResetBN')."""
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not names:
        raise ShammieError(
            f"{type(model).__name__} has no BatchNorm with running statistics to reset; "
            f"use repair() for networks without normalization"
        )

    def update(name, module, mean, var):
        module.running_mean.copy_(mean.to(module.running_mean.dtype))
        module.running_var.copy_(var.to(module.running_var.dtype))
        return None

    _sequential_update(model, x, names, "input", update, batch_size)
    return model.eval()


def repair_points(model: nn.Module, which: str = "plain") -> list[str]:
    """The modules whose outputs REPAIR corrects: every hidden pre-activation (`which="all"`), or only those
    not followed by a BatchNorm (`"plain"`, the default: BatchNorm layers are reset instead)."""
    spec = permutation_spec(model)
    if which == "all":
        return spec.preactivations()
    if which == "plain":
        return [u.producer for u in spec.units if u.norm is None]
    raise ShammieError(f"which must be 'plain' or 'all', got {which!r}")


def _fold_affine(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make `module`'s output channels c become scale[c] * output + shift[c] (Linear, Conv or BatchNorm)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not module.affine:
            raise UnsupportedLayerError(
                f"cannot REPAIR through a {type(module).__name__} without affine parameters"
            )
        w, b = module.weight, module.bias
        b.copy_((b.double() * scale + shift).to(b.dtype))
        w.copy_((w.double() * scale).to(w.dtype))
        return
    if not isinstance(module, _PRODUCERS):
        raise UnsupportedLayerError(
            f"unsupported layer type {type(module).__name__} for REPAIR: correct the "
            f"output of a Linear, Conv or BatchNorm"
        )
    shape = (-1,) + (1,) * (module.weight.dim() - 1)
    module.weight.copy_((module.weight.double() * scale.view(shape)).to(module.weight.dtype))
    if module.bias is None:
        module.bias = nn.Parameter(shift.to(module.weight.dtype).clone())
    else:
        module.bias.copy_((module.bias.double() * scale + shift).to(module.bias.dtype))


@torch.no_grad()
def repair(
    model_a: nn.Module,
    model_b: nn.Module,
    alpha: float,
    x: Any,
    *,
    merged: nn.Module | None = None,
    points: Sequence[str] | None = None,
    batch_size: int | None = None,
    endpoint_stats: tuple[dict, dict] | None = None,
) -> nn.Module:
    """REPAIR: the interpolated network (1 - alpha) A + alpha B (or a copy of `merged`) with each channel of
    each pre-activation in `points` rescaled and shifted so that its mean and standard deviation over the
    inputs `x` equal the interpolated endpoint statistics

        mu_alpha = (1 - alpha) mu_A + alpha mu_B,   sigma_alpha = (1 - alpha) sigma_A + alpha sigma_B.

    Layers are corrected in forward order, each after the ones before it, and every correction is folded
    into the producing layer's weight and bias (or a BatchNorm's affine), so the result is a plain
    network of the same architecture. `points` defaults to `repair_points(model_a)`. `endpoint_stats`,
    the `channel_stats` of A and B at `points` on `x`, saves recomputing them for every alpha.
    """
    check_compatible(model_a, model_b)
    points = list(points) if points is not None else repair_points(model_a)
    if not points:
        raise ShammieError(
            f"{type(model_a).__name__} has no pre-activation without BatchNorm to correct: for "
            f"BatchNorm networks use reset_bn_stats, or pass points=repair_points(model, 'all')"
        )
    alpha = float(alpha)
    if endpoint_stats is None:
        endpoint_stats = (
            channel_stats(model_a, x, points, batch_size),
            channel_stats(model_b, x, points, batch_size),
        )
    stats_a, stats_b = endpoint_stats
    missing = [p for p in points if p not in stats_a or p not in stats_b]
    if missing:
        raise ShammieError(f"endpoint_stats lack the points {missing[:3]}")
    out = interpolate(model_a, model_b, alpha) if merged is None else copy.deepcopy(merged).eval()
    check_compatible(model_a, out)

    def update(name, module, mean, var):
        (ma, sa), (mb, sb) = stats_a[name], stats_b[name]
        goal_mean = (1.0 - alpha) * ma + alpha * mb
        goal_std = (1.0 - alpha) * sa + alpha * sb
        std = var.sqrt()
        alive = std > 1e-12 * (1.0 + mean.abs())
        scale = torch.where(alive, goal_std / std.clamp_min(1e-300), torch.ones_like(std))
        shift = goal_mean - scale * mean
        _fold_affine(module, scale, shift)
        return scale, shift

    _sequential_update(out, x, points, "output", update, batch_size)
    return out


@torch.no_grad()
def variance_ratios(
    model_a: nn.Module,
    model_b: nn.Module,
    merged: nn.Module,
    x: Any,
    alpha: float = 0.5,
    points: Sequence[str] | None = None,
    batch_size: int | None = None,
):
    """Per layer, how much the interpolated network's pre-activations have shrunk relative to its endpoints:
    `std_ratio` = mean_c sigma_merged / mean_c sigma_alpha (sigma_alpha the interpolated endpoint std) and
    `var_ratio` = mean_c var_merged / mean_c ((1 - alpha) var_A + alpha var_B). 1 means no collapse.
    Averaging numerator and denominator separately keeps near-dead channels from dominating.
    Returns a DataFrame with one row per layer in forward order."""
    import pandas as pd

    points = list(points) if points is not None else permutation_spec(model_a).preactivations()
    first = next(iter(_input_batches(x, batch_size)))
    points = _call_order(merged.eval(), first, points)
    sa, sb, sm = (channel_stats(m, x, points, batch_size) for m in (model_a, model_b, merged))
    rows = []
    for i, name in enumerate(points):
        std_goal = (1 - alpha) * sa[name][1] + alpha * sb[name][1]
        var_goal = (1 - alpha) * sa[name][1] ** 2 + alpha * sb[name][1] ** 2
        rows.append(
            {
                "layer": i + 1,
                "module": name,
                "std_ratio": float(sm[name][1].mean() / std_goal.mean().clamp_min(1e-300)),
                "var_ratio": float((sm[name][1] ** 2).mean() / var_goal.mean().clamp_min(1e-300)),
            }
        )
    return pd.DataFrame(rows)


# =============================================================================================
# Curves and barriers


def _evaluate(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 2048
) -> dict[str, float]:
    from .training import evaluate

    return evaluate(model, data, batch_size=batch_size)


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Mapping[str, Any],
    alphas: Iterable[float],
    fix: str | None = None,
    calib: Any = None,
    batch_size: int | None = None,
    points: Sequence[str] | None = None,
):
    """Loss and accuracy of the interpolated network at each alpha, on each named data split.

    `fix`: None (plain interpolation), 'reset_bn' (recompute BatchNorm statistics on `calib`) or
    'repair' (REPAIR on `calib`), applied at every alpha. Returns a DataFrame with columns alpha, split,
    loss, acc.
    """
    import pandas as pd

    if fix not in (None, "reset_bn", "repair"):
        raise ShammieError(f"unknown fix {fix!r}: choose None, 'reset_bn' or 'repair'")
    if fix is not None and calib is None:
        raise ShammieError(f"fix={fix!r} needs calibration inputs: pass calib (training inputs)")
    check_compatible(model_a, model_b)
    stats = None
    if fix == "repair":
        points = list(points) if points is not None else repair_points(model_a)
        stats = (
            channel_stats(model_a, calib, points, batch_size),
            channel_stats(model_b, calib, points, batch_size),
        )
    rows = []
    for alpha in alphas:
        merged = interpolate(model_a, model_b, alpha)
        if fix == "reset_bn":
            reset_bn_stats(merged, calib, batch_size)
        elif fix == "repair":
            merged = repair(
                model_a,
                model_b,
                alpha,
                calib,
                merged=merged,
                points=points,
                batch_size=batch_size,
                endpoint_stats=stats,
            )
        for split, d in data.items():
            ev = _evaluate(merged, d)
            rows.append(
                {"alpha": float(alpha), "split": split, "loss": ev["loss"], "acc": ev["acc"]}
            )
    return pd.DataFrame(rows)


def barrier(curve, metric: str = "acc", split: str = "test") -> dict[str, float]:
    """The barrier of an interpolation curve: the largest gap over alpha between the interpolated network
    and the straight line between the endpoints' values (accuracy: line minus curve; loss: curve minus
    line). Returns {'max', 'alpha' (where it is largest), 'midpoint' (the gap at alpha 0.5, when on the
    grid), 'endpoints' (mean endpoint value), 'mid_value'}."""
    if metric not in ("acc", "loss"):
        raise ShammieError(f"metric must be 'acc' or 'loss', got {metric!r}")
    c = curve[curve["split"] == split].sort_values("alpha")
    if c.empty:
        raise ShammieError(
            f"the curve has no split {split!r}; it has {sorted(set(curve['split']))}"
        )
    a = c["alpha"].to_numpy(float)
    v = c[metric].to_numpy(float)
    if not (np.isclose(a[0], 0.0) and np.isclose(a[-1], 1.0)):
        raise ShammieError(
            "a barrier needs the endpoints: the alpha grid must start at 0 and end at 1"
        )
    line = (1 - a) * v[0] + a * v[-1]
    gap = line - v if metric == "acc" else v - line
    i = int(np.argmax(gap))
    mid = np.flatnonzero(np.isclose(a, 0.5))
    return {
        "max": float(gap[i]),
        "alpha": float(a[i]),
        "midpoint": float(gap[mid[0]]) if len(mid) else float("nan"),
        "endpoints": float((v[0] + v[-1]) / 2),
        "mid_value": float(v[mid[0]]) if len(mid) else float("nan"),
    }


def relative_reduction(before: float, after: float) -> float:
    """The paper's relative barrier reduction, 1 - after / before (NaN when there was no barrier before)."""
    if not before > 0:
        return float("nan")
    return 1.0 - after / before


def barrier_summary(curves, baseline: str = "aligned"):
    """The curves of a study summarized, one row per (network, variant, method): family and width, endpoint
    and midpoint test accuracy, the test accuracy barrier (max over alpha), the test loss barrier, the
    train accuracy barrier, and, for a corrected method, its relative reduction of the `baseline` barrier
    of the same network and variant (the paper's 1 - after / before)."""
    acc = barrier_table(curves, "acc", "test")
    loss = barrier_table(curves, "loss", "test")
    train = barrier_table(curves, "acc", "train") if (curves["split"] == "train").any() else None
    out = acc.copy()
    out["loss_barrier"] = loss["barrier"].to_numpy()
    out["train_barrier"] = train["barrier"].to_numpy() if train is not None else float("nan")
    fam_width = [parse_network(n) for n in out["network"]]
    out.insert(1, "family", [f for f, _ in fam_width])
    out.insert(2, "width", [w for _, w in fam_width])
    base = {(r.network, r.variant): r.barrier for r in out.itertuples() if r.method == baseline}
    out["reduction"] = [
        relative_reduction(base.get((r.network, r.variant), float("nan")), r.barrier)
        if r.method not in ("naive", baseline)
        else float("nan")
        for r in out.itertuples()
    ]
    return out


def barrier_table(
    curves,
    metric: str = "acc",
    split: str = "test",
    by: Sequence[str] = ("network", "variant", "method"),
):
    """One row per (network, variant, method) group of a long curves table: endpoint mean, midpoint value,
    barrier (max over alpha) and where it is largest, for `metric` on `split`."""
    import pandas as pd

    rows = []
    for key, group in curves.groupby(list(by), sort=False):
        b = barrier(group, metric, split)
        rows.append(
            {
                **dict(zip(by, key)),
                "endpoints": b["endpoints"],
                "midpoint": b["mid_value"],
                "barrier": b["max"],
                "at_alpha": b["alpha"],
            }
        )
    return pd.DataFrame(rows)


# =============================================================================================
# Experiments


@dataclass
class ThemeData:
    """The notebook's data: tensors for evaluation and statistics, and what `fit` trains on."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    calib: (
        torch.Tensor
    )  # inputs for matching and REPAIR statistics (training data, no augmentation)
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    augmented: Any = None  # a torch Dataset with augmentation (CIFAR-10), else None

    def fit_data(self, seed: int, batch_size: int) -> Any:
        """What `shammie.training.fit` trains on: the training tensors, or a seeded augmenting DataLoader."""
        if self.augmented is None:
            return (self.x_train, self.y_train)
        return torch.utils.data.DataLoader(
            self.augmented,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=min(4, os.cpu_count() or 1),
            generator=torch.Generator().manual_seed(seed),
        )


def load_theme_data(cfg: ConnectivityConfig) -> ThemeData:
    """MNIST-1D (offline, cached) or CIFAR-10 (from `cfg.data_root`), with the calibration and evaluation subsets."""
    if cfg.dataset == "mnist1d":
        from .data import load_mnist1d

        d = load_mnist1d(num_samples=cfg.num_samples)
        xtr, ytr, xte, yte, augmented, name = d.x_train, d.y_train, d.x_test, d.y_test, None, d.name
    else:
        from .data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10

        def as_tensors(ds):
            x = (
                torch.as_tensor(np.asarray(ds.data), dtype=torch.float32).permute(0, 3, 1, 2)
                / 255.0
            )
            mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
            return (x - mean) / std, torch.as_tensor(ds.targets, dtype=torch.int64)

        augmented = load_cifar10(cfg.data_root, train=True, augment=True)
        xtr, ytr = as_tensors(augmented)
        xte, yte = as_tensors(load_cifar10(cfg.data_root, train=False))
        name = "CIFAR-10"
    n_cal = min(cfg.calib_samples, len(xtr))
    n_ev = min(cfg.eval_train_samples, len(xtr))
    return ThemeData(
        name,
        tuple(xtr.shape[1:]),
        10,
        xtr,
        ytr,
        xte,
        yte,
        xtr[:n_cal],
        {"train": (xtr[:n_ev], ytr[:n_ev]), "test": (xte, yte)},
        augmented,
    )


def train_network(
    name: str,
    data: ThemeData,
    cfg: ConnectivityConfig,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, Any]:
    """Build network `name` with initialization seed `seed`, train it with BatchNorm (SGD with Nesterov
    momentum, one-cycle schedule, weight decay), and return (the model in eval mode on `device`, its
    History). Trained models are cached under data/cache/checkpoints, so a re-run loads them."""
    from .training import fit_cached

    torch.manual_seed(seed)
    model = build_network(name, data.input_shape, data.num_classes, cfg.mlp_depth, batchnorm=True)
    history = fit_cached(
        model,
        data.fit_data(seed, cfg.batch_size),
        cache_key={"data": data.name, "network": name, "init_seed": seed, "depth": cfg.mlp_depth},
        tag=f"repair-{name}",
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        optimizer="sgd",
        weight_decay=cfg.weight_decay,
        schedule="onecycle",
        seed=seed,
        device=device,
        desc=f"{name} seed {seed}",
    )
    return model.eval(), history


@dataclass
class NetworkStudy:
    """Everything measured on one pair of networks: the endpoints (with BatchNorm and folded), B aligned to
    A, the alignment, and the interpolation curves of every variant and method (a long DataFrame)."""

    name: str
    family: str
    width: int
    models: dict[str, dict[str, nn.Module]]  # variant -> {"a", "b", "b_aligned"}
    alignment: Alignment
    curves: Any


#: per variant, the curves traced: (method label, use B aligned?, fix). Naive interpolation is traced once,
#: on the network as trained: folding BatchNorm does not change its (chance-level) midpoint.
METHODS = {
    "bn": (
        ("naive", False, None),
        ("aligned", True, None),
        ("aligned + BN reset", True, "reset_bn"),
    ),
    "folded": (("aligned", True, None), ("aligned + REPAIR", True, "repair")),
}


def study_network(
    name: str,
    model_a: nn.Module,
    model_b: nn.Module,
    data: ThemeData,
    alphas: Sequence[float],
    stats_batch: int | None = None,
    methods: Mapping[str, Sequence[tuple]] | None = None,
) -> NetworkStudy:
    """Align B to A by activation matching and trace the interpolation curves of the pair in two variants:
    `bn` (as trained: naive, aligned, aligned + BatchNorm reset) and `folded` (BatchNorm folded into the
    weights, no normalization: naive, aligned, aligned + REPAIR)."""
    import pandas as pd

    family, width = parse_network(name)
    methods = methods or METHODS
    stats_batch = stats_batch or None
    b_aligned, alignment = align(
        model_a, model_b, data.calib, "activation", batch_size=stats_batch or 1000
    )
    models = {"bn": {"a": model_a, "b": model_b, "b_aligned": b_aligned}}
    models["folded"] = {k: fold_batchnorm(m) for k, m in models["bn"].items()}
    frames = []
    for variant, rows in methods.items():
        m = models[variant]
        for method, aligned, fix in rows:
            c = interpolation_curve(
                m["a"],
                m["b_aligned"] if aligned else m["b"],
                data.eval_sets,
                alphas,
                fix=fix,
                calib=data.calib,
                batch_size=stats_batch,
            )
            c.insert(0, "method", method)
            c.insert(0, "variant", variant)
            c.insert(0, "network", name)
            frames.append(c)
    return NetworkStudy(
        name, family, width, models, alignment, pd.concat(frames, ignore_index=True)
    )


def collapse_profile(
    models: Mapping[str, nn.Module],
    calib: Any,
    x_eval: Any,
    alpha: float = 0.5,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Variance ratios per layer (see `variance_ratios`) of the network interpolated at `alpha` between
    models['a'] and models['b'] (naive), models['b_aligned'] (aligned), and aligned + REPAIR calibrated on
    `calib`; measured on `x_eval` (held-out inputs, so that REPAIR's own calibration does not decide it)."""
    a, b, b_al = models["a"], models["b"], models["b_aligned"]
    repaired = repair(a, b_al, alpha, calib, batch_size=batch_size)
    return {
        "naive": variance_ratios(
            a, b, interpolate(a, b, alpha), x_eval, alpha, batch_size=batch_size
        ),
        "aligned": variance_ratios(
            a, b_al, interpolate(a, b_al, alpha), x_eval, alpha, batch_size=batch_size
        ),
        "aligned + REPAIR": variance_ratios(
            a, b_al, repaired, x_eval, alpha, batch_size=batch_size
        ),
    }


# =============================================================================================
# Figures

_METHOD_STYLE = {
    "naive": ("0.55", ":"),
    "aligned": ("C0", "--"),
    "aligned + BN reset": ("C2", "-"),
    "aligned + REPAIR": ("C3", "-"),
    "weight matching": ("C4", "--"),
    "weight matching + REPAIR": ("C4", "-"),
}


def plot_curves(curves, panels: Sequence[tuple[str, str, str]], split: str = "test"):
    """Interpolation curves: one column per (network, variant, title) in `panels`, accuracy on top and loss
    below, one line per method; the straight line between the endpoints is drawn faintly."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        2, len(panels), figsize=(4.6 * len(panels), 6.4), squeeze=False, sharex=True
    )
    for j, (network, variant, title) in enumerate(panels):
        sub = curves[
            (curves["network"] == network)
            & (curves["variant"] == variant)
            & (curves["split"] == split)
        ]
        for method, g in sub.groupby("method", sort=False):
            g = g.sort_values("alpha")
            color, ls = _METHOD_STYLE.get(method, (None, "-"))
            for i, metric in enumerate(("acc", "loss")):
                y = g[metric] * (100 if metric == "acc" else 1)
                axes[i][j].plot(
                    g["alpha"], y, ls=ls, color=color, lw=2, marker="o", ms=3, label=method
                )
                axes[i][j].plot([0, 1], [y.iloc[0], y.iloc[-1]], color=color, lw=0.8, alpha=0.35)
        axes[0][j].set_title(title)
        axes[0][j].set_ylabel(f"{split} accuracy (%)")
        axes[1][j].set_ylabel(f"{split} loss")
        axes[1][j].set_xlabel(r"$\alpha$ (0: network A, 1: network B aligned)")
        axes[1][j].set_yscale("log")
        axes[0][j].legend(frameon=False, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_variance_collapse(ratios: Mapping[str, Mapping[str, Any]], column: str = "std_ratio"):
    """Per-layer ratio of the interpolated network's pre-activation spread to its endpoints' (alpha 0.5):
    one panel per network, one line per method (e.g. naive, aligned, aligned + REPAIR)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(ratios), figsize=(4.8 * len(ratios), 3.6), squeeze=False)
    for ax, (title, per_method) in zip(axes[0], ratios.items()):
        for method, df in per_method.items():
            color, ls = _METHOD_STYLE.get(method, (None, "-"))
            ax.plot(df["layer"], df[column], marker="o", lw=2, color=color, ls=ls, label=method)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("hidden layer")
        ax.set_ylabel(
            "std(merged) / std(endpoints)"
            if column == "std_ratio"
            else "var(merged) / var(endpoints)"
        )
        ax.set_title(title)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_width_sweep(table, family: str):
    """Barrier against width (aligned; aligned + REPAIR on the folded networks; aligned + BN reset) and the
    relative barrier reduction, from a `barrier_table` that has `family` and `width` columns."""
    import matplotlib.pyplot as plt

    t = table[table["family"] == family]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (variant, method), g in t.groupby(["variant", "method"], sort=False):
        if method == "naive":
            continue
        g = g.sort_values("width")
        color, ls = _METHOD_STYLE.get(method, (None, "-"))
        label = f"{method} ({'folded, no norm' if variant == 'folded' else 'with BN'})"
        marker = "s" if variant == "bn" else "o"
        axes[0].plot(
            g["width"],
            100 * g["barrier"],
            marker=marker,
            color=color,
            ls=ls if variant == "folded" else "-.",
            lw=2,
            label=label,
        )
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("width")
    axes[0].set_ylabel("test accuracy barrier (points)")
    axes[0].set_title(f"{family}: barrier against width")
    axes[0].legend(frameon=False, fontsize=8)
    red = t[t["reduction"].notna()].sort_values("width")
    for variant, g in red.groupby("variant", sort=False):
        axes[1].plot(
            g["width"],
            100 * g["reduction"],
            marker="o",
            lw=2,
            label="REPAIR vs aligned (folded)"
            if variant == "folded"
            else "BN reset vs aligned (with BN)",
        )
    axes[1].axhline(50, color="0.5", ls=":", lw=1)
    axes[1].set_xscale("log", base=2)
    axes[1].set_ylim(0, 105)
    axes[1].set_xlabel("width")
    axes[1].set_ylabel("relative barrier reduction (%)")
    axes[1].set_title("reduction against width")
    if axes[1].lines:
        axes[1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_paper_comparison(paper, ours, ours_label: str = "this run"):
    """Relative barrier reductions side by side: the paper's published ones (DataFrame with `label` and
    `reduction`) and ours (same columns), as horizontal bars."""
    import matplotlib.pyplot as plt

    rows = [(r.label, r.reduction, "paper") for r in paper.itertuples()] + [
        (r.label, r.reduction, "ours") for r in ours.itertuples()
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.28 * len(rows)))
    y = np.arange(len(rows))
    colors = ["C1" if src == "paper" else "C0" for _, _, src in rows]
    ax.barh(y, [100 * r for _, r, _ in rows], color=colors)
    ax.set_yticks(y, [label for label, _, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(60, color="0.4", ls=":", lw=1)
    ax.set_xlim(0, 105)
    ax.set_xlabel("relative barrier reduction (%), test accuracy")
    handles = [plt.Rectangle((0, 0), 1, 1, color="C1"), plt.Rectangle((0, 0), 1, 1, color="C0")]
    ax.legend(
        handles,
        ["paper (published)", f"ours ({ours_label})"],
        frameon=False,
        fontsize=8,
        ncol=2,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.09 - 1.2 / len(rows)),
    )
    fig.tight_layout()
    return fig
