# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""Seeded simulators vs the reference generator and CSVs."""

import importlib.util
import warnings

import numpy as np
import pytest

from skasync.datasets import (
    REFERENCE_DGPS,
    make_ar,
    make_arma,
    make_garch,
    make_ma,
    make_seasonal_ar,
    make_series,
    make_setar,
)


@pytest.mark.parametrize("dgp", ["ar1_06", "arma11"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_matches_reference_csvs(reference_series, dgp, seed):
    y_ref = reference_series(f"{dgp}_n500_s{seed}")
    mu_ref = reference_series(f"{dgp}_n500_s{seed}_mu")
    y, mu = make_series(dgp, 500, random_state=seed, return_mean=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-13, atol=1e-14)
    # the explicit simulators with the gen_series parameters agree too
    if dgp == "ar1_06":
        y2 = make_ar(500, coef=(0.6,), random_state=seed)
    else:
        y2 = make_arma(500, ar=(0.5,), ma=(0.4,), random_state=seed)
    np.testing.assert_allclose(y2, y_ref, rtol=1e-13, atol=1e-14)


@pytest.fixture
def gen_series(reference_dir):
    spec = importlib.util.spec_from_file_location(
        "gen_series_ref", reference_dir / "gen_series.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_all_dgps_match_gen_series(gen_series):
    assert set(REFERENCE_DGPS) == set(gen_series.DGPS)
    for dgp in gen_series.DGPS:
        for n, seed in [(100, 101), (300, 7)]:
            y_ref, mu_ref = gen_series.generate(dgp, n, seed)
            y, mu = make_series(dgp, n, random_state=seed, return_mean=True)
            np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12, err_msg=dgp)
            np.testing.assert_allclose(mu, mu_ref, rtol=1e-12, atol=1e-12, err_msg=dgp)


def test_common_random_numbers_and_seeding():
    a = make_ar(200, coef=(0.0,), random_state=3)
    b = make_ma(200, coef=(0.0,), random_state=3)
    np.testing.assert_array_equal(a, b)  # same innovations for every DGP
    np.testing.assert_array_equal(
        make_setar(50, random_state=np.random.default_rng(9)),
        make_setar(50, random_state=9),
    )
    r1 = make_arma(50, random_state=np.random.RandomState(0))
    r2 = make_arma(50, random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(make_ar(50, random_state=1), make_ar(50, random_state=2))


def test_conditional_means_and_noise():
    y, mu = make_ar(300, coef=(0.5, -0.3), random_state=0, return_mean=True)
    np.testing.assert_allclose(mu[2:], 0.5 * y[1:-1] - 0.3 * y[:-2])
    y, mu = make_seasonal_ar(300, random_state=0, return_mean=True)
    np.testing.assert_allclose(mu[12:], 0.5 * y[11:-1] + 0.3 * y[:-12])
    y, mu = make_setar(300, random_state=0, return_mean=True)
    np.testing.assert_allclose(mu[1:], np.where(y[:-1] <= 0, 0.6, -0.5) * y[:-1])
    y1 = make_ar(100, random_state=4)
    y2 = make_ar(100, noise=2.0, random_state=4)
    np.testing.assert_allclose(y2, 2 * y1)
    y, mu, s2 = make_garch(2000, random_state=0, return_mean=True, return_sigma2=True)
    assert np.all(mu == 0) and np.all(s2 > 0)
    np.testing.assert_allclose(s2[1:], 0.1 + 0.1 * y[:-1] ** 2 + 0.8 * s2[:-1])
    assert abs(np.var(y) - 1.0) < 0.3  # unconditional variance 0.1 / (1 - 0.9)


def test_long_ar_moments():
    y = make_ar(100_000, coef=(0.6,), random_state=0)
    assert abs(y.mean()) < 0.03
    assert abs(y.var() - 1 / (1 - 0.36)) < 0.05
    yc = y - y.mean()
    assert abs(np.dot(yc[1:], yc[:-1]) / np.dot(yc, yc) - 0.6) < 0.01


@pytest.mark.parametrize(
    "func, kwargs, match",
    [
        (make_ar, {"n_samples": 0}, "n_samples"),
        (make_ar, {"n_samples": 10, "burn_in": -1}, "burn_in"),
        (make_ar, {"n_samples": 10, "noise": 0.0}, "noise"),
        (make_ar, {"n_samples": 10, "coef": [np.nan]}, "coef"),
        (make_ar, {"n_samples": 10, "random_state": "x"}, "random_state"),
        (make_seasonal_ar, {"n_samples": 10, "period": 1}, "period"),
        (make_garch, {"n_samples": 10, "omega": 0.0}, "omega"),
        (make_garch, {"n_samples": 10, "alpha": np.nan}, "alpha"),
        (make_garch, {"n_samples": 10, "beta": np.inf}, "beta"),
        (make_garch, {"n_samples": 10, "sigma2_0": -1.0}, "sigma2_0"),
        (make_garch, {"n_samples": 10, "sigma2_0": np.nan}, "sigma2_0"),
        (make_ar, {"n_samples": 10, "noise": True}, "noise"),
        (make_series, {"dgp": "nope", "n_samples": 10}, "unknown dgp"),
    ],
)
def test_errors(func, kwargs, match):
    with pytest.raises(ValueError, match=match):
        func(**kwargs)


@pytest.mark.parametrize(
    "simulate, match",
    [
        (lambda: make_ar(200, coef=(1.0,), random_state=0), "modulus 1 >= 1"),
        (lambda: make_ar(200, coef=(0.5, 0.6), random_state=0), "not stationary"),
        (lambda: make_arma(200, ar=(1.2,), random_state=0), r"ar=\[1.2\]"),
        (lambda: make_garch(200, alpha=0.5, beta=0.6, random_state=0), "1.1 >= 1"),
    ],
)
def test_explosive_parameters_warn(simulate, match):
    # A random walk or an explosive series is sometimes wanted: a warning
    # that says what it is, not an error.
    with pytest.warns(UserWarning, match=match):
        simulate()


def test_stationary_defaults_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_ar(200, random_state=0)
        make_ar(200, coef=(1.5, -0.2, -0.4), random_state=0)  # roots 0.99
        make_arma(200, random_state=0)
        make_garch(200, random_state=0)


@pytest.mark.parametrize("param", ["coef_low", "coef_high", "threshold"])
def test_setar_parameters_must_be_finite(param):
    with pytest.raises(ValueError, match="must be finite"):
        make_setar(20, **{param: float("nan")}, random_state=0)
