"""Binning of the features into small ordered integer codes.

The trees never compare float values: every feature is replaced by codes
ordered like its values, and a split between two codes present in a node gets
the midpoint of the values on either side as its threshold.

Structure:

- :class:`BinnedFeatures` and :func:`bin_features`: the block and i.i.d.
  bootstraps bin the training rows once per forest, exactly (one code per
  distinct value) or into at most ``max_bins`` quantile bins.
- :func:`_bin_exact_dense`, :func:`_bin_lag_series` and :func:`_lag_direction`:
  exact binning inside the kernels, once per tree, of a matrix whose rows are
  each used once (an AR-sieve tree's synthetic lag matrix). A lag matrix,
  recognised by :func:`_lag_direction` or given as its series, is ranked with
  one sort of the series instead of one per column.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from collections import namedtuple

import numpy as np
from numba import njit

from ...utils._validation import check_int
from ._ranking import _dense_ranks

__all__ = ["BinnedFeatures", "bin_features"]

BinnedFeatures = namedtuple(
    "BinnedFeatures", ["codes", "thresholds", "n_bins", "bin_min", "bin_max"]
)
BinnedFeatures.__doc__ = """Features binned into small unsigned integer codes.

Attributes
----------
codes : ndarray of shape (n_samples, n_features), Fortran-ordered
    Bin code of each value: ``uint8``, ``uint16`` or ``uint32`` depending on the
    largest number of bins. Codes are ordered like the values.
thresholds : ndarray of shape (n_features, max(n_bins) - 1), float64
    ``thresholds[f, k]`` separates codes ``k`` and ``k + 1``: the midpoint of the
    largest value in bin ``k`` and the smallest in bin ``k + 1``; ``+inf`` padding.
n_bins : ndarray of shape (n_features,), int64
    Number of (non-empty) bins per feature.
bin_min, bin_max : ndarray of shape (n_features, max(n_bins)), float64
    Smallest and largest training value per bin (equal for exact bins); a split
    between present codes ``a < b`` uses the midpoint of ``bin_max[f, a]`` and
    ``bin_min[f, b]``, exactly as sklearn and ranger do for the values in a node.
"""


def _code_dtype(max_bins):
    if max_bins <= 1 << 8:
        return np.uint8
    if max_bins <= 1 << 16:
        return np.uint16
    return np.uint32


def bin_features(X, max_bins=None):
    """Bin each feature into ordered integer codes.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Finite feature values.
    max_bins : int >= 2 or None, default=None
        A feature with at most ``max_bins`` distinct values (all features when
        None) is binned exactly: code = rank of the distinct value. Others are cut
        at midpoint quantiles into at most ``max_bins`` non-empty bins.

    Returns
    -------
    binned : BinnedFeatures
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d, got shape {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError("X has no rows.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    max_bins = check_int(max_bins, "max_bins", 2, allow_none=True)
    n, p = X.shape
    per_feature = []
    for f in range(p):
        col = X[:, f]
        order = np.argsort(col, kind="stable")
        xs = col[order]
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(xs[1:], xs[:-1], out=new[1:])
        n_unique = int(new.sum())
        if max_bins is None or n_unique <= max_bins:
            code_sorted = np.cumsum(new) - 1  # rank of the distinct value
        else:
            uniq = xs[new]
            # Cut points between distinct values at (roughly) equal-count quantiles.
            q = np.percentile(
                xs, np.linspace(0, 100, max_bins + 1)[1:-1], method="midpoint"
            )
            # Snap every cut to the gap just below a distinct value so bins are
            # unions of whole distinct values; drop duplicate cuts.
            pos = np.unique(np.searchsorted(uniq, q, side="right"))
            pos = pos[(pos > 0) & (pos < uniq.size)]
            # uniq[pos[k]] is the smallest value of bin k + 1.
            code_sorted = np.searchsorted(uniq[pos], xs, side="right")
        codes_f = np.empty(n, dtype=np.int64)
        codes_f[order] = code_sorted
        starts = np.flatnonzero(np.r_[True, code_sorted[1:] != code_sorted[:-1]])
        ends = np.r_[starts[1:], n] - 1
        per_feature.append((codes_f, xs[starts], xs[ends]))
    n_bins = np.array([pf[1].size for pf in per_feature], dtype=np.int64)
    nb_max = int(n_bins.max())
    codes = np.empty((n, p), dtype=_code_dtype(nb_max), order="F")
    bin_min = np.full((p, nb_max), np.inf)
    bin_max = np.full((p, nb_max), np.inf)
    thresholds = np.full((p, max(nb_max - 1, 1)), np.inf)
    for f, (codes_f, lo, hi) in enumerate(per_feature):
        codes[:, f] = codes_f
        k = lo.size
        bin_min[f, :k] = lo
        bin_max[f, :k] = hi
        thresholds[f, : k - 1] = _midpoint(hi[:-1], lo[1:])
    return BinnedFeatures(codes, thresholds, n_bins, bin_min, bin_max)


def _midpoint(a, b):
    # sklearn's form (a/2 + b/2, overflow-safe); fall back to a if rounding hits b.
    t = a / 2.0 + b / 2.0
    return np.where((t >= b) | ~np.isfinite(t), a, t)


# ------------------------------------------------- exact binning of one tree's lags
@njit(nogil=True, cache=True)
def _lag_direction(X):
    """+1 if X[i, k] == X[i-1, k-1] everywhere (columns = lags 1..p of one
    series), -1 for the reversed column order, 0 otherwise."""
    n, p = X.shape
    if p < 2 or n < 2:
        return 0
    fwd = True
    for i in range(1, n):
        for k in range(1, p):
            if X[i, k] != X[i - 1, k - 1]:
                fwd = False
                break
        if not fwd:
            break
    if fwd:
        return 1
    for i in range(1, n):
        for k in range(p - 1):
            if X[i, k] != X[i - 1, k + 1]:
                return 0
    return -1


@njit(nogil=True, cache=True)
def _bin_lag_series(series, p, n, reverse):
    """Exact codes of the ``n x p`` lag matrix of ``series``, with one sort.

    Column ``k`` of row ``i`` holds ``series[i - kk + p - 1]`` with ``kk = k``
    (column k = lag k + 1), or ``kk = p - 1 - k`` when ``reverse``. Only the
    first ``n + p - 1`` values are read. Codes are ranks within the series
    (gaps allowed); every column shares the value table.
    """
    length = n + p - 1
    ranks = np.empty(length, dtype=np.int64)
    vals = np.empty((p, length), dtype=np.float64)
    nb = _dense_ranks(series[:length], ranks, vals[0])
    codesT = np.empty((p, n), dtype=np.uint32)
    n_bins = np.empty(p, dtype=np.int64)
    for k in range(p):
        kk = p - 1 - k if reverse else k
        if k > 0:
            vals[k, :nb] = vals[0, :nb]
        n_bins[k] = nb
        for i in range(n):
            codesT[k, i] = ranks[i - kk + p - 1]
    return codesT, n_bins, vals


@njit(nogil=True, cache=True)
def _bin_exact_dense(X):
    """Exact rank codes of every column of X (numba, for per-tree binning).

    A lag matrix (every column a shifted window of one series, as built by the
    AR sieve) is ranked with a single sort of the series instead of one per
    column (:func:`_bin_lag_series`).
    """
    n, p = X.shape
    direction = _lag_direction(X)
    if direction != 0:
        series = np.empty(n + p - 1, dtype=np.float64)
        # Column kk (lag kk + 1) of row i holds series[i - kk + p - 1].
        for i in range(n):
            series[p - 1 + i] = X[i, 0] if direction == 1 else X[i, p - 1]
        for kk in range(1, p):
            series[p - 1 - kk] = X[0, kk] if direction == 1 else X[0, p - 1 - kk]
        return _bin_lag_series(series, p, n, direction == -1)
    codesT = np.empty((p, n), dtype=np.uint32)
    n_bins = np.empty(p, dtype=np.int64)
    vals = np.empty((p, n), dtype=np.float64)
    col = np.empty(n, dtype=np.float64)
    ranks = np.empty(n, dtype=np.int64)
    for f in range(p):
        for i in range(n):
            col[i] = X[i, f]
        n_bins[f] = _dense_ranks(col, ranks, vals[f])
        for i in range(n):
            codesT[f, i] = ranks[i]
    return codesT, n_bins, vals
