"""The experiment of notebook 01: config, data with distribution shift, networks, one seed end to end,
tables and the per-seed values the claims are judged on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, ProfileConfig
from ..core import ShammieError
from .calibrators import (
    LATES,
    BestLayerTS,
    Calibrator,
    EqualWeightLATES,
    MCDropout,
    TemperatureScaling,
    Uncalibrated,
    VectorScaling,
)
from .layers import (
    fit_probes,
    layer_features,
    layer_outputs,
    resnet18_with_dropout,
    stack_layer_logits,
)
from .metrics import (
    CalibrationInputError,
    bootstrap_ci,
    calibration_metrics,
    ece,
    paired_test,
)

__all__ = [
    "LatesConfig",
    "CalibrationData",
    "SeedResult",
    "METHODS",
    "MC_METHODS",
    "ENSEMBLE",
    "add_ensemble_rows",
    "claim_values",
    "per_seed_diff",
    "CLAIM_COMPARISONS",
    "build_mc_backbone",
    "prepare_data",
    "build_backbone",
    "run_seed",
    "results_frame",
    "summary_table",
    "severity_table",
    "compare_methods",
    "corruption_table",
    "layer_names",
]


# =============================================================================================
# The notebook's experiment

#: the methods fitted on the main network, in table order: name -> (calibrator factory, input kind).
#: Input kinds: "last" = the network's logits; "layers" = every layer (probes on blocks 1..L-1, then the
#: network); "no_last_probe" = every layer but the last probe; "net_and_last_probe" = the last probe and
#: the network (a two-member ensemble).
METHODS: dict[str, tuple[Callable[[], Calibrator], str]] = {
    "uncalibrated": (Uncalibrated, "last"),
    "TS": (TemperatureScaling, "last"),
    "VS": (VectorScaling, "last"),
    "LATES": (LATES, "layers"),
    "LATES (equal)": (EqualWeightLATES, "layers"),
    "LATES (no last probe)": (LATES, "no_last_probe"),
    "TS (net + last probe)": (EqualWeightLATES, "net_and_last_probe"),
    "TS (best probe)": (BestLayerTS, "layers"),
}

#: the baseline built after all seeds: seed k's network and seed k+1's (mod n), probabilities averaged, then TS
ENSEMBLE = "ensemble of 2 nets + TS"

#: the methods fitted on the MC-dropout network (dropout in every block), evaluated on validation and test
MC_METHODS: dict[str, tuple[Callable[[], Calibrator], str]] = {
    "TS": (TemperatureScaling, "last"),
    "LATES": (LATES, "layers"),
    "MC": (lambda: MCDropout(Uncalibrated()), "mc_last"),
    "MC + TS": (lambda: MCDropout(TemperatureScaling()), "mc_last"),
    "MC + LATES": (lambda: MCDropout(LATES()), "mc_layers"),
}

CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)


@dataclass(frozen=True)
class LatesConfig(ProfileConfig):
    """Knobs of notebook 01. Defaults are the quick profile (MNIST-1D, 1D CNN, CPU)."""

    dataset: str = "mnist1d"  # mnist1d | cifar10
    num_samples: int = 6000  # MNIST-1D examples generated (train + validation + test)
    test_size: int = 1500  # MNIST-1D test examples (CIFAR-10: its 10000 test images)
    val_size: int = 1500  # validation examples held out of the training part, for calibration
    channels: tuple[int, ...] = (32, 32, 32, 32)  # 1D CNN widths, one per block
    strides: tuple[int, ...] = (1, 2, 2, 2)
    kernel_size: int = 5
    dropout: float = 0.1  # the main network's dropout
    dropout_blocks: str = "last"  # last: dropout on the last block's output only | all: after every block
    mc_dropout: float = 0.2  # the MC-dropout network: dropout with this p after every block, trained with it
    epochs: int = 20
    lr: float = 1e-2
    batch_size: int = 128
    optimizer: str = "adam"
    weight_decay: float = 0.0  # none: the network should come out overconfident
    schedule: str = "none"
    augment: bool = False  # CIFAR-10 crop + flip augmentation
    seeds: int = 5
    mc_samples: int = 30  # dropout samples S for MC dropout (on the MC-dropout network)
    corruptions: tuple[str, ...] = ("gaussian_noise", "shift", "scale", "mask")
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    ood_size: int = 500  # test examples corrupted per (corruption, severity); 0 = all
    n_bins: int = 15
    probe_l2: float = 1e-3
    bootstrap: int = 100  # bootstrap replicates for the per-seed CI of the ECE difference
    eval_batch_size: int = 2048

    PROFILES: ClassVar[dict] = {
        "smoke": {"num_samples": 1500, "test_size": 500, "val_size": 500, "epochs": 2, "seeds": 2, "mc_samples": 4,
                  "ood_size": 150, "bootstrap": 20, "channels": (16, 16, 16, 16)},
        "quick": {},
        "full": {"dataset": "cifar10", "val_size": 5000, "dropout": 0.1, "dropout_blocks": "all", "epochs": 100, "lr": 0.1,
                 "batch_size": 128, "optimizer": "sgd", "weight_decay": 5e-4, "schedule": "cosine",
                 "augment": True, "seeds": 5, "mc_samples": 30, "mc_dropout": 0.2, "corruptions": CIFAR10C_CORRUPTIONS,
                 "ood_size": 2000, "bootstrap": 1000, "eval_batch_size": 1000},
    }

    def validate(self) -> None:
        from ..data import CORRUPTIONS

        if self.dataset not in ("mnist1d", "cifar10"):
            raise ConfigError(f"dataset must be 'mnist1d' or 'cifar10', got {self.dataset!r}")
        if self.dataset == "mnist1d":
            if self.test_size < 50 or self.val_size < 50 or self.num_samples - self.test_size - self.val_size < 100:
                raise ConfigError(
                    f"num_samples={self.num_samples} must leave at least 100 training examples after test_size="
                    f"{self.test_size} and val_size={self.val_size} (each at least 50)")
            unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
            if unknown:
                raise ConfigError(f"unknown corruption(s) {unknown} for MNIST-1D; choose from {', '.join(CORRUPTIONS)}")
            if len(self.channels) < 3:
                raise ConfigError("the CNN needs at least 3 blocks (probes go on all but the last, and one baseline "
                                  "leaves out the last probe)")
            if len(self.strides) != len(self.channels):
                raise ConfigError(f"strides ({len(self.strides)}) and channels ({len(self.channels)}) differ in length")
        if self.dataset == "cifar10" and not 100 <= self.val_size < 50000:
            raise ConfigError(f"val_size must be in 100..49999 for CIFAR-10, got {self.val_size}")
        if self.dropout_blocks not in ("last", "all"):
            raise ConfigError(f"dropout_blocks must be 'last' or 'all', got {self.dropout_blocks!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.mc_dropout < 1:
            raise ConfigError(f"mc_dropout must be in (0, 1) (MC dropout needs dropout to sample), got {self.mc_dropout}")
        for name in ("epochs", "seeds", "batch_size", "n_bins", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mc_samples < 2:
            raise ConfigError(f"mc_samples must be >= 2 (an average over dropout samples), got {self.mc_samples}")
        if not self.corruptions:
            raise ConfigError("give at least one corruption for the distribution-shift experiment")
        if not self.severities or any(s not in (1, 2, 3, 4, 5) for s in self.severities):
            raise ConfigError(f"severities must be a non-empty subset of 1..5, got {self.severities}")
        if self.ood_size < 0 or self.bootstrap < 2 or self.lr <= 0 or self.probe_l2 < 0:
            raise ConfigError("ood_size >= 0, bootstrap >= 2, lr > 0 and probe_l2 >= 0 are required")


@dataclass
class CalibrationData:
    """Train / validation / test tensors and shifted test sets {(corruption, severity): (x, y)}."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ood: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    name: str
    ood_source: str = "synthetic"
    train_loader: Any = None  # a DataLoader with augmentation, when the profile asks for it
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"CalibrationData({self.name}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
                f"{len(self.ood)} shifted sets from {self.ood_source})")


def prepare_data(cfg: LatesConfig, split_seed: int = 0) -> CalibrationData:
    """The data of one experiment: train/validation split (fixed by `split_seed`), test set, and the
    test set under each corruption and severity (MNIST-1D: `shammie.data.corrupt`; CIFAR-10:
    CIFAR-10-C files under data/CIFAR-10-C when present, else the synthetic corruptions)."""
    from ..data import corrupt, load_mnist1d, train_val_split

    if cfg.dataset == "mnist1d":
        d = load_mnist1d(num_samples=cfg.num_samples, train_split=(cfg.num_samples - cfg.test_size) / cfg.num_samples)
        x_tr, y_tr, x_val, y_val = train_val_split(d.x_train, d.y_train, cfg.val_size / len(d.y_train), seed=split_seed)
        x_test, y_test = d.x_test, d.y_test
        n = len(y_test) if cfg.ood_size == 0 else min(cfg.ood_size, len(y_test))
        ood = {(c, s): (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
               for c in cfg.corruptions for s in cfg.severities}
        return CalibrationData(x_tr, y_tr, x_val, y_val, x_test, y_test, ood, d.num_classes, d.name)
    return _prepare_cifar10(cfg, split_seed)


def _dataset_tensors(ds, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _prepare_cifar10(cfg: LatesConfig, split_seed: int) -> CalibrationData:
    from ..core import data_dir
    from ..data import (
        CIFAR10_MEAN,
        CIFAR10_STD,
        CORRUPTIONS,
        corrupt,
        load_cifar10,
        train_val_split,
    )

    plain = load_cifar10(train=True, augment=False)
    x_all, y_all = _dataset_tensors(plain)
    idx_tr, y_tr, idx_val, y_val = train_val_split(torch.arange(len(y_all)), y_all, cfg.val_size / len(y_all),
                                                   seed=split_seed)
    x_test, y_test = _dataset_tensors(load_cifar10(train=False))
    loader = None
    if cfg.augment:
        augmented = torch.utils.data.Subset(load_cifar10(train=True, augment=True), idx_tr.tolist())
        loader = torch.utils.data.DataLoader(augmented, batch_size=cfg.batch_size, shuffle=True, num_workers=4,
                                             generator=torch.Generator().manual_seed(split_seed), drop_last=False)
    n = len(y_test) if cfg.ood_size == 0 else min(cfg.ood_size, len(y_test))
    folder = data_dir() / "CIFAR-10-C"
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    ood, notes, sources = {}, [], set()
    if not (folder / "labels.npy").exists():
        fallback = ("gaussian_noise", "shift", "scale", "mask")
        notes.append(f"CIFAR-10-C not found under {folder} (labels.npy missing): using the synthetic corruptions "
                     f"{', '.join(fallback)} instead")
        for c in fallback:
            for s in cfg.severities:
                ood[(c, s)] = (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
        sources.add("synthetic")
    else:
        labels_c = np.load(folder / "labels.npy")
        for c in cfg.corruptions:
            path = folder / f"{c}.npy"
            if not path.exists() and c not in CORRUPTIONS:
                notes.append(f"{c}: no {path} and no synthetic version; skipped")
                continue
            for s in cfg.severities:
                rows = slice((s - 1) * 10000, (s - 1) * 10000 + n)
                if path.exists():
                    arr = np.array(np.load(path, mmap_mode="r")[rows])  # a writable copy
                    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
                    ood[(c, s)] = ((x - mean) / std, torch.from_numpy(labels_c[rows]).long())
                    sources.add("CIFAR-10-C")
                else:
                    ood[(c, s)] = (corrupt(x_test[:n], c, s, seed=split_seed), y_test[:n])
                    sources.add("synthetic")
        if not ood:
            raise ShammieError(f"no usable corruption among {cfg.corruptions} in {folder}")
    return CalibrationData(x_all[idx_tr], y_tr, x_all[idx_val], y_val, x_test, y_test, ood, 10, "CIFAR-10",
                           ood_source=" + ".join(sorted(sources)), train_loader=loader, notes=notes)


def build_backbone(cfg: LatesConfig, data: CalibrationData) -> nn.Module:
    """The main network of the profile: a 1D CNN (MNIST-1D) or ResNet-18 (CIFAR-10), with dropout `cfg.dropout`
    on the last block's output (or after every block with `dropout_blocks="all"`)."""
    from ..models import CNN1d

    if cfg.dataset == "mnist1d":
        everywhere = cfg.dropout_blocks == "all"
        model = CNN1d(data.x_train.shape[-1], data.num_classes, channels=cfg.channels, kernel_size=cfg.kernel_size,
                      strides=cfg.strides, dropout=cfg.dropout if everywhere else 0.0, head="flatten")
        if not everywhere and cfg.dropout > 0:  # dropout on the last block's (flattened) output
            model.head = nn.Sequential(nn.Dropout(cfg.dropout), model.head)
        return model
    return resnet18_with_dropout(data.num_classes, cfg.dropout, every_stage=cfg.dropout_blocks == "all")


def build_mc_backbone(cfg: LatesConfig, data: CalibrationData) -> nn.Module:
    """The MC-dropout network: the same architecture with dropout `cfg.mc_dropout` after every block
    (so MC dropout perturbs every layer's features, the probes' included)."""
    from ..models import CNN1d

    if cfg.dataset == "mnist1d":
        return CNN1d(data.x_train.shape[-1], data.num_classes, channels=cfg.channels, kernel_size=cfg.kernel_size,
                     strides=cfg.strides, dropout=cfg.mc_dropout, head="flatten")
    return resnet18_with_dropout(data.num_classes, cfg.mc_dropout, every_stage=True)


def layer_names(cfg: LatesConfig) -> list[str]:
    """Names of the LATES layers: the probed blocks, then the network's own logits."""
    if cfg.dataset == "mnist1d":
        return [f"block {i + 1}" for i in range(len(cfg.channels) - 1)] + ["network"]
    return ["stem", "stage 1", "stage 2", "stage 3", "network"]


@dataclass
class SeedResult:
    """Everything one seed produced: metric rows, fitted parameters, probe accuracies, test predictions."""

    seed: int
    rows: list[dict[str, Any]]
    temperature: float
    lates_weights: np.ndarray
    probe_acc: dict[str, np.ndarray]  # split -> accuracy per layer (last = network)
    test_logits: dict[str, np.ndarray]  # method -> calibrated test logits
    y_test: np.ndarray
    ece_diff_ci: dict[str, float]  # bootstrap CI of test ECE(LATES) - ECE(TS)
    fit_info: dict[str, dict[str, Any]]
    ts_changed_predictions: int = 0  # test and shifted examples whose class TS changed (must be 0)
    best_probe: int = -1  # the layer TS (best probe) chose
    net_logprobs: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict, repr=False)
    labels: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict, repr=False)
    mc_temperature: float = float("nan")
    mc_lates_weights: np.ndarray | None = None
    mc_dropnet_lates_weights: np.ndarray | None = None
    mc_spread: float = float("nan")  # mean total-variation distance of one dropout sample from the MC mean (test)
    mc_val_nll_gap: float = float("nan")  # validation NLL(MC + LATES) - NLL(MC + TS); <= 0 by construction
    history: Any = None
    mc_history: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _method_inputs(kind: str, det: torch.Tensor, mc: torch.Tensor | None = None) -> torch.Tensor:
    n = det.shape[-3]
    if kind == "last":
        return det[-1]
    if kind == "layers":
        return det
    if kind == "no_last_probe":
        return det[[i for i in range(n) if i != n - 2]]
    if kind == "net_and_last_probe":
        return det[[n - 2, n - 1]]
    if kind == "mc_last":
        return mc[:, -1]
    if kind == "mc_layers":
        return mc
    raise ValueError(f"unknown input kind {kind!r}")


def _layer_logits(model, probes, x, cfg, device, mc_samples: int = 0, mc_seed: int = 0):
    """Deterministic per-layer logits (L, N, K) and, with mc_samples > 0, MC ones (S, L, N, K) on x."""
    torch.manual_seed(mc_seed)
    out = layer_outputs(model, x, mc_samples=mc_samples, batch_size=cfg.eval_batch_size, device=device)
    det = stack_layer_logits(probes, out.features, out.logits)
    mc = stack_layer_logits(probes, out.mc_features, out.mc_logits) if mc_samples else None
    return det, mc


def _train(cfg, data, model, seed, device, cache, show_progress, net: str):
    from ..training import fit_cached

    train = data.train_loader if data.train_loader is not None else (data.x_train, data.y_train)
    key = None
    if cache and data.train_loader is None:
        key = {"theme": "01_calibration_lates", "data": data.name, "n_train": len(data.y_train),
               "n_val": len(data.y_val), "n_test": len(data.y_test), "seed": seed, "net": net}
    history = fit_cached(model, train, cache_key=key, tag="lates-backbone", val=(data.x_val, data.y_val),
                         epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                         weight_decay=cfg.weight_decay, schedule=cfg.schedule, seed=seed, device=device,
                         desc=f"seed {seed} ({net})", show_progress=show_progress, log_every=cfg.epochs)
    model.eval()
    return history


def _probes(model, data, cfg, device):
    feats_tr, _ = layer_features(model, data.x_train, batch_size=cfg.eval_batch_size, device=device)
    n_probe = len(feats_tr) - 1  # the last block feeds the head: its vote is the network's logits
    return fit_probes(feats_tr[:n_probe], data.y_train, data.num_classes, l2=cfg.probe_l2)


def _row(seed, method, split, corruption, severity, out, y, cfg):
    m = calibration_metrics(out, y, n_bins=cfg.n_bins, kind="logits")
    return {"seed": seed, "method": method, "split": split, "corruption": corruption or "none",
            "severity": severity, **m}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def run_seed(cfg: LatesConfig, data: CalibrationData, seed: int, device: torch.device | str = "cpu",
             cache: bool = True, show_progress: bool = True) -> SeedResult:
    """One seed end to end.

    Main network: train it (cached), fit linear probes on the training split, fit every calibrator of
    METHODS on the validation split, evaluate on validation, test and every shifted test set.
    MC-dropout network (dropout `cfg.mc_dropout` after every block, its own training run and probes):
    fit MC_METHODS on `cfg.mc_samples` dropout samples of the validation split, evaluate on test.
    The ensemble baseline needs every seed's network: see `add_ensemble_rows`.
    """
    import time

    timings = {}
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = build_backbone(cfg, data)
    history = _train(cfg, data, model, seed, device, cache, show_progress, "main")
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probes = _probes(model, data, cfg, device)
    timings["probes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    det_val, _ = _layer_logits(model, probes, data.x_val, cfg, device)
    y_val = data.y_val.numpy()
    fitted: dict[str, Calibrator] = {}
    for name, (factory, kind) in METHODS.items():
        fitted[name] = factory().fit(_method_inputs(kind, det_val), y_val)
    timings["calibrate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    probe_acc: dict[str, np.ndarray] = {}
    test_logits: dict[str, np.ndarray] = {}
    net_logprobs, labels = {}, {}
    changed = 0
    sets = [("val", None, 0, None), ("test", None, 0, (data.x_test, data.y_test))]
    sets += [("shift", c, s, xy) for (c, s), xy in data.ood.items()]
    for split, corruption, severity, xy in sets:
        if split == "val":
            det, y = det_val, y_val
        else:
            det, _ = _layer_logits(model, probes, xy[0], cfg, device)
            y = xy[1].numpy()
        key = (split, corruption or "none", severity)
        net_logprobs[key] = _log_softmax(det[-1].numpy()).astype(np.float32)
        labels[key] = y
        if split in ("val", "test"):
            probe_acc[split] = (det.argmax(-1).numpy() == y[None, :]).mean(axis=1)
        for name, (_, kind) in METHODS.items():
            out = fitted[name].transform(_method_inputs(kind, det))
            rows.append(_row(seed, name, split, corruption, severity, out, y, cfg))
            if split == "test":
                test_logits[name] = out
            if name == "TS" and split != "val":
                changed += int(np.sum(out.argmax(1) != det[-1].numpy().argmax(1)))
    timings["evaluate"] = time.perf_counter() - t0

    y_test = data.y_test.numpy()
    ci = bootstrap_ci(lambda a, b, yy: ece(a, yy, cfg.n_bins, kind="logits") - ece(b, yy, cfg.n_bins, kind="logits"),
                      test_logits["LATES"], test_logits["TS"], y_test, n_boot=cfg.bootstrap, seed=seed)
    result = SeedResult(
        seed=seed, rows=rows, temperature=fitted["TS"].temperature, lates_weights=fitted["LATES"].weights,
        probe_acc=probe_acc, test_logits=test_logits, y_test=y_test, ece_diff_ci=ci,
        fit_info={k: dict(v.fit_info_) for k, v in fitted.items()}, ts_changed_predictions=changed,
        best_probe=fitted["TS (best probe)"].layer, net_logprobs=net_logprobs, labels=labels, history=history,
        timings=timings)
    if cfg.mc_samples:
        _run_mc_network(cfg, data, seed, device, cache, show_progress, result)
    return result


def _run_mc_network(cfg, data, seed, device, cache, show_progress, result: SeedResult) -> None:
    """The MC-dropout arm of one seed, added to `result` (rows with method names 'dropout net: ...')."""
    import time

    t0 = time.perf_counter()
    torch.manual_seed(100_000 + seed)
    model = build_mc_backbone(cfg, data)
    result.mc_history = _train(cfg, data, model, 100_000 + seed, device, cache, show_progress, "mc-dropout")
    probes = _probes(model, data, cfg, device)
    result.timings["mc_train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    det_val, mc_val = _layer_logits(model, probes, data.x_val, cfg, device, cfg.mc_samples, 10_000 * seed + 1)
    det_te, mc_te = _layer_logits(model, probes, data.x_test, cfg, device, cfg.mc_samples, 10_000 * seed + 2)
    y_val, y_te = data.y_val.numpy(), data.y_test.numpy()
    fitted = {name: factory().fit(_method_inputs(kind, det_val, mc_val), y_val)
              for name, (factory, kind) in MC_METHODS.items()}
    for name, (_, kind) in MC_METHODS.items():
        for split, det, mc, y in (("val", det_val, mc_val, y_val), ("test", det_te, mc_te, y_te)):
            out = fitted[name].transform(_method_inputs(kind, det, mc))
            result.rows.append(_row(result.seed, f"dropout net: {name}", split, None, 0, out, y, cfg))
    p = torch.softmax(mc_te[:, -1], dim=-1)  # (S, N, K)
    result.mc_spread = float(0.5 * (p - p.mean(0, keepdim=True)).abs().sum(-1).mean())
    result.mc_temperature = fitted["MC + TS"].temperature
    result.mc_lates_weights = fitted["MC + LATES"].weights
    result.mc_dropnet_lates_weights = fitted["LATES"].weights
    result.mc_val_nll_gap = fitted["MC + LATES"].fit_info_["val_nll"] - fitted["MC + TS"].fit_info_["val_nll"]
    result.fit_info.update({f"dropout net: {k}": dict(v.fit_info_) for k, v in fitted.items()})
    result.timings["mc_calibrate_evaluate"] = time.perf_counter() - t0


def add_ensemble_rows(results: Sequence[SeedResult], cfg: LatesConfig) -> int:
    """The ensemble baseline: for seed k, the main networks of seeds k and k+1 (mod n), independently
    trained, average their probabilities; one temperature on top is fitted on validation; evaluated on
    test and every shifted set. Its training cost is twice LATES's (two networks), and neighbouring
    seeds share a network. Appends rows named ENSEMBLE to each result; returns the number added."""
    n = len(results)
    if n < 2:
        return 0
    added = 0
    for k, res in enumerate(results):
        other = results[(k + 1) % n]
        if any(r["method"] == ENSEMBLE for r in res.rows):
            continue

        def mix(key, res=res, other=other):
            a, b = res.net_logprobs[key].astype(np.float64), other.net_logprobs[key].astype(np.float64)
            m = np.maximum(a, b)
            return m + np.log((np.exp(a - m) + np.exp(b - m)) / 2)

        val_key = ("val", "none", 0)
        ts = TemperatureScaling().fit(mix(val_key), res.labels[val_key])
        for key, y in res.labels.items():
            split, corruption, severity = key
            res.rows.append(_row(res.seed, ENSEMBLE, split, corruption, severity, ts.transform(mix(key)), y, cfg))
            added += 1
    return added


def results_frame(results: Sequence[SeedResult]):
    """All metric rows of all seeds as one DataFrame (seed, method, split, corruption, severity, metrics)."""
    import pandas as pd

    df = pd.DataFrame([r for res in results for r in res.rows])
    order = list(METHODS) + [ENSEMBLE] + [f"dropout net: {m}" for m in MC_METHODS]
    df["method"] = pd.Categorical(df["method"], categories=[m for m in order if m in set(df["method"])], ordered=True)
    return df


METRIC_COLUMNS = ("acc", "nll", "ece", "ece_mass", "brier", "auroc", "mce", "cw_ece")


def summary_table(df, split: str = "test", metrics: Sequence[str] = ("acc", "nll", "ece", "ece_mass", "brier", "auroc")):
    """Mean and standard deviation over seeds of each metric per method, on `split`
    ("val", "test", or "shift" = the mean over every corruption and severity first)."""
    sub = df[df["split"] == split]
    per_seed = sub.groupby(["method", "seed"], observed=True)[list(metrics)].mean()
    g = per_seed.groupby(level="method", observed=True)
    table = g.mean().add_suffix(" mean").join(g.std(ddof=1).add_suffix(" std"))
    return table[[f"{m} {s}" for m in metrics for s in ("mean", "std")]]


def severity_table(df, metric: str):
    """Mean of `metric` over seeds and corruptions per method (rows) and severity (columns; 0 = clean test)."""
    import pandas as pd

    clean = df[df["split"] == "test"].assign(severity=0)
    shifted = df[df["split"] == "shift"]
    both = pd.concat([clean, shifted])
    return both.pivot_table(index="method", columns="severity", values=metric, aggfunc="mean", observed=True)


HIGHER_IS_BETTER = {"acc": True, "auroc": True}


def compare_methods(df, a: str, b: str, metric: str, split: str = "test") -> dict[str, float]:
    """Paired test of method `a` against `b` on `metric`: per seed on "val"/"test"; on "shift", per
    (seed, corruption, severity). Returns `paired_test`'s dict ("wins": pairs where `a` is better)."""
    keys = ["seed"] if split != "shift" else ["seed", "corruption", "severity"]
    sub = df[df["split"] == split]
    pa = sub[sub["method"] == a].set_index(keys)[metric].sort_index()
    pb = sub[sub["method"] == b].set_index(keys)[metric].sort_index()
    if len(pa) == 0 or len(pb) == 0:
        raise CalibrationInputError(f"no rows for methods {a!r} / {b!r} on split {split!r}")
    return paired_test(pa.to_numpy(), pb.loc[pa.index].to_numpy(), HIGHER_IS_BETTER.get(metric, False))


def corruption_table(df, metric: str, a: str = "LATES", b: str = "TS"):
    """Mean over seeds of metric(a) - metric(b) per corruption (rows) and severity (columns)."""
    sub = df[df["split"] == "shift"]
    pa = sub[sub["method"] == a].set_index(["seed", "corruption", "severity"])[metric]
    pb = sub[sub["method"] == b].set_index(["seed", "corruption", "severity"])[metric]
    diff = (pa - pb.loc[pa.index]).rename("diff").reset_index()
    return diff.pivot_table(index="corruption", columns="severity", values="diff", aggfunc="mean")


def per_seed_diff(df, a: str, b: str, metric: str, split: str = "test") -> np.ndarray:
    """metric(a) - metric(b) for each seed (in seed order): on "val"/"test" the seed's value, on "shift"
    the seed's mean over every corruption and severity. Paired: both methods saw the same examples."""
    sub = df[df["split"] == split]
    pa = sub[sub["method"] == a].groupby("seed")[metric].mean()
    pb = sub[sub["method"] == b].groupby("seed")[metric].mean()
    if pa.empty or pb.empty:
        raise CalibrationInputError(f"no rows for methods {a!r} / {b!r} on split {split!r}")
    return (pa - pb.loc[pa.index]).to_numpy()


#: what each claim of notebook 01 compares: name -> (method a, method b, metric, split); values a - b per seed
CLAIM_COMPARISONS: dict[str, tuple[str, str, str, str]] = {
    "lates_acc": ("LATES", "TS", "acc", "test"),
    "lates_ece": ("LATES", "TS", "ece", "test"),
    "lates_nll": ("LATES", "TS", "nll", "test"),
    "lates_auroc": ("LATES", "TS", "auroc", "test"),
    "shift_acc": ("LATES", "TS", "acc", "shift"),
    "shift_ece": ("LATES", "TS", "ece", "shift"),
    "shift_nll": ("LATES", "TS", "nll", "shift"),
    "shift_auroc": ("LATES", "TS", "auroc", "shift"),
    "early_beyond_ensembling": ("LATES", "TS (net + last probe)", "nll", "test"),
    "early_without_last_probe": ("LATES (no last probe)", "TS", "nll", "test"),
    "mc_lates_vs_mc_ts": ("dropout net: MC + LATES", "dropout net: MC + TS", "nll", "test"),
    "mc_lates_vs_lates": ("dropout net: MC + LATES", "dropout net: LATES", "nll", "test"),
}


def claim_values(df, results: Sequence[SeedResult]) -> dict[str, Any]:
    """Per-seed values for the notebook's claims, preconditions and checks.

    - every CLAIM_COMPARISONS name: method a minus method b per seed (see `per_seed_diff`);
    - temperature, net_acc (uncalibrated test accuracy), shift_acc_drop (TS's clean test accuracy minus
      its mean accuracy over the shifted sets), lates_nll_gain (NLL(TS) - NLL(LATES), test),
      mc_spread, mc_net_acc (the dropout network's test accuracy, eval mode): per seed;
    - val_nll_gap_max (max over seeds of validation NLL(LATES) - NLL(TS)), mc_val_nll_gap_max (the same
      for MC + LATES vs MC + TS), ts_changed_predictions (summed over seeds): for the checks.
    """
    out: dict[str, Any] = {}
    methods = set(df["method"].astype(str))
    for name, (a, b, metric, split) in CLAIM_COMPARISONS.items():
        if a in methods and b in methods:
            out[name] = per_seed_diff(df, a, b, metric, split)
    test = df[df["split"] == "test"]

    def per_seed(method, metric, frame=test):
        return frame[frame["method"] == method].groupby("seed")[metric].mean().to_numpy()

    shift = df[df["split"] == "shift"]
    out["temperature"] = np.array([r.temperature for r in results])
    out["net_acc"] = per_seed("uncalibrated", "acc")
    out["shift_acc_drop"] = per_seed("TS", "acc") - per_seed("TS", "acc", shift)
    out["lates_nll_gain"] = -out["lates_nll"]
    out["val_nll_gap_max"] = float(max(r.fit_info["LATES"]["val_nll"] - r.fit_info["TS"]["val_nll"] for r in results))
    out["ts_changed_predictions"] = int(sum(r.ts_changed_predictions for r in results))
    if "dropout net: TS" in methods:
        out["mc_spread"] = np.array([r.mc_spread for r in results])
        out["mc_net_acc"] = per_seed("dropout net: TS", "acc")
        out["mc_val_nll_gap_max"] = float(max(r.mc_val_nll_gap for r in results))
    return out
