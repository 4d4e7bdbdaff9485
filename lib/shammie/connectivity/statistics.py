"""Per-channel statistics of activations, streamed in float64 about a shift.

Part of `shammie.connectivity` (see its docstring for the conventions)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..core import ShammieError


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
    """Streaming per-channel mean and variance, accumulated about a shift (the first batch's mean) so that
    channels with a large mean relative to their spread keep their variance (no E[x^2] - E[x]^2 cancellation)."""

    def __init__(self):
        self.n = 0
        self.shift = None
        self.s = None
        self.ss = None

    def add(self, t: torch.Tensor) -> None:
        z = _channels_last(t.detach())
        if self.shift is None:
            self.shift = z.mean(0, dtype=torch.float64).to(z.dtype)
        z = z - self.shift
        s, ss = z.sum(0, dtype=torch.float64), z.square().sum(0, dtype=torch.float64)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += z.shape[0]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        centred = self.s / self.n
        return centred + self.shift.double(), (self.ss / self.n - centred * centred).clamp_min(0.0)


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
