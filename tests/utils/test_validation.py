import numpy as np
import pytest

from skasync.utils._validation import check_series


def test_single_column_is_flattened_without_copying_values():
    column = np.arange(5.0).reshape(-1, 1)
    x = check_series(column)
    assert x.shape == (5,)
    np.testing.assert_array_equal(x, np.arange(5.0))
    assert np.shares_memory(x, column)  # a view: long series are not copied


@pytest.mark.parametrize(
    "series, kwargs, message",
    [
        (
            np.ones((4, 2)),
            {"name": "history"},
            r"history must be a 1-D .*shape \(4, 2\)",
        ),
        (np.ones((2, 2, 2)), {}, "series must be a 1-D"),
        (
            [1.0, np.nan],
            {"nonfinite_hint": "Impute first."},
            "NaN or infinity.*Impute first",
        ),
        ([1.0, -np.inf], {}, "NaN or infinity"),
        ([1.0, 2.0], {"min_samples": 3}, "n_samples=2 values but at least 3"),
    ],
)
def test_bad_series_raise_value_error_naming_the_parameter(series, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_series(series, **kwargs)


@pytest.mark.parametrize(
    "make", [np.array, list, lambda v: pytest.importorskip("pandas").Series(v)]
)
def test_complex_series_is_refused_not_truncated(make):
    # float64 conversion would keep 1 and 3 and drop the imaginary parts.
    series = make(np.array([1 + 2j, 3 + 4j]))
    with pytest.raises(ValueError, match="history is complex"):
        check_series(series, name="history")
    # A real series of complex dtype is refused too, as sklearn's check_array.
    with pytest.raises(ValueError, match="series is complex"):
        check_series(np.array([1.0, 2.0], dtype=complex))


def test_forecast_history_uses_the_shared_check():
    from skasync import ARSieveForestRegressor, make_lag_matrix
    from skasync.datasets import make_ar

    series = make_ar(120, coef=(0.5,), random_state=0)
    forest = ARSieveForestRegressor(n_estimators=5, random_state=0).fit(
        *make_lag_matrix(series, 2)
    )
    with pytest.raises(ValueError, match="history must be a 1-D"):
        forest.forecast(np.c_[series, series], horizon=2)
    with pytest.raises(ValueError, match="history contains NaN"):
        forest.forecast(np.r_[series, np.nan], horizon=2)


@pytest.mark.parametrize("value", [0, -3, 1.0, True, "2", None])
def test_check_int_rejects_non_ints_and_small_values(value):
    from skasync.utils._validation import check_int

    with pytest.raises(ValueError, match=r"n_draws must be an int >= 1, got"):
        check_int(value, "n_draws", 1)


def test_check_int_returns_python_int():
    from skasync.utils._validation import check_int

    out = check_int(np.int64(4), "n", 1)
    assert out == 4 and type(out) is int


def test_check_int_allow_none_and_hint_in_message():
    from skasync.utils._validation import check_int

    assert check_int(None, "order", 0, allow_none=True) is None
    with pytest.raises(ValueError, match=r"order must be an int >= 0, got None"):
        check_int(None, "order", 0)
    with pytest.raises(
        ValueError, match=r"n_lags must be None or an int >= 1 \(lag columns\), got 0"
    ):
        check_int(0, "n_lags", 1, allow_none=True, hint="lag columns")
