"""Training-loop throughput: shammie's in-memory batches against a torch DataLoader over the same
tensors, one epoch of the MNIST-1D CNN, one thread, in one run. Prints seconds and the ratio."""

from __future__ import annotations

import time

import torch

from shammie.core import configure_threads
from shammie.data import load_mnist1d
from shammie.models import CNN1d
from shammie.training import fit


def _epoch_seconds(train, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        torch.manual_seed(0)
        model = CNN1d(40, 10, channels=(32, 32, 32))
        t0 = time.perf_counter()
        fit(model, train, epochs=1, lr=1e-2, batch_size=100, show_progress=False)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    configure_threads(1)
    data = load_mnist1d()
    tensors = (data.x_train, data.y_train)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=100, shuffle=True)
    ours = _epoch_seconds(tensors)
    peer = _epoch_seconds(loader)
    print(f"{'loop':<28}{'s/epoch (best of 3)':>22}")
    print(f"{'shammie in-memory batches':<28}{ours:>22.3f}")
    print(f"{'torch DataLoader':<28}{peer:>22.3f}")
    print(f"ratio DataLoader / ours: {peer / ours:.2f}x (>1 means ours is faster)")


if __name__ == "__main__":
    main()
