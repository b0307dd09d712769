"""ARSieveForestRegressor as the estimator of skforecast's ForecasterRecursive.

Every comparison is against an independent computation: a hand-built lag
matrix, a hand-written recursive loop over ``predict``, and a refit loop over
the folds that never calls skforecast.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from skasync import ARSieveForestRegressor
from skasync.datasets import make_ar
from skasync.ensemble._ar_sieve_forest import BOOTSTRAPS
from skasync.preprocessing import make_lag_matrix

pytest.importorskip("skforecast")
pd = pytest.importorskip("pandas")
from skforecast.model_selection import (  # noqa: E402
    TimeSeriesFold,
    backtesting_forecaster,
)
from skforecast.recursive import ForecasterRecursive  # noqa: E402

N_LAGS = 5


@pytest.fixture(scope="module")
def series():
    # An AR(2) around a non-zero level, so a lost mean would show.
    values = 10.0 + make_ar(240, coef=(0.5, -0.3), random_state=0)
    return pd.Series(values, name="y")


def _forest(bootstrap="ar-sieve", n_estimators=25):
    return ARSieveForestRegressor(
        n_estimators=n_estimators, bootstrap=bootstrap, random_state=0
    )


def _hand_recursive(forest, history, steps):
    """Recursive forecasts from ``predict`` on hand-built rows (newest first)."""
    window = list(np.asarray(history)[-N_LAGS:])
    out = []
    for _ in range(steps):
        row = np.array(window[::-1][:N_LAGS])[None, :]
        value = float(forest.predict(row)[0])
        out.append(value)
        window.append(value)
    return np.array(out)


def test_training_matrix_is_the_lag_matrix(series):
    # skforecast's lag_1..lag_p columns are newest first, as the forest requires.
    forecaster = ForecasterRecursive(_forest(), lags=N_LAGS)
    X, y = forecaster.create_train_X_y(series)
    assert list(X.columns) == [f"lag_{j}" for j in range(1, N_LAGS + 1)]
    values = series.to_numpy()
    t = np.arange(N_LAGS, values.size)
    expected = np.column_stack([values[t - j] for j in range(1, N_LAGS + 1)])
    np.testing.assert_array_equal(X.to_numpy(), expected)
    np.testing.assert_array_equal(y.to_numpy(), values[N_LAGS:])


@pytest.mark.parametrize("bootstrap", ["ar-sieve", "moving"])
def test_predict_equals_forecast_and_hand_loop(series, bootstrap):
    forecaster = ForecasterRecursive(_forest(bootstrap), lags=N_LAGS)
    forecaster.fit(series)
    forest = forecaster.estimator
    predicted = forecaster.predict(steps=8).to_numpy()
    hand = _hand_recursive(forest, series.to_numpy(), 8)
    np.testing.assert_allclose(predicted, hand, rtol=0, atol=1e-12)
    mean = forest.forecast(series.to_numpy(), horizon=8).mean
    np.testing.assert_allclose(predicted, mean, rtol=0, atol=1e-12)
    # Same data and seed: skforecast's fit grows the same trees as a plain fit.
    plain = _forest(bootstrap).fit(*make_lag_matrix(series.to_numpy(), N_LAGS))
    np.testing.assert_array_equal(
        plain.forecast(series.to_numpy(), horizon=8).mean, mean
    )


def test_backtesting_with_refit_equals_own_refit_loop(series):
    steps, initial = 10, 180
    forecaster = ForecasterRecursive(_forest(), lags=N_LAGS)
    cv = TimeSeriesFold(
        steps=steps, initial_train_size=initial, refit=True, fixed_train_size=True
    )
    metric, predictions = backtesting_forecaster(
        forecaster,
        series,
        cv=cv,
        metric="mean_squared_error",
        n_jobs=1,
        show_progress=False,
    )
    values = series.to_numpy()
    expected = []
    for start in range(initial, values.size, steps):
        train = values[start - initial : start]  # a rolling window, refitted
        forest = clone(_forest()).fit(*make_lag_matrix(train, N_LAGS))
        h = min(steps, values.size - start)
        expected.append(_hand_recursive(forest, train, h))
    expected = np.concatenate(expected)
    np.testing.assert_allclose(predictions["pred"].to_numpy(), expected, atol=1e-12)
    mse = np.mean((values[initial:] - expected) ** 2)
    assert metric["mean_squared_error"].iloc[0] == pytest.approx(mse, rel=1e-12)


@pytest.mark.parametrize("bootstrap", BOOTSTRAPS)
@pytest.mark.parametrize("method", ["bootstrapping", "conformal"])
def test_predict_interval_with_each_bootstrap(series, bootstrap, method):
    forecaster = ForecasterRecursive(_forest(bootstrap), lags=N_LAGS)
    forecaster.fit(series, store_in_sample_residuals=True)
    kw = {"n_boot": 50} if method == "bootstrapping" else {}
    # skforecast's default interval: the 5 % and 95 % quantiles. Unbinned
    # residuals: one residual distribution for every predicted value.
    frame = forecaster.predict_interval(
        steps=6, method=method, use_binned_residuals=False, **kw
    )
    lower, upper = frame["lower_bound"].to_numpy(), frame["upper_bound"].to_numpy()
    assert frame.shape[0] == 6
    assert np.all(np.isfinite(frame.to_numpy()))
    assert np.all(lower < upper)
    # The point forecast is the forest's own recursive mean.
    forest = forecaster.estimator
    mean = forest.forecast(series.to_numpy(), 6).mean
    np.testing.assert_allclose(frame["pred"].to_numpy(), mean, atol=1e-12)
    if method == "conformal":
        # Split conformal on the in-sample residuals: mean +- their 90 %
        # absolute quantile at every step.
        X, y = make_lag_matrix(series.to_numpy(), N_LAGS)
        half = np.quantile(np.abs(y - forest.predict(X)), 0.90)
        np.testing.assert_allclose(upper - mean, half, rtol=0.02)
        np.testing.assert_allclose(mean - lower, half, rtol=0.02)


def test_transformed_target_agrees_on_the_transformed_series(series):
    # skforecast fits the forest on the transformed series; forecast() does not
    # know the transform, so it agrees only when given the same scale.
    scaler = StandardScaler()
    forecaster = ForecasterRecursive(_forest(), lags=N_LAGS, transformer_y=scaler)
    forecaster.fit(series)
    values = series.to_numpy()[:, None]
    z = StandardScaler().fit(values)
    scaled = z.transform(values).ravel()
    mean = forecaster.estimator.forecast(scaled, 6).mean
    back = z.inverse_transform(mean[:, None]).ravel()
    np.testing.assert_allclose(forecaster.predict(6).to_numpy(), back, atol=1e-9)


def test_differenced_target_agrees_on_the_differences(series):
    forecaster = ForecasterRecursive(_forest(), lags=N_LAGS, differentiation=1)
    forecaster.fit(series)
    values = series.to_numpy()
    step_means = forecaster.estimator.forecast(np.diff(values), 6).mean
    np.testing.assert_allclose(
        forecaster.predict(6).to_numpy(), values[-1] + np.cumsum(step_means), atol=1e-9
    )


def test_gapped_lags_rejected_by_ar_sieve_and_forecast(series):
    forecaster = ForecasterRecursive(_forest(), lags=[1, 3])
    with pytest.raises(ValueError, match="lag-only X"):
        forecaster.fit(series)
    # A block bootstrap takes the gapped column as an extra feature, so
    # skforecast works but forecast() refuses (the forest's lags are 1 only).
    forecaster = ForecasterRecursive(_forest("moving"), lags=[1, 3])
    forecaster.fit(series)
    assert forecaster.estimator.n_lags_ == 1
    assert np.all(np.isfinite(forecaster.predict(4).to_numpy()))
    with pytest.raises(ValueError, match="extra non-lag column"):
        forecaster.estimator.forecast(series.to_numpy(), 4)
