"""Lag matrices for one-step autoregressive regression, and their checks."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ..utils._validation import check_int, check_no_bool_counts, check_series

__all__ = [
    "make_lag_matrix",
    "check_lag_matrix",
    "series_from_lag_matrix",
    "LagFeatures",
]


def _check_n_lags(n_lags, name="n_lags"):
    return check_int(n_lags, name, 1, hint="the number of lag columns")


def make_lag_matrix(series, n_lags):
    """Build the lag matrix ``X`` and target ``y`` of a time series.

    ``X[t, j] = series[t + n_lags - j - 1]`` (column ``j`` is lag ``j + 1``) and
    ``y[t] = series[t + n_lags]``, for ``t = 0..n - n_lags - 1``. Rows are
    contiguous and increase in time, as ``ARSieveForestRegressor`` requires.

    Parameters
    ----------
    series : array-like of shape (n_samples,)
        The series in time order (a single column of shape (n_samples, 1) is
        accepted too).
    n_lags : int
        Number of lag columns, >= 1.

    Returns
    -------
    X : ndarray of shape (n_samples - n_lags, n_lags)
    y : ndarray of shape (n_samples - n_lags,)

    Raises
    ------
    ValueError
        For NaN/inf, a non-1-D series, ``n_lags < 1`` or a series shorter than
        ``n_lags + 1``.

    Examples
    --------
    >>> from skasync.preprocessing import make_lag_matrix
    >>> X, y = make_lag_matrix([0., 1., 2., 3., 4.], n_lags=2)
    >>> X
    array([[1., 0.],
           [2., 1.],
           [3., 2.]])
    >>> y
    array([2., 3., 4.])
    """
    n_lags = _check_n_lags(n_lags)
    x = check_series(
        series,
        nonfinite_hint="Lag matrices need equally spaced values: impute rather "
        "than drop missing ones.",
    )
    n = x.shape[0]
    if n < n_lags + 1:
        raise ValueError(
            f"series has n_samples={n} values but n_lags={n_lags} needs at least "
            f"n_lags + 1 = {n_lags + 1}. Use fewer lags or a longer series."
        )
    windows = sliding_window_view(x, n_lags + 1)
    X = np.ascontiguousarray(windows[:, -2::-1])
    y = windows[:, -1].copy()
    return X, y


def same_observations(a, b, spread):
    """Elementwise: can ``a`` and ``b`` be the same observation of a series?

    Exact copies match, and so do copies that went through float32 (2**-22
    relative rounding, or the same float32 value, e.g.
    ``make_lag_matrix(y).astype(np.float32)`` with a float64 ``y``). The
    tolerance never exceeds 1e-3 of the series' spread (its max - min), so
    a large level (``1e6 + y``) or a tiny scale (``1e-9 * y``) cannot make
    shuffled rows look time-ordered, as ``np.isclose``'s absolute and
    level-relative defaults did.

    Parameters
    ----------
    a, b : ndarray
        Values to compare, of the same shape.
    spread : float
        Max - min of the series (0 for a constant one: exact match only).

    Returns
    -------
    same : ndarray of bool
    """
    tolerance = np.minimum(
        2.0**-22 * np.maximum(np.abs(a), np.abs(b)), 1e-3 * float(spread)
    )
    # At a large level float32 rounding (2**-24 of it) exceeds 1e-3 of a
    # small spread, but a float32 copy of a float64 value still rounds to
    # the same float32. Only where one side is a float32 value: two float64
    # values that merely round alike (a level of 1e6 above a spread smaller
    # than its float32 step) are not copies, or shuffled rows would pass.
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    same_float32 = (a32 == b32) & ((a == a32) | (b == b32))
    return (np.abs(a - b) <= tolerance) | same_float32


def _lag_column_count(n_lag_columns, X):
    """``n_lag_columns`` checked against ``X``; None means every column."""
    if n_lag_columns is None:
        return X.shape[1]
    k = check_int(n_lag_columns, "n_lag_columns", 1)
    if k > X.shape[1]:
        raise ValueError(
            f"n_lag_columns={n_lag_columns} must be between 1 and the number of "
            f"columns of X ({X.shape[1]})."
        )
    return k


def check_lag_matrix(X, y=None, *, n_lag_columns=None, param_name="check_input_order"):
    """Check that ``X`` holds contiguous, time-ordered raw lags (of ``y``).

    Requires ``X[1:, j] == X[:-1, j - 1]`` for every lag column ``j >= 1``
    and, when ``y`` is given, ``X[1:, 0] == y[:-1]``: exactly what
    :func:`make_lag_matrix` produces. Equality allows float32 rounding, but
    never more than 1e-3 of the series' spread, whatever its level or scale.

    Parameters
    ----------
    X : array-like of shape (n_rows, n_features)
        Lag matrix; column ``j`` is lag ``j + 1``.
    y : array-like of shape (n_rows,), default=None
        Targets aligned with ``X``.
    n_lag_columns : int or None, default=None
        Number of leading lag columns to check (the rest, e.g. exogenous
        columns, are ignored). ``None`` checks all columns.
    param_name : str, default="check_input_order"
        Name of the caller's switch that disables this check, quoted in the
        error message.

    Raises
    ------
    ValueError
        If the rows are not contiguous time-ordered raw lags.

    Examples
    --------
    >>> import numpy as np
    >>> from skasync.preprocessing import make_lag_matrix, check_lag_matrix
    >>> X, y = make_lag_matrix(np.arange(10.), 3)
    >>> check_lag_matrix(X, y)
    >>> check_lag_matrix(X[::-1], y[::-1])
    Traceback (most recent call last):
    ...
    ValueError: ...
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D lag matrix (n_rows, n_lags), got shape {X.shape}. "
            "Build it with skasync.preprocessing.make_lag_matrix(series, n_lags)."
        )
    k = _lag_column_count(n_lag_columns, X)
    if y is not None:
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values.")
    if X.shape[0] < 2:
        return None
    L = X[:, :k]
    spread = np.ptp(L[:, 0]) if y is None else np.ptp(y)
    problem = None
    lag_one_ok = None if y is None else same_observations(L[1:, 0], y[:-1], spread)
    if lag_one_ok is not None and not lag_one_ok.all():
        row = int(np.argmax(~lag_one_ok)) + 1
        problem = (
            f"X[{row}, 0] (lag 1) != y[{row - 1}]: the lag-1 column is not the "
            "previous row's target"
        )
    if problem is None:
        for j in range(1, k):
            close = same_observations(L[1:, j], L[:-1, j - 1], spread)
            if not close.all():
                row = int(np.argmax(~close)) + 1
                problem = (
                    f"X[{row}, {j}] (lag {j + 1}) != X[{row - 1}, {j - 1}] "
                    f"(lag {j}): lag columns are not shifted copies of each other"
                )
                break
    if problem is not None:
        raise ValueError(
            f"X is not a contiguous, time-ordered lag matrix ({problem}). The "
            "rows must be consecutive time points in increasing order and the "
            "first columns must be the raw, unscaled lags 1, 2, ... of y, as "
            "made by skasync.preprocessing.make_lag_matrix. Common causes: "
            "shuffled cross-validation (KFold(shuffle=True), ShuffleSplit, "
            "train_test_split with shuffle=True), dropped or reordered rows, or a "
            "scaler (e.g. StandardScaler) applied to the lag columns. Fixes: use "
            "TimeSeriesSplit or train_test_split(..., shuffle=False), do not scale "
            "the lags (trees do not need scaling), or, if you know what you are "
            f"doing, pass {param_name}=False."
        )
    return None


def series_from_lag_matrix(X, y, *, n_lag_columns=None):
    """Rebuild the series from a lag matrix and its target.

    Returns ``concat(X[0, :k][::-1], y)`` with ``k = n_lag_columns`` (default:
    all columns), the inverse of :func:`make_lag_matrix`. The rows are assumed
    contiguous (see :func:`check_lag_matrix`).

    Parameters
    ----------
    X : array-like of shape (n_rows, n_features)
    y : array-like of shape (n_rows,)
    n_lag_columns : int or None, default=None

    Returns
    -------
    series : ndarray of shape (k + n_rows,)

    Examples
    --------
    >>> import numpy as np
    >>> from skasync.preprocessing import make_lag_matrix, series_from_lag_matrix
    >>> s = np.arange(6.)
    >>> series_from_lag_matrix(*make_lag_matrix(s, 2))
    array([0., 1., 2., 3., 4., 5.])
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must be a non-empty 2-D lag matrix, got shape {X.shape}.")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} values.")
    k = _lag_column_count(n_lag_columns, X)
    return np.concatenate([X[0, :k][::-1], y])


class LagFeatures(TransformerMixin, BaseEstimator):
    """Select the first ``n_lags`` lag columns of a lag matrix.

    Build a wide lag matrix once with :func:`make_lag_matrix` and put this
    transformer in a pipeline so that the number of lags becomes a
    hyper-parameter (e.g. ``lags__n_lags`` in ``GridSearchCV``).

    Parameters
    ----------
    n_lags : int or None, default=None
        Number of leading columns (lags ``1..n_lags``) to keep; None keeps
        every column, so the default passes any matrix through unchanged
        and a grid search sets the count. An int larger than the number of
        columns of ``X`` is a ``ValueError``.

    Attributes
    ----------
    n_lags_ : int
        Number of columns kept.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen in ``fit`` (only for inputs with string column
        names).

    Examples
    --------
    >>> import numpy as np
    >>> from skasync.preprocessing import LagFeatures, make_lag_matrix
    >>> X, y = make_lag_matrix(np.arange(20.), 8)
    >>> LagFeatures(n_lags=3).fit_transform(X).shape
    (12, 3)
    """

    _parameter_constraints = {
        "n_lags": [Interval(Integral, 1, None, closed="left"), None]
    }

    def __init__(self, n_lags=None):
        self.n_lags = n_lags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Validate ``X`` and check it has at least ``n_lags`` columns.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : LagFeatures
        """
        check_no_bool_counts(self)
        X = validate_data(self, X, dtype=np.float64)
        self._check_width(X.shape[1])
        self.n_lags_ = X.shape[1] if self.n_lags is None else self.n_lags
        return self

    def _check_width(self, n_features):
        if self.n_lags is not None and n_features < self.n_lags:
            raise ValueError(
                f"LagFeatures(n_lags={self.n_lags}) needs at least {self.n_lags} "
                f"lag columns but X has n_features = {n_features}. Build X with "
                f"make_lag_matrix(series, n_lags>={self.n_lags}) or lower n_lags."
            )

    def transform(self, X):
        """Return the first ``n_lags`` columns of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_lags : ndarray of shape (n_samples, n_lags)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X[:, : self.n_lags_].copy()

    def get_feature_names_out(self, input_features=None):
        """Names ``lag_1..lag_{n_lags}`` of the output columns.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Validated against the names seen in ``fit``; otherwise unused.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self)
        _check_feature_names_in(self, input_features)
        return np.asarray([f"lag_{j + 1}" for j in range(self.n_lags_)], dtype=object)
