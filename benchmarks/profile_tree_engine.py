"""Timing and memory of the tree engine (ranger's scaling setting: AR(1) 0.6, 5 lags,
500 trees, mtry 2, min.node.size 5 == min_samples_split 6, one thread).

Times are CPU seconds of this process (``time.process_time``) so that other
jobs on a shared machine inflate them less than wall time.

Run: flock /tmp/skasync-bench.lock python benchmarks/profile_tree_engine.py [n ...]
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import resource
import sys
import time

import numpy as np

from skasync.ensemble._tree import (
    bin_features,
    grow_tree,
    grow_tree_dense,
    pack_trees,
    predict_mean,
)


def ar1_lags(n, n_lags=5, phi=0.6, seed=1):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n + n_lags + 100)
    s = np.zeros_like(e)
    for t in range(1, e.size):
        s[t] = phi * s[t - 1] + e[t]
    s = s[100:]
    X = np.column_stack([s[n_lags - k : n_lags - k + n] for k in range(1, n_lags + 1)])
    return np.ascontiguousarray(X), s[n_lags : n_lags + n].copy()


def run(n, n_trees=500, max_bins=None, dense=False, keep=True):
    X, y = ar1_lags(n)
    rng = np.random.default_rng(0)
    kw = dict(max_features=2, min_samples_split=6, max_depth=-1)
    # Warm-up (numba compile / cache load) outside the timing.
    b = bin_features(X[:50], max_bins=max_bins)
    grow_tree(b, y[:50], np.arange(50), seed=0, **kw)
    grow_tree_dense(X[:50], y[:50], seed=0, **kw)
    t0 = time.process_time()
    if not dense:
        b = bin_features(X, max_bins=max_bins)
    trees = []
    n_nodes = 0
    for s in range(n_trees):
        if dense:
            tree = grow_tree_dense(X, y, seed=s, **kw)
        else:
            tree = grow_tree(b, y, rng.integers(0, n, n), seed=s, **kw)
        n_nodes += tree.feature.size
        if keep:
            trees.append(tree)
    t_fit = time.process_time() - t0
    if not keep:  # large n: measure growing only (the forest packs as it goes)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"n={n:>7} {'dense' if dense else 'boot '} max_bins={max_bins}: fit "
            f"{t_fit:8.3f} s ({1e6 * t_fit / n_trees:8.1f} us/tree, "
            f"{n_nodes / n_trees:.0f} nodes/tree), peak RSS {rss:.0f} MB "
            f"(trees not kept; forest = {32 * n_nodes / 2**20:.0f} MB)",
            flush=True,
        )
        return
    t0 = time.process_time()
    packed = pack_trees(trees)
    del trees
    pred = predict_mean(packed, X)
    t_pred = time.process_time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nodes = packed.feature.size / n_trees
    print(
        f"n={n:>7} {'dense' if dense else 'boot '} max_bins={max_bins}: fit {t_fit:8.3f} s "
        f"({1e6 * t_fit / n_trees:8.1f} us/tree, {nodes:.0f} nodes/tree), "
        f"pack+predict {t_pred:.3f} s, peak RSS {rss:.0f} MB, "
        f"train MSE {np.mean((pred - y) ** 2):.3f}",
        flush=True,
    )


if __name__ == "__main__":
    ns = [int(a) for a in sys.argv[1:]] or [395, 10_000]
    for n in ns:
        keep = n <= 20_000
        run(n, keep=keep)
        run(n, dense=True, keep=keep)
        if 1000 < n <= 20_000:
            run(n, max_bins=255)
