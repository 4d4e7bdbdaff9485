"""Per-layer features of a network (forward hooks, global average pooling), MC-dropout mode, linear probes."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import ShammieError
from .calibrators import _autograd_fun, _lbfgs, _to_tensor
from .metrics import CalibrationInputError, _check_labels

__all__ = [
    "layer_features",
    "layer_outputs",
    "LayerOutputs",
    "dropout_only_in_head",
    "mc_dropout_mode",
    "LinearProbe",
    "fit_probe",
    "fit_probes",
    "stack_layer_logits",
    "resnet18_with_dropout",
]


# =============================================================================================
# Per-layer features, MC dropout mode, linear probes


def _pool(h: torch.Tensor) -> torch.Tensor:
    """Global average pooling over every axis after the channel axis; (N, C) stays as is."""
    return h.flatten(2).mean(dim=-1) if h.dim() > 2 else h.reshape(h.shape[0], -1)


class _Taps:
    """Forward hooks that keep the pooled output of each layer during one forward pass.

    A layer that is an nn.Sequential is also tapped at its last child: containers that the model
    never calls as a whole (e.g. a stem listed as Sequential(conv1, bn1, relu) while forward calls
    conv1, bn1, relu one by one) are then still seen.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = list(layers)
        self.out: list[torch.Tensor | None] = [None] * len(self.layers)
        self.fallback: list[torch.Tensor | None] = [None] * len(self.layers)
        self.handles = []

    def __enter__(self):
        for i, layer in enumerate(self.layers):
            self.handles.append(layer.register_forward_hook(self._hook(i, self.out)))
            if isinstance(layer, nn.Sequential) and len(layer):
                self.handles.append(layer[-1].register_forward_hook(self._hook(i, self.fallback)))
        return self

    @staticmethod
    def _hook(i, store):
        def hook(module, inputs, output):
            store[i] = _pool(output.detach())

        return hook

    def collect(self) -> list[torch.Tensor]:
        feats = []
        for i, (a, b) in enumerate(zip(self.out, self.fallback)):
            h = a if a is not None else b
            if h is None:
                raise ShammieError(f"layer {i} ({type(self.layers[i]).__name__}) was never called in forward: "
                                   "pass the modules that forward actually runs as layers=[...]")
            feats.append(h)
        for store in (self.out, self.fallback):  # in place: the hooks hold these lists
            store[:] = [None] * len(self.layers)
        return feats

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


@contextmanager
def mc_dropout_mode(model: nn.Module):
    """Evaluation mode for everything except dropout layers, which sample masks (MC dropout).
    BatchNorm keeps its running statistics. The model's previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    for m in drops:
        m.train()
    try:
        yield len(drops)
    finally:
        model.train(was_training)


@torch.no_grad()
def layer_features(model: nn.Module, x: torch.Tensor, layers: Sequence[nn.Module] | None = None,
                   batch_size: int = 1024, device: torch.device | str | None = None,
                   mc_dropout: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Globally average-pooled outputs of `layers` (default `model.blocks`) and the model's logits on `x`.

    Returns (features, logits): features[l] has shape (N, C_l), logits (N, K), all float32 on the CPU.
    The model runs in eval mode, or with dropout sampling one mask per example when `mc_dropout=True`
    (seed torch first for reproducible masks).
    """
    layers = _default_layers(model, layers)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    feats: list[list[torch.Tensor]] = [[] for _ in layers]
    logits = []
    ctx = mc_dropout_mode(model) if mc_dropout else _eval_mode(model)
    with ctx, _Taps(layers) as taps:
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size].to(device))
            logits.append(out.float().cpu())
            for store, h in zip(feats, taps.collect()):
                store.append(h.float().cpu())
    return [torch.cat(f) for f in feats], torch.cat(logits)


def _default_layers(model: nn.Module, layers: Sequence[nn.Module] | None) -> list[nn.Module]:
    if layers is None:
        if not hasattr(model, "blocks"):
            raise ShammieError(f"{type(model).__name__} has no `blocks`: pass layers=[module, ...] to tap")
        layers = list(model.blocks)
    if len(layers) == 0:
        raise ShammieError("no layers to tap: pass at least one module")
    return list(layers)


def dropout_only_in_head(model: nn.Module) -> bool:
    """True when the model has dropout layers and all of them sit inside `model.head`: then everything
    before the head is deterministic and MC dropout only needs to resample the head."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        return False
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    inside = {id(m) for m in head.modules()}
    return bool(drops) and all(id(m) in inside for m in drops)


@dataclass
class LayerOutputs:
    """Pooled per-layer features and logits in eval mode, and their MC-dropout samples.

    features[l]: (N, C_l); logits: (N, K); mc_features[l]: (S, N, C_l); mc_logits: (S, N, K).
    """

    features: list[torch.Tensor]
    logits: torch.Tensor
    mc_features: list[torch.Tensor] | None = None
    mc_logits: torch.Tensor | None = None


@torch.no_grad()
def layer_outputs(model: nn.Module, x: torch.Tensor, mc_samples: int = 0, layers: Sequence[nn.Module] | None = None,
                  batch_size: int = 1024, device: torch.device | str | None = None) -> LayerOutputs:
    """`layer_features` in eval mode plus `mc_samples` MC-dropout passes (seed torch first).

    When every dropout layer is inside `model.head` (see `dropout_only_in_head`) the network before the
    head runs once and only the head is resampled: the same distribution at a fraction of the cost.
    """
    layers = _default_layers(model, layers)
    if mc_samples <= 0:
        feats, logits = layer_features(model, x, layers, batch_size, device)
        return LayerOutputs(feats, logits)
    if not dropout_only_in_head(model):
        feats, logits = layer_features(model, x, layers, batch_size, device)
        runs = [layer_features(model, x, layers, batch_size, device, mc_dropout=True) for _ in range(mc_samples)]
        mc_feats = [torch.stack([r[0][i] for r in runs]) for i in range(len(layers))]
        return LayerOutputs(feats, logits, mc_feats, torch.stack([r[1] for r in runs]))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    captured: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    try:
        feats, logits = layer_features(model, x, layers, batch_size, device)
    finally:
        handle.remove()
    with mc_dropout_mode(model):
        mc_logits = torch.stack([torch.cat([model.head(h).float().cpu() for h in captured]) for _ in range(mc_samples)])
    mc_feats = [f.unsqueeze(0).expand(mc_samples, *f.shape) for f in feats]
    return LayerOutputs(feats, logits, mc_feats, mc_logits)


@contextmanager
def _eval_mode(model: nn.Module):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@dataclass
class LinearProbe:
    """A multinomial logistic-regression probe on standardised pooled features: W (f - mean)/std + b."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (K, C)
    bias: torch.Tensor  # (K,)
    train_acc: float = float("nan")

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Probe logits (..., N, K), float64, from features (..., N, C)."""
        if features.dim() == 3 and features.stride(0) == 0:  # the same features for every MC sample
            return self.logits(features[0]).unsqueeze(0).expand(features.shape[0], -1, -1)
        f = (features.to(torch.float64) - self.mean) / self.std
        return f @ self.weight.T + self.bias


def fit_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float = 1e-3,
              max_iter: int = 500) -> LinearProbe:
    """Train a linear probe by full-batch L-BFGS in float64 on mean cross-entropy + l2/2 ||W||^2.

    Features are standardised with their own mean and standard deviation (kept in the probe).
    """
    f = _to_tensor(features, "features")
    if f.dim() != 2:
        raise CalibrationInputError(f"features must have shape (N, C), got {tuple(f.shape)}")
    y = torch.from_numpy(_check_labels(labels, f.shape[0], num_classes))
    mean = f.mean(0)
    std = f.std(0).clamp_min(1e-6)
    fs = (f - mean) / std
    n_feat = f.shape[1]

    def loss(p: torch.Tensor) -> torch.Tensor:
        w = p[: num_classes * n_feat].view(num_classes, n_feat)
        b = p[num_classes * n_feat:]
        return F.cross_entropy(fs @ w.T + b, y) + 0.5 * l2 * (w ** 2).sum()

    x, _ = _lbfgs(_autograd_fun(loss), np.zeros(num_classes * (n_feat + 1)), max_iter=max_iter, gtol=1e-6)
    p = torch.from_numpy(x)
    probe = LinearProbe(mean, std, p[: num_classes * n_feat].view(num_classes, n_feat).clone(),
                        p[num_classes * n_feat:].clone())
    probe.train_acc = float((probe.logits(f).argmax(1) == y).double().mean())
    return probe


def fit_probes(features: Sequence[torch.Tensor], labels: torch.Tensor, num_classes: int,
               l2: float = 1e-3, max_iter: int = 500) -> list[LinearProbe]:
    """One `fit_probe` per layer's features."""
    return [fit_probe(f, labels, num_classes, l2=l2, max_iter=max_iter) for f in features]


def stack_layer_logits(probes: Sequence[LinearProbe], features: Sequence[torch.Tensor],
                       network_logits: torch.Tensor) -> torch.Tensor:
    """Per-layer logits (L, N, K) float64: each probe on its layer's features, then the network's logits.
    With MC samples (features (S, N, C_l), logits (S, N, K)) the result is (S, L, N, K).

    `features` may hold more layers than `probes` (e.g. the last block, which feeds the head); the
    first len(probes) are used.
    """
    if len(features) < len(probes):
        raise CalibrationInputError(f"{len(probes)} probes but only {len(features)} feature arrays")
    rows = [p.logits(f) for p, f in zip(probes, features)]
    rows.append(network_logits.to(torch.float64))
    return torch.stack(rows, dim=-3)


def resnet18_with_dropout(num_classes: int = 10, dropout: float = 0.1, every_stage: bool = True) -> nn.Module:
    """The workbook's CIFAR ResNet-18 (`shammie.models.cifar_resnet18`) with dropout after each residual
    stage (or, with `every_stage=False`, after the last only), so MC dropout has masks to sample.
    `model.blocks` = stem, stage 1..4 (the taps for probes)."""
    from ..models import cifar_resnet18

    model = cifar_resnet18(num_classes)
    if dropout > 0:
        for name in ("layer1", "layer2", "layer3", "layer4") if every_stage else ("layer4",):
            setattr(model, name, nn.Sequential(getattr(model, name), nn.Dropout(dropout)))
    model.blocks = nn.ModuleList([nn.Sequential(model.conv1, model.bn1, model.relu),
                                  model.layer1, model.layer2, model.layer3, model.layer4])
    return model
