"""Facts of the convex view of attention (Ergen, Neyshabur & Mehta, arXiv 2211.11052, corrected as in
the research note): every non-convex point scores at least the convex objective at its aggregate,
recovered heads attain the convex objective, FISTA's output is certified optimal and agrees with
cvxpy and with the closed form for orthonormal designs, lambda_max, and clear errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import shammie
from shammie import convex_attention as ca
from shammie.convex_attention import (
    ConvexAttentionConfig,
    ConvexAttentionError,
    Heads,
    active_tokens,
    balanced_factor,
    convex_objective,
    convex_predict,
    duality_gap,
    gated_features,
    group_soft_threshold,
    heads_predict,
    heads_to_convex,
    lambda_max,
    modular_task,
    nonconvex_objective,
    optimality_conditions,
    planted_task,
    recover_heads,
    regularization_path,
    solve_convex,
    train_nonconvex,
    train_softmax_attention,
)

D = torch.float64


@pytest.fixture(scope="module")
def task():
    return planted_task(120, 200, 6, 5, (1, 4), noise=0.1, seed=3)


@pytest.fixture(scope="module")
def solved(task):
    beta = 0.1 * lambda_max(task.X_train, task.y_train)
    return beta, solve_convex(task.X_train, task.y_train, beta, tol=1e-13)


def random_heads(h, n, d, c=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.distributions.Dirichlet(torch.ones(n, dtype=D)).sample((h,))
    V = torch.randn(h, d, generator=g, dtype=D)
    B = (
        torch.randn(h, generator=g, dtype=D)
        if c is None
        else torch.randn(h, c, generator=g, dtype=D)
    )
    return Heads(W, V, B)


# -- the two directions of the equivalence ---------------------------------------------------------


@pytest.mark.parametrize("h", [1, 3, 6, 16])
@pytest.mark.parametrize("c", [None, 3])
def test_nonconvex_point_scores_at_least_its_convex_point(h, c):
    torch.manual_seed(h)
    n, d, N = 6, 4, 30
    X = torch.randn(N, n, d, dtype=D)
    y = torch.randn(N, dtype=D) if c is None else torch.randn(N, c, dtype=D)
    for seed in range(5):
        heads = random_heads(h, n, d, c, seed)
        Z = heads_to_convex(heads)
        assert torch.allclose(convex_predict(Z, X), heads_predict(heads, X), atol=1e-12)
        for beta in (0.0, 0.3, 5.0):
            assert convex_objective(Z, X, y, beta) <= nonconvex_objective(heads, X, y, beta) + 1e-10


def test_aggregation_bound_is_tight_only_for_balanced_one_hot_heads():
    X = torch.randn(10, 4, 3, dtype=D)
    y = torch.randn(10, dtype=D)
    # spread attention and unbalanced factors: a strict inequality
    heads = random_heads(5, 4, 3, seed=1)
    Z = heads_to_convex(heads)
    assert convex_objective(Z, X, y, 1.0) < nonconvex_objective(heads, X, y, 1.0) - 1e-3


@pytest.mark.parametrize("c", [None, 2])
def test_recovered_heads_reproduce_the_convex_objective(c):
    g = torch.Generator().manual_seed(7)
    n, d, N = 7, 3, 40
    X = torch.randn(N, n, d, generator=g, dtype=D)
    y = (
        torch.randn(N, generator=g, dtype=D)
        if c is None
        else torch.randn(N, c, generator=g, dtype=D)
    )
    Z = (
        torch.randn(n, d, generator=g, dtype=D)
        if c is None
        else torch.randn(c, n, d, generator=g, dtype=D)
    )
    Z[..., [0, 2, 5], :] = 0.0  # zero token rows, so the active rows are not the first ones
    heads = recover_heads(Z)
    assert heads.num_heads == len(active_tokens(Z)) * (1 if c is None else c)
    assert torch.equal(heads_to_convex(heads), Z) or torch.allclose(
        heads_to_convex(heads), Z, atol=1e-14
    )
    assert torch.allclose(heads_predict(heads, X), convex_predict(Z, X), atol=1e-12)
    for beta in (0.0, 0.7, 3.0):
        assert math.isclose(
            nonconvex_objective(heads, X, y, beta), convex_objective(Z, X, y, beta), rel_tol=1e-13
        )
    # attention rows are simplex vertices on the active tokens
    assert set(torch.nonzero(heads.W == 1.0)[:, 1].tolist()) == set(active_tokens(Z))


def test_printed_recovery_map_fails_when_active_rows_are_not_first():
    """The paper's map uses w_j = e_j (the j-th token); the corrected one uses e_{k_j} (the j-th active)."""
    X = torch.randn(20, 3, 2, dtype=D)
    y = torch.randn(20, dtype=D)
    Z = torch.zeros(3, 2, dtype=D)
    Z[2] = torch.tensor([0.5, -1.0], dtype=D)  # only token 2 is active
    good = recover_heads(Z)
    v, b = balanced_factor(Z[2])
    e1 = torch.tensor([[1.0, 0.0, 0.0]], dtype=D)
    printed = Heads(e1, v[None], b[None])  # e_1 instead of e_3
    assert math.isclose(
        nonconvex_objective(good, X, y, 0.5), convex_objective(Z, X, y, 0.5), rel_tol=1e-13
    )
    assert not torch.allclose(heads_predict(printed, X), convex_predict(Z, X))


def test_recover_heads_pads_and_refuses_too_few_heads(solved):
    _, sol = solved
    k = len(sol.active_tokens)
    assert recover_heads(sol.Z, num_heads=k + 3).num_heads == k + 3
    with pytest.raises(ConvexAttentionError, match="at least"):
        recover_heads(sol.Z, num_heads=k - 1)


def test_balanced_factor_is_the_cheapest_factorization():
    z = torch.tensor([3.0, -4.0], dtype=D)
    v, b = balanced_factor(z)
    assert torch.allclose(v * b, z) and math.isclose(0.5 * (v.norm() ** 2 + b**2), 5.0)
    for s in (0.1, 0.5, 2.0, 10.0):  # v = z / s, b = s: same product, larger decay
        assert 0.5 * ((z / s).norm() ** 2 + s**2) >= 5.0 - 1e-12
    v0, b0 = balanced_factor(torch.zeros(3, dtype=D))
    assert torch.all(v0 == 0) and b0 == 0 and torch.isfinite(v0).all()


# -- the convex solver ----------------------------------------------------------------------------


def test_fista_meets_optimality_conditions_and_certifies_the_optimum(task, solved):
    beta, sol = solved
    assert sol.converged
    gap = duality_gap(sol.Z, task.X_train, task.y_train, beta)
    assert gap["dual"] <= gap["primal"] + 1e-9
    assert gap["gap"] <= 1e-8 * sol.objective
    kkt = optimality_conditions(sol.Z, task.X_train, task.y_train, beta)
    assert kkt["active_residual"] < 1e-6
    assert kkt["inactive_ratio"] <= 1 + 1e-6
    assert sol.active_tokens == [1, 4]  # the teacher's tokens
    # any other point scores higher, and the dual bound holds for it too
    other = sol.Z + 1e-3 * torch.randn_like(sol.Z)
    assert convex_objective(other, task.X_train, task.y_train, beta) > sol.objective
    assert duality_gap(other, task.X_train, task.y_train, beta)["dual"] <= sol.objective + 1e-9


def test_duality_gap_is_large_away_from_the_optimum(task, solved):
    beta, sol = solved
    assert (
        duality_gap(torch.zeros_like(sol.Z), task.X_train, task.y_train, beta)["relative_gap"]
        > 1e-2
    )


@pytest.mark.parametrize("c", [None, 3])
def test_fista_agrees_with_cvxpy(c):
    pytest.importorskip("cvxpy")
    t = planted_task(40, 5, 5, 3, (0, 3), noise=0.2, outputs=c, seed=11)
    beta = 0.2 * lambda_max(t.X_train, t.y_train)
    sol = solve_convex(t.X_train, t.y_train, beta, tol=1e-12)
    Zc, value = ca.solve_convex_cvxpy(t.X_train, t.y_train, beta)
    assert abs(sol.objective - value) <= 1e-6 * abs(value)
    assert np.allclose(sol.Z.numpy(), Zc, atol=1e-4)
    assert math.isclose(convex_objective(Zc, t.X_train, t.y_train, beta), value, rel_tol=1e-6)


def test_fista_agrees_with_cvxpy_when_features_outnumber_samples():
    pytest.importorskip("cvxpy")
    # 30 unknowns > 15 samples: the solver iterates on A, not on the Gram matrix
    t = planted_task(15, 5, 6, 5, (2,), noise=0.1, seed=2)
    beta = 0.05 * lambda_max(t.X_train, t.y_train)
    sol = solve_convex(t.X_train, t.y_train, beta, tol=1e-12, max_iter=100000)
    _, value = ca.solve_convex_cvxpy(t.X_train, t.y_train, beta)
    assert sol.converged and abs(sol.objective - value) <= 1e-6 * abs(value)


def test_orthonormal_design_gives_the_group_soft_threshold():
    N, n, d = 30, 4, 5
    Q, _ = torch.linalg.qr(torch.randn(N, n * d, dtype=D))  # A^T A = I
    X = Q.reshape(N, n, d)
    y = torch.randn(N, dtype=D)
    beta = float((Q.T @ y).reshape(n, d).norm(dim=1).median())  # zeroes some rows, keeps others
    closed = group_soft_threshold((Q.T @ y).reshape(n, d), beta)
    sol = solve_convex(X, y, beta, tol=1e-14)
    assert torch.allclose(sol.Z, closed, atol=1e-12)
    # with this threshold some rows are zeroed and some are not
    assert 0 < len(active_tokens(closed)) < n


def test_solution_is_exactly_zero_at_and_above_lambda_max(task):
    lam = lambda_max(task.X_train, task.y_train)
    assert math.isclose(
        lam, float(torch.einsum("ikd,i->kd", task.X_train, task.y_train).norm(dim=1).max())
    )
    for beta in (lam, 1.5 * lam, 10 * lam):
        sol = solve_convex(task.X_train, task.y_train, beta)
        assert torch.count_nonzero(sol.Z) == 0 and sol.converged
    assert torch.count_nonzero(solve_convex(task.X_train, task.y_train, 0.99 * lam).Z) > 0


def test_lambda_max_for_vector_outputs():
    t = planted_task(50, 5, 4, 3, (1,), outputs=3, seed=0)
    lam = lambda_max(t.X_train, t.y_train)
    assert torch.count_nonzero(solve_convex(t.X_train, t.y_train, lam).Z) == 0
    assert torch.count_nonzero(solve_convex(t.X_train, t.y_train, 0.98 * lam).Z) > 0


def test_at_most_n_plus_one_active_tokens_with_few_samples():
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(3, 10, 3, generator=g, dtype=D)
        y = torch.randn(3, generator=g, dtype=D)
        sol = solve_convex(X, y, 0.01 * lambda_max(X, y), tol=1e-12, max_iter=100000)
        assert len(sol.active_tokens) <= 3 + 1


def test_warm_started_path_matches_cold_solves(task):
    path = regularization_path(
        task.X_train,
        task.y_train,
        points=5,
        min_frac=1e-2,
        show_progress=False,
        X_test=task.X_test,
        y_test=task.y_test,
    )
    assert path.num_active[0] == 0 and path.num_active[-1] > 0
    assert len(path.test_mse) == 5
    for b, s in zip(path.betas, path.solutions):
        cold = solve_convex(task.X_train, task.y_train, b, tol=1e-12)
        assert math.isclose(s.objective, cold.objective, rel_tol=1e-8)
    with pytest.raises(ConvexAttentionError, match="decreasing"):
        regularization_path(task.X_train, task.y_train, betas=[1.0, 2.0], show_progress=False)


def test_numpy_and_torch_iterations_agree(task, monkeypatch):
    beta = 0.05 * lambda_max(task.X_train, task.y_train)
    a = solve_convex(task.X_train, task.y_train, beta, tol=1e-12)
    monkeypatch.setattr(ca.solver, "_NUMPY_MAX_ELEMENTS", 0)
    b = solve_convex(task.X_train, task.y_train, beta, tol=1e-12)
    assert torch.allclose(a.Z, b.Z, atol=1e-10) and a.iterations == b.iterations


def test_solver_is_deterministic_and_traces(task):
    beta = 0.1 * lambda_max(task.X_train, task.y_train)
    a = solve_convex(task.X_train, task.y_train, beta)
    b = solve_convex(task.X_train, task.y_train, beta)
    assert torch.equal(a.Z, b.Z) and a.history == b.history
    assert len(a.history) == len(a.times) == a.iterations
    # the trace never goes below the optimum
    assert min(a.history) >= a.objective - 1e-9 * a.objective


# -- non-convex training --------------------------------------------------------------------------


def test_trained_heads_never_beat_the_convex_optimum_and_enough_heads_reach_it(task, solved):
    beta, sol = solved
    p_star = sol.objective
    for h in (1, 2, 6):
        fit = train_nonconvex(
            task.X_train, task.y_train, h, beta, steps=1500, lr=0.02, seed=1, show_progress=False
        )
        assert fit.objective >= p_star * (1 - 1e-12)
        assert min(fit.history) >= p_star * (1 - 1e-12)
        assert fit.objective == pytest.approx(
            nonconvex_objective(fit.heads, task.X_train, task.y_train, beta)
        )
        assert (
            convex_objective(heads_to_convex(fit.heads), task.X_train, task.y_train, beta)
            <= fit.objective + 1e-9
        )
        if h >= task.tokens:  # h >= n heads: the optimum is reachable (and Adam reaches it here)
            assert fit.objective <= p_star * (1 + 1e-2)
        elif h == 1:  # one head attends to one token or averages them: it stalls above
            assert fit.objective > p_star * (1 + 1e-1)
        # h = 2 can reach p* (two teacher tokens) but may also stall with both heads on one token


def test_one_head_counterexample_needs_enough_heads():
    """N = n = 2, d = 1, X_1 = e_1, X_2 = e_2, y = (1, -1): one head predicts two values of the same
    sign, so its loss is >= 1/2 (with the 1/2 on the squared loss), while the convex optimum is below."""
    X = torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]]], dtype=D)
    y = torch.tensor([1.0, -1.0], dtype=D)
    beta = 1 / 16  # the Lean counterexample's 1/8 for an unhalved loss
    assert convex_objective(torch.tensor([[1.0], [-1.0]], dtype=D), X, y, beta) == pytest.approx(
        1 / 8
    )
    p_star = solve_convex(X, y, beta, tol=1e-14).objective
    assert p_star < 1 / 8
    for seed in range(3):
        one = train_nonconvex(X, y, 1, beta, steps=400, lr=0.05, seed=seed, show_progress=False)
        assert one.objective >= 0.5 - 1e-12
    two = train_nonconvex(X, y, 2, beta, steps=1500, lr=0.05, seed=0, show_progress=False)
    assert two.objective == pytest.approx(p_star, rel=1e-3)


def test_identical_loss_scaling_in_both_objectives():
    """X = 0, y = 1, beta = 1: every model predicts 0, both objectives are 1/2 (the printed convex
    program with an extra 1/2 on the loss would give 1/4, below every non-convex point)."""
    X = torch.zeros(1, 1, 1, dtype=D)
    y = torch.ones(1, dtype=D)
    sol = solve_convex(X, y, 1.0)
    assert sol.objective == 0.5 and torch.count_nonzero(sol.Z) == 0
    assert nonconvex_objective(random_heads(3, 1, 1), X, y, 1.0) >= 0.5


def test_training_is_deterministic(task):
    beta = 0.1 * lambda_max(task.X_train, task.y_train)
    a = train_nonconvex(task.X_train, task.y_train, 2, beta, steps=30, seed=5, show_progress=False)
    b = train_nonconvex(task.X_train, task.y_train, 2, beta, steps=30, seed=5, show_progress=False)
    assert a.history == b.history


def test_simplex_attention_rows_are_on_the_simplex():
    m = ca.SimplexAttention(5, 3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.logits.mul_(50)  # even extreme logits stay on the simplex
    W = m.attention
    assert torch.all(W >= 0) and torch.allclose(W.sum(1), torch.ones(4, dtype=D))
    m.heads().check_simplex()


def test_softmax_baseline_trains_and_attends_with_rows_on_the_simplex(task):
    beta = 0.01 * lambda_max(task.X_train, task.y_train)
    fit = train_softmax_attention(
        task.X_train,
        task.y_train,
        beta,
        steps=60,
        seed=0,
        X_test=task.X_test,
        y_test=task.y_test,
        show_progress=False,
    )
    assert fit.history[-1] < fit.history[0]
    a = fit.model.attention(task.X_test)
    assert a.shape == (len(task.X_test), 2, task.tokens)
    assert torch.allclose(a.sum(-1), torch.ones(a.shape[:2], dtype=D))
    assert fit.model(task.X_test).shape == task.y_test.shape


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(task):
    X, y = task.X_train, task.y_train
    with pytest.raises(ConvexAttentionError, match="samples but y has"):
        solve_convex(X, y[:-1], 1.0)
    with pytest.raises(ConvexAttentionError, match="samples, tokens, features"):
        solve_convex(X[:, 0], y, 1.0)
    with pytest.raises(ConvexAttentionError, match=">= 0"):
        solve_convex(X, y, -0.1)
    with pytest.raises(ConvexAttentionError, match=">= 0"):
        convex_objective(torch.zeros(6, 5, dtype=D), X, y, -1.0)
    bad = X.clone()
    bad[3, 2, 1] = float("nan")
    with pytest.raises(ConvexAttentionError, match="NaN"):
        solve_convex(bad, y, 1.0)
    bad_y = y.clone()
    bad_y[0] = float("inf")
    with pytest.raises(ConvexAttentionError, match="NaN or infinite"):
        lambda_max(X, bad_y)
    with pytest.raises(ConvexAttentionError, match="Z must have shape"):
        convex_objective(torch.zeros(5, 6, dtype=D), X, y, 1.0)
    with pytest.raises(ConvexAttentionError, match="outputs"):
        convex_objective(torch.zeros(2, 6, 5, dtype=D), X, y, 1.0)
    with pytest.raises(ConvexAttentionError, match="simplex"):
        nonconvex_objective(
            Heads(-torch.ones(2, 6, dtype=D), torch.ones(2, 5, dtype=D), torch.ones(2, dtype=D)),
            X,
            y,
            1.0,
        )
    with pytest.raises(ConvexAttentionError, match="does not fit"):
        heads_predict(random_heads(2, 4, 5), X)
    with pytest.raises(ValueError):  # ConvexAttentionError is a ValueError too
        planted_task(10, 10, 4, 3, support=(4,))


def test_config_profiles_and_validation():
    for profile in ("smoke", "quick", "full"):
        cfg = ConvexAttentionConfig.for_profile(profile)
        assert cfg.tokens in cfg.heads and max(cfg.support) < cfg.tokens
    with pytest.raises(shammie.ConfigError, match="must include tokens"):
        ConvexAttentionConfig.for_profile("quick", heads=(1, 2))
    with pytest.raises(shammie.ConfigError, match="support"):
        ConvexAttentionConfig.for_profile("quick", support=(1, 9))


# -- the modular-arithmetic task ------------------------------------------------------------------


def test_modular_task_and_gated_features():
    t = modular_task(7, "div", train_frac=0.5, seed=0)
    X = torch.cat([t.X_train, t.X_test])
    y = torch.cat([t.y_train, t.y_test])
    assert len(y) == 7 * 6
    a, b = X[:, 0].argmax(1), X[:, 1].argmax(1)
    assert torch.all((y * b) % 7 == a)  # a / b = y  <=>  y * b = a (mod 7)
    s = modular_task(5, "add", seed=1)
    ys, Xs = torch.cat([s.y_train, s.y_test]), torch.cat([s.X_train, s.X_test])
    assert torch.all((Xs[:, 0].argmax(1) + Xs[:, 1].argmax(1)) % 5 == ys)
    gates = ca.random_gates(4, 2, 7, seed=0)
    F = gated_features(t.X_train, gates)
    assert F.shape == (len(t.X_train), 4 * 2, 7)
    on = torch.einsum("ikd,mkd->im", t.X_train, gates) > 0
    for m in range(4):
        block = F[:, 2 * m : 2 * m + 2]
        assert torch.equal(block[on[:, m]], t.X_train[on[:, m]]) and torch.all(
            block[~on[:, m]] == 0
        )
    with pytest.raises(ConvexAttentionError, match="prime"):
        modular_task(8, "div")


# -- the solver's stopping rule and beta = 0 (issue 14) ---------------------------------------------


@pytest.mark.parametrize("noise", [1e-3, 0.0])
@pytest.mark.parametrize("frac", [1e-3, 1e-4])
def test_converged_agrees_with_the_reported_gap_on_low_noise_problems(noise, frac):
    """The old stopping test computed ||r||^2 on the Gram matrix (z.Kz - 2 z.b + y.y), which cancels
    when the residual is small: the solver said converged while the gap it reported was 50-400x the
    tolerance. Now `converged` is decided on the very gap that is reported."""
    for seed in range(3):
        t = planted_task(200, 5, 8, 8, (1, 5), noise=noise, seed=seed)
        beta = frac * lambda_max(t.X_train, t.y_train)
        for tol in (1e-10, 1e-12):
            sol = solve_convex(t.X_train, t.y_train, beta, tol=tol, max_iter=4000)
            assert sol.gap >= 0 and sol.dual <= sol.objective
            assert sol.converged == (sol.gap <= tol * sol.scale)
            if sol.converged:
                assert sol.relative_gap <= tol * (1 + 1e-12)
                # an independent evaluation of the certificate agrees
                again = duality_gap(sol.Z, t.X_train, t.y_train, beta)
                assert again["relative_gap"] <= 2 * tol
                assert math.isclose(again["primal"], sol.objective, rel_tol=1e-12)


def test_the_certificate_is_a_true_lower_bound_and_never_negative(task, solved):
    beta, sol = solved
    for eps in (0.0, 1e-8, 1e-4, 1e-1):
        Z = sol.Z + eps * torch.randn(sol.Z.shape, generator=torch.Generator().manual_seed(1), dtype=D)
        cert = duality_gap(Z, task.X_train, task.y_train, beta)
        assert cert["gap"] >= 0
        assert cert["dual"] <= sol.objective * (1 + 1e-12)  # a lower bound on the optimum
        assert math.isclose(cert["primal"], convex_objective(Z, task.X_train, task.y_train, beta), rel_tol=1e-12)


@pytest.mark.parametrize("N", [200, 20])
def test_beta_zero_is_certified_as_least_squares(N):
    """beta = 0 used to run FISTA's whole budget and report `converged=False` at the least-squares
    optimum (the dual scale is 0). Now it is solved and certified as least squares, also when the fit
    interpolates (N < n d: objective at rounding level)."""
    t = planted_task(N, 5, 6, 5, (1, 4), noise=0.1, seed=4)
    sol = solve_convex(t.X_train, t.y_train, 0.0, tol=1e-10)
    assert sol.converged and sol.iterations == 0 and sol.gap >= 0
    A = t.X_train.reshape(N, -1)
    ref = torch.linalg.lstsq(A, t.y_train[:, None], driver="gelsd").solution[:, 0]
    assert math.isclose(
        sol.objective, 0.5 * float(((A @ ref - t.y_train) ** 2).sum()), rel_tol=1e-9, abs_tol=1e-20
    )
    if N >= 30:  # a unique minimizer
        assert torch.allclose(sol.Z.reshape(-1), ref, atol=1e-10)
    cert = duality_gap(sol.Z, t.X_train, t.y_train, 0.0)
    assert cert["relative_gap"] <= 1e-10
    # a worse point is not certified
    assert duality_gap(sol.Z + 0.01, t.X_train, t.y_train, 0.0)["relative_gap"] > 1e-6 or N < 30


# -- the experiments: softmax teacher, token contributions, tuning, the speed race ------------------


def test_softmax_teacher_task_is_deterministic_scaled_and_outside_the_convex_class():
    a = ca.softmax_teacher_task(150, 50, 300, 6, 4, noise=0.0, seed=2)
    b = ca.softmax_teacher_task(150, 50, 300, 6, 4, noise=0.0, seed=2)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert torch.allclose(a.predict(a.X_test), a.y_test)  # noise 0: the targets are the teacher's outputs
    assert 0.8 < float(torch.cat([a.y_train, a.y_val, a.y_test]).std()) < 1.2
    # the best convex model (least squares, beta = 0) cannot fit the noiseless teacher
    ls = solve_convex(a.X_train, a.y_train, 0.0)
    assert ca.mse(convex_predict(ls.Z, a.X_test), a.y_test) > 0.05
    with pytest.raises(ConvexAttentionError):
        ca.softmax_teacher_task(10, 10, 10, 4, 3, sharpness=0.0)


def test_token_contributions_split_every_prediction_exactly(task):
    X = task.X_test[:50]
    Z = torch.randn(task.tokens, X.shape[2], dtype=D)
    assert torch.allclose(ca.token_contributions(Z, X).sum(1), convex_predict(Z, X), atol=1e-12)
    heads = random_heads(3, task.tokens, X.shape[2], seed=4)
    assert torch.allclose(ca.token_contributions(heads, X).sum(1), heads_predict(heads, X), atol=1e-12)
    m = ca.SoftmaxAttention(task.tokens, X.shape[2], 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ca.token_contributions(m, X).sum(1), m(X), atol=1e-12)


def test_effective_tokens_counts_the_tokens_a_prediction_uses():
    X = torch.randn(40, 5, 3, dtype=D)
    one = torch.zeros(5, 3, dtype=D)
    one[2] = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    assert ca.effective_tokens(one, X) == pytest.approx(1.0)
    # the same contribution from every token: n effective tokens
    Xs = torch.ones(4, 5, 3, dtype=D)
    assert ca.effective_tokens(torch.ones(5, 3, dtype=D), Xs) == pytest.approx(5.0)
    two = one.clone()
    two[4] = one[2]
    assert 1.0 < ca.effective_tokens(two, X) <= 2.0 + 1e-12
    assert ca.effective_tokens(torch.zeros(5, 3, dtype=D), X) == 0.0


def test_tune_convex_keeps_the_penalty_with_the_lowest_validation_error():
    t = planted_task(120, 300, 6, 5, (1, 4), noise=0.3, seed=5)
    Xv, yv, Xq, yq = t.X_test[:150], t.y_test[:150], t.X_test[150:], t.y_test[150:]
    tc = ca.tune_convex(t.X_train, t.y_train, Xv, yv, points=12, min_frac=1e-3, X_test=Xq, y_test=yq)
    assert tc.val_mse == min(tc.path_val_mse) and tc.beta in tc.path_betas
    assert tc.val_mse < tc.path_val_mse[0]  # better than Z = 0 at lambda_max
    assert math.isclose(tc.test_mse, ca.mse(convex_predict(tc.Z, Xq), yq))


def test_tune_softmax_keeps_the_setting_with_the_lowest_validation_error():
    t = ca.softmax_teacher_task(80, 40, 40, 4, 3, seed=1)
    ts = ca.tune_softmax(t.X_train, t.y_train, t.X_val, t.y_val, lrs=(0.01, 0.05), decays=(0.0, 1.0), steps=30,
                         X_test=t.X_test, y_test=t.y_test)
    assert len(ts.grid) == 4 and ts.val_mse == min(g["val_mse"] for g in ts.grid)
    assert (ts.lr, ts.decay) in {(g["lr"], g["decay"]) for g in ts.grid}


def test_early_stopping_and_the_speed_race(task, solved):
    beta, sol = solved
    target = sol.objective * (1 + 1e-2)
    fit = train_nonconvex(task.X_train, task.y_train, task.tokens, beta, steps=3000, lr=0.3, seed=0,
                          stop_below=target, show_progress=False)
    assert fit.history[-1] <= target and all(h > target for h in fit.history[:-1])
    assert len(fit.times) == len(fit.history)
    race = ca.race_to_optimum(task.X_train, task.y_train, beta, sol.history, sol.times, sol.objective,
                              heads=task.tokens, lrs=(0.001, 0.3), steps=400, tol=1e-2, seed=0)
    assert race.adam_steps[0.001] is None  # too slow for the budget
    assert race.best_lr == 0.3 and race.best_adam_steps == len(race.fits[0.3].history) - 1
    assert race.fista_steps is not None and race.fista_steps < race.best_adam_steps
    assert race.log10_ratio() == pytest.approx(math.log10(race.best_adam_steps / race.fista_steps))
