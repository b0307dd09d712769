"""Regression-tree engine of the forests (numba, ranger/sklearn splits).

Trees follow ranger 0.12 / sklearn ``criterion="squared_error"`` semantics: at a node
with at least ``min_samples_split`` samples, depth below ``max_depth`` and non-constant
``y``, ``max_features`` distinct candidate features are drawn uniformly; every split
between distinct values present in the node is evaluated; the split with the largest
``sum_l**2 / n_l + sum_r**2 / n_r`` (the SSE decrease up to a constant) wins, ties go
to the first one found; the threshold is the midpoint of the two adjacent values
present in the node; ``x <= threshold`` goes left; ``min_samples_leaf = 1``. A node
whose candidates are all constant is a leaf (no redraw, as in ranger). Bootstrap
multisets are passed as indices with duplicates, which count as samples (inside the
kernel a row drawn ``w`` times is one slot of weight ``w``).

Design: features are binned once into small unsigned codes (exact ranks, or quantile
bins above ``max_bins``). Growing works on a private copy of the node's sample
indices and their ``y`` values, partitioned in place, so memory per tree in flight is
O(n) and the data are never copied per tree. Each feature's sample list is sorted
once per tree (counting sort over the codes) and every split partitions all lists
stably, so a node scans its candidates in order without sorting. All kernels are
``nogil`` so threads grow trees in parallel, and a forest is grown in chunks of
trees, one compiled call per chunk. How the engine got fast, and its timings, are
in ``docs/benchmarks.rst`` ("Why a numba tree engine").

Ties between mathematically equal candidate splits (e.g. two features inducing the
same partition of a small node) are broken by floating-point rounding, so trees can
differ from an earlier version after such a tie, never in distribution.

Structure (each module's docstring maps its contents):

- :mod:`._binning`: :class:`BinnedFeatures`, :func:`bin_features` and the
  per-tree exact binning of lag matrices and series.
- :mod:`._ranking`: the radix argsort and dense ranks under that binning.
- :mod:`._grow_kernel`: :func:`_grow`, the compiled kernel that grows one tree,
  with its random stream and stable partition.
- :mod:`._grower`: the checked growers :func:`grow_tree`,
  :func:`grow_tree_dense`, :func:`grow_trees` and :func:`grow_trees_on_series`.
- :mod:`._predictor`: :class:`Tree`, :class:`PackedForest`, packing, and every
  tree walker (prediction, out-of-bag sums, per-path forecasts).

This package re-exports what the rest of :mod:`skasync.ensemble` uses.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from ._binning import BinnedFeatures, bin_features
from ._grower import grow_tree, grow_tree_dense, grow_trees, grow_trees_on_series
from ._predictor import (
    PackedForest,
    Tree,
    accumulate_oob,
    descend,
    pack_trees,
    predict_mean,
    predict_own_tree,
    predict_trees,
    unpack_trees,
    walk_arrays,
)

__all__ = [
    "BinnedFeatures",
    "PackedForest",
    "Tree",
    "accumulate_oob",
    "bin_features",
    "descend",
    "grow_tree",
    "grow_tree_dense",
    "grow_trees",
    "grow_trees_on_series",
    "pack_trees",
    "predict_mean",
    "predict_own_tree",
    "predict_trees",
    "unpack_trees",
    "walk_arrays",
]
