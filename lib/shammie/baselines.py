"""The getting-started theme: logistic regression, an MLP and a 1D CNN on MNIST-1D, trained with one
recipe and compared with the accuracies published for MNIST-1D (Greydanus & Kobak, arXiv 2011.14439)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .config import ConfigError, ProfileConfig
from .data import ArrayDataset
from .models import build_model, count_parameters
from .training import History, evaluate, fit, predict_logits

__all__ = ["GettingStartedConfig", "BASELINE_MODELS", "model_kwargs", "train_baseline", "summarize_seeds"]

BASELINE_MODELS = ("logistic", "mlp", "cnn")


@dataclass(frozen=True)
class GettingStartedConfig(ProfileConfig):
    """Knobs of notebook 00. Defaults are the quick profile."""

    num_samples: int = 5000  # MNIST-1D size; 5000 gives the published 4000/1000 split
    epochs: int = 60
    lr: float = 1e-2
    batch_size: int = 100
    seeds: int = 3  # independent training runs per model
    mlp_hidden: tuple[int, ...] = (100, 100)
    cnn_channels: tuple[int, ...] = (32, 32, 32)
    cnn_kernel: int = 5

    PROFILES: ClassVar[dict] = {
        "smoke": {"num_samples": 1000, "epochs": 2, "seeds": 1},
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


def model_kwargs(name: str, cfg: GettingStartedConfig) -> dict:
    """Constructor arguments of baseline `name` under `cfg`."""
    if name == "logistic":
        return {}
    if name == "mlp":
        return {"hidden": cfg.mlp_hidden}
    if name == "cnn":
        return {"channels": cfg.cnn_channels, "kernel_size": cfg.cnn_kernel}
    raise ConfigError(f"unknown baseline {name!r}: choose one of {', '.join(BASELINE_MODELS)}")


def train_baseline(name: str, data: ArrayDataset, cfg: GettingStartedConfig, seed: int,
                   device: torch.device | str = "cpu") -> dict:
    """Train baseline `name` with seed `seed` (Adam, constant lr, no weight decay) and evaluate it.

    Returns a dict with the model, its History, test accuracy and loss, test predictions, and size.
    """
    torch.manual_seed(seed)
    model = build_model(name, data.input_shape[-1], data.num_classes, **model_kwargs(name, cfg))
    history: History = fit(model, (data.x_train, data.y_train), val=(data.x_test, data.y_test), epochs=cfg.epochs,
                           lr=cfg.lr, batch_size=cfg.batch_size, optimizer="adam", seed=seed, device=device,
                           desc=f"{name} seed {seed}")
    test = evaluate(model, (data.x_test, data.y_test), device=device)
    preds = predict_logits(model, data.x_test, device=device).argmax(1)
    return {"model": model, "history": history, "test_acc": test["acc"], "test_loss": test["loss"],
            "pred": preds, "params": count_parameters(model)}


def summarize_seeds(values) -> dict:
    """Mean, standard deviation (ddof=1 when n > 1), min and max of per-seed values."""
    v = np.asarray(list(values), dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}
