"""The getting-started theme: the paper's MNIST-1D models, its recipe, and the uncertainty of its numbers."""

import math

import pytest
import torch
import torch.nn.functional as F

from shammie.baselines import (
    BASELINE_MODELS,
    PAPER_RECIPE,
    GettingStartedConfig,
    PaperCNN1d,
    ResidualMLP,
    accuracy_interval,
    build_baseline,
    steps_per_epoch,
    summarize_seeds,
    train_baseline,
)
from shammie.config import ConfigError
from shammie.data import ArrayDataset, reference_table
from shammie.models import count_parameters


def test_models_have_the_papers_parameter_counts():
    """The paper's benchmark notebook prints 410, 15,210 and 5,210 parameters (kept in the reference table)."""
    paper = reference_table("mnist1d_baselines").set_index("model")["parameters"]
    cfg = GettingStartedConfig.for_profile("quick")
    for name in BASELINE_MODELS:
        model = build_baseline(name, 40, 10, cfg)
        assert count_parameters(model) == int(paper[name]), name
        assert hasattr(model, "blocks") and hasattr(model, "head")
        assert model(torch.randn(3, 40)).shape == (3, 10)


def test_residual_mlp_computes_the_papers_forward_pass():
    """h1 = relu(W1 x); h2 = h1 + relu(W2 h1); logits = W3 h2, written out with the model's own weights."""
    torch.manual_seed(0)
    model = ResidualMLP(40, 10, hidden=16).eval()
    x = torch.randn(7, 40)
    l1, l2, l3 = model.blocks[0][0], model.blocks[1].f[0], model.head
    h1 = torch.relu(x @ l1.weight.T + l1.bias)
    h2 = h1 + torch.relu(h1 @ l2.weight.T + l2.bias)
    torch.testing.assert_close(model(x), h2 @ l3.weight.T + l3.bias)


def test_paper_cnn_computes_the_papers_forward_pass():
    """Three strided convolutions (stride 2, padding 1) with ReLU, flattened to 25 x 5 for a length-40 signal."""
    torch.manual_seed(0)
    model = PaperCNN1d(40, 10).eval()
    assert model.out_length == 5 and model.head.in_features == 125
    x = torch.randn(4, 40)
    h = x[:, None, :]
    for block in model.blocks:
        conv = block[0]
        assert conv.stride == (2,) and conv.padding == (1,)
        h = torch.relu(F.conv1d(h, conv.weight, conv.bias, stride=2, padding=1))
    assert h.shape == (4, 25, 5)
    torch.testing.assert_close(model(x), model.head(h.flatten(1)))
    torch.testing.assert_close(model(x[:, None, :]), model(x))  # (N, 1, L) inputs too


def test_model_errors():
    cfg = GettingStartedConfig.for_profile("quick")
    with pytest.raises(ConfigError, match="unknown baseline"):
        build_baseline("gru", 40, 10, cfg)
    with pytest.raises(ConfigError, match="too short"):
        PaperCNN1d(2, 10, kernels=(5, 3, 3))
    with pytest.raises(ConfigError):
        ResidualMLP(40, 1)
    with pytest.raises(ConfigError, match="cnn_kernels"):
        GettingStartedConfig.for_profile("quick", cnn_kernels=())


def test_profiles_keep_the_papers_recipe_and_enough_seeds():
    per_epoch = steps_per_epoch(PAPER_RECIPE["train_examples"], PAPER_RECIPE["batch_size"])
    assert per_epoch == 40 and steps_per_epoch(41, 10) == 5
    full = GettingStartedConfig.for_profile("full")
    assert full.epochs * per_epoch == PAPER_RECIPE["steps"] and full.seeds >= 10
    for profile in ("smoke", "quick", "full"):
        cfg = GettingStartedConfig.for_profile(profile)
        assert (cfg.lr, cfg.batch_size) == (PAPER_RECIPE["lr"], PAPER_RECIPE["batch_size"])
        assert (cfg.mlp_hidden, cfg.cnn_channels, cfg.cnn_kernels) == (100, 25, (5, 3, 3))
    quick = GettingStartedConfig.for_profile("quick")
    assert quick.seeds >= 5 and quick.num_samples == 5000


def test_accuracy_interval_is_the_binomial_interval_plus_rounding():
    lo, hi = accuracy_interval(0.32, 1000)
    half = 1.959963984540054 * math.sqrt(0.32 * 0.68 / 1000)
    assert lo == pytest.approx(0.32 - half) and hi == pytest.approx(0.32 + half)
    lo2, hi2 = accuracy_interval(0.32, 1000, rounding=0.005)
    assert lo2 == pytest.approx(lo - 0.005) and hi2 == pytest.approx(hi + 0.005)
    assert accuracy_interval(1.0, 100) == (1.0, 1.0)
    assert accuracy_interval(0.99, 10, rounding=0.05)[1] == 1.0
    wide, narrow = accuracy_interval(0.5, 100), accuracy_interval(0.5, 10000)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    with pytest.raises(ConfigError):
        accuracy_interval(1.2, 100)
    with pytest.raises(ConfigError):
        accuracy_interval(0.5, 0)


def _tiny_data(n_train=60, n_test=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    y_train, y_test = torch.arange(n_train) % 3, torch.arange(n_test) % 3
    x_train = torch.randn(n_train, 40, generator=g) + y_train[:, None].float()
    x_test = torch.randn(n_test, 40, generator=g) + y_test[:, None].float()
    return ArrayDataset(x_train, y_train, x_test, y_test, num_classes=3, name="tiny")


@pytest.mark.parametrize("name", BASELINE_MODELS)
def test_train_baseline_reports_final_and_best_epoch(name):
    data = _tiny_data()
    cfg = GettingStartedConfig.for_profile("smoke", epochs=4, batch_size=25)
    out = train_baseline(name, data, cfg, seed=3)
    curve = out["history"]["val_acc"]
    assert len(curve) == 4 and out["test_acc"] == curve[-1]
    assert out["best_acc"] == max(curve) >= out["test_acc"]
    assert curve[out["best_epoch"] - 1] == out["best_acc"]
    assert out["swing"] >= 0 and 0 <= out["train_acc"] <= 1
    assert out["steps"] == 4 * 3 and out["pred"].shape == (30,)
    again = train_baseline(name, data, cfg, seed=3)
    assert again["history"]["val_acc"] == curve  # same seed, same run


def test_summarize_seeds():
    s = summarize_seeds([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert summarize_seeds([0.5])["std"] == 0.0
