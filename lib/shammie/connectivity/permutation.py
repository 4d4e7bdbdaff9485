"""Permutation specs: which permutation acts on which axis of which weight; applying them; folding BatchNorm into the weights.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core import ShammieError
from ..models import MLP, VGG, CNN1d, ResNet1d, ResNet20
from .config import ArchitectureMismatchError, UnsupportedLayerError

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


#: module attributes that do not change what a network computes from its weights (BatchNorm's momentum is
#: switched to a cumulative average by `reset_bn_stats`; `inplace` is an execution detail)
_CONFIG_IGNORED = frozenset({"training", "momentum", "inplace"})


def _module_config(module: nn.Module) -> dict[str, Any]:
    """The configuration a module was built with: its public, non-tensor attributes (stride, padding, kernel
    size, features, eps, a head's kind, ...), minus those in `_CONFIG_IGNORED`."""
    simple = (int, float, str, bool, tuple, type(None))
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and k not in _CONFIG_IGNORED and isinstance(v, simple)}


def check_compatible(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ArchitectureMismatchError unless the two networks share type, module configuration (stride,
    padding, kernel, head, ...), state-dict keys and shapes."""
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
    mods_a, mods_b = list(model_a.named_modules()), list(model_b.named_modules())
    if [n for n, _ in mods_a] != [n for n, _ in mods_b]:
        raise ArchitectureMismatchError("the networks have different modules; align two networks of the same "
                                        "architecture")
    for (name, ma), (_, mb) in zip(mods_a, mods_b):
        where = name or type(model_a).__name__
        if type(ma) is not type(mb):
            raise ArchitectureMismatchError(
                f"module {where!r} is a {type(ma).__name__} in A but a {type(mb).__name__} in B")
        ca, cb = _module_config(ma), _module_config(mb)
        for key in sorted(set(ca) | set(cb)):
            if ca.get(key, "<unset>") != cb.get(key, "<unset>"):
                raise ArchitectureMismatchError(
                    f"the networks are configured differently: module {where!r} has {key}="
                    f"{ca.get(key, '<unset>')!r} in A but {key}={cb.get(key, '<unset>')!r} in B; "
                    f"interpolating or matching them would be meaningless"
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
