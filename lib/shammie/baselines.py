"""The getting-started theme: logistic regression, an MLP and a 1D CNN on MNIST-1D, built as in the paper
(Greydanus & Kobak, *Scaling down deep learning with MNIST-1D*, arXiv 2011.14439), trained with one recipe
and compared with the accuracies the paper publishes.

The paper's models (its repository's `notebooks/models.py`; the parameter counts, which its benchmark notebook
prints, are in `data/reference/mnist1d_baselines.csv`):

    logistic   Linear(40, 10)                                                            410 parameters
    mlp        h1 = relu(W1 x); h2 = h1 + relu(W2 h1); W3 h2, hidden width 100         15,210 parameters
    cnn        Conv1d(1, 25, 5, stride 2, pad 1) -> Conv1d(25, 25, 3, 2, 1) -> Conv1d(25, 25, 3, 2, 1),
               ReLU after each, flatten (25 x 5) -> Linear(125, 10)                       5,210 parameters

and its recipe: Adam, learning rate 1e-2, no weight decay, batches of 100, 6000 steps (150 epochs of the
4000 training examples), batches taken in order without shuffling. Ours differ in one point: `fit`
reshuffles the training set each epoch (from a seeded generator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .config import ConfigError, ProfileConfig
from .data import ArrayDataset
from .models import build_model, count_parameters
from .training import History, evaluate, fit, predict_logits

__all__ = [
    "GettingStartedConfig",
    "BASELINE_MODELS",
    "PAPER_RECIPE",
    "ResidualMLP",
    "PaperCNN1d",
    "build_baseline",
    "train_baseline",
    "steps_per_epoch",
    "summarize_seeds",
    "accuracy_interval",
]

BASELINE_MODELS = ("logistic", "mlp", "cnn")

#: The paper's training recipe (its repository's `get_model_args` for the benchmark).
PAPER_RECIPE = {"lr": 1e-2, "batch_size": 100, "steps": 6000, "weight_decay": 0.0, "optimizer": "adam",
                "train_examples": 4000, "test_examples": 1000}


@dataclass(frozen=True)
class GettingStartedConfig(ProfileConfig):
    """Knobs of notebook 00. Defaults are the quick profile.

    The architectures and the optimiser settings are the paper's at every profile; `quick` trains for a
    third of the paper's step budget (2000 of 6000 steps) so that five seeds of three models fit a
    2-core CPU in about two minutes, and `full` trains for the paper's 6000 steps.
    """

    num_samples: int = 5000  # MNIST-1D size; 5000 gives the published 4000/1000 split
    epochs: int = 50  # 50 epochs x 40 batches = 2000 steps; the paper's 6000 steps are 150 epochs (full)
    lr: float = 1e-2  # the paper's Adam learning rate
    batch_size: int = 100  # the paper's batch size
    seeds: int = 5  # independent training runs per model
    mlp_hidden: int = 100  # the paper's MLP width
    cnn_channels: int = 25  # the paper's CNN channels
    cnn_kernels: tuple[int, ...] = (5, 3, 3)  # the paper's CNN kernel sizes, one per conv layer (stride 2, pad 1)

    PROFILES: ClassVar[dict] = {
        "smoke": {"num_samples": 1000, "epochs": 2, "seeds": 2},
        "quick": {},
        "full": {"epochs": 150, "seeds": 10},
    }

    def validate(self) -> None:
        if self.num_samples < 100:
            raise ConfigError(f"num_samples={self.num_samples} is too small: use at least 100")
        if self.epochs < 1 or self.seeds < 1 or self.batch_size < 1:
            raise ConfigError("epochs, seeds and batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.mlp_hidden < 1 or self.cnn_channels < 1:
            raise ConfigError("mlp_hidden and cnn_channels must be >= 1")
        if not self.cnn_kernels or any(k < 1 for k in self.cnn_kernels):
            raise ConfigError(f"cnn_kernels must be a non-empty tuple of positive sizes, got {self.cnn_kernels!r}")


class _Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class ResidualMLP(nn.Module):
    """The paper's MLP: h1 = relu(W1 x), h2 = h1 + relu(W2 h1), logits = W3 h2.

    `blocks` holds the two hidden layers (the second with its residual connection), `head` the classifier,
    as every model in `shammie.models` does.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 100):
        super().__init__()
        if in_features < 1 or num_classes < 2 or hidden < 1:
            raise ConfigError(f"ResidualMLP needs in_features, hidden >= 1 and num_classes >= 2, "
                              f"got {in_features}, {hidden}, {num_classes}")
        self.flatten = nn.Flatten()
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()),
            _Residual(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())),
        ])
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class PaperCNN1d(nn.Module):
    """The paper's 1D CNN: Conv1d(stride 2, padding 1) -> ReLU per kernel size, flatten, Linear.

    With the defaults (25 channels, kernels 5, 3, 3) a length-40 signal becomes 25 x 5 features and the
    model has the paper's 5,210 parameters.
    """

    def __init__(self, input_length: int, num_classes: int, channels: int = 25,
                 kernels: Sequence[int] = (5, 3, 3), stride: int = 2, padding: int = 1):
        super().__init__()
        if not kernels:
            raise ConfigError("PaperCNN1d needs at least one kernel size")
        self.blocks = nn.ModuleList()
        c, length = 1, input_length
        for k in kernels:
            self.blocks.append(nn.Sequential(nn.Conv1d(c, channels, k, stride=stride, padding=padding), nn.ReLU()))
            c = channels
            length = (length + 2 * padding - k) // stride + 1
            if length < 1:
                raise ConfigError(f"input_length {input_length} is too short for kernels {tuple(kernels)}")
        self.out_length = length
        self.head = nn.Linear(channels * length, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's feature map, (N, C, L')."""
        x = x.reshape(len(x), 1, x.shape[-1])
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build_baseline(name: str, input_length: int, num_classes: int, cfg: GettingStartedConfig) -> nn.Module:
    """Baseline `name` ("logistic", "mlp", "cnn") with the paper's architecture under `cfg`."""
    if name == "logistic":
        return build_model("logistic", input_length, num_classes)
    if name == "mlp":
        return ResidualMLP(input_length, num_classes, hidden=cfg.mlp_hidden)
    if name == "cnn":
        return PaperCNN1d(input_length, num_classes, channels=cfg.cnn_channels, kernels=cfg.cnn_kernels)
    raise ConfigError(f"unknown baseline {name!r}: choose one of {', '.join(BASELINE_MODELS)}")


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Optimiser steps in one pass over `num_train` examples (the last batch may be smaller)."""
    return math.ceil(num_train / batch_size)


def train_baseline(name: str, data: ArrayDataset, cfg: GettingStartedConfig, seed: int,
                   device: torch.device | str = "cpu", swing_epochs: int = 10) -> dict:
    """Train baseline `name` with seed `seed` (Adam, constant lr, no weight decay) and evaluate it.

    Returns a dict with the model, its History, the final test accuracy and loss (`test_acc`, `test_loss`),
    the best epoch's test accuracy and that epoch (`best_acc`, `best_epoch`: chosen on the test set, so an
    optimistic figure, shown only to measure how much the accuracy moves between epochs), the standard
    deviation of the test accuracy over the last `swing_epochs` epochs (`swing`), the final epoch's training
    accuracy (`train_acc`), the test predictions, the size and the number of optimiser steps.
    """
    torch.manual_seed(seed)
    model = build_baseline(name, data.input_shape[-1], data.num_classes, cfg)
    history: History = fit(model, (data.x_train, data.y_train), val=(data.x_test, data.y_test), epochs=cfg.epochs,
                           lr=cfg.lr, batch_size=cfg.batch_size, optimizer="adam", seed=seed, device=device,
                           desc=f"{name} seed {seed}")
    test = evaluate(model, (data.x_test, data.y_test), device=device)
    preds = predict_logits(model, data.x_test, device=device).argmax(1)
    curve = np.asarray(history["val_acc"], dtype=float)
    best = int(curve.argmax())
    tail = curve[-swing_epochs:]
    return {"model": model, "history": history, "test_acc": test["acc"], "test_loss": test["loss"],
            "best_acc": float(curve[best]), "best_epoch": best + 1,
            "swing": float(tail.std(ddof=1)) if len(tail) > 1 else 0.0,
            "train_acc": history.last("train_acc"), "pred": preds, "params": count_parameters(model),
            "steps": cfg.epochs * steps_per_epoch(len(data.x_train), cfg.batch_size)}


def summarize_seeds(values) -> dict:
    """Mean, standard deviation (ddof=1 when n > 1), min and max of per-seed values."""
    v = np.asarray(list(values), dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def accuracy_interval(acc: float, n_test: int, level: float = 0.95, rounding: float = 0.0) -> tuple[float, float]:
    """The uncertainty an accuracy `acc` measured on `n_test` examples carries: the normal-approximation
    binomial interval at `level`, widened by `rounding` (half the last digit a published number was rounded
    to, e.g. 0.005 for whole percents), clipped to [0, 1]."""
    if not 0.0 <= acc <= 1.0:
        raise ConfigError(f"an accuracy lies in [0, 1], got {acc}")
    if n_test < 1:
        raise ConfigError(f"n_test must be >= 1, got {n_test}")
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(acc * (1 - acc) / n_test) + rounding
    return max(0.0, acc - half), min(1.0, acc + half)
