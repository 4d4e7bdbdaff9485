"""Scaling-law estimators and protocol: planted recovery, nesting, M4's implicit equation, the split,
the RMSE, win fractions, the eps_inf rules, the sphere's exact error, the batched ensemble against
models trained one by one, the benchmark loader on a hand-made CSV, and bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from shammie import scaling_laws as sl
from shammie.core import ShammieError

PLANTED = sl.planted_curves()


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_estimator_recovers_its_own_planted_curve(name):
    x, y, truth = PLANTED[name]
    est = sl.make_estimator(name, eps0=truth.get("eps0", 1.0)).fit(x, y)
    for k, v in truth.items():
        assert est.params[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    assert est.objective < 1e-12
    assert np.allclose(est.predict(x), y, rtol=1e-6)


def test_m4_with_alpha_zero_is_m2_and_recovers_m2_curves():
    x = np.logspace(1, 6, 30)
    assert np.array_equal(sl.m4_curve(x, 2.0, -0.3, 0.0, 0.1, 5.0), 0.1 + 2.0 * x**-0.3)
    x2, y2, truth = PLANTED["M2"]
    m4 = sl.M4(eps0=5.0).fit(x2, y2)
    assert m4.params["alpha"] == pytest.approx(0.0, abs=1e-6)
    assert m4.params["c"] == pytest.approx(truth["c"], rel=1e-5) and m4.params["eps_inf"] == pytest.approx(0.1, rel=1e-5)


def test_m4_alpha_one_is_a_logistic_in_log_x():
    x = np.logspace(-2, 8, 40)
    beta, c, einf, eps0 = 3.0, -0.7, 0.2, 0.9
    logistic = einf + (eps0 - einf) / (1 + 1 / (beta * x**c))  # sigma(log beta + c log x)
    assert np.allclose(sl.m4_curve(x, beta, c, 1.0, einf, eps0), logistic, rtol=1e-13, atol=1e-15)


def test_m4_prediction_solves_its_equation_is_monotone_and_has_the_right_limits():
    x = np.logspace(-8, 12, 200)
    beta, c, alpha, einf, eps0 = 5.0, -0.4, 0.7, 0.15, 0.9
    eps = sl.m4_curve(x, beta, c, alpha, einf, eps0)
    w, b, u = eps - einf, eps0 - einf, beta * x**c
    h = lambda v: v - u * (b - v) ** alpha  # noqa: E731 - increasing in v; M4's root is where it crosses 0
    assert np.all(h(w - 1e-13 * b) < 0) and np.all(h(w + 1e-13 * b) > 0)  # the root is bracketed to 1e-13
    mid = (x > 1e-2) & (x < 1e10)
    assert np.max(np.abs(w[mid] - u[mid] * (b - w[mid]) ** alpha)) < 1e-12
    assert np.all((eps > einf) & (eps < eps0)) and np.all(np.diff(eps) < 0)
    assert eps[0] == pytest.approx(eps0, abs=1e-3) and eps[-1] == pytest.approx(einf, abs=1e-3)


def test_m4_asymptotic_expansion_second_order():
    """eq. (3): eps - einf = b^a u - a b^(2a-1) u^2 + O(u^3) with u = beta x^c, b = eps0 - einf."""
    beta, c, alpha, einf, eps0 = 1.0, -1.0, 0.6, 0.1, 1.0
    b = eps0 - einf
    errs = []
    for u in (0.05, 0.0125):
        x = np.array([(u / beta) ** (1 / c)])
        w = sl.m4_curve(x, beta, c, alpha, einf, eps0)[0] - einf
        errs.append(abs(w - (b**alpha * u - alpha * b ** (2 * alpha - 1) * u**2)) / w)
    assert errs[0] / errs[1] > 10  # third order: a 4x smaller u shrinks the error ~16x


def test_m3_with_gamma_zero_is_m1_and_has_its_floor():
    x = np.logspace(0, 6, 20)
    m3 = sl.M3()
    m3.params = {"beta": 2.0, "c": -0.3, "gamma": 0.0}
    assert np.allclose(m3.predict(x), 2.0 * x**-0.3)
    m3.params = {"beta": 2.0, "c": -0.3, "gamma": 1e-2}
    assert m3.predict(np.array([1e15]))[0] == pytest.approx(2.0 * 1e-2**0.3, rel=1e-9)


def test_rmse_log_is_scale_invariant_and_relative():
    assert sl.rmse_log([0.99], [1.0]) == pytest.approx(sl.rmse_log([0.099], [0.1]), rel=1e-12)
    assert sl.rmse_log([0.99], [1.0]) == pytest.approx(0.01005, rel=1e-3)
    rng = np.random.default_rng(0)
    p, t = rng.uniform(0.1, 1, 9), rng.uniform(0.1, 1, 9)
    assert sl.rmse_log(3 * p, 3 * t) == pytest.approx(sl.rmse_log(p, t), rel=1e-12)
    with pytest.raises(ShammieError, match="one non-empty shape"):
        sl.rmse_log([1.0], [1.0, 2.0])


def test_split_matches_the_papers_tau():
    fit, held = sl.extrapolation_split(np.arange(1, 9), 2)
    assert list(np.arange(1, 9)[fit]) == [1, 2, 3, 4] and list(np.arange(1, 9)[held]) == [5, 6, 7, 8]
    doubling = 2.0 ** np.arange(10)
    assert sl.extrapolation_split(doubling, 2)[1].sum() == 1  # a doubling grid leaves one test point
    with pytest.raises(ShammieError, match="exceed 1"):
        sl.extrapolation_split(doubling, 1)


def test_win_fractions_truncate_to_three_decimals_and_share_ties():
    t = pd.DataFrame({"curve": ["a"] * 3 + ["b"] * 3, "estimator": ["M1", "M2", "M4"] * 2,
                      "rmse_extrapolation": [0.0101, 0.0109, 0.02, 0.5, np.nan, 0.2]})
    w = sl.win_fractions(t)
    assert w["M1"] == pytest.approx(0.25) and w["M2"] == pytest.approx(0.25) and w["M4"] == pytest.approx(0.5)


# the sphere toy's error (d = 100, delta = 0.2, mean of 3 seeds; sphere_curve(SPHERE_X, seed=s) for s in 0..2)
SPHERE_X = np.array([100, 158, 251, 398, 630, 1000, 1584, 2511, 3981, 6309, 10000, 15848, 25118, 39810, 63095, 100000.0])
SPHERE_Y = np.array([0.423263, 0.412525, 0.387879, 0.360386, 0.337211, 0.309478, 0.290984, 0.267812, 0.255143,
                     0.244391, 0.235543, 0.229666, 0.221805, 0.217242, 0.214102, 0.211376])


def test_einf_rules_differ_on_a_curve_with_a_flattening_tail():
    """The global minimiser of the square-log loss drives eps_inf to 0 where the paper's rule (first
    local minimum from min y) keeps an interior floor, here near the Bayes risk 0.2."""
    fit, _ = sl.extrapolation_split(SPHERE_X, 2)
    x, y = SPHERE_X[fit], SPHERE_Y[fit]
    glob = sl.M4(eps0=0.5, einf_rule="global").fit(x, y)
    paper = sl.M4(eps0=0.5, einf_rule="paper").fit(x, y)
    assert glob.params["eps_inf"] == 0.0 and glob.objective <= paper.objective
    assert paper.params["eps_inf"] == pytest.approx(0.2, abs=0.01) and paper.params["alpha"] > 0.1
    assert sl.M2(einf_rule="global").fit(x, y).params["eps_inf"] == 0.0  # M2 collapses to M1


def test_sphere_curve_is_deterministic_and_falls_towards_the_bayes_risk():
    y = sl.sphere_curve([50, 400, 3200], d=20, delta=0.2, seed=1)
    assert np.array_equal(y, sl.sphere_curve([50, 400, 3200], d=20, delta=0.2, seed=1))
    assert 0.5 > y[0] > y[1] > y[2] > 0.2


def test_fixed_exponent_m2_fits_beta_and_floor_only():
    x, y, truth = PLANTED["M2"]
    m = sl.M2(c=truth["c"], einf_rule="global").fit(x, y)
    assert m.params["beta"] == pytest.approx(truth["beta"], rel=1e-6) and m.params["c"] == truth["c"]
    scan = sl.exponent_scan(x, y, exponents=[-0.2, -0.3, -0.4])
    assert scan.loc[scan.rmse_fit.idxmin(), "c"] == -0.3


def test_sphere_error_formula_agrees_with_monte_carlo():
    rng = np.random.default_rng(3)
    d, delta = 20, 0.2
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)
    w_hat = w_star + rng.standard_normal(d) * 0.3
    x, y = sl.curves.sphere_sample(400_000, d, delta, rng, w_star)
    mc = np.mean(np.sign(x @ w_hat) != y)
    se = math.sqrt(mc * (1 - mc) / len(y))
    assert abs(mc - sl.sphere_error(w_hat, w_star, delta)) < 3 * se
    assert sl.sphere_error(w_star, w_star, delta) == pytest.approx(delta)
    assert sl.sphere_error(-w_star, w_star, delta) == pytest.approx(1 - delta)


def test_batched_ensemble_equals_models_trained_one_by_one():
    """The ensemble is only a speed-up: each member follows the trajectory it follows when trained alone."""
    g = torch.Generator().manual_seed(0)
    xp, yp = torch.randn(200, 6, generator=g), torch.randint(0, 3, (200,), generator=g)
    xt, yt = torch.randn(300, 6, generator=g), torch.randint(0, 3, (300,), generator=g)
    kw = {"steps": 40, "hidden": 8, "batch_size": 16, "n_checkpoints": 5}
    ens = sl.ensemble_curves(xp, yp, xt, yt, [20, 60, 200], [5, 6], **kw)
    assert ens.final.shape == (2, 3) and ens.trace.shape[:2] == (2, 3)
    for i, s in enumerate([5, 6]):
        for k, n in enumerate([20, 60, 200]):
            alone = sl.ensemble_curves(xp, yp, xt, yt, [n], [s], **kw)
            assert np.allclose(alone.trace[0, 0], ens.trace[i, k], atol=1.5 / len(yt)), (s, n)
    assert not np.allclose(ens.trace[0, 0], ens.trace[0, 2])  # members do differ


def test_ensemble_members_do_not_interact():
    """The loss sums the members' losses, so a member's gradient is its own: zeroing one member's
    data leaves the others' updates unchanged."""
    from shammie.scaling_laws.curves import _forward, _init_linear

    g = torch.Generator().manual_seed(1)
    params = [*_init_linear(3, 4, 5, g), *_init_linear(3, 5, 2, g)]
    x = torch.randn(3, 7, 4)
    y = torch.randint(0, 2, (3, 7))
    loss = torch.nn.functional.cross_entropy(_forward(params, x).reshape(-1, 2), y.reshape(-1)) * 3
    full = torch.autograd.grad(loss, params)
    for m in range(3):
        single = [p[m : m + 1].detach().clone().requires_grad_() for p in params]
        lm = torch.nn.functional.cross_entropy(_forward(single, x[m : m + 1]).reshape(-1, 2), y[m])
        for gf, gs in zip(full, torch.autograd.grad(lm, single)):
            assert torch.allclose(gf[m : m + 1], gs, atol=1e-6)


def test_log_sizes_and_until_best():
    assert sl.log_sizes(64, 256, 2) == [64, 91, 128, 181, 256]
    x, y = sl.until_best(np.arange(5.0), np.array([0.9, 0.5, 0.3, 0.35, 0.4]))
    assert list(x) == [0, 1, 2] and list(y) == [0.9, 0.5, 0.3]


@pytest.mark.parametrize("x,y,match", [
    ([1, 2, 3, 4], [0.5, 0.4, -0.1, 0.3], "positive"),
    ([0, 2, 3, 4], [0.5, 0.4, 0.3, 0.2], "positive"),
    ([1, 3, 2, 4], [0.5, 0.4, 0.3, 0.2], "strictly increasing"),
    ([1, 2, 2, 4], [0.5, 0.4, 0.3, 0.2], "strictly increasing"),
    ([1, 2, 3, 4], [0.5, float("nan"), 0.3, 0.2], "finite"),
    ([1, 2, 3], [0.5, 0.4], "differ in length"),
    ([1, 2, 3, 4], [0.5, 0.4, 0.3, 0.2], "cannot fit 4 parameters"),
])
def test_bad_curves_get_clear_errors(x, y, match):
    with pytest.raises(ShammieError, match=match):
        sl.M4(eps0=1.0).fit(x, y)


def test_m4_refuses_an_eps0_below_the_data_and_bad_rules():
    x, y, _ = PLANTED["M2"]
    with pytest.raises(ShammieError, match="must exceed max"):
        sl.M4(eps0=0.5).fit(x, y)
    with pytest.raises(ShammieError, match="'paper' or 'global'"):
        sl.M2(einf_rule="best").fit(x, y)
    with pytest.raises(ShammieError, match="unknown estimator"):
        sl.make_estimator("M5")
    with pytest.raises(ShammieError, match="before predict"):
        sl.M1().predict([1.0])


def test_m4_learned_eps0_stays_in_its_interval():
    x, y, _ = PLANTED["M4"]
    m = sl.M4(eps0="learned", eps0_max=1.2).fit(x, y)
    assert y.max() < m.params["eps0"] <= 1.2


CSV = """Domain,Task,Model,Seen Examples,Loss,Training
LM,val_loss,1.68e+07,4.0e6,0.70,1
LM,val_loss,1.68e+07,1.0e6,0.90,1
LM,val_loss,1.68e+07,2.0e6,0.80,1
LM,val_loss,1.68e+07,8.0e6,0.62,0
LM,val_loss,1.68e+07,1.0e6,0.90,1
BB,"('date', '1-shot')",262M,2.6e9,0.99,1
BB,"('date', '1-shot')",262M,5.2e9,0.95,1
BB,"('date', '1-shot')",262M,1.1e10,0.90,0
"""


def test_benchmark_loader_on_a_fixture(tmp_path):
    for name in sl.benchmark.BENCHMARK_FILES:
        (tmp_path / name).write_text(CSV)
    df = sl.load_benchmark(tmp_path)
    assert len(df) == 2 * 7  # the duplicated LM row is dropped
    curves = list(sl.benchmark_curves(df))
    assert {c[1] for c in curves} == {"val_loss", "('date', '1-shot')"} and {c[2] for c in curves} == {"1.68e+07", "262M"}
    lm = next(c for c in curves if c[0] == "LM")
    assert list(lm[3]) == [1e6, 2e6, 4e6, 8e6] and list(lm[5]) == [True, True, True, False]


def test_benchmark_loader_offline_and_damaged(tmp_path):
    with pytest.raises(sl.BenchmarkUnavailable, match="not in the cache.*use_benchmark=True"):
        sl.load_benchmark(tmp_path)
    for name in sl.benchmark.BENCHMARK_FILES:
        (tmp_path / name).write_text(CSV)
        (tmp_path / name).with_suffix(".csv.sha256").write_text("0" * 64)
    with pytest.raises(sl.BenchmarkUnavailable, match="damaged"):
        sl.load_benchmark(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ShammieError, match="missing columns"):
        sl.read_benchmark_csv(bad)


def test_config_profiles_and_validation():
    assert sl.ScalingLawsConfig.for_profile("smoke").steps < sl.ScalingLawsConfig.for_profile("quick").steps
    with pytest.raises(ShammieError, match="sphere_delta"):
        sl.ScalingLawsConfig.for_profile("quick", sphere_delta=0.7)
    with pytest.raises(ShammieError, match="at most 2,000,000"):
        sl.ScalingLawsConfig.for_profile("quick", sphere_max=10**8)
