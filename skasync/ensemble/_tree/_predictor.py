"""Fitted trees in array form, packing, and every compiled tree walker.

Structure:

- :class:`Tree` and :class:`PackedForest`: one tree's node arrays, and the
  trees of a forest concatenated into flat arrays with node offsets (what the
  forest stores and pickles).
- :func:`pack_trees`, :func:`unpack_trees`: trees to a packed forest and back
  (as views, no copies); :func:`walk_arrays`: the arrays the walkers take.
- :func:`descend`: the one home of the descent of a row to its leaf
  (``x <= threshold`` goes left), inlined into every walker below.
- :func:`predict_trees`, :func:`predict_mean`: per-tree and mean predictions.
- :func:`accumulate_oob`: out-of-bag sums and counts of a chunk of trees.
- :func:`predict_own_tree`: row ``k`` predicted by its own tree only (the
  simulated forecast paths).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from collections import namedtuple

import numpy as np
from numba import njit

__all__ = [
    "PackedForest",
    "Tree",
    "accumulate_oob",
    "descend",
    "pack_trees",
    "predict_mean",
    "predict_own_tree",
    "predict_trees",
    "unpack_trees",
    "walk_arrays",
]

# A fitted forest pickles these two: they name the package, which re-exports
# them, so pickles survive moves between its modules.
Tree = namedtuple(
    "Tree",
    ["feature", "threshold", "left", "right", "value", "n_node_samples"],
    module="skasync.ensemble._tree",
)
Tree.__doc__ = """One fitted regression tree in array form (node 0 is the root).

Attributes
----------
feature : ndarray of int32
    Split feature per node, ``-1`` for leaves.
threshold : ndarray of float64
    Go left if ``x[feature] <= threshold`` (undefined for leaves).
left, right : ndarray of int32
    Child node ids (tree-local), ``-1`` for leaves.
value : ndarray of float64
    Mean of ``y`` over the node's samples (duplicates counted).
n_node_samples : ndarray of int32
    Number of samples (with multiplicity) in the node.
"""

PackedForest = namedtuple(
    "PackedForest",
    [
        "feature",
        "threshold",
        "left",
        "right",
        "value",
        "n_node_samples",
        "node_offsets",
    ],
    module="skasync.ensemble._tree",
)
PackedForest.__doc__ = """Trees concatenated into flat arrays (picklable, numpy only).

Tree ``t`` owns nodes ``node_offsets[t]:node_offsets[t + 1]``; its ``left``/``right``
ids stay tree-local. The other fields are as in :class:`Tree`.
"""


def pack_trees(trees):
    """Concatenate trees into one :class:`PackedForest`.

    Parameters
    ----------
    trees : sequence of Tree

    Returns
    -------
    packed : PackedForest
    """
    trees = list(trees)
    if not trees:
        raise ValueError("no trees to pack.")
    sizes = np.array([t.feature.shape[0] for t in trees], dtype=np.int64)
    offsets = np.zeros(len(trees) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    fields = [
        np.concatenate([getattr(t, name) for t in trees]) for name in Tree._fields
    ]
    return PackedForest(*fields, offsets)


def unpack_trees(packed):
    """Per-tree :class:`Tree` views into a packed forest (no copies).

    Parameters
    ----------
    packed : PackedForest

    Returns
    -------
    trees : list of Tree
    """
    off = packed.node_offsets
    return [
        Tree(*(getattr(packed, name)[off[t] : off[t + 1]] for name in Tree._fields))
        for t in range(off.shape[0] - 1)
    ]


def walk_arrays(packed):
    """The arrays the compiled tree walkers take, in their argument order.

    Parameters
    ----------
    packed : PackedForest

    Returns
    -------
    arrays : tuple
        ``(feature, threshold, left, right, value, node_offsets)``.
    """
    return (
        packed.feature,
        packed.threshold,
        packed.left,
        packed.right,
        packed.value,
        packed.node_offsets,
    )


@njit(nogil=True, cache=True, inline="always")
def descend(feature, threshold, left, right, offset, X, row):
    """Index of the leaf that row ``row`` of ``X`` reaches in the tree at ``offset``.

    The one home of the tree descent (``x <= threshold`` goes left); inlined
    into every prediction kernel, so it costs no call.
    """
    node = offset
    f = feature[node]
    while f >= 0:
        if X[row, f] <= threshold[node]:
            node = offset + left[node]
        else:
            node = offset + right[node]
        f = feature[node]
    return node


@njit(nogil=True, cache=True)
def _predict_trees(feature, threshold, left, right, value, offsets, X, out):
    for t in range(offsets.shape[0] - 1):
        for i in range(X.shape[0]):
            node = descend(feature, threshold, left, right, offsets[t], X, i)
            out[i, t] = value[node]


@njit(nogil=True, cache=True)
def _predict_mean(feature, threshold, left, right, value, offsets, X, out):
    n = X.shape[0]
    n_trees = offsets.shape[0] - 1
    for t in range(n_trees):
        for i in range(n):
            node = descend(feature, threshold, left, right, offsets[t], X, i)
            out[i] += value[node]
    for i in range(n):
        out[i] /= n_trees


def _check_X_predict(packed, X):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d, got shape {X.shape}.")
    used = packed.feature.max(initial=-1)
    if used >= X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, trees use feature {used}.")
    return X


def predict_trees(packed, X):
    """Per-tree predictions.

    Parameters
    ----------
    packed : PackedForest
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    pred : ndarray of shape (n_samples, n_trees)
    """
    X = _check_X_predict(packed, X)
    out = np.empty((X.shape[0], packed.node_offsets.shape[0] - 1))
    _predict_trees(
        *walk_arrays(packed),
        X,
        out,
    )
    return out


def predict_mean(packed, X):
    """Mean prediction over the trees.

    Parameters
    ----------
    packed : PackedForest
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    pred : ndarray of shape (n_samples,)
    """
    X = _check_X_predict(packed, X)
    out = np.zeros(X.shape[0])
    _predict_mean(
        *walk_arrays(packed),
        X,
        out,
    )
    return out


@njit(nogil=True, cache=True)
def accumulate_oob(
    feature, threshold, left, right, value, offsets, X, sample_indices, out_sum, out_cnt
):
    """Add each tree's predictions on its out-of-bag rows to ``out_sum``/``out_cnt``.

    Tree ``t`` of the chunk predicts the rows absent from ``sample_indices[t]``.
    """
    inbag = np.zeros(X.shape[0], dtype=np.bool_)
    for t in range(sample_indices.shape[0]):
        inbag[:] = False
        for s in range(sample_indices.shape[1]):
            inbag[sample_indices[t, s]] = True
        for r in range(X.shape[0]):
            if inbag[r]:
                continue
            node = descend(feature, threshold, left, right, offsets[t], X, r)
            out_sum[r] += value[node]
            out_cnt[r] += 1


@njit(nogil=True, cache=True)
def predict_own_tree(feature, threshold, left, right, value, offsets, tree_ids, Z, out):
    """Predict row ``k`` of ``Z`` with tree ``tree_ids[k]`` only, into ``out[k]``."""
    for k in range(Z.shape[0]):
        node = descend(feature, threshold, left, right, offsets[tree_ids[k]], Z, k)
        out[k] = value[node]
