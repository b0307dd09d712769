"""Fast regression-tree engine for the random forests (numba, ranger/sklearn splits).

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
stably, so a node scans its candidates in order without sorting (see below for why).
All kernels are ``nogil`` so threads grow trees in parallel.

Measured (CPU time, 1 thread, on a 2-core box shared with other jobs, so upper
bounds; ``benchmarks/profile_tree_engine.py``; AR(1) 0.6, 5 lags, mtry 2,
``min_samples_split=6``): a first version that sorted each node's codes with numba's
``sort`` cost 470 us/tree at n = 395 (small-array sorts dominate), so nodes now reuse
per-feature lists presorted once per tree by counting sort and stably partitioned at
each split. Per node-sample the cost is ~7 ns per partitioned feature and ~9 ns per
scanned candidate (~40 ns at p = 5, mtry = 2), so splits whose children are both
leaves skip the partitions; fixed per-tree cost ~20 us (setup ~15 us, Python wrapper
~6 us, after moving checks into the kernel and returning two arrays instead of six).
500 trees at n = 395: 0.10-0.14 s with bootstrap rows and exact bins, 0.10-0.11 s for
``grow_tree_dense`` (a lag matrix is ranked with one sort of the series, not one per
column); ranger: 0.11-0.12 s. n = 10 000: 3.5 s (dense 4.1 s; ranger 8.5 s,
rangertsARS 13 s). n = 100 000: 0.13 s per tree, 64 s for 500 (dense 68 s; ranger
229 s, rangertsARS 313 s), peak RSS 379 MB growing (trees dropped), 2 MB per stored
tree (1 GB per forest); here cache misses of the
gathers and partitions dominate.

Forests (:func:`grow_trees`, :func:`grow_trees_on_series`) grow a whole chunk of
trees per compiled call and return it packed, so the Python cost (~0.1 ms) is paid
per chunk, not per tree: with one ``grow_tree`` call per tree, the wrappers, the
per-tree bootstrap draws and the packing were 37-42 % of a 500-tree forest at
n = 395. Kernel time for 500 trees at n = 395 (one core): moving-block rows
39.4 -> 32.5 ms with weighted distinct rows (a block bootstrap of n rows holds
~0.64 n distinct ones, so scans and partitions touch ~36 % fewer slots; the extra
weight gather costs the unit-weight AR-sieve trees ~4 %); AR-sieve series 52.8 ->
46.4 ms after ranking each series with a radix argsort (8.6 -> 3.4 ms for the 500
rankings; numba's quicksort ``argsort`` is ~3x slower at 1e4-1e5 values).
Whole forests now (``benchmarks/bench_forest.py``, one pinned core, load 2-2.7 from
other jobs): n = 10 000 moving 1.28 s, AR-sieve 2.24 s; n = 100 000 moving 24.8 s,
AR-sieve 37.2 s. Part of the gap to the figures above is machine load: the run
that recorded them also timed sklearn's n = 395 forest at 1.14 s, now 0.35 s.
Ties between mathematically equal candidate splits (e.g. two features inducing the
same partition of a small node) are broken by floating-point rounding, so trees can
differ from an earlier version after such a tie, never in distribution.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from collections import namedtuple
from numbers import Integral

import numpy as np
from numba import njit

from ..utils._validation import check_int

__all__ = [
    "BinnedFeatures",
    "PackedForest",
    "Tree",
    "bin_features",
    "grow_tree",
    "grow_tree_dense",
    "grow_trees",
    "grow_trees_on_series",
    "pack_trees",
    "predict_mean",
    "predict_trees",
]

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

Tree = namedtuple(
    "Tree", ["feature", "threshold", "left", "right", "value", "n_node_samples"]
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
)
PackedForest.__doc__ = """Trees concatenated into flat arrays (picklable, numpy only).

Tree ``t`` owns nodes ``node_offsets[t]:node_offsets[t + 1]``; its ``left``/``right``
ids stay tree-local. The other fields are as in :class:`Tree`.
"""

_MASK32 = (1 << 32) - 1


# --------------------------------------------------------------------------- binning
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


# --------------------------------------------------------------------------- RNG
@njit(nogil=True, cache=True)
def _rng_init(seed):
    # splitmix64 scrambles the user seed into a non-zero xorshift state.
    state = np.empty(1, dtype=np.uint64)
    z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    if z == np.uint64(0):
        z = np.uint64(0x2545F4914F6CDD1D)
    state[0] = z
    return state


@njit(nogil=True, cache=True, inline="always")
def _rng_below(state, k):
    """Uniform int in [0, k) from xorshift64* (bias < k / 2**53, negligible)."""
    x = state[0]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    state[0] = x
    r = (x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(11)
    return np.int64(r % np.uint64(k))


# --------------------------------------------------------------------------- growing
@njit(nogil=True, cache=True)
def _stable_partition(lst, goes_left, tmp, start, end):
    """Stable in-place partition of lst[start:end] by goes_left[slot] (left first)."""
    wl = start
    wr = 0
    for i in range(start, end):
        slot = lst[i]
        g = np.int64(goes_left[slot])
        lst[wl] = slot
        tmp[wr] = slot
        wl += g
        wr += 1 - g
    for i in range(wr):
        lst[wl + i] = tmp[i]


@njit(nogil=True, cache=True)
def _grow(
    codesT,
    n_bins,
    bin_min,
    bin_max,
    y,
    sample_indices,
    max_features,
    min_samples_split,
    max_depth,
    seed,
):
    p = codesT.shape[0]
    m0 = sample_indices.shape[0]
    n_rows = codesT.shape[1]
    # A row drawn w times is one slot of weight w: the splits, sums and counts
    # are those of the repeated rows, but scans and partitions touch it once
    # (a bootstrap of n rows holds ~0.63 n distinct rows, a moving-block one
    # ~0.64 n). Slots are the distinct rows in row order.
    w_row = np.zeros(n_rows, dtype=np.int64)
    for s in range(m0):
        r = sample_indices[s]
        if r < 0 or r >= n_rows:
            return np.empty((4, 0), dtype=np.int32), np.empty((2, 0))
        w_row[r] += 1
    u = 0
    for r in range(n_rows):
        u += w_row[r] > 0
    rows = np.empty(u, dtype=np.int64)
    u = 0
    for r in range(n_rows):
        if w_row[r] > 0:
            rows[u] = r
            u += 1
    # Per slot: its y, weight, weight * y and codes, gathered once so the hot
    # loops touch O(u) contiguous memory.
    ys = np.empty(u, dtype=np.float64)
    ws = np.empty(u, dtype=np.int64)
    wys = np.empty(u, dtype=np.float64)
    cs = np.empty((p, u), dtype=np.int32)
    for s in range(u):
        ys[s] = y[rows[s]]
        ws[s] = w_row[rows[s]]
        wys[s] = ws[s] * ys[s]
    for f in range(p):
        for s in range(u):
            cs[f, s] = codesT[f, rows[s]]
    # order[f, start:end] = the node's slots sorted by code of feature f; every
    # node owns the same [start, end) range in all p lists ("presorting").
    # Counting sort per feature: O(u + n_bins), stable, no comparisons.
    nb_max = 1
    for f in range(p):
        if n_bins[f] > nb_max:
            nb_max = n_bins[f]
    order = np.empty((p, u), dtype=np.int32)
    cnt = np.empty(nb_max + 1, dtype=np.int64)
    for f in range(p):
        nb = n_bins[f]
        cnt[: nb + 1] = 0
        for s in range(u):
            cnt[cs[f, s] + 1] += 1
        for c in range(nb):
            cnt[c + 1] += cnt[c]
        for s in range(u):
            c = cs[f, s]
            order[f, cnt[c]] = s
            cnt[c] += 1
    # Reciprocals replace the two divisions per candidate split in the scans.
    inv = np.empty(m0 + 1, dtype=np.float64)
    inv[0] = 0.0
    for k in range(1, m0 + 1):
        inv[k] = 1.0 / k
    goes_left = np.empty(u, dtype=np.uint8)
    tmp = np.empty(u, dtype=np.int32)
    perm = np.arange(p)
    state = _rng_init(seed)
    mtry = min(max_features, p)

    cap = 2 * u + 1  # a binary tree with <= u non-empty leaves
    feature = np.full(cap, -1, dtype=np.int32)
    threshold = np.zeros(cap, dtype=np.float64)
    left = np.full(cap, -1, dtype=np.int32)
    right = np.full(cap, -1, dtype=np.int32)
    value = np.zeros(cap, dtype=np.float64)
    nns = np.zeros(cap, dtype=np.int32)
    # Depth-first stack of (node, start, end, depth, weighted sum and count);
    # at most one pending right sibling per level, so u + 2 entries suffice.
    st_sum = np.empty(u + 2, dtype=np.float64)
    st_cnt = np.empty(u + 2, dtype=np.int64)
    st_node = np.empty(u + 2, dtype=np.int64)
    st_start = np.empty(u + 2, dtype=np.int64)
    st_end = np.empty(u + 2, dtype=np.int64)
    st_depth = np.empty(u + 2, dtype=np.int64)
    st_node[0] = 0
    st_start[0] = 0
    st_end[0] = u
    st_depth[0] = 0
    s0 = 0.0
    for s in range(u):
        s0 += wys[s]
    st_sum[0] = s0
    st_cnt[0] = m0
    sp = 1
    n_nodes = 1
    while sp > 0:
        sp -= 1
        node = st_node[sp]
        start = st_start[sp]
        end = st_end[sp]
        depth = st_depth[sp]
        s_tot = st_sum[sp]  # summed by the parent: saves a pass per leaf
        n = st_cnt[sp]  # samples with multiplicity
        value[node] = s_tot / n
        nns[node] = n
        if n < min_samples_split or n < 2:
            continue
        if max_depth >= 0 and depth >= max_depth:
            continue
        y0 = ys[order[0, start]]
        pure = True
        for i in range(start + 1, end):
            if ys[order[0, i]] != y0:
                pure = False
                break
        if pure:
            continue

        best = -np.inf
        best_f = -1
        best_mid = 0
        for k in range(mtry):
            # Partial Fisher-Yates: perm[k] is a uniform draw from the rest.
            r = k + _rng_below(state, p - k)
            f = perm[r]
            perm[r] = perm[k]
            perm[k] = f
            if cs[f, order[f, start]] == cs[f, order[f, end - 1]]:
                continue  # constant in this node
            # Branch-free scan (code changes are unpredictable); the first strict
            # maximum wins, as in sklearn and ranger.
            sl = 0.0
            nl = 0
            slot = order[f, start]
            c = cs[f, slot]
            f_best = -np.inf
            f_i = 0
            for i in range(start, end - 1):
                sl += wys[slot]
                nl += ws[slot]
                slot = order[f, i + 1]
                cn = cs[f, slot]
                sr = s_tot - sl
                proxy = sl * sl * inv[nl] + sr * sr * inv[n - nl]
                take = (cn != c) & (proxy > f_best)
                f_best = proxy if take else f_best
                f_i = i if take else f_i
                c = cn
            if f_best > best:
                best = f_best
                best_f = f
                best_mid = f_i + 1
        if best_f < 0:
            continue  # no candidate feature varies: leaf, no redraw (ranger)

        mid = best_mid
        best_a = cs[best_f, order[best_f, mid - 1]]
        best_b = cs[best_f, order[best_f, mid]]
        # Children's sums, summed afresh (not s_tot - sl) so that leaf means
        # carry no error accumulated down the tree.
        sl = 0.0
        nl = 0
        for i in range(start, mid):
            slot = order[best_f, i]
            sl += wys[slot]
            nl += ws[slot]
        sr = 0.0
        for i in range(mid, end):
            sr += wys[order[best_f, i]]
        nr = n - nl
        lo = bin_max[best_f, best_a]
        hi = bin_min[best_f, best_b]
        t = lo / 2.0 + hi / 2.0
        if t >= hi or not np.isfinite(t):
            t = lo
        # The split feature's list is already [left | right]; stably partition
        # the other lists the same way (branch-free, via goes_left).
        # Skipped when both children are leaves by size or depth: they only need
        # their sums, already known (saves the partitions of all small nodes).
        deeper = max_depth < 0 or depth + 1 < max_depth
        split_l = deeper and nl >= min_samples_split and nl >= 2
        split_r = deeper and nr >= min_samples_split and nr >= 2
        if split_l or split_r:
            for i in range(start, mid):
                goes_left[order[best_f, i]] = 1
            for i in range(mid, end):
                goes_left[order[best_f, i]] = 0
            for f in range(p):
                if f == best_f:
                    continue
                _stable_partition(order[f], goes_left, tmp, start, end)
        lc = n_nodes
        n_nodes += 2
        feature[node] = best_f
        threshold[node] = t
        left[node] = lc
        right[node] = lc + 1
        # Push right first so the left child is grown first (sklearn's order).
        st_sum[sp] = sr
        st_cnt[sp] = nr
        st_node[sp] = lc + 1
        st_start[sp] = mid
        st_end[sp] = end
        st_depth[sp] = depth + 1
        sp += 1
        st_sum[sp] = sl
        st_cnt[sp] = nl
        st_node[sp] = lc
        st_start[sp] = start
        st_end[sp] = mid
        st_depth[sp] = depth + 1
        sp += 1
    # Two result arrays instead of six: boxing each array costs ~1 µs per tree.
    ints = np.empty((4, n_nodes), dtype=np.int32)
    floats = np.empty((2, n_nodes), dtype=np.float64)
    ints[0] = feature[:n_nodes]
    ints[1] = left[:n_nodes]
    ints[2] = right[:n_nodes]
    ints[3] = nns[:n_nodes]
    floats[0] = threshold[:n_nodes]
    floats[1] = value[:n_nodes]
    return ints, floats


@njit(nogil=True, cache=True)
def _radix_argsort(v):
    """Stable argsort of finite float64 values: LSD radix sort on 8-bit digits.

    Each tree of an AR-sieve forest ranks its own series, and numba's quicksort
    ``argsort`` was 90 % of that (15 us at n = 400, ~8 ms at n = 100 000);
    this takes ~4x less. Keys are the IEEE bits made order-preserving as
    unsigned ints (flip all bits of negatives, the sign bit of the rest); all
    eight digit histograms come from one pass, and digits shared by every key
    (e.g. the sign and high exponent bits) are skipped.
    """
    n = v.shape[0]
    keys = np.ascontiguousarray(v).copy().view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    for i in range(n):
        k = keys[i]
        keys[i] = ~k if k & sign else k | sign
    counts = np.zeros((8, 257), dtype=np.int64)
    for i in range(n):
        k = keys[i]
        for d in range(8):
            counts[d, ((k >> np.uint64(8 * d)) & np.uint64(255)) + 1] += 1
    order = np.arange(n)
    other = np.empty(n, dtype=np.int64)
    for d in range(8):
        c = counts[d]
        skip = False
        for b in range(1, 257):
            if c[b] == n:
                skip = True  # one bucket holds every key: the pass is a no-op
                break
        if skip:
            continue
        for b in range(256):
            c[b + 1] += c[b]
        shift = np.uint64(8 * d)
        for j in range(n):
            i = order[j]
            b = (keys[i] >> shift) & np.uint64(255)
            other[c[b]] = i
            c[b] += 1
        order, other = other, order
    return order


@njit(nogil=True, cache=True)
def _dense_ranks(v, ranks, vals):
    """Dense ranks of v into ranks; vals[r] = value of rank r. Returns #distinct."""
    order = _radix_argsort(v)
    code = 0
    prev = v[order[0]]
    vals[0] = prev
    for r in range(v.shape[0]):
        i = order[r]
        x = v[i]
        if x != prev:
            code += 1
            vals[code] = x
            prev = x
        ranks[i] = code
    return code + 1


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


# --------------------------------------------------------------------------- predict
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
