"""The compiled kernel that grows one regression tree on binned rows.

Structure:

- :func:`_grow`: grows one tree depth first on a multiset of rows of the
  transposed codes and returns its nodes as two arrays (ints and floats).
- :func:`_rng_init`, :func:`_rng_below`: the tree's private xorshift64* stream
  (seeded through splitmix64), which draws the candidate features of a node.
- :func:`_stable_partition`: the stable in-place partition of one feature's
  sample list at a split.

Inside :func:`_grow` a row drawn ``w`` times is one slot of weight ``w``. Each
feature's slot list is sorted once per tree by a counting sort over its codes;
a node owns the same range of every list, and each split partitions all lists
stably, so a node scans its candidate splits in order without sorting. The
partitions are skipped when both children are leaves. Memory per tree is
O(number of slots); the data are never copied per tree.

After editing this file, delete the numba cache (``__pycache__/*.nbi`` and
``*.nbc`` under ``skasync/ensemble/_tree``): the compiled callers in
``_grower.py`` are cached with the old kernel inside them, and numba checks
only the timestamp of each function's own file.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from numba import njit


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
    # The split scores are sums of squared sums, about n * mean**2: at a
    # level of 1e8 above a unit spread, the differences between candidate
    # splits were lost to rounding and the trees split on noise. Scoring
    # y - mean ranks the splits the same (shifting y adds a constant to
    # every candidate's score) without the loss; leaf values add it back.
    level = 0.0
    for s in range(u):
        level += ws[s] * ys[s]
    level = level / m0 if m0 > 0 else 0.0
    for s in range(u):
        wys[s] = ws[s] * (ys[s] - level)
    for f in range(p):
        for s in range(u):
            cs[f, s] = codesT[f, rows[s]]
    # order[f, start:end] = the node's slots sorted by code of feature f; every
    # node owns the same [start, end) range in all p lists ("presorting").
    # Counting sort per feature: O(u + n_bins), stable, no comparisons.
    nb_max = 1
    for f in range(p):
        nb_max = max(nb_max, n_bins[f])
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
        value[node] = level + s_tot / n
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
