"""Tests of shammie.connectivity: permutation specs, alignment, interpolation, barriers and REPAIR.

Facts proved here: permuting hidden units by the spec leaves every architecture's function unchanged;
matching a network against a permuted copy of itself recovers the planted permutation and gives a
zero barrier; weight matching agrees with brute force where the problem is a single assignment;
REPAIR is the identity at the endpoints and hits its statistical targets; BatchNorm reset gives each
channel the mean beta and std |gamma|; bad input is refused with a message that names the problem.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from shammie.config import ConfigError
from shammie.connectivity import (
    VGG,
    ArchitectureMismatchError,
    ConnectivityConfig,
    ResNet20,
    UnsupportedLayerError,
    _CrossMoments,
    _Moments,
    align,
    apply_permutation,
    barrier,
    barrier_summary,
    channel_stats,
    check_compatible,
    fold_batchnorm,
    interpolate,
    interpolate_state,
    interpolation_curve,
    match_activations,
    match_weights,
    max_output_gap,
    pair_seeds,
    pair_slopes,
    parse_network,
    per_pair,
    permutation_spec,
    permute_state,
    random_permutations,
    relative_reduction,
    repair,
    repair_points,
    reset_bn_stats,
    variance_ratios,
)
from shammie.core import ShammieError
from shammie.models import MLP, CNN1d, ResNet1d


def _calibrate_bn(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the statistics of its input on `x` and random affine parameters (as after
    training), so that every unit is active on some inputs; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
        model.train()
        model(x)
        for m in bns:
            m.momentum = 0.1
    return model.eval()


def _net(kind: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    x1d = torch.randn(256, 40, generator=torch.Generator().manual_seed(100))
    x2d = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(100))
    builders = {
        "mlp": lambda: (MLP(40, 10, hidden=(24, 24, 24)), x1d),
        "mlp_bn": lambda: (MLP(40, 10, hidden=(24, 24, 24), batchnorm=True), x1d),
        "cnn_gap_bn": lambda: (CNN1d(40, 10, channels=(8, 8, 16), batchnorm=True, head="gap"), x1d),
        "cnn_flatten": lambda: (CNN1d(40, 10, channels=(8, 12), head="flatten"), x1d),
        "resnet1d": lambda: (ResNet1d(10, widths=(8, 16, 16), blocks_per_stage=2), x1d),
        "resnet20": lambda: (ResNet20(1), x2d),
        "resnet20_plain": lambda: (ResNet20(1, batchnorm=False), x2d),
        "vgg11_bn": lambda: (VGG("VGG11", 1, batchnorm=True), x2d),
        "vgg11": lambda: (VGG("VGG11", 1), x2d),
    }
    model, x = builders[kind]()
    return _calibrate_bn(model, x, seed), x


ALL_ARCHS = [
    "mlp",
    "mlp_bn",
    "cnn_gap_bn",
    "cnn_flatten",
    "resnet1d",
    "resnet20",
    "resnet20_plain",
    "vgg11_bn",
    "vgg11",
]
SMALL_ARCHS = [
    "mlp_bn",
    "mlp_bn_folded",
    "cnn_gap_bn",
    "cnn_gap_bn_folded",
    "resnet1d",
    "resnet1d_folded",
]


def _trained_like(kind: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A small network with BatchNorm statistics of its data (no unit dead on every input), or its
    BatchNorm-folded plain twin for a kind ending in `_folded`."""
    folded = kind.endswith("_folded")
    model, x = _net(kind.removesuffix("_folded"), seed)
    return (fold_batchnorm(model) if folded else model), x


# --------------------------------------------------------------------------------------------
# Permutation specs


@pytest.mark.parametrize("kind", ALL_ARCHS)
def test_random_permutation_leaves_function_unchanged(kind):
    model, x = _net(kind)
    spec = permutation_spec(model)
    perms = random_permutations(spec, torch.Generator().manual_seed(1))
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    permuted = apply_permutation(model, perms, spec)
    moved = [
        k for k, v in model.state_dict().items() if not torch.equal(v, permuted.state_dict()[k])
    ]
    assert moved, "the permutation should change the weights"
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn_flatten", "resnet1d"])
def test_a_spec_missing_an_entry_breaks_the_function(kind):
    """The invariance test is sensitive: leaving out one consumer (the head) changes the outputs."""
    model, x = _net(kind)
    spec = permutation_spec(model)
    perms = random_permutations(spec, torch.Generator().manual_seed(1))
    spec.axes.pop("head.weight")
    broken = apply_permutation(model, perms, spec)
    with torch.no_grad():
        assert (broken(x) - model(x)).abs().max() > 1e-3


def test_residual_stream_shares_one_permutation():
    model, _ = _net("resnet1d")
    spec = permutation_spec(model)
    # the stem and the first stage's two blocks write into stream0; the projection starts stream1
    assert spec.axes["stem.0.weight"][0] == "stream0"
    assert spec.axes["blocks.0.conv2.weight"][0] == "stream0"
    assert spec.axes["blocks.1.conv2.weight"][0] == "stream0"
    assert spec.axes["blocks.2.shortcut.0.weight"][:2] == ("stream1", "stream0")
    assert spec.axes["blocks.2.conv2.weight"][0] == "stream1"
    assert spec.axes["head.weight"] == (None, "stream2")
    assert [t.module for t in spec.taps["stream0"]] == ["stem", "blocks.0", "blocks.1"]


def test_flatten_head_is_permuted_by_channel_blocks():
    model, _ = _net("cnn_flatten")
    spec = permutation_spec(model)
    assert spec.views["head.weight"] == (10, 12, 10)  # (classes, channels, positions)
    perms = random_permutations(spec, torch.Generator().manual_seed(3))
    w = model.head.weight.detach()
    out = permute_state({"head.weight": w}, spec, perms)["head.weight"]
    torch.testing.assert_close(out.view(10, 12, 10), w.view(10, 12, 10)[:, perms["blocks.1"]])


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn_gap_bn", "resnet1d", "resnet20", "vgg11_bn"])
def test_fold_batchnorm_preserves_function_and_removes_norms(kind):
    model, x = _net(kind)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert all(u.norm is None for u in permutation_spec(folded).units)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# Alignment


@pytest.mark.parametrize("kind", SMALL_ARCHS)
def test_activation_matching_recovers_planted_permutation(kind):
    model, x = _trained_like(kind)
    spec = permutation_spec(model)
    planted = random_permutations(spec, torch.Generator().manual_seed(2))
    copy_b = apply_permutation(model, planted, spec)
    result = match_activations(model, copy_b, x, batch_size=100)
    for p, perm in planted.items():
        # B's unit perm^-1[i] is A's unit i
        assert torch.equal(result.perms[p], torch.argsort(perm)), p
    assert result.lap_calls == len(spec.perms)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in result.objective.values())
    restored = apply_permutation(copy_b, result.perms, spec)
    for k, v in model.state_dict().items():
        assert torch.equal(restored.state_dict()[k], v), k


@pytest.mark.parametrize("kind", SMALL_ARCHS)
def test_weight_matching_recovers_planted_permutation(kind):
    model, _ = _trained_like(kind)
    spec = permutation_spec(model)
    planted = random_permutations(spec, torch.Generator().manual_seed(2))
    copy_b = apply_permutation(model, planted, spec)
    result = match_weights(model, copy_b, seed=0)
    for p, perm in planted.items():
        assert torch.equal(result.perms[p], torch.argsort(perm)), p
    assert result.sweeps >= 2  # the last sweep confirms that nothing improves


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn_gap_bn", "resnet1d"])
def test_aligned_permuted_copy_has_zero_barrier(kind):
    model, x = _net(kind)
    spec = permutation_spec(model)
    copy_b = apply_permutation(
        model, random_permutations(spec, torch.Generator().manual_seed(4)), spec
    )
    y = model(x).argmax(1).detach()
    y[::3] = (y[::3] + 1) % 10  # not every prediction right, so accuracy is not trivially 1
    b_aligned, _ = align(model, copy_b, x)
    aligned = interpolation_curve(model, b_aligned, {"test": (x, y)}, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert barrier(aligned, "acc")["max"] == pytest.approx(0.0, abs=1e-12)
    assert barrier(aligned, "loss")["max"] == pytest.approx(0.0, abs=1e-5)
    naive = interpolation_curve(model, copy_b, {"test": (x, y)}, [0.0, 0.5, 1.0])
    # without alignment the midpoint is a different network
    assert barrier(naive, "loss")["max"] > 1e-3


def test_weight_matching_agrees_with_brute_force_on_one_hidden_layer():
    """With one hidden layer, weight matching is one linear assignment: its answer maximizes
    <W1_A, P W1_B> + <W2_A, W2_B P^T> + <b_A, P b_B> over all 5! permutations."""
    torch.manual_seed(0)
    a, b = MLP(6, 3, hidden=(5,)), MLP(6, 3, hidden=(5,))
    result = match_weights(a, b)
    sa, sb = a.state_dict(), b.state_dict()

    def score(perm):
        p = torch.tensor(perm)
        return float(
            (sa["blocks.0.0.weight"] * sb["blocks.0.0.weight"][p]).sum()
            + (sa["blocks.0.0.bias"] * sb["blocks.0.0.bias"][p]).sum()
            + (sa["head.weight"] * sb["head.weight"][:, p]).sum()
        )

    best = max(itertools.permutations(range(5)), key=score)
    assert result.perms["blocks.0"].tolist() == list(best)


def test_correlation_matches_numpy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=g)
    b = 0.5 * a[:, [2, 0, 1, 5, 4, 3]] + torch.randn(300, 6, generator=g) + 3.0
    acc = _CrossMoments()
    for i in range(0, 300, 64):
        acc.add(a[i : i + 64], b[i : i + 64])
    expected = np.corrcoef(a.numpy().T, b.numpy().T)[:6, 6:]
    np.testing.assert_allclose(acc.correlation().numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("offset", [0.0, 750.0, 3000.0])
def test_correlation_with_large_offsets_matches_float64(offset):
    """Units whose mean is hundreds of times their spread: correlations stay in [-1, 1], agree with a float64
    reference, and a planted permutation is recovered (E[ab] - E[a]E[b] from float32 sums broke this)."""
    g = torch.Generator().manual_seed(3)
    n, units = 2000, 32
    base = torch.randn(n, units, generator=g, dtype=torch.float64)
    planted = torch.randperm(units, generator=g)
    a = (base + offset).float()
    b = (base[:, planted] + 0.3 * torch.randn(n, units, generator=g, dtype=torch.float64) + offset).float()
    acc = _CrossMoments()
    for i in range(0, n, 256):
        acc.add(a[i : i + 256], b[i : i + 256])
    corr = acc.correlation().numpy()
    a64, b64 = a.double().numpy(), b.double().numpy()
    expected = np.corrcoef(a64.T, b64.T)[:units, units:]
    np.testing.assert_allclose(corr, expected, atol=2e-4)
    assert np.abs(corr).max() <= 1.0
    # B's unit planted^-1[i] is A's unit i
    from scipy.optimize import linear_sum_assignment

    cols = linear_sum_assignment(corr, maximize=True)[1]
    assert np.array_equal(cols, torch.argsort(planted).numpy())


def test_channel_moments_with_large_offsets():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5000, 8, generator=g, dtype=torch.float64) * 0.5 + 1000.0
    m = _Moments()
    for i in range(0, 5000, 500):
        m.add(x[i : i + 500].float())
    mean, var = m.mean_var()
    xf = x.float().double()
    torch.testing.assert_close(mean, xf.mean(0), atol=1e-4, rtol=0)
    torch.testing.assert_close(var, xf.var(0, unbiased=False), atol=0, rtol=1e-3)


def test_activation_matching_with_large_offsets_recovers_planted_permutation():
    """A hidden layer whose units sit at a mean ~750x their spread: matching still finds the plant."""
    torch.manual_seed(0)
    model = MLP(40, 10, hidden=(48,))
    x = torch.randn(2000, 40, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        lin = model.blocks[0][0]
        lin.bias.copy_(750.0 * (x @ lin.weight.T).std(0))  # mean / std of each unit's output ~ 750
    spec = permutation_spec(model)
    planted = random_permutations(spec, torch.Generator().manual_seed(5))
    copy_b = apply_permutation(model, planted, spec)
    result = match_activations(model, copy_b, x, batch_size=250)
    assert torch.equal(result.perms["blocks.0"], torch.argsort(planted["blocks.0"]))
    assert result.objective["blocks.0"] == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------------------------
# Interpolation and REPAIR


def _pair(kind: str = "mlp", folded: bool = True):
    a, x = _net(kind, seed=0)
    b, _ = _net(kind, seed=1)
    if folded:
        a, b = fold_batchnorm(a), fold_batchnorm(b)
    return a, b, x


def test_interpolate_state_endpoints_and_integer_buffers():
    a, _ = _net("mlp_bn", 0)
    b, _ = _net("mlp_bn", 1)
    b.blocks[0][1].num_batches_tracked.fill_(7)
    for alpha, ref in ((0.0, a), (1.0, b)):
        s = interpolate_state(a.state_dict(), b.state_dict(), alpha)
        for k, v in s.items():
            if v.is_floating_point():
                assert torch.equal(v, ref.state_dict()[k]), (alpha, k)
            else:
                assert torch.equal(v, a.state_dict()[k])  # integer buffers come from A
    mid = interpolate(a, b, 0.5).state_dict()
    torch.testing.assert_close(
        mid["blocks.1.1.running_var"],
        0.5 * (a.blocks[1][1].running_var + b.blocks[1][1].running_var),
    )


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn_gap_bn", "resnet1d"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_repair_at_the_endpoints_returns_the_endpoint(kind, alpha):
    a, b, x = _pair(kind)
    out = repair(a, b, alpha, x)
    ref = a if alpha == 0.0 else b
    with torch.no_grad():
        torch.testing.assert_close(out(x), ref(x), atol=1e-5, rtol=1e-5)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(out.state_dict()[k], v, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlp_bn", "cnn_gap_bn", "resnet1d"])
@pytest.mark.parametrize("batch_size", [None, 60])
def test_repair_hits_the_interpolated_statistics(kind, batch_size):
    a, b, x = _pair(kind)
    alpha = 0.3
    points = repair_points(a)
    assert points and all("conv" in p or ".0" in p for p in points)
    out = repair(a, b, alpha, x, batch_size=batch_size)
    sa, sb, so = (channel_stats(m, x, points) for m in (a, b, out))
    merged = channel_stats(interpolate(a, b, alpha), x, points)
    for p in points:
        torch.testing.assert_close(
            so[p][0], (1 - alpha) * sa[p][0] + alpha * sb[p][0], atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            so[p][1], (1 - alpha) * sa[p][1] + alpha * sb[p][1], atol=1e-5, rtol=1e-4
        )
    # it had something to fix: the plain interpolation's spread was off in some layer
    assert any((merged[p][1] - so[p][1]).abs().max() > 1e-2 for p in points)


def test_repair_in_one_pass_equals_layer_by_layer():
    a, b, x = _pair("resnet1d")
    one = repair(a, b, 0.5, x)
    many = repair(a, b, 0.5, x, batch_size=64)
    with torch.no_grad():
        torch.testing.assert_close(one(x), many(x), atol=1e-4, rtol=1e-4)


def test_reset_bn_gives_each_channel_beta_and_gamma():
    a, x = _net("mlp_bn", 0)
    b, _ = _net("mlp_bn", 1)
    merged = reset_bn_stats(interpolate(a, b, 0.5), x)
    bns = [n for n, m in merged.named_modules() if isinstance(m, nn.BatchNorm1d)]
    stats = channel_stats(merged, x, bns)
    for n in bns:
        bn = merged.get_submodule(n)
        torch.testing.assert_close(stats[n][0].float(), bn.bias.detach(), atol=1e-4, rtol=0)
        torch.testing.assert_close(
            stats[n][1].float(), bn.weight.detach().abs(), atol=1e-3, rtol=1e-3
        )


def test_variance_ratios_show_collapse_and_its_repair():
    a, b, x = _pair("mlp_bn")
    same = variance_ratios(a, a, a, x)
    np.testing.assert_allclose(same["std_ratio"], 1.0, atol=1e-6)
    np.testing.assert_allclose(same["var_ratio"], 1.0, atol=1e-6)
    collapsed = variance_ratios(a, b, interpolate(a, b, 0.5), x)
    assert collapsed["std_ratio"].iloc[-1] < 0.9  # two unrelated random networks: strong collapse
    repaired = variance_ratios(a, b, repair(a, b, 0.5, x), x)
    np.testing.assert_allclose(repaired["std_ratio"], 1.0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Barriers


def _curve(accs, losses):
    alphas = np.linspace(0, 1, len(accs))
    return pd.DataFrame({"alpha": alphas, "split": "test", "acc": accs, "loss": losses})


def test_barrier_is_the_largest_gap_below_the_line():
    c = _curve([0.9, 0.8, 0.5, 0.6, 0.7], [0.1, 0.5, 0.9, 0.4, 0.3])
    b = barrier(c, "acc")
    # line: 0.9, 0.85, 0.8, 0.75, 0.7 -> gaps 0, 0.05, 0.3, 0.15, 0
    assert (
        b["max"] == pytest.approx(0.3) and b["alpha"] == 0.5 and b["midpoint"] == pytest.approx(0.3)
    )
    bl = barrier(c, "loss")  # line 0.1..0.3: gaps 0, 0.35, 0.7, 0.15, 0
    assert bl["max"] == pytest.approx(0.7) and bl["endpoints"] == pytest.approx(0.2)
    assert barrier(_curve([0.5, 0.6, 0.7], [1, 1, 1]), "acc")["max"] == pytest.approx(0.0)
    assert relative_reduction(0.4, 0.1) == pytest.approx(0.75)
    assert np.isnan(relative_reduction(0.0, 0.1))


def test_barrier_summary_reduction_against_aligned():
    rows = []
    for method, mid in (("naive", 0.1), ("aligned", 0.5), ("aligned + REPAIR", 0.8)):
        c = _curve([0.9, mid, 0.9], [0.1, 1.0, 0.1])
        c.insert(0, "method", method)
        c.insert(0, "variant", "folded")
        c.insert(0, "network", "mlp-64")
        rows.append(c)
    s = barrier_summary(pd.concat(rows)).set_index("method")
    assert s.loc["aligned + REPAIR", "reduction"] == pytest.approx(1 - 0.1 / 0.4)
    assert np.isnan(s.loc["naive", "reduction"]) and np.isnan(s.loc["aligned", "reduction"])
    assert s.loc["aligned", "width"] == 64 and s.loc["aligned", "family"] == "mlp"


# --------------------------------------------------------------------------------------------
# Bad input


def test_different_widths_are_refused():
    a, b = MLP(40, 10, hidden=(16, 16)), MLP(40, 10, hidden=(16, 32))
    with pytest.raises(ArchitectureMismatchError, match="different widths"):
        check_compatible(a, b)
    with pytest.raises(ArchitectureMismatchError, match="different widths"):
        match_weights(a, b)
    with pytest.raises(ArchitectureMismatchError, match="different widths"):
        interpolate(a, b, 0.5)


def test_different_module_configurations_are_refused():
    """Same types, keys and shapes, different strides (or padding, or head): refused, naming the difference."""
    a = CNN1d(40, 10, channels=(8, 8), strides=(1, 2), head="gap")
    b = CNN1d(40, 10, channels=(8, 8), strides=(1, 1), head="gap")
    assert all(a.state_dict()[k].shape == v.shape for k, v in b.state_dict().items())
    with pytest.raises(ArchitectureMismatchError, match=r"stride=\(2,\) in A but stride=\(1,\) in B"):
        check_compatible(a, b)
    x = torch.randn(16, 40)
    with pytest.raises(ArchitectureMismatchError, match="configured differently"):
        interpolate(a, b, 0.5)
    with pytest.raises(ArchitectureMismatchError, match="configured differently"):
        match_activations(a, b, x)
    with pytest.raises(ArchitectureMismatchError, match="configured differently"):
        match_weights(a, b)
    c = CNN1d(40, 10, channels=(8, 8), strides=(1, 2), head="gap", kernel_size=3)
    d = CNN1d(40, 10, channels=(8, 8), strides=(1, 2), head="gap", kernel_size=3)
    with torch.no_grad():
        d.blocks[0][0].padding = (0,)
    with pytest.raises(ArchitectureMismatchError, match="padding"):
        check_compatible(c, d)
    # what does not change the function is not compared: BatchNorm momentum (reset_bn_stats sets None)
    e, f = MLP(40, 10, hidden=(8,), batchnorm=True), MLP(40, 10, hidden=(8,), batchnorm=True)
    f.blocks[0][1].momentum = None
    check_compatible(e, f)


def test_different_architectures_are_refused():
    x = torch.randn(8, 40)
    with pytest.raises(ArchitectureMismatchError, match="different architectures: MLP vs CNN1d"):
        match_activations(MLP(40, 10, hidden=(8,)), CNN1d(40, 10, channels=(8,)), x)
    with pytest.raises(ArchitectureMismatchError, match="different layers"):
        repair(MLP(40, 10, hidden=(8, 8)), MLP(40, 10, hidden=(8,)), 0.5, x)


def test_unsupported_layers_are_named():
    model = MLP(40, 10, hidden=(16, 16))
    model.blocks[1] = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU())
    with pytest.raises(UnsupportedLayerError, match="LayerNorm"):
        permutation_spec(model)
    cnn = CNN1d(40, 10, channels=(8, 8))
    cnn.blocks[1][0] = nn.Conv1d(8, 8, 5, padding=2, groups=2)
    with pytest.raises(UnsupportedLayerError, match="Conv1d with groups=2"):
        permutation_spec(cnn)
    with pytest.raises(UnsupportedLayerError, match="unsupported model type GRU"):
        permutation_spec(nn.GRU(4, 4))
    extra = MLP(40, 10, hidden=(16,))
    extra.gate = nn.Linear(3, 3)  # a parameter the spec knows nothing about
    with pytest.raises(UnsupportedLayerError, match="unsupported layer type Linear at 'gate'"):
        permutation_spec(extra)


def test_other_bad_input():
    a, b, x = _pair("mlp")
    with pytest.raises(ShammieError, match="choose 'activation' or 'weight'"):
        align(a, b, x, method="telepathy")
    with pytest.raises(ShammieError, match="needs inputs"):
        align(a, b)
    with pytest.raises(ShammieError, match="needs calibration inputs"):
        interpolation_curve(
            a, b, {"test": (x, torch.zeros(len(x), dtype=torch.long))}, [0, 1], fix="repair"
        )
    with pytest.raises(ShammieError, match="no BatchNorm"):
        reset_bn_stats(a, x)
    with pytest.raises(ShammieError, match="not a permutation"):
        apply_permutation(
            a, {p: torch.zeros(n, dtype=torch.long) for p, n in permutation_spec(a).perms.items()}
        )


def test_config_profiles_and_errors():
    quick = ConnectivityConfig.for_profile("quick")
    assert quick.alpha_grid()[len(quick.alpha_grid()) // 2] == 0.5
    full = ConnectivityConfig.for_profile("full")
    assert (
        full.dataset == "cifar10"
        and full.bn_network in full.networks
        and full.plain_network in full.networks
    )
    auto = ConnectivityConfig.for_profile("quick", networks=("mlp-64", "mlp-16", "cnn-8"))
    assert (auto.plain_network, auto.bn_network, auto.sweep_family) == ("mlp-64", "cnn-8", "mlp")
    with pytest.raises(ConfigError, match="does not fit dataset"):
        ConnectivityConfig.for_profile("quick", networks=("resnet20-1",))
    with pytest.raises(ConfigError, match="odd number"):
        ConnectivityConfig.for_profile("quick", alphas=10)
    with pytest.raises(ConfigError, match="family-width"):
        parse_network("mlp512")


# --------------------------------------------------------------------------------------------
# The full profile's code path (CIFAR-10 replaced by random images)


class _FakeCifar(torch.utils.data.Dataset):
    """Stands in for torchvision's CIFAR10: `.data` (N, 32, 32, 3) uint8, `.targets`, tensor items."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [int(t) for t in rng.integers(0, 10, size=n)]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return torch.as_tensor(self.data[i]).permute(2, 0, 1).float() / 255.0, self.targets[i]


def test_full_profile_path_on_stand_in_cifar(monkeypatch):
    import shammie.data
    from shammie.connectivity import load_theme_data, study_network

    monkeypatch.setattr(
        shammie.data,
        "load_cifar10",
        lambda root=None, train=True, **kw: _FakeCifar(48 if train else 16, int(train)),
    )
    cfg = ConnectivityConfig.for_profile("full", networks=("resnet20-1",), calib_samples=32)
    cfg = cfg.replace(eval_train_samples=16, stats_batch=16)
    data = load_theme_data(cfg)
    assert data.input_shape == (3, 32, 32) and data.calib.shape == (32, 3, 32, 32)
    assert abs(float(data.x_train.mean())) < 1.5  # normalized with the CIFAR-10 mean and std
    loader = data.fit_data(seed=0, batch_size=16)
    assert isinstance(loader, torch.utils.data.DataLoader) and loader.batch_size == 16
    a = _calibrate_bn(ResNet20(1), data.calib, 0)
    b = _calibrate_bn(ResNet20(1), data.calib, 1)
    methods = {
        "bn": (("aligned + BN reset", True, "reset_bn"),),
        "folded": (("aligned + REPAIR", True, "repair"),),
    }
    study = study_network(
        "resnet20-1", a, b, data, [0.0, 0.5, 1.0], stats_batch=cfg.stats_batch, methods=methods
    )
    summary = barrier_summary(study.curves)
    assert len(summary) == 2 and set(summary["variant"]) == {"bn", "folded"}
    # REPAIR with two statistics batches (layer by layer) still hits its targets on the calibration data
    fa, fb = study.models["folded"]["a"], study.models["folded"]["b_aligned"]
    points = repair_points(fa)
    out = repair(fa, fb, 0.5, data.calib, batch_size=16)
    sa, sb, so = (channel_stats(m, data.calib, points) for m in (fa, fb, out))
    for p in points:
        torch.testing.assert_close(so[p][1], 0.5 * (sa[p][1] + sb[p][1]), atol=1e-4, rtol=1e-3)


# --------------------------------------------------------------------------------------------
# Pairs, trends and the identity checks of the notebook


def test_pair_seeds_are_disjoint():
    seeds = pair_seeds(7, 3)
    assert seeds == [(7, 8), (9, 10), (11, 12)]
    flat = [s for p in seeds for s in p]
    assert len(set(flat)) == len(flat)


def test_pair_slopes_and_per_pair():
    rows = [{"pair": p, "width": w, "value": 0.1 * p + slope * np.log2(w), "method": "m"}
            for p, slope in ((0, 0.05), (1, 0.1), (2, -0.02)) for w in (16, 64, 256)]
    t = pd.DataFrame(rows)
    np.testing.assert_allclose(pair_slopes(t, "width", "value", log2_x=True), [0.05, 0.1, -0.02], atol=1e-12)
    np.testing.assert_allclose(per_pair(t.sample(frac=1, random_state=0), "value", width=16, method="m"),
                               [0.1 * p + s * 4 for p, s in ((0, 0.05), (1, 0.1), (2, -0.02))])
    with pytest.raises(ShammieError, match="two distinct"):
        pair_slopes(t[t.width == 16], "width", "value")
    with pytest.raises(ShammieError, match="no rows"):
        per_pair(t, "value", width=3)


def test_barrier_summary_per_pair_and_normalised():
    rows = []
    for pair, mid in ((0, 0.5), (1, 0.7)):
        for method, m in (("aligned", mid), ("aligned + REPAIR", 0.85)):
            c = _curve([0.9, m, 0.9], [0.1, 1.0, 0.1])
            c.insert(0, "method", method)
            c.insert(0, "variant", "folded")
            c.insert(0, "network", "mlp-64")
            c.insert(3, "pair", pair)
            rows.append(c)
    s = barrier_summary(pd.concat(rows))
    rep = s[s.method == "aligned + REPAIR"].sort_values("pair")
    np.testing.assert_allclose(rep["reduction"], [1 - 0.05 / 0.4, 1 - 0.05 / 0.2])
    np.testing.assert_allclose(rep["norm_barrier"], [0.05 / 0.9, 0.05 / 0.9])


def test_max_output_gap_is_zero_for_a_permuted_copy():
    model, x = _trained_like("cnn_gap_bn")
    spec = permutation_spec(model)
    b = apply_permutation(model, random_permutations(spec, torch.Generator().manual_seed(1)), spec)
    assert max_output_gap(model, b, x) < 1e-4
    assert max_output_gap(model, fold_batchnorm(model), x) < 1e-3


def test_config_pairs_depths_and_split():
    quick = ConnectivityConfig.for_profile("quick")
    assert quick.pairs >= 3 and len(quick.depths) >= 3 and len({n for n in quick.networks if n.startswith("mlp")}) >= 3
    with pytest.raises(ConfigError, match="train_split"):
        ConnectivityConfig.for_profile("quick", train_split=1.0)
    with pytest.raises(ConfigError, match="depth sweep"):
        ConnectivityConfig.for_profile("quick", depth_network="cnn-16")
    with pytest.raises(ConfigError, match="pairs"):
        ConnectivityConfig.for_profile("quick", pairs=0)
