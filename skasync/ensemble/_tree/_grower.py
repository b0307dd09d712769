"""Tree growers: the checked entry points to the growing kernel.

Structure:

- :func:`grow_tree`: one tree on a multiset of rows of :class:`BinnedFeatures`.
- :func:`grow_tree_dense`: bin a matrix exactly and grow one tree on all rows.
- :func:`grow_trees`: one tree per row of a 2-d array of in-bag multisets
  (block and i.i.d. bootstraps), in one compiled call.
- :func:`grow_trees_on_series`: one tree per synthetic series on all rows of
  its lag matrix (AR sieve), in one compiled call, without building the matrix.
- The compiled loops behind them (:func:`_grow_dense`, :func:`_grow_many`,
  :func:`_grow_many_on_series`, :func:`_concat_trees`) and the checks of the
  parameters and seeds.

A forest is grown in chunks of trees, one compiled call per chunk, returned
packed as a :class:`PackedForest`: the Python cost of a call (checks, boxing
the results) is paid per chunk, not per tree, and the GIL stays released while
a chunk grows.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral

import numpy as np
from numba import njit

from ...utils._validation import check_int
from ._binning import _bin_exact_dense, _bin_lag_series
from ._grow_kernel import _grow
from ._predictor import PackedForest, Tree

__all__ = ["grow_tree", "grow_tree_dense", "grow_trees", "grow_trees_on_series"]


# ------------------------------------------------------------------ compiled loops
@njit(nogil=True, cache=True)
def _grow_dense(X, y, max_features, min_samples_split, max_depth, seed):
    n, p = X.shape
    for i in range(n):
        for f in range(p):
            if not np.isfinite(X[i, f]):
                return np.empty((4, 0), dtype=np.int32), np.empty((2, 0))
    codesT, n_bins, vals = _bin_exact_dense(X)
    sample_indices = np.arange(X.shape[0])
    return _grow(
        codesT,
        n_bins,
        vals,
        vals,
        y,
        sample_indices,
        max_features,
        min_samples_split,
        max_depth,
        seed,
    )


@njit(nogil=True, cache=True)
def _concat_trees(ints_list, floats_list):
    """Pack per-tree kernel results into flat arrays plus node offsets."""
    n_trees = len(ints_list)
    offsets = np.zeros(n_trees + 1, dtype=np.int64)
    for t in range(n_trees):
        offsets[t + 1] = offsets[t] + ints_list[t].shape[1]
    ints = np.empty((4, offsets[n_trees]), dtype=np.int32)
    floats = np.empty((2, offsets[n_trees]), dtype=np.float64)
    for t in range(n_trees):
        ints[:, offsets[t] : offsets[t + 1]] = ints_list[t]
        floats[:, offsets[t] : offsets[t + 1]] = floats_list[t]
    return ints, floats, offsets


@njit(nogil=True, cache=True)
def _grow_many(
    codesT,
    n_bins,
    bin_min,
    bin_max,
    y,
    sample_indices,
    seeds,
    max_features,
    min_samples_split,
    max_depth,
):
    # One call grows a whole chunk of trees: no Python work per tree, and the
    # GIL stays released while the chunk grows.
    ints_list = []
    floats_list = []
    for t in range(sample_indices.shape[0]):
        ints, floats = _grow(
            codesT,
            n_bins,
            bin_min,
            bin_max,
            y,
            sample_indices[t],
            max_features,
            min_samples_split,
            max_depth,
            seeds[t],
        )
        ints_list.append(ints)
        floats_list.append(floats)
    return _concat_trees(ints_list, floats_list)


@njit(nogil=True, cache=True)
def _grow_many_on_series(
    series, n_lags, seeds, max_features, min_samples_split, max_depth
):
    n_rows = series.shape[1] - n_lags
    rows = np.arange(n_rows)
    ints_list = []
    floats_list = []
    for t in range(series.shape[0]):
        codesT, n_bins, vals = _bin_lag_series(series[t], n_lags, n_rows, False)
        ints, floats = _grow(
            codesT,
            n_bins,
            vals,
            vals,
            series[t, n_lags:],
            rows,
            max_features,
            min_samples_split,
            max_depth,
            seeds[t],
        )
        ints_list.append(ints)
        floats_list.append(floats)
    return _concat_trees(ints_list, floats_list)


# ------------------------------------------------------------------ checked entries
def _is_int(v):
    # exact-type fast path: this runs once per tree, the ABC check costs µs
    return type(v) is int or (isinstance(v, Integral) and not isinstance(v, bool))


def _as_tree(ints, floats):
    # Rows of the kernel's two C-ordered result arrays: contiguous views.
    return Tree(ints[0], floats[0], ints[1], ints[2], floats[1], ints[3])


def _check_params(max_features, min_samples_split, max_depth):
    if (
        type(max_features) is int
        and type(min_samples_split) is int
        and type(max_depth) is int
        and max_features >= 1
        and min_samples_split >= 1
        and max_depth >= -1
    ):
        return max_features, min_samples_split, max_depth
    return (
        check_int(max_features, "max_features", 1),
        check_int(min_samples_split, "min_samples_split", 1),
        check_int(max_depth, "max_depth", -1),
    )


def _check_seed(seed):
    if not _is_int(seed):
        raise ValueError(f"seed must be an int, got {seed!r}.")
    return int(seed) & 0x7FFFFFFFFFFFFFFF


def _check_seeds(seeds, n_trees):
    seeds = np.asarray(seeds)
    if seeds.shape != (n_trees,) or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds must be {n_trees} ints (one per tree), got {seeds!r}.")
    return seeds.astype(np.int64) & np.int64(0x7FFFFFFFFFFFFFFF)


def _as_packed(ints, floats, offsets):
    # PackedForest is Tree's fields plus the node offsets.
    return PackedForest(*_as_tree(ints, floats), offsets)


def grow_tree(
    binned, y, sample_indices, *, max_features, min_samples_split, max_depth, seed
):
    """Grow one regression tree on a (bootstrap) multiset of binned rows.

    Parameters
    ----------
    binned : BinnedFeatures
        Output of :func:`bin_features` for the training rows.
    y : ndarray of shape (n_samples,), float64
        Targets of all training rows.
    sample_indices : array of int
        Rows in the tree's sample; duplicates count as separate samples.
    max_features : int
        Number of candidate features drawn per node (mtry); capped at n_features.
    min_samples_split : int
        Nodes with fewer samples are leaves (ranger ``min.node.size = 5`` is 6).
    max_depth : int
        Maximum depth (root has depth 0), or -1 for unlimited.
    seed : int
        Seed of the tree's private random stream (deterministic).

    Returns
    -------
    tree : Tree
    """
    mf, mss, md = _check_params(max_features, min_samples_split, max_depth)
    sd = _check_seed(seed)
    y = np.ascontiguousarray(y, dtype=np.float64)
    sample_indices = np.ascontiguousarray(sample_indices, dtype=np.int64)
    n = binned.codes.shape[0]
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}.")
    if sample_indices.ndim != 1 or sample_indices.size == 0:
        raise ValueError("sample_indices must be a non-empty 1-d array.")
    codesT = np.ascontiguousarray(binned.codes.T)  # no copy for Fortran codes
    out = _grow(
        codesT,
        binned.n_bins,
        binned.bin_min,
        binned.bin_max,
        y,
        sample_indices,
        mf,
        mss,
        md,
        sd,
    )
    if out[0].shape[1] == 0:  # the kernel's bounds check (cheaper than min/max)
        raise ValueError("sample_indices out of range.")
    return _as_tree(*out)


def grow_tree_dense(X, y, *, max_features, min_samples_split, max_depth, seed):
    """Bin ``X`` exactly and grow one tree on all its rows (each once).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,), float64
    max_features, min_samples_split, max_depth, seed
        As in :func:`grow_tree`.

    Returns
    -------
    tree : Tree
    """
    mf, mss, md = _check_params(max_features, min_samples_split, max_depth)
    sd = _check_seed(seed)
    X = np.asarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or y.shape != (X.shape[0],):
        raise ValueError(f"bad shapes X {X.shape}, y {y.shape}.")
    out = _grow_dense(X, y, mf, mss, md, sd)
    if out[0].shape[1] == 0:
        raise ValueError("X contains NaN or infinity.")
    return _as_tree(*out)


def grow_trees(
    binned, y, sample_indices, *, seeds, max_features, min_samples_split, max_depth
):
    """Grow one tree per row of ``sample_indices``, in one compiled call.

    Same trees as :func:`grow_tree` on each row with the matching seed, without
    the per-tree Python overhead, packed as they come out of the kernel.

    Parameters
    ----------
    binned : BinnedFeatures
        Output of :func:`bin_features` for the training rows.
    y : ndarray of shape (n_samples,), float64
        Targets of all training rows.
    sample_indices : array of int of shape (n_trees, m)
        Row ``t`` is the sample (multiset) of tree ``t``.
    seeds : array of int of shape (n_trees,)
        Seed of each tree's private random stream.
    max_features, min_samples_split, max_depth
        As in :func:`grow_tree`.

    Returns
    -------
    packed : PackedForest
    """
    mf, mss, md = _check_params(max_features, min_samples_split, max_depth)
    y = np.ascontiguousarray(y, dtype=np.float64)
    sample_indices = np.ascontiguousarray(sample_indices, dtype=np.int64)
    n = binned.codes.shape[0]
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}.")
    if sample_indices.ndim != 2 or 0 in sample_indices.shape:
        raise ValueError("sample_indices must be a non-empty 2-d array.")
    if sample_indices.min() < 0 or sample_indices.max() >= n:
        raise ValueError("sample_indices out of range.")
    seeds = _check_seeds(seeds, sample_indices.shape[0])
    codesT = np.ascontiguousarray(binned.codes.T)  # no copy for Fortran codes
    return _as_packed(
        *_grow_many(
            codesT,
            binned.n_bins,
            binned.bin_min,
            binned.bin_max,
            y,
            sample_indices,
            seeds,
            mf,
            mss,
            md,
        )
    )


def grow_trees_on_series(
    series, n_lags, *, seeds, max_features, min_samples_split, max_depth
):
    """Grow one tree per series on all rows of its lag matrix, in one call.

    Tree ``t`` is the tree :func:`grow_tree_dense` grows on
    ``make_lag_matrix(series[t], n_lags)`` with seed ``seeds[t]``; the lag
    matrices are never built (each series is ranked once).

    Parameters
    ----------
    series : ndarray of shape (n_trees, n_lags + n_rows), float64
        One series per tree; its first ``n_lags`` values are only lags.
    n_lags : int
        Number of lag columns (features), >= 1.
    seeds : array of int of shape (n_trees,)
        Seed of each tree's private random stream.
    max_features, min_samples_split, max_depth
        As in :func:`grow_tree`.

    Returns
    -------
    packed : PackedForest
    """
    mf, mss, md = _check_params(max_features, min_samples_split, max_depth)
    series = np.ascontiguousarray(series, dtype=np.float64)
    n_lags = check_int(n_lags, "n_lags", 1)
    if series.ndim != 2 or series.shape[0] == 0 or series.shape[1] <= n_lags:
        raise ValueError(
            f"series must be 2-d with more than n_lags={n_lags} columns, got "
            f"shape {series.shape}."
        )
    if not np.isfinite(series).all():
        raise ValueError("series contains NaN or infinity.")
    seeds = _check_seeds(seeds, series.shape[0])
    return _as_packed(*_grow_many_on_series(series, int(n_lags), seeds, mf, mss, md))
