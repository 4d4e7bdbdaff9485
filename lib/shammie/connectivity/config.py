"""Errors, the notebook's config and network names.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..config import ConfigError, ProfileConfig
from ..core import ShammieError


class UnsupportedLayerError(ShammieError, ValueError):
    """A model holds a layer (or is of a type) that the permutation spec does not know how to permute."""


class ArchitectureMismatchError(ShammieError, ValueError):
    """Two networks that should share an architecture (and widths) do not."""


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




@dataclass(frozen=True)
class ConnectivityConfig(ProfileConfig):
    """Knobs of notebook 02 (mode connectivity and REPAIR). Defaults are the quick profile.

    A network is named `family-width`: `mlp-512` (a `mlp_depth`-hidden-layer MLP of width 512),
    `cnn-32` (a 1D CNN with channels 32, 32, 64, 64), `vgg11-1` and `resnet20-4` (CIFAR-10 models
    with a width multiplier). Every network is trained with BatchNorm; the study also folds the
    BatchNorm into the weights, which gives a network without normalization at interpolation time.
    """

    dataset: str = "mnist1d"  # mnist1d | cifar10
    num_samples: int = 8000  # MNIST-1D size (with train_split 0.5: 4000 train / 4000 test)
    train_split: float = 0.5  # MNIST-1D's train fraction (the package default 0.8; a larger test split
    # makes every accuracy's standard error smaller: about 0.8 points at 4000 test examples)
    data_root: str | None = None  # where CIFAR-10 lives (None: data/)
    networks: tuple[str, ...] = ("cnn-16", "mlp-32", "mlp-64", "mlp-256")
    # the network shown with BatchNorm reset, the one shown folded (no norm), the family of the width
    # sweep; None (or a name not in `networks`): the widest conv network, the widest network of the
    # sweep family, and the most common family
    bn_network: str | None = "cnn-16"
    plain_network: str | None = "mlp-256"
    sweep_family: str | None = "mlp"
    mlp_depth: int = 6
    pairs: int = 3  # independently trained pairs per network: pair i is (seed + 2i, seed + 2i + 1)
    # the depth sweep: `depth_network` (an MLP) trained with each number of hidden layers in `depths`
    depth_network: str = "mlp-64"
    depths: tuple[int, ...] = (2, 6, 10)
    # the fair weight-matching arm: `wm_network` with `wm_depth` hidden layers trained WITHOUT normalization
    wm_network: str = "mlp-128"
    wm_depth: int = 3
    wm_epochs: int = 20  # networks without normalization train more slowly: more epochs and
    wm_lr: float = 0.1  # a larger peak learning rate (cheap: they are small)
    epochs: int = 12
    lr: float = 0.05
    batch_size: int = 128
    weight_decay: float = 5e-4
    alphas: int = 5  # points of the interpolation grid, 0..1 (the barrier's maximum sits at 0.5 here)
    calib_samples: int = 2000  # training inputs for matching and REPAIR statistics
    eval_train_samples: int = 1000  # training examples the curves are evaluated on (the train barrier)
    stats_batch: int = 0  # batch size of the statistics passes (0: all at once)
    weight_matching: bool = True  # also align the plain network by weight matching

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "num_samples": 1000,
            "networks": ("cnn-8", "mlp-16", "mlp-32"),
            "bn_network": "cnn-8",
            "plain_network": "mlp-32",
            "mlp_depth": 3,
            "pairs": 1,
            "depth_network": "mlp-16",
            "depths": (1, 3),
            "wm_network": "mlp-16",
            "wm_depth": 2,
            "wm_epochs": 2,
            "epochs": 2,
            "alphas": 3,
            "calib_samples": 400,
            "eval_train_samples": 400,
        },
        "quick": {},
        "full": {
            "dataset": "cifar10",
            "train_split": 0.8,
            "networks": ("vgg11-1", "resnet20-1", "resnet20-2", "resnet20-4"),
            "depth_network": "mlp-128",  # not run on CIFAR-10: the depth sweep and the weight-matching
            "depths": (),  # arm are MNIST-1D experiments
            "weight_matching": False,
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
        if not 0.0 < self.train_split < 1.0:
            raise ConfigError(f"train_split must be in (0, 1), got {self.train_split}")
        if self.depths and (parse_network(self.depth_network)[0] != "mlp" or min(self.depths) < 1):
            raise ConfigError(f"the depth sweep needs an MLP depth_network and depths >= 1, got "
                              f"{self.depth_network!r}, {self.depths}")
        if parse_network(self.wm_network)[0] != "mlp":
            raise ConfigError(f"wm_network must be an MLP, got {self.wm_network!r}")
        for knob in ("epochs", "batch_size", "mlp_depth", "calib_samples", "eval_train_samples", "pairs",
                     "wm_depth", "wm_epochs"):
            if getattr(self, knob) < 1:
                raise ConfigError(f"{knob} must be >= 1, got {getattr(self, knob)}")
        if self.lr <= 0 or self.wm_lr <= 0 or self.weight_decay < 0 or self.stats_batch < 0:
            raise ConfigError("lr must be positive, weight_decay and stats_batch non-negative")
        if self.dataset == "mnist1d" and self.num_samples < 100:
            raise ConfigError(f"num_samples={self.num_samples} is too small: use at least 100")

    def alpha_grid(self) -> list[float]:
        """The interpolation grid, `alphas` evenly spaced points from 0 to 1."""
        return [round(a, 6) for a in np.linspace(0.0, 1.0, self.alphas).tolist()]
