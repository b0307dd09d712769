"""Recursive multi-step forecasts of a fitted forest, with simulated intervals.

Structure:

- :class:`ForecastResult`: what :meth:`ARSieveForestRegressor.forecast` returns.
- ``INTERVAL_METHODS``: the names of the interval methods.
- :func:`check_levels`: the requested quantile levels, checked.
- :func:`recursive_forecast`: the point forecast (the forest mean fed back as
  lag 1) and, when levels are requested, the pointwise quantiles of simulated
  paths: run by the forest mean and driven by the forest's honest one-step
  residuals (``"residual-paths"``), or each run by one tree and driven by the
  sieve residuals (``"tree-paths"``, the method before issue 11).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

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
    "recursive_forecast",
]

#: Interval methods of :meth:`ARSieveForestRegressor.forecast`, default first.
INTERVAL_METHODS = ("residual-paths", "tree-paths")

#: Default number of simulated paths of ``"residual-paths"``.
DEFAULT_RESIDUAL_PATHS = 1000

ForecastResult = namedtuple("ForecastResult", ["mean", "quantiles", "levels"])
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
"""


def check_levels(quantiles):
    """Quantile levels as a strictly increasing tuple of floats in (0, 1).

    Parameters
    ----------
    quantiles : sequence of float or None
        The requested levels.

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
            "quantiles must be levels in the open interval (0, 1), e.g. "
            f"(0.05, 0.95) for a 90 % interval; got {quantiles!r}."
        )
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(
            "quantiles must be sorted in increasing order without repeats, e.g. "
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


def recursive_forecast(
    forest, lags, horizon, levels, *, method, resid, n_paths, random_state
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
    method : {"residual-paths", "tree-paths"}
        ``"residual-paths"``: every path is run by the forest mean;
        ``"tree-paths"``: path ``k`` is run by tree ``k mod n_trees`` alone.
    resid : ndarray of shape (n_resid,)
        Innovations, drawn i.i.d. at each step of each simulated path.
    n_paths : int or None
        Number of simulated paths; None means ``DEFAULT_RESIDUAL_PATHS`` for
        ``"residual-paths"`` and one per tree for ``"tree-paths"``.
    random_state : int, RandomState instance or None
        Controls the innovation draws.

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
    return ForecastResult(mean, q, levels)
