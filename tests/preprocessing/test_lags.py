# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""Lag-matrix helpers and LagFeatures."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, KFold, TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync.preprocessing import (
    LagFeatures,
    check_lag_matrix,
    make_lag_matrix,
    series_from_lag_matrix,
)


def test_make_lag_matrix_layout():
    s = np.arange(10.0)
    X, y = make_lag_matrix(s, 3)
    assert X.shape == (7, 3) and y.shape == (7,)
    for t in range(7):
        for j in range(3):
            assert X[t, j] == s[t + 3 - j - 1]
        assert y[t] == s[t + 3]
    assert X.flags.c_contiguous and X.dtype == np.float64
    # a (n, 1) column is accepted
    X2, y2 = make_lag_matrix(s.reshape(-1, 1), 3)
    np.testing.assert_array_equal(X, X2)
    # the output does not alias the input
    X[0, 0] = -1
    assert s[2] == 2.0


@settings(max_examples=30, deadline=None)
@given(
    s=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=60),
    k=st.integers(1, 8),
)
def test_roundtrip_and_check(s, k):
    s = np.asarray(s)
    if s.shape[0] < k + 1:
        with pytest.raises(ValueError, match="n_lags"):
            make_lag_matrix(s, k)
        return
    X, y = make_lag_matrix(s, k)
    assert X.shape == (s.shape[0] - k, k)
    check_lag_matrix(X, y)
    check_lag_matrix(X)
    np.testing.assert_array_equal(series_from_lag_matrix(X, y), s)


@pytest.mark.parametrize(
    "series, n_lags, match",
    [
        ([1.0, np.nan, 3.0, 4.0], 1, "NaN or infinity"),
        ([1.0, np.inf, 3.0, 4.0], 1, "NaN or infinity"),
        (np.ones((5, 2)), 1, "1-D"),
        ([1.0, 2.0, 3.0], 3, r"n_samples=3 .* n_lags=3 .* at least"),
        ([1.0, 2.0, 3.0], 0, "n_lags must be an int >= 1"),
        ([1.0, 2.0, 3.0], 1.5, "n_lags must be an int >= 1"),
    ],
)
def test_make_lag_matrix_errors(series, n_lags, match):
    with pytest.raises(ValueError, match=match):
        make_lag_matrix(series, n_lags)


def test_check_lag_matrix_catches_shuffles_and_scaling():
    s = np.random.default_rng(0).standard_normal(200)
    X, y = make_lag_matrix(s, 4)
    perm = np.random.default_rng(1).permutation(X.shape[0])
    with pytest.raises(ValueError, match="TimeSeriesSplit") as exc:
        check_lag_matrix(X[perm], y[perm])
    assert "KFold(shuffle=True)" in str(exc.value)
    assert "check_input_order=False" in str(exc.value)
    # KFold(shuffle=True) training folds have gaps
    train, _ = next(KFold(5, shuffle=True, random_state=0).split(X))
    with pytest.raises(ValueError, match="contiguous"):
        check_lag_matrix(X[train], y[train])
    # TimeSeriesSplit folds pass
    for train, test in TimeSeriesSplit(3).split(X):
        check_lag_matrix(X[train], y[train])
        check_lag_matrix(X[test], y[test])
    # scaled lags fail, even without y
    Xs = StandardScaler().fit_transform(X)
    with pytest.raises(ValueError, match="scaler"):
        check_lag_matrix(Xs, y)
    with pytest.raises(ValueError, match="lag 2"):
        check_lag_matrix(Xs)
    # the parameter name is quoted
    with pytest.raises(ValueError, match="my_flag=False"):
        check_lag_matrix(X[::-1], y[::-1], param_name="my_flag")


@pytest.mark.parametrize(
    "transform",
    [lambda s: 1e6 + s, lambda s: 1e-9 * s, lambda s: -3e8 + 100 * s],
    ids=["level 1e6", "scale 1e-9", "level -3e8"],
)
def test_check_lag_matrix_shuffle_detection_ignores_level_and_scale(transform):
    # np.isclose's defaults (atol 1e-8, rtol 1e-5 of the value) accepted
    # these shuffled rows: the tolerance followed the level, not the spread.
    from skasync import ARSieveForestRegressor
    from skasync.datasets import make_ar

    series = transform(make_ar(300, (0.6,), random_state=0))
    X, y = make_lag_matrix(series, 5)
    check_lag_matrix(X, y)  # in order: accepted
    perm = np.random.default_rng(0).permutation(X.shape[0])
    with pytest.raises(ValueError, match="contiguous"):
        check_lag_matrix(X[perm], y[perm])
    with pytest.raises(ValueError, match="contiguous"):
        ARSieveForestRegressor(n_estimators=5, random_state=0).fit(X[perm], y[perm])
    # one row swapped with its neighbour is caught too
    swapped = np.arange(X.shape[0])
    swapped[[100, 101]] = swapped[[101, 100]]
    with pytest.raises(ValueError, match="contiguous"):
        check_lag_matrix(X[swapped], y[swapped])
    # A float32 copy of X beside the float64 y is the same series (at level
    # 1e6 its rounding, 0.06, exceeds 1e-3 of the spread); shuffled, it is not.
    X32 = X.astype(np.float32)
    check_lag_matrix(X32, y)
    with pytest.raises(ValueError, match="contiguous"):
        check_lag_matrix(X32[perm], y[perm])


def test_check_lag_matrix_accepts_float32_lags_of_a_float64_series():
    series = 50.0 + np.random.default_rng(0).standard_normal(300)
    X, y = make_lag_matrix(series, 3)
    # lags rounded to float32, targets not: the same observations
    check_lag_matrix(X.astype(np.float32), y)


def test_check_lag_matrix_exogenous_columns_and_edge_cases():
    s = np.arange(30.0)
    X, y = make_lag_matrix(s, 3)
    exo = np.random.default_rng(0).standard_normal((X.shape[0], 2))
    Xe = np.hstack([X, exo])
    check_lag_matrix(Xe, y, n_lag_columns=3)
    with pytest.raises(ValueError):
        check_lag_matrix(Xe, y)
    check_lag_matrix(X[:1], y[:1])  # a single row cannot be checked
    with pytest.raises(ValueError, match="2-D"):
        check_lag_matrix(s)
    with pytest.raises(ValueError, match="rows"):
        check_lag_matrix(X, y[:-1])
    with pytest.raises(ValueError, match="n_lag_columns"):
        check_lag_matrix(X, y, n_lag_columns=5)
    np.testing.assert_array_equal(series_from_lag_matrix(Xe, y, n_lag_columns=3), s)


def test_lag_features_transform_and_names():
    X, y = make_lag_matrix(np.arange(40.0), 8)
    lf = LagFeatures(n_lags=3).fit(X)
    Xt = lf.transform(X)
    np.testing.assert_array_equal(Xt, X[:, :3])
    assert list(lf.get_feature_names_out()) == ["lag_1", "lag_2", "lag_3"]
    with pytest.raises(ValueError, match="n_lags=9"):
        LagFeatures(n_lags=9).fit(X)
    with pytest.raises(ValueError):
        LagFeatures(n_lags=0).fit(X)


def test_lag_features_pandas_names():
    pd = pytest.importorskip("pandas")
    X, y = make_lag_matrix(np.arange(40.0), 4)
    df = pd.DataFrame(X, columns=[f"y_lag{j + 1}" for j in range(4)])
    lf = LagFeatures(n_lags=2).fit(df)
    np.testing.assert_array_equal(lf.feature_names_in_, df.columns)
    assert list(lf.get_feature_names_out()) == ["lag_1", "lag_2"]


def test_lag_features_grid_search():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(400)
    s = np.zeros(400)
    for t in range(2, 400):
        s[t] = 0.5 * s[t - 1] - 0.4 * s[t - 2] + e[t]
    X, y = make_lag_matrix(s, 6)
    pipe = make_pipeline(LagFeatures(), LinearRegression())
    search = GridSearchCV(
        pipe, {"lagfeatures__n_lags": [1, 2, 6]}, cv=TimeSeriesSplit(3)
    ).fit(X, y)
    assert search.best_params_["lagfeatures__n_lags"] in (2, 6)


@parametrize_with_checks([LagFeatures(n_lags=1)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_lag_features_default_keeps_every_column():
    X, _ = make_lag_matrix(np.arange(30.0), 4)
    lf = LagFeatures().fit(X)
    assert lf.n_lags_ == 4
    np.testing.assert_array_equal(lf.transform(X), X)
    assert list(lf.get_feature_names_out()) == ["lag_1", "lag_2", "lag_3", "lag_4"]
    assert LagFeatures(n_lags=2).fit(X).n_lags_ == 2


@pytest.mark.parametrize("value", [True, False])
def test_lag_features_rejects_bool_counts(value):
    X, _ = make_lag_matrix(np.arange(30.0), 4)
    # True passes sklearn's Interval(Integral) as 1 and is caught by the
    # bool-count check; False is out of the interval.
    with pytest.raises(ValueError, match="n_lags"):
        LagFeatures(n_lags=value).fit(X)


def test_shuffled_float64_rows_whose_level_dwarfs_the_spread_are_caught():
    # At level 1e6 the float32 step (0.0625) exceeds the whole spread, so
    # every float64 value rounds to a few float32 values; only a genuine
    # float32 copy may match through float32.
    series = 1e6 + 0.01 * np.random.default_rng(0).standard_normal(200)
    X, y = make_lag_matrix(series, 3)
    check_lag_matrix(X, y)
    perm = np.random.default_rng(1).permutation(X.shape[0])
    with pytest.raises(ValueError, match="contiguous"):
        check_lag_matrix(X[perm], y[perm])


@pytest.mark.parametrize("bad", [0, -1, 4, 2.7, True])
def test_n_lag_columns_is_checked_by_both_lag_helpers(bad):
    # series_from_lag_matrix used to drop values (0, -1) or accept more
    # columns than X has; check_lag_matrix truncated 2.7 to 2.
    X, y = make_lag_matrix(np.arange(10.0), 3)
    for call in (series_from_lag_matrix, check_lag_matrix):
        with pytest.raises(ValueError, match="n_lag_columns"):
            call(X, y, n_lag_columns=bad)
    np.testing.assert_array_equal(
        series_from_lag_matrix(X, y, n_lag_columns=np.int64(3)), np.arange(10.0)
    )
