import pytest
import torch

from shammie.core import ShammieError
from shammie.models import MLP
from shammie.training import batches, evaluate, fit, fit_cached, predict_logits


def _planted(n=400, d=5, seed=0):
    """Linearly separable 3-class data from a planted linear teacher."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 3, generator=g)
    return x, (x @ w).argmax(1)


def test_fit_learns_a_planted_linear_rule():
    x, y = _planted()
    model = MLP(5, 3, hidden=())
    before = evaluate(model, (x, y))["acc"]
    history = fit(model, (x, y), val=(x, y), epochs=60, lr=0.05, batch_size=64, show_progress=False)
    assert history.last("val_acc") > 0.95 > before
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert len(history.epochs) == 60 and {"lr", "seconds", "val_loss"} <= set(history.epochs[0])


def test_same_seed_same_weights_other_seed_other_weights():
    x, y = _planted()

    def train(seed):
        torch.manual_seed(0)
        m = MLP(5, 3, hidden=(8,))
        fit(m, (x, y), epochs=3, lr=0.01, batch_size=32, seed=seed, show_progress=False)
        return torch.cat([p.flatten() for p in m.parameters()])

    assert torch.equal(train(1), train(1))
    assert not torch.equal(train(1), train(2))


@pytest.mark.parametrize("schedule,optimizer", [("onecycle", "sgd"), ("cosine", "adamw"), (None, "adam")])
def test_schedules_and_optimizers_run(schedule, optimizer):
    x, y = _planted(n=64)
    h = fit(MLP(5, 3, hidden=(4,)), (x, y), epochs=2, lr=0.01, schedule=schedule, optimizer=optimizer, show_progress=False)
    assert len(h.epochs) == 2


def test_dataloader_input_matches_tensor_evaluation():
    x, y = _planted(n=100)
    model = MLP(5, 3, hidden=(4,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=30)
    a, b = evaluate(model, loader), evaluate(model, (x, y))
    assert a["acc"] == b["acc"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    torch.testing.assert_close(predict_logits(model, loader), predict_logits(model, x, batch_size=7))
    fit(model, loader, epochs=1, show_progress=False)


def test_batches_cover_every_example_once():
    x = torch.arange(10).float()
    seen = torch.cat([xb for xb, _ in batches(x, x, 3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))


def test_diverging_training_is_stopped_with_advice():
    x, y = _planted(n=64)
    x[0, 0] = float("nan")
    with pytest.raises(ShammieError, match="lower the learning rate"):
        fit(MLP(5, 3, hidden=()), (x, y), epochs=1, show_progress=False)


@pytest.mark.parametrize("kwargs,match", [({"epochs": 0}, "epochs"), ({"lr": 0}, "lr"), ({"optimizer": "rmsprop"}, "optimizer"),
                                          ({"schedule": "step"}, "schedule")])
def test_bad_arguments(kwargs, match):
    x, y = _planted(n=16)
    with pytest.raises(ShammieError, match=match):
        fit(MLP(5, 3), (x, y), show_progress=False, **kwargs)


def test_mismatched_data_is_refused():
    with pytest.raises(ShammieError, match="different lengths"):
        fit(MLP(5, 3), (torch.randn(4, 5), torch.zeros(3, dtype=torch.long)), show_progress=False)


def test_fit_cached_loads_instead_of_training(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    x, y = _planted(n=64)
    torch.manual_seed(0)
    a = MLP(5, 3, hidden=(4,))
    ha = fit_cached(a, (x, y), cache_key={"data": "planted"}, tag="t", epochs=2, lr=0.01, show_progress=False)
    assert len(list((tmp_path / "cache" / "checkpoints").glob("t-*.pt"))) == 1
    torch.manual_seed(1)
    b = MLP(5, 3, hidden=(4,))
    calls = []
    monkeypatch.setattr("shammie.training.fit", lambda *a, **k: calls.append(1))
    hb = fit_cached(b, (x, y), cache_key={"data": "planted"}, tag="t", epochs=2, lr=0.01, show_progress=False)
    assert calls == [] and hb.epochs == ha.epochs
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_fit_cached_damaged_checkpoint_is_named_and_trained_again(tmp_path, monkeypatch, damage):
    from shammie.cache import CacheWarning, verify

    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    x, y = _planted(n=64)
    kwargs = dict(cache_key={"data": "planted"}, tag="t", epochs=2, lr=0.01, show_progress=False)
    torch.manual_seed(0)
    fit_cached(MLP(5, 3, hidden=(4,)), (x, y), **kwargs)
    (path,) = (tmp_path / "cache" / "checkpoints").glob("t-*.pt")
    blob = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else blob[: len(blob) // 2])  # an empty .pt was EOFError
    torch.manual_seed(0)
    model = MLP(5, 3, hidden=(4,))
    with pytest.warns(CacheWarning, match=f"checkpoint .*{path.name}.*damaged"):
        history = fit_cached(model, (x, y), **kwargs)
    assert len(history.epochs) == 2 and verify(path) is None
    calls = []
    monkeypatch.setattr("shammie.training.fit", lambda *a, **k: calls.append(1))
    fit_cached(MLP(5, 3, hidden=(4,)), (x, y), **kwargs)
    assert calls == []  # the rebuilt checkpoint loads
