"""One training loop for every theme: mini-batch SGD/Adam with an optional schedule, a per-epoch
history, evaluation, progress bars, and a checkpoint cache so a notebook re-run loads instead of training.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cache import cached_file
from .core import ShammieError, cache_dir, in_batch_mode

__all__ = [
    "History",
    "fit",
    "evaluate",
    "predict_logits",
    "batches",
    "progress",
    "checkpoint_path",
    "fit_cached",
]

Data = tuple[torch.Tensor, torch.Tensor] | torch.utils.data.DataLoader


def progress(iterable=None, **kwargs):
    """A tqdm progress bar (a widget in JupyterLab, text elsewhere); under the runner, silent in the
    executed notebook (whose pages and logs stay clean) and relayed to the runner's terminal as plain
    lines (`shammie.relay`). Bars a caller disabled (`disable=True`) stay disabled."""
    from . import relay

    relayed = relay.bar_options(kwargs)
    if relayed is not None:
        from tqdm.std import tqdm

        return tqdm(iterable, **relayed)
    if in_batch_mode():
        from tqdm.std import tqdm

        kwargs["disable"] = True
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


@dataclass
class History:
    """Per-epoch records of a training run: each a dict with epoch, train_loss, train_acc, lr, seconds,
    and val_loss / val_acc when validation data was given."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def last(self, key: str) -> float:
        """The final epoch's value of `key`."""
        return self.epochs[-1][key]

    def to_dict(self) -> dict[str, list[float]]:
        """Column-wise: {key: [value per epoch]}."""
        keys = {k for e in self.epochs for k in e}
        return {k: self[k] for k in sorted(keys)}

    def to_frame(self):
        """A pandas DataFrame with one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self.epochs)


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of tensors held in memory (much faster than a DataLoader for small data)."""
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def _iterate(data: Data, batch_size: int, shuffle: bool, generator: torch.Generator | None):
    if isinstance(data, torch.utils.data.DataLoader):
        return iter(data)
    x, y = data
    return batches(x, y, batch_size, shuffle=shuffle, generator=generator)


def _check_data(name: str, data: Data | None) -> None:
    if data is None or isinstance(data, torch.utils.data.DataLoader):
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ShammieError(f"{name} must be a (inputs, labels) pair of tensors or a DataLoader")
    x, y = data
    if len(x) != len(y):
        raise ShammieError(f"{name}: inputs and labels have different lengths ({len(x)} vs {len(y)})")
    if len(x) == 0:
        raise ShammieError(f"{name} is empty")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor | torch.utils.data.DataLoader, batch_size: int = 1024,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The model's outputs on `x` in eval mode, on the CPU, batched."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    if isinstance(x, torch.utils.data.DataLoader):
        chunks = (xb for xb, _ in x)
    else:
        chunks = (x[i : i + batch_size] for i in range(0, len(x), batch_size))
    for xb in chunks:
        outs.append(model(xb.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, batch_size: int = 1024, device: torch.device | str | None = None) -> dict[str, float]:
    """Mean cross-entropy `loss` and accuracy `acc` of `model` on `data`, in eval mode."""
    _check_data("data", data)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in _iterate(data, batch_size, False, None):
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
        count += len(yb)
    model.train(was_training)
    return {"loss": total_loss / count, "acc": correct / count}


def _make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    raise ShammieError(f"unknown optimizer {name!r}: choose adam, adamw or sgd")


def _make_schedule(name: str | None, opt, lr: float, total_steps: int):
    if name in (None, "none", "constant"):
        return None
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.15)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    raise ShammieError(f"unknown schedule {name!r}: choose onecycle, cosine or none")


def fit(
    model: nn.Module,
    train: Data,
    *,
    val: Data | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    schedule: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    desc: str = "train",
    show_progress: bool = True,
    log_every: int = 0,
) -> History:
    """Train `model` in place on `train` for `epochs` and return its History.

    `train` / `val` are (inputs, labels) tensor pairs or DataLoaders. Shuffling uses a generator
    seeded with `seed`, so the same seed gives the same run. A non-finite loss stops training with
    an error naming the epoch (lower `lr`). `log_every=k` prints a line every k epochs (0: only under
    the runner, four lines in all).
    """
    _check_data("train", train)
    _check_data("val", val)
    if epochs < 1:
        raise ShammieError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise ShammieError(f"lr must be positive, got {lr}")
    device = torch.device(device)
    model.to(device)
    loss_fn = loss_fn or F.cross_entropy
    gen = torch.Generator().manual_seed(seed)
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    if isinstance(train, torch.utils.data.DataLoader):
        steps_per_epoch = len(train)
    else:
        steps_per_epoch = math.ceil(len(train[0]) / batch_size)
    sched = _make_schedule(schedule, opt, lr, epochs * steps_per_epoch)
    if log_every == 0 and in_batch_mode():
        log_every = max(1, epochs // 4)
    history = History()
    bar = progress(range(1, epochs + 1), desc=desc, disable=not show_progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        total, correct, count = 0.0, 0, 0
        for xb, yb in _iterate(train, batch_size, True, gen):
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if not torch.isfinite(loss):
                raise ShammieError(f"{desc}: the loss became {loss.item()} in epoch {epoch}; lower the learning rate (lr={lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item() if logits.dim() == 2 else 0
            count += len(yb)
        row = {"epoch": epoch, "train_loss": total / count, "train_acc": correct / count,
               "lr": opt.param_groups[0]["lr"]}
        if val is not None:
            ev = evaluate(model, val, device=device)
            row.update(val_loss=ev["loss"], val_acc=ev["acc"])
        row["seconds"] = time.perf_counter() - t0
        history.epochs.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", "val_acc")})
        if log_every and (epoch % log_every == 0 or epoch == epochs):
            extra = f", val_acc {row['val_acc']:.3f}" if "val_acc" in row else ""
            print(f"{desc}: epoch {epoch}/{epochs}, train_loss {row['train_loss']:.3f}{extra}", flush=True)
    model.eval()
    return history


def checkpoint_path(tag: str, **keys: Any) -> Path:
    """The cache file for a model named `tag` trained with settings `keys` (hashed into the name)."""
    blob = json.dumps(keys, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in tag)
    return cache_dir() / "checkpoints" / f"{safe}-{digest}.pt"


def fit_cached(model: nn.Module, train: Data, *, cache_key: dict[str, Any] | None, tag: str = "model",
               **fit_kwargs: Any) -> History:
    """`fit`, unless a checkpoint for (`tag`, `cache_key`, fit settings) exists: then load it.

    `cache_key` must name everything that shapes the result besides `fit_kwargs` (the data, the
    architecture); `None` disables the cache. The checkpoint is written atomically with a checksum
    beside it; a damaged one (empty, truncated, unloadable) is named in a warning and trained again.
    """
    if cache_key is None:
        return fit(model, train, **fit_kwargs)
    keys = {**cache_key, **{k: v for k, v in fit_kwargs.items() if k not in ("val", "device", "desc", "show_progress", "log_every")},
            "model": repr(model), "torch": torch.__version__.split("+")[0]}
    path = checkpoint_path(tag, **keys)
    device = fit_kwargs.get("device", "cpu")

    def load(p: Path) -> History:
        state = torch.load(p, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        model.to(device).eval()
        return History(state["history"])

    def train_model() -> History:
        return fit(model, train, **fit_kwargs)

    def save(history: History, tmp: str) -> None:
        torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history.epochs}, tmp)

    return cached_file(path, load, train_model, save, what="checkpoint")
