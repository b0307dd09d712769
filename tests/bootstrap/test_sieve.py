# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""AR-sieve fit (R ``ar()`` defaults) and simulation."""

import math

import numpy as np
import pytest
from statsmodels.regression.linear_model import yule_walker

from skasync.bootstrap import ARSieveFit, fit_ar_sieve, simulate_ar_sieve
from skasync.datasets import make_ar, make_arma, make_ma
from skasync.preprocessing import make_lag_matrix


def _naive_ar_yw(x):
    """Independent plain-loop R ar.yw: biased acov, Levinson-Durbin, AIC."""
    x = [float(v) for v in x]
    n = len(x)
    mean = sum(x) / n
    xc = [v - mean for v in x]
    pmax = min(n - 1, math.floor(10 * math.log10(n)))
    acov = []
    for k in range(pmax + 1):
        s = 0.0
        for t in range(n - k):
            s += xc[t] * xc[t + k]
        acov.append(s / n)
    coefs = {0: []}
    sig = [acov[0]]
    prev = []
    for k in range(1, pmax + 1):
        num = acov[k] - sum(prev[j] * acov[k - 1 - j] for j in range(k - 1))
        kappa = num / sig[-1]
        cur = [prev[j] - kappa * prev[k - 2 - j] for j in range(k - 1)] + [kappa]
        sig.append(sig[-1] * (1.0 - kappa * kappa))
        coefs[k] = cur
        prev = cur
    aic = [n * math.log(s) + 2 * k for k, s in enumerate(sig)]
    p = min(range(pmax + 1), key=lambda k: (aic[k], k))
    resid = []
    for t in range(p, n):
        resid.append(xc[t] - sum(coefs[p][j] * xc[t - 1 - j] for j in range(p)))
    rm = sum(resid) / len(resid)
    return {
        "order": p,
        "coef": np.array(coefs[p]),
        "mean": mean,
        "sigma2": sig[p],
        "resid": np.array([r - rm for r in resid]),
        "aic": np.array(aic),
        "order_max": pmax,
    }


@pytest.mark.parametrize(
    "series",
    [
        make_ar(500, coef=(0.6,), random_state=0),
        make_ar(300, coef=(0.5, -0.3), random_state=1) + 3.0,
        make_arma(1000, ar=(0.5,), ma=(0.4,), random_state=2),
        make_ma(200, coef=(0.8,), random_state=3),
        np.random.default_rng(4).standard_normal(150),
        make_ar(12, coef=(0.6,), random_state=5),
    ],
    ids=["ar1", "ar2", "arma11", "ma1", "wn", "short"],
)
def test_fit_matches_naive_levinson(series):
    ref = _naive_ar_yw(series)
    fit = fit_ar_sieve(series)
    assert isinstance(fit, ARSieveFit)
    assert fit.order == ref["order"]
    assert fit.order_max == ref["order_max"]
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.mean, ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(fit.sigma2, ref["sigma2"], rtol=1e-10)
    np.testing.assert_allclose(fit.aic, ref["aic"], rtol=1e-10)
    np.testing.assert_allclose(fit.resid, ref["resid"], rtol=1e-8, atol=1e-10)
    assert fit.resid.shape == (len(series) - fit.order,)
    assert abs(fit.resid.mean()) < 1e-12


@pytest.mark.filterwarnings("ignore:yule_walker currently returns:FutureWarning")
@pytest.mark.parametrize("order", [1, 2, 5])
def test_fixed_order_matches_statsmodels_yule_walker(order):
    x = make_arma(400, ar=(0.5,), ma=(0.4,), random_state=7) + 1.5
    fit = fit_ar_sieve(x, order=order)
    rho, sigma = yule_walker(x, order=order, method="mle", demean=True)
    assert fit.order == order
    np.testing.assert_allclose(fit.coef, rho, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.sigma2, sigma**2, rtol=1e-8)


def test_order_zero_and_fixed_order_above_default_max():
    x = np.random.default_rng(0).standard_normal(50)
    fit = fit_ar_sieve(x, order=0)
    assert fit.order == 0 and fit.coef.shape == (0,)
    np.testing.assert_allclose(fit.resid, x - x.mean(), atol=1e-12)
    np.testing.assert_allclose(fit.sigma2, np.var(x))
    # default order_max for n=50 is 16; a larger fixed order widens it
    fit = fit_ar_sieve(x, order=20)
    assert fit.order == 20 and fit.order_max == 20 and fit.coef.shape == (20,)
    fit = fit_ar_sieve(x, order_max=3)
    assert fit.order_max == 3 and fit.aic.shape == (4,)


def test_orders_match_R_ar_on_reference_series(reference_results, reference_series):
    rows = [r for r in reference_results if r["method"] == "arsb"]
    assert len(rows) == 10
    for r in rows:
        n = int(r["n"])
        test_size = 20 if n <= 100 else 100
        y = reference_series(f"{r['dgp']}_n{n}_s{r['seed']}")
        fit = fit_ar_sieve(y[: n - test_size])
        assert fit.order == int(r["ar_order"]), r
        assert fit.order_max == 26


def test_ols_method():
    x = make_ar(400, coef=(0.5, -0.3), random_state=3) + 2.0
    fit = fit_ar_sieve(x, method="ols")
    assert 1 <= fit.order <= fit.order_max
    assert fit.coef.shape == (fit.order,)
    assert abs(fit.resid.mean()) < 1e-10
    np.testing.assert_allclose(fit.mean, 2.0, atol=0.3)
    fixed = fit_ar_sieve(x, order=2, method="ols")
    np.testing.assert_allclose(fixed.coef, [0.5, -0.3], atol=0.15)


def _lstsq_ar(x, order, first_row):
    # Independent OLS: x[t] on (1, x[t-1], ..., x[t-order]) for t >= first_row.
    rows = np.arange(first_row, x.shape[0])
    design = np.column_stack(
        [np.ones(rows.size)] + [x[rows - j] for j in range(1, order + 1)]
    )
    params, *_ = np.linalg.lstsq(design, x[rows], rcond=None)
    return params, x[rows] - design @ params


@pytest.mark.parametrize("order", [1, 2, 4])
def test_ols_fit_equals_a_hand_written_least_squares_fit(order):
    x = make_ar(300, coef=(0.5, -0.3), random_state=5) + 2.0
    fit = fit_ar_sieve(x, order=order, method="ols")
    params, resid = _lstsq_ar(x, order, order)
    np.testing.assert_allclose(fit.coef, params[1:], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.mean, params[0] / (1 - params[1:].sum()), rtol=1e-8)
    centred = resid - resid.mean()
    np.testing.assert_allclose(fit.resid, centred, atol=1e-9)
    np.testing.assert_allclose(fit.sigma2, np.mean(centred**2), rtol=1e-8)


def test_ols_order_minimises_aic_on_the_common_sample():
    x = make_ar(300, coef=(0.5, -0.3), random_state=5) + 2.0
    fit = fit_ar_sieve(x, method="ols", order_max=8)
    # Every order fitted on the same rows t >= order_max, as when comparing
    # AIC; Gaussian AIC up to constants: n log(sigma2) + 2 (order + 1).
    n_rows = x.shape[0] - fit.order_max
    aic = [
        n_rows * np.log(np.mean(_lstsq_ar(x, k, fit.order_max)[1] ** 2)) + 2 * (k + 1)
        if k
        else n_rows * np.log(np.var(x[fit.order_max :])) + 2
        for k in range(fit.order_max + 1)
    ]
    assert fit.order == int(np.argmin(aic))


@pytest.mark.parametrize(
    "series, kwargs, match",
    [
        ([1.0, np.nan, 2.0, 3.0], {}, "NaN or infinity"),
        ([1.0, np.inf, 2.0, 3.0], {}, "NaN or infinity"),
        ([1.0], {}, "n_samples=1"),
        ([], {}, "n_samples=0"),
        (np.full(30, 2.5), {}, "zero-variance series.*cannot fit an AR sieve"),
        (np.arange(30.0), {"order": 5, "order_max": 3}, "exceeds order_max"),
        (np.arange(30.0), {"order": 30}, "must be < n_samples=30"),
        (np.arange(30.0), {"order_max": 30}, "must be < n_samples=30"),
        (np.arange(30.0), {"order": -1}, "order must be"),
        (np.arange(30.0), {"method": "burg"}, "method must be"),
        (np.ones((10, 2)), {}, "1-D"),
    ],
)
def test_fit_errors(series, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_ar_sieve(series, **kwargs)


def _loop_simulate(fit, n_values, n_start, e):
    x = [fit.mean] * n_start
    for et in e:
        x.append(
            fit.mean
            + sum(c * (x[-1 - j] - fit.mean) for j, c in enumerate(fit.coef))
            + et
        )
    return np.array(x)


def _toy_fit(coef, mean, n_resid=5000, seed=0):
    r = np.random.default_rng(seed).standard_normal(n_resid)
    coef = np.asarray(coef, dtype=float)
    return ARSieveFit(
        order=coef.shape[0],
        coef=coef,
        mean=mean,
        resid=r - r.mean(),
        aic=np.zeros(1),
        sigma2=1.0,
        order_max=coef.shape[0],
    )


def test_simulate_layout_and_recursion():
    fit = fit_ar_sieve(make_ar(300, coef=(0.5, -0.3), random_state=0), order=2)
    x = simulate_ar_sieve(fit, 50, n_start_values=5, random_state=1)
    assert x.shape == (55,)
    assert np.all(x[:5] == fit.mean)
    # the same residual draws, replayed through a plain Python recursion
    idx = np.random.RandomState(1).randint(0, fit.resid.shape[0], size=50)
    np.testing.assert_allclose(
        x, _loop_simulate(fit, 50, 5, fit.resid[idx]), rtol=1e-10, atol=1e-10
    )
    # every simulated innovation is one of the fit's residuals
    innovations = (
        x[5:]
        - fit.mean
        - sum(fit.coef[j] * (x[4 - j : 54 - j] - fit.mean) for j in range(2))
    )
    assert np.isin(np.round(innovations, 9), np.round(fit.resid, 9)).all()
    # n_start defaults to the order
    assert simulate_ar_sieve(fit, 10, random_state=0).shape == (12,)


@pytest.mark.parametrize("burn_in", [0, 7])
def test_simulate_n_series(burn_in):
    fit = fit_ar_sieve(make_ar(300, coef=(0.5, -0.3), random_state=0), order=2)
    kw = dict(n_start_values=5, burn_in=burn_in)
    many = simulate_ar_sieve(fit, 40, random_state=3, n_series=4, **kw)
    assert many.shape == (4, 45)
    np.testing.assert_array_equal(
        simulate_ar_sieve(fit, 40, random_state=3, n_series=1, **kw)[0],
        simulate_ar_sieve(fit, 40, random_state=3, **kw),
    )
    # each row replays its own residual draws through the recursion
    idx = np.random.RandomState(3).randint(
        0, fit.resid.shape[0], size=(4, burn_in + 40)
    )
    for k in range(4):
        full = _loop_simulate(fit, burn_in + 40, 5, fit.resid[idx[k]])
        np.testing.assert_allclose(many[k], full[burn_in:], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="n_series"):
        simulate_ar_sieve(fit, 40, n_series=0)


def test_simulate_burn_in_layout():
    fit = _toy_fit([0.5], 1.0)
    base = simulate_ar_sieve(fit, 40, n_start_values=3, burn_in=7, random_state=5)
    full = simulate_ar_sieve(fit, 47, n_start_values=3, random_state=5)
    assert base.shape == (43,)
    # same draws: the burn-in run is the tail of the un-burnt run
    np.testing.assert_allclose(base, full[-43:])
    assert not np.all(base[:3] == fit.mean)


def test_simulate_determinism_and_rng_kinds():
    fit = _toy_fit([0.3, 0.2], -1.0)
    a = simulate_ar_sieve(fit, 100, random_state=3)
    b = simulate_ar_sieve(fit, 100, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)
    c = simulate_ar_sieve(fit, 100, random_state=np.random.default_rng(3))
    d = simulate_ar_sieve(fit, 100, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(c, d)
    assert simulate_ar_sieve(fit, 0, random_state=0).shape == (2,)


def test_simulate_order_zero():
    x = np.random.default_rng(0).standard_normal(100) + 4
    fit = fit_ar_sieve(x, order=0)
    s = simulate_ar_sieve(fit, 30, random_state=0)
    assert s.shape == (30,)
    # order 0: mean + resampled centred residuals = resampled observations
    assert np.all(np.isin(np.round(s, 10), np.round(x, 10)))
    s = simulate_ar_sieve(fit, 30, n_start_values=2, random_state=0)
    assert s.shape == (32,) and np.all(s[:2] == fit.mean)


def test_simulate_moments_match_ar_model():
    phi1, phi2, mean = 0.5, -0.3, 2.0
    fit = _toy_fit([phi1, phi2], mean, n_resid=20000)
    x = simulate_ar_sieve(fit, 200_000, burn_in=100, random_state=0)[2:]
    s2 = np.mean(fit.resid**2)
    # AR(2) autocorrelations and variance
    rho1 = phi1 / (1 - phi2)
    rho2 = phi1 * rho1 + phi2
    gamma0 = s2 / (1 - phi1 * rho1 - phi2 * rho2)
    xc = x - x.mean()
    acf = [np.dot(xc[:-k], xc[k:]) / np.dot(xc, xc) for k in (1, 2)]
    assert abs(x.mean() - mean) < 0.02
    assert abs(x.var() / gamma0 - 1) < 0.03
    assert abs(acf[0] - rho1) < 0.01
    assert abs(acf[1] - rho2) < 0.01


def test_simulate_refit_recovers_coefficients():
    y = make_ar(2000, coef=(0.6,), random_state=11)
    fit = fit_ar_sieve(y)
    sim = simulate_ar_sieve(fit, 20000, random_state=0)
    refit = fit_ar_sieve(sim, order=fit.order)
    np.testing.assert_allclose(refit.coef, fit.coef, atol=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_values": -1}, "n_values"),
        ({"n_values": 5, "burn_in": -2}, "burn_in"),
        ({"n_values": 5, "n_start_values": 1.5}, "n_start_values"),
    ],
)
def test_simulate_errors(kwargs, match):
    fit = _toy_fit([0.5], 0.0)
    with pytest.raises(ValueError, match=match):
        simulate_ar_sieve(fit, **kwargs)


def test_ols_short_series_caps_order_max():
    x = np.random.default_rng(0).standard_normal(10)
    fit = fit_ar_sieve(x, method="ols")
    assert fit.order_max == 4  # (n - 2) // 2 regressions stay estimable
    assert fit_ar_sieve(x[:3], method="ols").order == 0
    with pytest.raises(ValueError, match="2 \\* order \\+ 2"):
        fit_ar_sieve(x, order=5, method="ols")
    with pytest.raises(ValueError, match="zero-variance"):
        fit_ar_sieve(np.ones(20), method="ols")


def test_simulate_padded_and_truncated_coef():
    import dataclasses

    fit = fit_ar_sieve(make_ar(300, coef=(0.5, -0.3), random_state=0), order=2)
    padded = dataclasses.replace(fit, coef=np.r_[fit.coef, 0.0, 0.0, 0.0])
    a = simulate_ar_sieve(fit, 40, n_start_values=5, random_state=2)
    b = simulate_ar_sieve(padded, 40, random_state=2)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    trunc = dataclasses.replace(fit, coef=fit.coef[:1])
    c = simulate_ar_sieve(trunc, 40, random_state=2)
    assert c.shape == (41,)
    # an AR(1) recursion with the first coefficient only, same residual draws
    idx = np.random.RandomState(2).randint(0, fit.resid.shape[0], size=40)
    np.testing.assert_allclose(
        c, _loop_simulate(trunc, 40, 1, fit.resid[idx]), rtol=1e-10, atol=1e-10
    )


def test_linear_forecast_reproduces_R_ar_yw_test_mse(
    reference_results, reference_series
):
    # R's ar_yw rows: xbar + sum_j phi_j (y[t-j] - xbar) on the last 100 points.
    # Matching the MSE to ~1e-12 pins down R's coefficients and mean, not
    # just the order.
    rows = [r for r in reference_results if r["method"] == "ar_yw"]
    assert len(rows) == 10
    for r in rows:
        y = reference_series(f"{r['dgp']}_n500_s{r['seed']}")
        fit = fit_ar_sieve(y[:400])
        p = max(fit.order, 1)
        X, target = make_lag_matrix(y, p)
        coef = np.r_[fit.coef, np.zeros(p - fit.order)]
        pred = fit.mean + (X - fit.mean) @ coef
        test = slice(400 - p, None)  # rows predicting t = 400..499
        mse = np.mean((target[test] - pred[test]) ** 2)
        np.testing.assert_allclose(mse, float(r["test_mse"]), rtol=1e-11)


def test_simulate_rejects_non_finite_residuals():
    fit = fit_ar_sieve(make_ar(100, random_state=0), order=1)
    resid = fit.resid.copy()
    resid[3] = np.nan
    import dataclasses

    with pytest.raises(ValueError, match=r"fit\.resid"):
        simulate_ar_sieve(dataclasses.replace(fit, resid=resid), 5, random_state=0)
