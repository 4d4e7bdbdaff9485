"""Facts about shammie.calibration: metrics agree with trusted libraries, temperature scaling recovers a
planted temperature, LATES contains TS and never fits worse on validation, argmax invariances, hooks,
and clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from shammie.calibration import (
    ENSEMBLE,
    LATES,
    BestLayerTS,
    CalibrationInputError,
    EqualWeightLATES,
    LatesConfig,
    MCDropout,
    NotFittedError,
    TemperatureScaling,
    Uncalibrated,
    VectorScaling,
    accuracy,
    add_ensemble_rows,
    auroc_correct,
    bootstrap_ci,
    brier,
    build_mc_backbone,
    calibration_metrics,
    classwise_ece,
    compare_methods,
    dropout_only_in_head,
    ece,
    fit_probe,
    layer_features,
    layer_outputs,
    mc_dropout_mode,
    mce,
    nll,
    paired_test,
    per_seed_diff,
    reliability_data,
    resnet18_with_dropout,
    severity_table,
    to_probs,
)
from shammie.config import ConfigError
from shammie.models import CNN1d


def random_problem(n=3000, k=10, scale=3.0, seed=0):
    """Random float64 logits and labels drawn from the logits' own softmax (so accuracy is well above chance)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z, y


def planted(n, k, temperature, seed=0, scale=2.0):
    """Logits z and labels sampled from softmax(z / temperature): TS should recover `temperature`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    y = torch.multinomial(torch.softmax(z / temperature, 1), 1, generator=g).squeeze(1)
    return z, y


# ------------------------------------------------------------------------------------------------
# metrics against trusted implementations


@pytest.mark.parametrize("k,scale,seed", [(2, 2.0, 0), (5, 1.0, 1), (10, 3.0, 2), (10, 0.3, 3)])
def test_ece_and_mce_agree_with_torchmetrics(k, scale, seed):
    z, y = random_problem(n=2500, k=k, scale=scale, seed=seed)
    for bins in (15, 10):
        ours = ece(z, y, n_bins=bins)
        ref = float(multiclass_calibration_error(z, y, num_classes=k, n_bins=bins, norm="l1"))
        assert ours == pytest.approx(ref, abs=1e-6)
        ours_max = mce(z, y, n_bins=bins)
        ref_max = float(multiclass_calibration_error(z, y, num_classes=k, n_bins=bins, norm="max"))
        assert ours_max == pytest.approx(ref_max, abs=1e-6)
    # probabilities give the same numbers as the logits they come from
    p = torch.softmax(z, 1)
    assert ece(p, y) == pytest.approx(ece(z, y), abs=1e-12)
    assert ece(p.numpy(), y.numpy(), kind="probs") == pytest.approx(ece(z, y, kind="logits"), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nll_and_brier_agree_with_torch_and_sklearn(seed):
    z, y = random_problem(n=2000, k=7, scale=2.5, seed=seed)
    p = torch.softmax(z, 1).numpy()
    assert nll(z, y) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)
    assert nll(p, y) == pytest.approx(log_loss(y.numpy(), p, labels=list(range(7))), rel=1e-9)
    ref_brier = brier_score_loss(y.numpy(), p, labels=list(range(7)), scale_by_half=False)
    assert brier(z, y) == pytest.approx(ref_brier, rel=1e-10)
    assert brier(p, y) == pytest.approx(ref_brier, rel=1e-10)


def test_auroc_agrees_with_sklearn_including_ties():
    z, y = random_problem(n=1500, k=10, scale=1.5, seed=4)
    p = torch.softmax(z, 1).numpy()
    conf, hit = p.max(1), p.argmax(1) == y.numpy()
    assert auroc_correct(p, y) == pytest.approx(roc_auc_score(hit, conf), abs=1e-12)
    coarse = np.round(p, 1)  # many tied confidences
    coarse /= coarse.sum(1, keepdims=True)
    c2, h2 = coarse.max(1), coarse.argmax(1) == y.numpy()
    assert auroc_correct(coarse, y, kind="probs") == pytest.approx(roc_auc_score(h2, c2), abs=1e-12)
    # all predictions right: AUROC undefined
    assert math.isnan(auroc_correct(np.eye(3)[[0, 1, 2]], [0, 1, 2]))


def _naive_ece(conf, hit, edges_of_bins):
    total = 0.0
    for members in edges_of_bins:
        if len(members):
            total += len(members) / len(conf) * abs(hit[members].mean() - conf[members].mean())
    return total


def test_equal_mass_ece_bins_hold_equal_counts_and_match_a_direct_computation():
    z, y = random_problem(n=3000, k=10, scale=2.0, seed=5)
    p = torch.softmax(z, 1).numpy()
    conf, hit = p.max(1), (p.argmax(1) == y.numpy()).astype(float)
    groups = np.array_split(np.argsort(conf, kind="stable"), 15)
    assert ece(p, y, binning="mass") == pytest.approx(_naive_ece(conf, hit, groups), abs=1e-12)
    rd = reliability_data(p, y, binning="mass")
    assert set(rd["count"]) == {200}
    assert (rd["lower"].to_numpy()[1:] >= rd["upper"].to_numpy()[:-1]).all()  # bins ordered by confidence


def test_equal_mass_ece_does_not_depend_on_the_order_of_tied_examples():
    # 600 examples, a third of them saturated at confidence exactly 1.0 (some right, some wrong), the rest
    # on a coarse grid of tied values: the same examples in any order must give the same ECE and bins
    rng = np.random.default_rng(0)
    n, k = 600, 4
    conf = np.concatenate([np.ones(200), rng.choice([0.4, 0.55, 0.7, 0.85], size=400)])
    pred = rng.integers(0, k, n)
    p = np.zeros((n, k))
    rest = (1 - conf) / (k - 1)
    p[:] = rest[:, None]
    p[np.arange(n), pred] = conf
    y = np.where(rng.random(n) < np.clip(conf - 0.1, 0, 1), pred, (pred + 1) % k)
    values = set()
    for order_seed in range(6):
        order = np.random.default_rng(order_seed).permutation(n)
        values.add(ece(p[order], y[order], binning="mass", kind="probs"))
        rd = reliability_data(p[order], y[order], binning="mass", kind="probs")
        assert rd["count"].sum() == n
        full = rd[rd["count"] > 0]
        assert (full["lower"].to_numpy()[1:] > full["upper"].to_numpy()[:-1]).all()  # a tie never spans two bins
    assert len({round(v, 12) for v in values}) == 1
    # the same value as a direct computation that groups equal confidences by value
    groups = [np.flatnonzero(conf == c) for c in np.unique(conf)]
    hit = (pred == y).astype(float)
    assert ece(p, y, binning="mass", kind="probs") == pytest.approx(_naive_ece(conf, hit, groups), abs=1e-12)
    # all confidences equal: one bin, ECE = |accuracy - confidence|
    flat = np.full((50, 2), 0.5)
    yy = np.r_[np.zeros(30, int), np.ones(20, int)]
    assert ece(flat, yy, binning="mass", kind="probs") == pytest.approx(abs(0.6 - 0.5))
    # fewer examples than bins works and keeps every example
    assert reliability_data(p[:5], y[:5], binning="mass", kind="probs")["count"].sum() == 5


# ------------------------------------------------------------------------------------------------
# the fast top-label path (block by block, class-major, hits without argmax, equal-mass bins without a
# sort) against the direct computation it replaced


def _direct_top(scores, labels, kind):
    """The previous implementation: an (N, K) float64 copy, argmax (first of tied maxima), and for logits
    1 / sum_j exp(z_j - max z) over rows."""
    s = scores.detach().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, np.float64)
    y = np.asarray(labels)
    pred = s.argmax(1)
    top = s[np.arange(len(s)), pred]
    conf = top if kind == "probs" else 1.0 / np.exp(s - top[:, None]).sum(1)
    return conf, (pred == y).astype(np.float64)


def _sorted_mass_bins(conf, n_bins):
    """Equal-mass bins from a full sort (the previous `_mass_edges`)."""
    s, n = np.sort(conf), len(conf)
    cuts = (np.arange(1, n_bins) * n + n_bins - 1) // n_bins
    below, above = s[np.clip(cuts - 1, 0, n - 1)], s[np.clip(cuts, 0, n - 1)]
    return np.searchsorted(np.where(cuts >= n, np.inf, (below + above) / 2), conf, side="left")


def _direct_metrics(conf, hit, n_bins=15):
    out = {}
    for binning in ("width", "mass"):
        idx = (np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1) if binning == "width"
               else _sorted_mass_bins(conf, n_bins))
        count = np.bincount(idx, minlength=n_bins)
        gap = np.abs(np.bincount(idx, hit, n_bins) - np.bincount(idx, conf, n_bins))
        out[binning] = (gap.sum() / len(conf), (gap[count > 0] / count[count > 0]).max(), count)
    return out


def _tied_problem(n, k, dtype, seed):
    """Logits with many exact ties at the maximum (small integers), labels often on a later tied class."""
    rng = np.random.default_rng(seed)
    z = rng.integers(-2, 3, size=(n, k)).astype(dtype)
    y = np.where(rng.random(n) < 0.5, np.argmax(z, 1), rng.integers(0, k, n))
    tied_later = np.flatnonzero((z == z.max(1, keepdims=True)).sum(1) > 1)
    y[tied_later[::2]] = k - 1  # some labels on the last class, tied with the max or not
    return z, y


@pytest.mark.parametrize("k,dtype", [(2, np.float64), (3, np.float16), (10, np.float32), (10, np.int64),
                                     (63, np.float64), (64, np.float32), (130, np.float16)])
def test_fast_path_equals_the_direct_computation(k, dtype, monkeypatch):
    from shammie.calibration import metrics

    monkeypatch.setattr(metrics, "_BLOCK", 1 << 10)  # several blocks and a short last one, even for small n
    n = 1500
    for case, (z, y) in enumerate((_tied_problem(n, k, dtype, seed=k),
                                   (np.random.default_rng(k).normal(0, 3, (n, k)).astype(dtype),
                                    np.random.default_rng(k + 1).integers(0, k, n)))):
        conf, hit = _direct_top(z, y, "logits")
        top = metrics._top_label(metrics._scores_array(z), y.astype(np.int64), "auto", 15)
        assert top.kind == "logits"
        np.testing.assert_allclose(top.conf, conf, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(top.hit, hit)  # ties resolved to the first maximum, as argmax
        ref, ref_same_conf = _direct_metrics(conf, hit), _direct_metrics(top.conf, hit)
        for binning in ("width", "mass"):
            # equal-mass bins split groups of equal confidences by value: confidences equal in exact arithmetic
            # (integer logits) but an ulp apart, by the order of a K-term sum, may fall on either side of an edge,
            # so with the tied logits only the same confidences binned directly must give the same value
            tied = case == 0
            want = ref_same_conf if (binning == "mass" and tied) else ref
            assert ece(z, y, binning=binning) == pytest.approx(want[binning][0], abs=1e-12)
            assert mce(z, y, binning=binning) == pytest.approx(want[binning][1], abs=1e-12)
            assert reliability_data(z, y, binning=binning)["count"].tolist() == want[binning][2].tolist()
        # probabilities: the confidences are read, not computed, so the values are the same to the last bit
        p = np.round(F.softmax(torch.as_tensor(z, dtype=torch.float64), 1).numpy(), 2)
        p /= p.sum(1, keepdims=True)  # coarse grid: tied maxima and confidences exactly on bin edges
        ref = _direct_metrics(*_direct_top(p, y, "probs"))
        for binning in ("width", "mass"):
            assert ece(p, y, binning=binning) == ref[binning][0]
            assert ece(p, y, binning=binning, kind="probs") == ref[binning][0]
            assert mce(p, y, binning=binning) == ref[binning][1]


def test_fast_path_exp_is_the_same_with_numpy_or_torch(monkeypatch):
    from shammie.calibration import metrics

    z, y = random_problem(n=5000, k=10, scale=4.0, seed=11)
    values = {}
    for simd in (True, False):
        monkeypatch.setattr(metrics, "_NUMPY_SIMD_EXP64", simd)
        values[simd] = (ece(z, y), mce(z, y), ece(z.float(), y, binning="mass"), auroc_correct(z, y))
    assert values[True] == pytest.approx(values[False], abs=1e-12)


def test_fast_equal_mass_bins_equal_the_sorted_ones_on_edge_cases():
    from shammie.calibration.metrics import _MASS_CELLS, _bin_key, _mass_bins

    rng = np.random.default_rng(3)
    cases = {
        "random": rng.random(5000),
        "saturated": np.r_[np.ones(3000), rng.random(2000)],  # 60% exactly 1.0: edges and ties in the top cell
        "one cell": 0.5 + rng.random(4000) * 1e-6,  # every confidence in one cell of the fine grid
        "all equal": np.full(999, 0.3),
        "grid": rng.choice(np.arange(1, 16) / 15, 3000),  # exactly on equal-width edges, many ties
        "cell edges": rng.choice(np.arange(0, _MASS_CELLS + 1) / _MASS_CELLS, 3000),
        "tiny": np.array([0.9, 0.2, 0.9]),
        "one": np.array([0.7]),
    }
    for name, conf in cases.items():
        cell = _bin_key(conf.copy(), -_MASS_CELLS).astype(np.int64)
        for n_bins in (1, 2, 10, 15, 7000):
            np.testing.assert_array_equal(_mass_bins(conf, cell, n_bins), _sorted_mass_bins(conf, n_bins),
                                          err_msg=f"{name}, {n_bins} bins")


def test_fast_path_keeps_the_clear_errors(monkeypatch):
    from shammie.calibration import metrics

    monkeypatch.setattr(metrics, "_BLOCK", 1 << 10)
    z, y = random_problem(n=3000, k=10, seed=12)
    for bad_value in (float("nan"), float("inf"), float("-inf")):
        bad = z.float().clone()
        bad[2900, 7] = bad_value  # in the last block, not the first
        for fn in (ece, mce, reliability_data, auroc_correct, calibration_metrics):
            with pytest.raises(CalibrationInputError, match="contains 1 NaN or infinite"):
                fn(bad, y)
    p = torch.softmax(z, 1)
    p[2900] = 0.5  # a row of the last block sums to 5: not probabilities
    with pytest.raises(CalibrationInputError, match="not probabilities"):
        ece(p, y, kind="probs")
    assert ece(p, y) == pytest.approx(ece(p, y, kind="logits"), abs=1e-15)  # "auto": read as logits, as before
    with pytest.raises(CalibrationInputError, match="real numbers"):
        ece(z.numpy().astype(complex), y)
    with pytest.raises(CalibrationInputError, match="binning"):
        ece(z, y, binning="quantile")
    # dtypes numpy lacks are read through float32
    assert ece(z.bfloat16(), y) == pytest.approx(ece(z.bfloat16().float(), y), abs=1e-15)


def test_calibrators_refuse_probabilities_instead_of_guessing():
    z, y = random_problem(200, 5)
    p = torch.softmax(z, 1)
    for make in (TemperatureScaling, VectorScaling, Uncalibrated):
        with pytest.raises(CalibrationInputError, match="takes logits.*np.log"):
            make().fit(p, y)
    with pytest.raises(CalibrationInputError, match="takes logits"):
        LATES().fit(torch.stack([p, p]), y)
    with pytest.raises(CalibrationInputError, match="takes logits"):
        TemperatureScaling().fit(z, y).transform(p)
    # the documented way out: log-probabilities are logits of the same distribution
    ts = TemperatureScaling().fit(torch.log(p), y)
    assert ts.temperature == pytest.approx(TemperatureScaling().fit(z, y).temperature, rel=1e-6)


def test_reliability_data_reproduces_ece_and_counts():
    z, y = random_problem(n=2000, k=10, scale=2.0, seed=6)
    rd = reliability_data(z, y)
    assert rd["count"].sum() == 2000
    full = rd["count"] > 0
    from_bins = float((rd["count"][full] / 2000 * (rd["accuracy"][full] - rd["confidence"][full]).abs()).sum())
    assert from_bins == pytest.approx(ece(z, y), abs=1e-12)
    assert mce(z, y) == pytest.approx(float(rd["gap"].abs().max()), abs=1e-12)


def test_classwise_ece_matches_a_direct_computation_and_bins_edges():
    z, y = random_problem(n=1200, k=4, scale=1.5, seed=7)
    p = torch.softmax(z, 1).numpy()
    yy = y.numpy()
    total = 0.0
    for c in range(4):
        idx = np.clip(np.ceil(p[:, c] * 15).astype(int) - 1, 0, 14)
        for b in range(15):
            m = idx == b
            if m.any():
                total += m.sum() / len(yy) * abs((yy[m] == c).mean() - p[m, c].mean())
    assert classwise_ece(p, yy) == pytest.approx(total / 4, abs=1e-12)
    # equal-width convention: confidence exactly 1 lands in the last bin, (lower, upper] otherwise
    probs = np.array([[1.0, 0.0], [0.6, 0.4], [0.5, 0.5]])
    rd = reliability_data(probs, [0, 1, 0], n_bins=10, kind="probs")
    assert rd["count"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 1]


def test_calibration_metrics_bundle_matches_the_single_functions():
    z, y = random_problem(n=1000, k=10, seed=8)
    m = calibration_metrics(z, y)
    assert m["acc"] == accuracy(z, y)
    assert m["nll"] == pytest.approx(nll(z, y), abs=1e-12)
    assert m["ece"] == pytest.approx(ece(z, y), abs=1e-12)
    assert m["ece_mass"] == pytest.approx(ece(z, y, binning="mass"), abs=1e-12)
    assert m["auroc"] == pytest.approx(auroc_correct(z, y), abs=1e-12)
    assert np.allclose(to_probs(z).sum(1), 1)


def test_bootstrap_ci_covers_the_estimate_and_has_the_binomial_width():
    rng = np.random.default_rng(0)
    hits = (rng.random(4000) < 0.8).astype(float)
    ci = bootstrap_ci(np.mean, hits, n_boot=400, seed=1)
    assert ci["low"] < ci["estimate"] < ci["high"]
    se = math.sqrt(0.8 * 0.2 / 4000)
    assert ci["std"] == pytest.approx(se, rel=0.2)
    assert ci == bootstrap_ci(np.mean, hits, n_boot=400, seed=1)  # seeded
    with pytest.raises(CalibrationInputError, match="different lengths"):
        bootstrap_ci(lambda a, b: 0.0, np.zeros(3), np.zeros(4))


def test_paired_test_matches_scipy_and_counts_wins():
    from scipy import stats

    a = np.array([0.10, 0.12, 0.09, 0.11, 0.13])
    b = np.array([0.12, 0.13, 0.10, 0.10, 0.15])
    t = paired_test(a, b)
    assert t["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert t["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert t["wins"] == 4 and paired_test(a, b, higher_is_better=True)["wins"] == 1
    assert t["mean_diff"] == pytest.approx((a - b).mean())
    assert math.isnan(paired_test(a, a)["p_t"])


# ------------------------------------------------------------------------------------------------
# temperature scaling


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_temperature_scaling_recovers_a_planted_temperature(temperature):
    z, y = planted(20000, 10, temperature, seed=11)
    ts = TemperatureScaling().fit(z, y)
    assert ts.temperature == pytest.approx(temperature, rel=0.05)
    assert ts.fit_info_["converged"]
    # the fitted T is the minimiser: a bounded scalar search over T agrees
    from scipy.optimize import minimize_scalar

    ref = minimize_scalar(lambda t: float(F.cross_entropy(z / t, y)), bounds=(0.05, 20), method="bounded",
                          options={"xatol": 1e-9})
    assert ts.temperature == pytest.approx(ref.x, rel=1e-4)
    assert ts.fit_info_["val_nll"] <= float(F.cross_entropy(z, y)) + 1e-12


def test_temperature_scaling_never_changes_the_predicted_class():
    for seed in range(3):
        z, y = planted(3000, 10, 3.0, seed=seed)
        ts = TemperatureScaling().fit(z, y)
        z_test, _ = random_problem(2000, 10, seed=100 + seed)
        assert ts.temperature > 1.5  # an over-confident input was planted
        assert np.array_equal(ts.transform(z_test).argmax(1), z_test.numpy().argmax(1))
        assert accuracy(ts.transform(z_test), _) == accuracy(z_test, _)


def test_temperature_scaling_lowers_the_ece_of_overconfident_logits():
    z, y = planted(8000, 10, 2.0, seed=3)
    ts = TemperatureScaling().fit(z[:4000], y[:4000])
    assert ece(ts.transform(z[4000:]), y[4000:]) < 0.5 * ece(z[4000:], y[4000:])


# ------------------------------------------------------------------------------------------------
# LATES


def layered_problem(n=3000, k=10, layers=4, seed=0, informative_early=True):
    """Per-layer logits (L, N, K): the last layer is an over-confident, partly wrong network; earlier layers
    are weaker views of the true class (or pure noise when informative_early=False)."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(n, k, generator=g, dtype=torch.float64) * 2.0
    y = torch.multinomial(torch.softmax(truth, 1), 1, generator=g).squeeze(1)
    out = []
    for layer in range(layers):
        noise = torch.randn(n, k, generator=g, dtype=torch.float64)
        if layer == layers - 1:
            out.append(3.0 * (truth + 1.5 * noise))
        elif informative_early:
            out.append(0.7 * truth + 1.2 * noise)
        else:
            out.append(2.0 * noise)
    return torch.stack(out), y


def test_lates_with_zero_earlier_weights_equals_temperature_scaling():
    z, y = layered_problem(seed=1)
    ts = TemperatureScaling().fit(z[-1], y)
    w = np.zeros(z.shape[0])
    w[-1] = 1.0 / ts.temperature
    lates = LATES.from_weights(w, n_classes=z.shape[-1])
    np.testing.assert_allclose(lates.transform(z), ts.transform(z[-1]), rtol=0, atol=1e-12)
    same = TemperatureScaling.from_temperature(ts.temperature, n_classes=z.shape[-1])
    np.testing.assert_allclose(same.transform(z[-1]), ts.transform(z[-1]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed,informative", [(0, True), (1, True), (2, False), (3, False), (4, True)])
def test_lates_validation_nll_is_never_above_temperature_scaling(seed, informative):
    z, y = layered_problem(n=1500, seed=seed, informative_early=informative)
    ts = TemperatureScaling().fit(z[-1], y)
    lates = LATES().fit(z, y)
    assert lates.fit_info_["val_nll"] <= ts.fit_info_["val_nll"] + 1e-12
    assert np.all(lates.weights >= 0)
    eq = EqualWeightLATES().fit(z, y)
    assert eq.weights == pytest.approx(np.full(z.shape[0], eq.weights[0]))
    if informative:  # useful early layers earn weight and lower the NLL clearly
        assert lates.fit_info_["val_nll"] < ts.fit_info_["val_nll"] - 0.01
        assert lates.weights[:-1].max() > 0.05


def test_mc_dropout_lates_is_never_above_mc_dropout_ts_on_validation():
    z, y = layered_problem(n=1200, seed=5)
    g = torch.Generator().manual_seed(0)
    samples = z.unsqueeze(0) + 0.5 * torch.randn(6, *z.shape, generator=g, dtype=torch.float64)  # (S, L, N, K)
    mc_ts = MCDropout(TemperatureScaling()).fit(samples[:, -1], y)
    mc_lates = MCDropout(LATES()).fit(samples, y)
    assert mc_lates.fit_info_["val_nll"] <= mc_ts.fit_info_["val_nll"] + 1e-12
    out = mc_lates.transform(samples)
    assert out.shape == (1200, 10)
    # the output is the log of the mean over samples of the calibrated probabilities
    w = torch.from_numpy(mc_lates.weights)
    probs = torch.softmax(torch.einsum("l,slnk->snk", w, samples), -1).mean(0)
    np.testing.assert_allclose(np.exp(out), probs.numpy(), atol=1e-12)
    # MC + uncalibrated is the plain MC average
    np.testing.assert_allclose(np.exp(MCDropout(Uncalibrated()).fit(samples[:, -1], y).transform(samples[:, -1])),
                               torch.softmax(samples[:, -1], -1).mean(0).numpy(), atol=1e-12)


def test_lates_can_change_the_predicted_class_and_raise_accuracy():
    z, y = layered_problem(n=4000, seed=6)
    lates = LATES().fit(z[:, :2000], y[:2000])
    pred = lates.transform(z[:, 2000:]).argmax(1)
    assert (pred != z[-1, 2000:].numpy().argmax(1)).mean() > 0.02
    assert accuracy(lates.transform(z[:, 2000:]), y[2000:]) > accuracy(z[-1, 2000:], y[2000:]) + 0.01
    vs = VectorScaling().fit(z[-1, :2000], y[:2000])
    assert vs.fit_info_["val_nll"] <= TemperatureScaling().fit(z[-1, :2000], y[:2000]).fit_info_["val_nll"] + 1e-9


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_gets_a_clear_error():
    z, y = random_problem(100, 5)
    with pytest.raises(CalibrationInputError, match="different lengths"):
        ece(z, y[:-1])
    with pytest.raises(CalibrationInputError, match="different lengths"):
        TemperatureScaling().fit(z, y[:50])
    with pytest.raises(CalibrationInputError, match="out of range"):
        nll(z, torch.full((100,), 5))
    with pytest.raises(CalibrationInputError, match="out of range"):
        TemperatureScaling().fit(z, torch.full((100,), -1))
    bad = z.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(CalibrationInputError, match="NaN"):
        ece(bad, y)
    with pytest.raises(CalibrationInputError, match="NaN"):
        LATES().fit(torch.stack([z, bad]), y)
    with pytest.raises(NotFittedError, match="fit"):
        TemperatureScaling().transform(z)
    with pytest.raises(NotFittedError, match="fit"):
        MCDropout(LATES()).transform(torch.stack([z, z]).unsqueeze(0))
    with pytest.raises(CalibrationInputError, match=r"\(L layers, N examples, K classes\)"):
        LATES().fit(z, y)
    with pytest.raises(CalibrationInputError, match="integer"):
        ece(z, y.double() + 0.5)
    with pytest.raises(CalibrationInputError, match="kind"):
        ece(z, y, kind="probabilities")
    with pytest.raises(CalibrationInputError, match="not probabilities"):
        ece(z, y, kind="probs")
    with pytest.raises(CalibrationInputError, match="n_bins"):
        ece(z, y, n_bins=0)
    ts = TemperatureScaling().fit(z, y)
    with pytest.raises(CalibrationInputError, match="5 classes"):
        ts.transform(torch.randn(10, 3))
    with pytest.raises(CalibrationInputError, match="unfitted"):
        MCDropout(ts)


# ------------------------------------------------------------------------------------------------
# per-layer features, MC dropout, probes


def test_layer_features_are_the_pooled_block_outputs():
    torch.manual_seed(0)
    model = CNN1d(40, 10, channels=(8, 12, 16), strides=(1, 2, 2), dropout=0.2).eval()
    x = torch.randn(37, 40)
    feats, logits = layer_features(model, x, batch_size=10)
    h = x.unsqueeze(1)
    for block, f in zip(model.blocks, feats):
        h = block(h)
        torch.testing.assert_close(f, h.mean(-1))
    torch.testing.assert_close(logits, model(x))
    assert [f.shape for f in feats] == [(37, 8), (37, 12), (37, 16)]
    assert not model.training


def test_resnet_stem_is_tapped_even_though_forward_never_calls_the_container():
    torch.manual_seed(0)
    model = resnet18_with_dropout(10, dropout=0.1).eval()
    x = torch.randn(3, 3, 8, 8)
    feats, logits = layer_features(model, x)
    assert [f.shape[1] for f in feats] == [64, 64, 128, 256, 512]
    with torch.no_grad():
        stem = model.relu(model.bn1(model.conv1(x)))
    torch.testing.assert_close(feats[0], stem.mean((2, 3)))
    assert not dropout_only_in_head(model)


def test_mc_dropout_mode_samples_dropout_but_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    model = CNN1d(40, 10, channels=(8, 8), batchnorm=True, dropout=0.5)
    bn = model.blocks[0][1]
    before = bn.running_mean.clone()
    x = torch.randn(20, 40)
    with torch.no_grad(), mc_dropout_mode(model):
        a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(bn.running_mean, before)
    assert model.training  # restored


def test_head_only_mc_dropout_is_unbiased_and_matches_eval_outputs():
    torch.manual_seed(0)
    model = CNN1d(40, 10, channels=(8, 8), dropout=0.0)
    model.head = nn.Sequential(nn.Dropout(0.3), model.head)
    assert dropout_only_in_head(model)
    x = torch.randn(50, 40)
    torch.manual_seed(1)
    out = layer_outputs(model, x, mc_samples=4000)
    feats, logits = layer_features(model, x)
    torch.testing.assert_close(out.logits, logits)
    assert out.mc_logits.shape == (4000, 50, 10) and out.mc_features[0].shape == (4000, 50, 8)
    # inverted dropout before a linear head: the MC mean of the logits is the eval-mode logits
    assert torch.allclose(out.mc_logits.mean(0), logits, atol=0.05)
    assert out.mc_logits.std(0).mean() > 0.01


def test_linear_probe_separates_a_planted_linear_problem():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.randint(0, 4, (800,), generator=g)
    f = centers[y] + torch.randn(800, 16, generator=g) + 5.0  # offset: standardisation must handle it
    probe = fit_probe(f, y, num_classes=4)
    assert probe.train_acc > 0.97
    assert probe.logits(f).shape == (800, 4)


# ------------------------------------------------------------------------------------------------
# config and tables


def test_config_profiles_and_validation():
    quick = LatesConfig.for_profile("quick")
    assert quick.seeds == 5 and len(quick.corruptions) >= 4 and quick.severities == (1, 2, 3, 4, 5)
    assert LatesConfig.for_profile("full").dataset == "cifar10"
    assert LatesConfig.for_profile("smoke").seeds >= 2  # the paired test needs two seeds
    with pytest.raises(ConfigError, match="corruption"):
        LatesConfig.for_profile("quick", corruptions=("fog",))
    with pytest.raises(ConfigError, match="mc_dropout"):
        LatesConfig.for_profile("quick", mc_dropout=0.0)
    with pytest.raises(ConfigError, match="3 blocks"):
        LatesConfig.for_profile("quick", channels=(8, 8), strides=(1, 2))
    assert LatesConfig.for_profile("quick").mc_samples >= 30 and LatesConfig.for_profile("quick").mc_dropout >= 0.2
    with pytest.raises(ConfigError, match="training examples"):
        LatesConfig.for_profile("quick", num_samples=3000)


def test_severity_table_and_paired_comparison_on_a_known_frame():
    import pandas as pd

    rows = []
    for seed in range(3):
        for method, base in (("TS", 0.2), ("LATES", 0.1)):
            rows.append({"seed": seed, "method": method, "split": "test", "corruption": "none", "severity": 0,
                         "ece": base + 0.01 * seed})
            for sev in (1, 2):
                for c in ("a", "b"):
                    rows.append({"seed": seed, "method": method, "split": "shift", "corruption": c,
                                 "severity": sev, "ece": base * sev + (0.05 if c == "b" else 0.0)})
    df = pd.DataFrame(rows)
    table = severity_table(df, "ece")
    assert table.loc["TS", 0] == pytest.approx(0.21)
    assert table.loc["LATES", 2] == pytest.approx(0.225)
    t = compare_methods(df, "LATES", "TS", "ece", "test")
    assert t["n"] == 3 and t["wins"] == 3 and t["mean_diff"] == pytest.approx(-0.1)
    assert compare_methods(df, "LATES", "TS", "ece", "shift")["n"] == 12


def test_cifar10_data_reads_cifar10c_files_and_falls_back_to_synthetic(tmp_path, monkeypatch):
    import shammie.data as sd
    from shammie.calibration import prepare_data

    g = torch.Generator().manual_seed(0)
    train_set = torch.utils.data.TensorDataset(torch.randn(200, 3, 32, 32, generator=g),
                                               torch.randint(0, 10, (200,), generator=g))
    test_set = torch.utils.data.TensorDataset(torch.randn(40, 3, 32, 32, generator=g),
                                              torch.randint(0, 10, (40,), generator=g))
    monkeypatch.setattr(sd, "load_cifar10", lambda train=True, augment=False, **kw: train_set if train else test_set)
    monkeypatch.setenv("SHAMMIE_DATA", str(tmp_path))
    cfg = LatesConfig.for_profile("full", val_size=100, augment=False, ood_size=8, severities=(1,),
                                  corruptions=("fog", "shift", "frost"))
    data = prepare_data(cfg)  # no CIFAR-10-C: the synthetic corruptions
    assert len(data.y_train) == 100 and len(data.y_val) == 100
    assert sorted(data.ood) == [("gaussian_noise", 1), ("mask", 1), ("scale", 1), ("shift", 1)]
    assert "not found" in data.notes[0] and data.ood_source == "synthetic"

    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    imgs = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    np.save(folder / "fog.npy", imgs)
    np.save(folder / "labels.npy", np.arange(16) % 10)
    data = prepare_data(cfg)
    assert sorted(data.ood) == [("fog", 1), ("shift", 1)]
    assert any("frost" in n for n in data.notes)
    x, y = data.ood[("fog", 1)]
    mean = torch.tensor(sd.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(sd.CIFAR10_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(imgs[:8]).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    assert y.tolist() == list(range(8))
    assert data.ood_source == "CIFAR-10-C + synthetic"


# ------------------------------------------------------------------------------------------------
# baselines that isolate the early layers, the ensemble, the MC-dropout network, per-seed claim values


def test_best_layer_ts_picks_the_most_informative_probe_and_never_the_network():
    z, y = layered_problem(n=3000, layers=4, seed=3)
    z = z.clone()
    z[1] = 2.0 * z[1]  # the same information at another scale: TS makes layers 0-2 comparable...
    z[2] = 0.5 * z[2] + torch.randn(z[2].shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
    best = BestLayerTS().fit(z[:, :2000], y[:2000])
    assert best.layer in (0, 1)  # ...and layer 2, with extra noise, is worse
    ts = TemperatureScaling().fit(z[best.layer, :2000], y[:2000])
    np.testing.assert_allclose(best.transform(z[:, 2000:]), ts.transform(z[best.layer, 2000:]), rtol=1e-6, atol=1e-9)
    assert best.fit_info_["val_nll"] == pytest.approx(ts.fit_info_["val_nll"], rel=1e-9)
    with pytest.raises(CalibrationInputError, match="probe layer"):
        BestLayerTS().fit(z[-1:, :2000], y[:2000])


def test_method_inputs_select_the_layers_each_baseline_names():
    from shammie.calibration.experiment import METHODS, _method_inputs

    det = torch.arange(5, dtype=torch.float64).view(5, 1, 1).expand(5, 3, 2)  # layer l holds the value l
    layers_of = lambda kind: _method_inputs(kind, det)[..., 0, 0].flatten().tolist()  # noqa: E731
    assert layers_of("last") == [4.0]
    assert layers_of("layers") == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert layers_of("no_last_probe") == [0.0, 1.0, 2.0, 4.0]  # layer 3 = the last probe, 4 = the network
    assert layers_of("net_and_last_probe") == [3.0, 4.0]
    assert METHODS["TS (net + last probe)"][1] == "net_and_last_probe"
    assert METHODS["LATES (no last probe)"][1] == "no_last_probe"


def _fake_results(n_seeds=3, n=400, k=4):
    from shammie.calibration.experiment import SeedResult, _log_softmax

    cfg = LatesConfig.for_profile("smoke")
    results = []
    for seed in range(n_seeds):
        g = torch.Generator().manual_seed(seed)
        lp, labels = {}, {}
        for key in (("val", "none", 0), ("test", "none", 0), ("shift", "noise", 1)):
            z = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
            labels[key] = torch.multinomial(torch.softmax(z / 2, 1), 1, generator=g).squeeze(1).numpy()
            lp[key] = _log_softmax(z.numpy()).astype(np.float32)
        results.append(SeedResult(seed=seed, rows=[], temperature=2.0, lates_weights=np.ones(2), probe_acc={},
                                  test_logits={}, y_test=labels[("test", "none", 0)], ece_diff_ci={}, fit_info={},
                                  net_logprobs=lp, labels=labels))
    return cfg, results


def test_ensemble_rows_average_two_networks_probabilities_then_fit_one_temperature():
    cfg, results = _fake_results()
    assert add_ensemble_rows(results, cfg) == 3 * 3
    assert add_ensemble_rows(results, cfg) == 0  # idempotent
    row = next(r for r in results[0].rows if r["split"] == "test")
    a, b = (r.net_logprobs[("test", "none", 0)].astype(np.float64) for r in results[:2])
    mix = np.log((np.exp(a) + np.exp(b)) / 2)
    key = ("val", "none", 0)
    va, vb = (r.net_logprobs[key].astype(np.float64) for r in results[:2])
    ts = TemperatureScaling().fit(np.log((np.exp(va) + np.exp(vb)) / 2), results[0].labels[key])
    y = results[0].labels[("test", "none", 0)]
    assert row["method"] == ENSEMBLE
    assert row["nll"] == pytest.approx(nll(ts.transform(mix), y), rel=1e-6)
    assert row["acc"] == pytest.approx(accuracy(mix, y))
    # one network with itself is that network, and TS on it
    _, same = _fake_results(n_seeds=1)
    same.append(same[0])
    same[1] = type(same[0])(**{**same[0].__dict__, "rows": []})
    add_ensemble_rows(same, cfg)
    r0 = next(r for r in same[0].rows if r["split"] == "test")
    z = same[0].net_logprobs[("test", "none", 0)].astype(np.float64)
    ts1 = TemperatureScaling().fit(same[0].net_logprobs[key].astype(np.float64), same[0].labels[key])
    assert r0["nll"] == pytest.approx(nll(ts1.transform(z), same[0].labels[("test", "none", 0)]), rel=1e-5)


def test_per_seed_diff_pairs_by_seed_and_averages_the_shifted_sets():
    import pandas as pd

    rows = []
    for seed in (2, 0, 1):  # out of order on purpose
        for method, base in (("TS", 0.3), ("LATES", 0.1)):
            rows.append({"seed": seed, "method": method, "split": "test", "nll": base + seed})
            for _corruption, extra in (("a", 0.0), ("b", 1.0)):
                rows.append({"seed": seed, "method": method, "split": "shift", "nll": base * (1 + extra) + seed})
    df = pd.DataFrame(rows)
    np.testing.assert_allclose(per_seed_diff(df, "LATES", "TS", "nll", "test"), [-0.2, -0.2, -0.2])
    np.testing.assert_allclose(per_seed_diff(df, "LATES", "TS", "nll", "shift"), [-0.3, -0.3, -0.3])
    with pytest.raises(CalibrationInputError, match="no rows"):
        per_seed_diff(df, "VS", "TS", "nll")


def test_mc_backbone_has_dropout_after_every_block_and_samples_differ():
    cfg = LatesConfig.for_profile("smoke")

    class D:
        x_train = torch.zeros(4, 40)
        num_classes = 10

    model = build_mc_backbone(cfg, D())
    for block in model.blocks:
        assert isinstance(block[-1], nn.Dropout) and block[-1].p == cfg.mc_dropout
    x = torch.randn(64, 40)
    with mc_dropout_mode(model):
        torch.manual_seed(0)
        a = model(x)
        b = model(x)
    assert not torch.allclose(a, b)
