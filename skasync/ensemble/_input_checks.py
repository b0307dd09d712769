"""Checks of what the forest's fit derives from its inputs.

Structure:

- :func:`count_lag_columns`: the number of leading lag columns of ``X``, with
  an error naming the fix when the rows are not a time-ordered lag matrix.
- :func:`resolve_max_features`: ``max_features`` as a number of features.
- :func:`fit_sieve`: the AR sieve fit on the training series, with errors
  that name the parameter to change.
- :func:`truncate_sieve`: the sieve's coefficients padded or truncated to
  the lag columns, with a warning when the truncation is explosive.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import warnings
from numbers import Integral

import numpy as np

from ..bootstrap import ARSieveFit, fit_ar_sieve
from ..bootstrap._sieve import largest_inverse_root
from ..preprocessing import check_lag_matrix
from ..preprocessing._lags import same_observations

__all__ = ["count_lag_columns", "fit_sieve", "resolve_max_features", "truncate_sieve"]


def resolve_max_features(max_features, n_features):
    """Number of candidate features per split for ``max_features``.

    Parameters
    ----------
    max_features : {"sqrt", "log2"}, int, float or None
        As in :class:`ARSieveForestRegressor`.
    n_features : int
        Number of columns of ``X``.

    Returns
    -------
    mtry : int
    """
    mf = max_features
    if mf is None:
        return n_features
    if mf == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if mf == "log2":
        return max(1, int(np.log2(n_features)))
    if isinstance(mf, Integral):
        if mf > n_features:
            raise ValueError(
                f"max_features={mf} exceeds the number of features of X "
                f"({n_features}); pass an int <= {n_features}, a float in "
                "(0, 1], 'sqrt' or None."
            )
        return int(mf)
    return max(1, int(mf * n_features))


def count_lag_columns(X, y, bootstrap):
    """Number of leading lag columns of ``X``; raise if the rows are not time-ordered.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Should be a lag matrix of ``y``: column ``j`` is lag ``j + 1``.
    y : ndarray of shape (n_samples,)
    bootstrap : str
        The forest's bootstrap; ``"ar-sieve"`` takes lag columns only.

    Returns
    -------
    n_lags : int
    """
    n_features = X.shape[1]
    spread = np.ptp(y)
    if not same_observations(X[1:, 0], y[:-1], spread).all():
        # check_lag_matrix raises its detailed, actionable message.
        check_lag_matrix(X, y, n_lag_columns=1)
    k = 1
    while k < n_features and same_observations(X[1:, k], X[:-1, k - 1], spread).all():
        k += 1
    if k < n_features and bootstrap == "ar-sieve":
        raise ValueError(
            f"bootstrap='ar-sieve' takes lag-only X: columns 0..{k - 1} are lags "
            f"1..{k} of y, but column {k} is not lag {k + 1} (X[t, {k}] != "
            f"X[t-1, {k - 1}]). Its trees see only synthetic lags, so extra "
            "(exogenous) or transformed (e.g. scaled) columns are not "
            "supported. Drop the extra columns (build X with "
            "make_lag_matrix(series, n_lags)), do not scale the lags, use a "
            "block bootstrap (e.g. bootstrap='moving') that accepts extra "
            "columns after the lags, or pass check_input_order=False to "
            "treat every column as a lag."
        )
    return k


def fit_sieve(series, order, order_max, method):
    """Fit the AR sieve on the training series, with errors that name the fix.

    Parameters
    ----------
    series : ndarray of shape (n,)
        The training series rebuilt from ``X`` and ``y``.
    order, order_max, method
        ``ar_order``, ``ar_order_max`` and ``ar_method`` of the forest.

    Returns
    -------
    sieve : ARSieveFit
    """
    n = series.shape[0]
    for name, val in (("ar_order", order), ("ar_order_max", order_max)):
        if val is not None and val >= n:
            raise ValueError(
                f"{name}={val} needs a training series longer than {val} "
                f"values, but X and y give a series of {n} values (rows + "
                f"lags). Lower {name} or pass more rows."
            )
    if order is not None and order_max is not None and order > order_max:
        raise ValueError(
            f"ar_order={order} exceeds ar_order_max="
            f"{order_max}; raise ar_order_max or leave it at None."
        )
    if np.ptp(series) == 0.0:
        # Data sklearn accepts (an all-zero fold of intermittent demand):
        # the exact AR of a constant is its level with no innovations, so
        # the sieve series are that constant and every forest predicts it.
        order = 0 if order is None else order
        order_max = max(order, 0 if order_max is None else order_max)
        return ARSieveFit(
            order=order,
            coef=np.zeros(order),
            mean=float(series[0]),
            resid=np.zeros(n - order),
            aic=np.full(order_max + 1, np.inf),
            sigma2=0.0,
            order_max=order_max,
        )
    try:
        return fit_ar_sieve(
            series,
            order=order,
            order_max=order_max,
            method=method,
        )
    except ValueError as exc:
        raise ValueError(
            f"Cannot fit the AR sieve (ar_order={order}, "
            f"ar_order_max={order_max}, ar_method="
            f"{method!r}) on the training series of {n} values "
            f"rebuilt from X and y: {exc}"
        ) from exc


def truncate_sieve(coef, n_lags, simulates):
    """The sieve coefficients zero-padded or truncated to ``n_lags``.

    Truncation is what the reference ``rangertsARS`` runs do. Truncating an
    AR(p) with ``p > n_lags`` can leave a polynomial with a root inside the
    unit circle (an explosive AR(n_lags)); series simulated from it diverge,
    which is seen on seasonal monthly series whose AIC order is 14-26 with 12
    lags (``docs/benchmarks.rst``). Then, if the trees simulate
    (``simulates``), a warning names the fix.

    Parameters
    ----------
    coef : ndarray of shape (order,)
        The fitted AR coefficients ``phi_1..phi_p``.
    n_lags : int
        Number of lag columns.
    simulates : bool
        Whether the trees grow on series simulated from the result.

    Returns
    -------
    sieve_coef : ndarray of shape (n_lags,)
    """
    order = coef.shape[0]
    sieve_coef = np.zeros(n_lags)
    sieve_coef[: min(order, n_lags)] = coef[:n_lags]
    if simulates and order > n_lags:
        root = largest_inverse_root(sieve_coef)
        if root >= 1.0:
            warnings.warn(
                f"The AIC order of the AR sieve ({order}) exceeds the {n_lags} "
                f"lag columns, and its coefficients truncated to {n_lags} lags "
                f"are not stationary (largest inverse root {root:.3f} >= 1): "
                "the series the trees grow on diverge. Pass "
                f"ar_order_max={n_lags} (or ar_order <= {n_lags}) to fit the "
                f"sieve within the lags, or use at least {order} lag columns.",
                UserWarning,
                stacklevel=3,
            )
    return sieve_coef
