"""Recursive multi-step forecasts of a fitted forest, with simulated intervals.

Structure:

- :class:`ForecastResult`: what :meth:`ARSieveForestRegressor.forecast` returns.
- ``INTERVAL_METHODS``: the names of the interval methods.
- :func:`check_levels`: the requested quantile levels, checked.
- :func:`resolve_interval_method`: what ``interval_method="auto"`` means for
  a given forest, horizon and levels.
- :func:`recursive_forecast`: the point forecast (the forest mean fed back as
  lag 1) and, when levels are requested, the pointwise quantiles of simulated
  paths: run by the forest mean and driven by the forest's honest one-step
  residuals (``"residual-paths"``), or each run by one tree and driven by the
  sieve residuals (``"tree-paths"``, the method before issue 11).
- :func:`horizon_errors` and :func:`conformal_quantiles`: the ``"conformal"``
  intervals, the point forecast plus split-conformal quantiles of the forest's
  own h-step errors on the training series, horizon by horizon.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math
from collections import namedtuple

import numpy as np
from sklearn.utils import check_random_state

from ..utils._validation import check_int
from ._tree import predict_mean, predict_own_tree, walk_arrays

__all__ = [
    "INTERVAL_METHODS",
    "ForecastResult",
    "check_interval_method",
    "check_levels",
    "conformal_quantiles",
    "horizon_errors",
    "recursive_forecast",
    "resolve_interval_method",
]

#: Interval methods of :meth:`ARSieveForestRegressor.forecast`, default first.
INTERVAL_METHODS = ("auto", "conformal", "residual-paths", "tree-paths")

#: Default number of simulated paths of ``"residual-paths"``.
DEFAULT_RESIDUAL_PATHS = 1000

ForecastResult = namedtuple(
    "ForecastResult",
    ["mean", "quantiles", "levels", "interval_method"],
    defaults=(None,),
)
ForecastResult.__doc__ = """Result of :meth:`ARSieveForestRegressor.forecast`.

Attributes
----------
mean : ndarray of shape (horizon,)
    Recursive point forecasts: the forest mean at each step, fed back as lag 1.
quantiles : ndarray of shape (horizon, n_levels) or None
    Pointwise quantiles of the simulated future paths at ``levels`` (None when
    no quantiles were requested). With ``quantiles=(0.05, 0.95)``,
    ``quantiles[:, 0]`` and ``quantiles[:, 1]`` are the lower and upper bounds of
    a 90 % prediction interval.
levels : tuple of float or None
    The requested quantile levels, in the order of the columns of ``quantiles``.
interval_method : str or None
    The interval method that made ``quantiles`` (what ``"auto"`` resolved to),
    or None without quantiles.
"""


def check_levels(quantiles, name="quantiles"):
    """Quantile levels as a strictly increasing tuple of floats in (0, 1).

    Parameters
    ----------
    quantiles : sequence of float or None
        The requested levels.
    name : str, default="quantiles"
        The parameter the errors name (``ForecastDisplay`` takes ``levels``).

    Returns
    -------
    levels : tuple of float or None
        None when ``quantiles`` is None.

    Raises
    ------
    ValueError
        If a level is not a number in the open interval (0, 1), or the levels
        are not sorted, or a level is repeated.
    """
    if quantiles is None:
        return None
    try:
        requested = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
    except (TypeError, ValueError):
        requested = np.empty((0, 0))  # not numbers: the error below
    levels = tuple(requested.tolist()) if requested.ndim == 1 else ()
    if not levels or not all(0.0 < q < 1.0 for q in levels):
        raise ValueError(
            f"{name} must be levels in the open interval (0, 1), e.g. "
            f"(0.05, 0.95) for a 90 % interval; got {quantiles!r}."
        )
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(
            f"{name} must be sorted in increasing order without repeats, e.g. "
            f"(0.05, 0.5, 0.95); got {quantiles!r}. Pass "
            f"{tuple(sorted(set(levels)))!r}."
        )
    return levels


def check_interval_method(interval_method):
    """``interval_method`` if it is one of ``INTERVAL_METHODS``, else a ValueError."""
    if interval_method not in INTERVAL_METHODS:
        raise ValueError(
            f"interval_method must be one of {INTERVAL_METHODS}, got "
            f"{interval_method!r}."
        )
    return interval_method


def conformal_error_count(levels):
    """Fewest h-step errors whose conformal quantiles at ``levels`` are finite.

    With ``m`` errors the split-conformal bound at level ``tau`` is order
    statistic ``floor((m + 1) tau)`` (lower levels) or ``ceil((m + 1) tau)``
    (upper levels); both must lie in ``1..m``.
    """
    # The closed form (m + 1) tau >= 1 below the median and (m + 1) tau <= m
    # above it, then a step or two for the rounding of the ranks.
    low = [1.0 / tau - 1.0 for tau in levels if tau < 0.5]
    high = [tau / (1.0 - tau) for tau in levels if tau >= 0.5]
    m = max(1, math.floor(max(low + high)))
    while not all(1 <= k <= m for k in _order_statistics(m, levels)):
        m += 1
    return m


def _order_statistics(m, levels):
    # 1-based ranks among m sorted errors; median-or-above levels round up so
    # an upper bound is never below the nominal share of errors.
    return [
        int(np.ceil((m + 1) * tau - 1e-9))
        if tau >= 0.5
        else int(np.floor((m + 1) * tau + 1e-9))
        for tau in levels
    ]


def resolve_interval_method(interval_method, *, n_calibration, horizon, levels):
    """The interval method ``forecast`` runs.

    Parameters
    ----------
    interval_method : str
        One of ``INTERVAL_METHODS`` (checked by :func:`check_interval_method`).
    n_calibration : int
        Rows of the training series whose h-step errors are honest (every row
        of an AR-sieve forest: its trees grew on synthetic series); 0 when
        there are none (the block and i.i.d. bootstraps).
    horizon : int
        Number of steps ahead.
    levels : tuple of float
        Quantile levels (checked by :func:`check_levels`).

    Returns
    -------
    method : {"conformal", "residual-paths", "tree-paths"}
        ``"auto"`` is ``"conformal"`` when there are enough honest errors at
        the last horizon for the most extreme level, else ``"residual-paths"``.

    Raises
    ------
    ValueError
        For ``"conformal"`` without honest errors, or with too few of them.
    """
    n_errors = n_calibration - horizon + 1
    enough = n_errors >= conformal_error_count(levels)
    if interval_method == "auto":
        return "conformal" if enough else "residual-paths"
    if interval_method == "conformal" and n_calibration == 0:
        raise ValueError(
            "interval_method='conformal' needs the forest's h-step errors on "
            "training rows its trees did not learn from, which only "
            "bootstrap='ar-sieve' has (the trees grow on synthetic series), "
            "fitted on a lag matrix with check_input_order=True (so the rows are "
            "consecutive origins). Use interval_method='residual-paths' (with "
            "oob_score=True for the other bootstraps), or 'auto'."
        )
    if interval_method == "conformal" and not enough:
        raise ValueError(
            f"interval_method='conformal' at horizon={horizon} has "
            f"{max(n_errors, 0)} training origins, too few for quantiles "
            f"{levels} (it needs {conformal_error_count(levels)}). Use a shorter "
            "horizon, less extreme quantiles, or interval_method='auto', which "
            "simulates paths ('residual-paths') instead."
        )
    return interval_method


def horizon_errors(forest, X, y, horizon):
    """Errors of the recursive forest mean at each horizon, from every origin.

    Parameters
    ----------
    forest : PackedForest
        The fitted trees; feature ``j`` is lag ``j + 1``.
    X : ndarray of shape (n_rows, n_lags)
        Consecutive rows of the training lag matrix.
    y : ndarray of shape (n_rows,)
        Their targets.
    horizon : int
        Number of steps ahead, at most ``n_rows``.

    Returns
    -------
    errors : list of ndarray
        ``errors[h][i] = y[i + h] - forecast`` of step ``h + 1`` made from the
        lags of row ``i``, for ``i = 0..n_rows - h - 1``.
    """
    n_rows = y.shape[0]
    lags = np.array(X, dtype=np.float64)
    errors = []
    for step in range(horizon):
        pred = predict_mean(forest, lags[: n_rows - step])
        errors.append(y[step:] - pred)
        lags = lags[: n_rows - step - 1]
        lags[:, 1:] = lags[:, :-1].copy()
        lags[:, 0] = pred[:-1]
    return errors


def conformal_quantiles(mean, errors, levels):
    """Point forecast plus split-conformal quantiles of the h-step errors.

    Parameters
    ----------
    mean : ndarray of shape (horizon,)
        Recursive point forecasts.
    errors : list of ndarray
        ``errors[h]``: the honest errors at step ``h + 1`` (see
        :func:`horizon_errors`), at least :func:`conformal_error_count` each.
    levels : tuple of float
        Quantile levels.

    Returns
    -------
    quantiles : ndarray of shape (horizon, n_levels)
    """
    q = np.empty((mean.shape[0], len(levels)))
    for step, err in enumerate(errors):
        ranks = _order_statistics(err.shape[0], levels)
        q[step] = mean[step] + np.sort(err)[np.asarray(ranks) - 1]
    return q


def recursive_forecast(
    forest,
    lags,
    horizon,
    levels,
    *,
    method,
    resid,
    n_paths,
    random_state,
    errors=None,
):
    """Recursive forecasts from the lags of the first step.

    Parameters
    ----------
    forest : PackedForest
        The fitted trees; feature ``j`` is lag ``j + 1``.
    lags : ndarray of shape (n_lags,)
        ``lags[j]`` is lag ``j + 1`` of the first forecast (newest first).
    horizon : int
        Number of steps ahead, >= 1.
    levels : tuple of float or None
        Quantile levels (checked by :func:`check_levels`); None skips the
        simulation.
    method : {"conformal", "residual-paths", "tree-paths"}
        ``"conformal"``: :func:`conformal_quantiles` of ``errors``, no
        paths; ``"residual-paths"``: every path is run by the forest mean;
        ``"tree-paths"``: path ``k`` is run by tree ``k mod n_trees`` alone.
    resid : ndarray of shape (n_resid,)
        Innovations, drawn i.i.d. at each step of each simulated path.
    n_paths : int or None
        Number of simulated paths; None means ``DEFAULT_RESIDUAL_PATHS`` for
        ``"residual-paths"`` and one per tree for ``"tree-paths"``.
    random_state : int, RandomState instance or None
        Controls the innovation draws.
    errors : list of ndarray or None, default=None
        ``errors[h]``: the honest h-step errors of :func:`horizon_errors`, at
        least ``horizon`` of them, for ``"conformal"``; unused otherwise.

    Returns
    -------
    result : ForecastResult
    """
    n_trees = forest.node_offsets.shape[0] - 1

    # Point forecast: forest mean, fed back as lag 1.
    start = lags
    lags = start.copy()
    mean = np.empty(horizon)
    for step in range(horizon):
        mean[step] = predict_mean(forest, lags[None, :])[0]
        lags[1:] = lags[:-1]
        lags[0] = mean[step]
    if levels is None:
        return ForecastResult(mean, None, None)
    if method == "conformal":
        return ForecastResult(
            mean, conformal_quantiles(mean, errors[:horizon], levels), levels, method
        )

    n_paths = check_int(n_paths, "n_paths", 1, allow_none=True)
    by_tree = method == "tree-paths"
    if n_paths is None:
        n_paths = n_trees if by_tree else DEFAULT_RESIDUAL_PATHS
    rng = check_random_state(random_state)
    tree_ids = np.arange(n_paths, dtype=np.int64) % n_trees
    Z = np.tile(start, (n_paths, 1))
    paths = np.empty((n_paths, horizon))
    pred = np.empty(n_paths)
    for step in range(horizon):
        if by_tree:
            predict_own_tree(*walk_arrays(forest), tree_ids, Z, pred)
        else:
            pred = predict_mean(forest, Z)
        value = pred + resid[rng.randint(0, resid.shape[0], size=n_paths)]
        paths[:, step] = value
        Z[:, 1:] = Z[:, :-1]
        Z[:, 0] = value
    q = np.quantile(paths, levels, axis=0).T
    return ForecastResult(mean, q, levels, method)
