"""Stable ranking of float64 values: the sort under the per-tree exact binning.

Structure:

- :func:`_radix_argsort`: stable argsort of finite float64 values (LSD radix
  sort on 8-bit digits).
- :func:`_dense_ranks`: dense ranks and the value of each rank, from that argsort.

Both are ``nogil`` numba kernels; :mod:`._binning` calls them once per AR-sieve
tree to rank its synthetic series.
"""
# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _radix_argsort(v):
    """Stable argsort of finite float64 values: LSD radix sort on 8-bit digits.

    Each tree of an AR-sieve forest ranks its own series, and numba's quicksort
    ``argsort`` was 90 % of that; this takes about 4x less time (figures in
    ``docs/benchmarks.rst``). Keys are the IEEE bits made order-preserving as
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
