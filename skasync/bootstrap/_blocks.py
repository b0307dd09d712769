"""IID and block bootstrap in-bag indices with the exact semantics of rangerts.

The samplers reproduce the *distribution* of ``rangerts`` 0.0.3 (``src/Tree.cpp``,
commit ``0be6f6f``) per tree, not its C++ random stream; ``"seasonal"``
alone differs (see :func:`block_bootstrap_indices`). Rows are indexed by
position, so they must be in chronological order. Notation: ``n`` rows,
``L = block_size``, ``m = floor(n * sample_fraction)`` rows to draw
(``sample_fraction=None`` means 1 if ``replace`` else 0.632, as in ranger) and
``k = floor(m / L)`` blocks.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math
from numbers import Real

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import indexable
from sklearn.utils.validation import _num_samples

from ..utils._validation import check_int
from ._random import _check_rng, _geometric0, _integers, _permutation

__all__ = ["BLOCK_METHODS", "block_bootstrap_indices", "BlockBootstrap"]

BLOCK_METHODS = (
    "iid",
    "moving",
    "stationary",
    "circular",
    "nonoverlapping",
    "seasonal",
)


def _n_inbag(n, replace, sample_fraction, method):
    if sample_fraction is None:
        sample_fraction = 1.0 if replace else 0.632
    if (
        not isinstance(sample_fraction, Real)
        or isinstance(sample_fraction, bool)
        or not np.isfinite(sample_fraction)
        or sample_fraction <= 0
    ):
        raise ValueError(
            f"sample_fraction must be None or a float > 0, got {sample_fraction!r}."
        )
    without = not replace and method in ("iid", "nonoverlapping", "seasonal")
    if without and sample_fraction > 1:
        raise ValueError(
            f"sample_fraction={sample_fraction} > 1 is impossible without "
            f"replacement (method={method!r}, replace=False)."
        )
    # ranger: (size_t) num_samples * sample_fraction, i.e. truncation
    m = int(math.floor(n * float(sample_fraction)))
    if m < 1:
        raise ValueError(
            f"n_samples={n} * sample_fraction={sample_fraction} gives no row to "
            "draw; increase sample_fraction or use a longer series."
        )
    return m


def _n_blocks(m, L, method, n):
    k = m // L
    if k < 1:
        raise ValueError(
            f"block_size={L} exceeds the m={m} rows to draw (n_samples={n}), so "
            f"method={method!r} would draw no block; use a smaller block_size."
        )
    return k


def _expand_blocks(starts, lengths):
    """Concatenate ``range(s, s + l)`` for each (s, l) without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within


def _expand_equal_blocks(starts, L):
    """Rows of blocks of equal length: ``(size, k)`` starts -> ``(size, k * L)``."""
    rows = starts[:, :, None] + np.arange(L, dtype=np.int64)
    return rows.reshape(starts.shape[0], -1)


def _stack_draws(draw, size):
    # Methods whose draw is not a fixed-shape array of uniforms (permutations,
    # geometric block lengths) loop over the draws; all have a fixed length.
    return np.stack([draw() for _ in range(size)])


# Every sampler returns ``size`` independent draws as a (size, rows) array; with
# size=1 it consumes the random stream exactly as a single draw would.
def _iid(n, m, replace, rng, size):
    if replace:
        return _integers(rng, 0, n, size=(size, m))
    # ranger without replacement: the first m of a random permutation
    return _stack_draws(lambda: _permutation(rng, n)[:m], size)


def _moving(n, m, L, by_end, rng, size):
    if L > n:
        raise ValueError(f"block_size={L} must be <= n_samples={n} for 'moving'.")
    k = _n_blocks(m, L, "moving", n)
    starts = _integers(rng, 0, n - L + 1, size=(size, k))
    if by_end:
        # rangerts maps row i -> n - 1 - i; mirroring the block start keeps the
        # same multiset with rows ascending inside each block.
        starts = (n - L) - starts
    return _expand_equal_blocks(starts, L)


def _circular(n, m, L, by_end, rng, size):
    k = _n_blocks(m, L, "circular", n)
    starts = _integers(rng, 0, n, size=(size, k))
    if by_end:
        starts = (n - L - starts) % n  # mirror image of the block, ascending
    return _expand_equal_blocks(starts, L) % n


def _nonoverlapping(n, m, L, by_end, replace, rng, size):
    n_part = n // L
    if n_part < 1:
        raise ValueError(
            f"block_size={L} must be <= n_samples={n} for 'nonoverlapping'."
        )
    k = _n_blocks(m, L, "nonoverlapping", n)
    # by_end: partition aligned to the series end, the first n mod L rows are
    # never drawn; otherwise aligned to the start (the last n mod L never drawn).
    offset = n % L if by_end else 0
    if replace:
        blocks = _integers(rng, 0, n_part, size=(size, k))
    else:
        if k > n_part:
            raise ValueError(
                f"cannot draw k={k} distinct blocks out of {n_part} without "
                "replacement; lower sample_fraction."
            )
        blocks = _stack_draws(lambda: _permutation(rng, n_part)[:k], size)
    return _expand_equal_blocks(offset + blocks * L, L)


def _stationary_one(n, m, L, rng):
    p = 1.0 / L
    starts_parts, lengths_parts = [], []
    total = 0
    # Draw blocks in batches sized for the expected need (mean length L - 1).
    while total < m:
        batch = int(1.25 * (m - total) / (L - 1)) + 16
        starts_parts.append(_integers(rng, 0, n, size=batch))
        lengths = _geometric0(rng, p, batch)
        lengths_parts.append(lengths)
        total += int(lengths.sum())
    starts = np.concatenate(starts_parts)
    lengths = np.concatenate(lengths_parts)
    # keep blocks up to the one that reaches m rows, truncate that last block
    last = int(np.searchsorted(np.cumsum(lengths), m))
    starts, lengths = starts[: last + 1], lengths[: last + 1].copy()
    lengths[-1] -= int(lengths.sum()) - m
    return _expand_blocks(starts, lengths) % n


def _stationary(n, m, L, rng, size):
    if L < 2:
        raise ValueError(
            "method='stationary' needs block_size >= 2: lengths are geometric with "
            "p = 1/block_size on {0, 1, ...} (mean block_size - 1), so "
            "block_size=1 would only draw empty blocks."
        )
    return _stack_draws(lambda: _stationary_one(n, m, L, rng), size)


def _seasonal_one(n, m, L, period, replace, rng):
    k = _n_blocks(m, L, "seasonal", n)
    target = k * L
    n_starts = -(-n // period)  # ceil(n / period)
    if replace:
        chunks, total = [], 0
        while total < target:
            # blocks near the end lose their rows >= n, so draw a few extra
            batch = (target - total) // L + 8
            u = _integers(rng, 0, n_starts, size=batch)
            rows = _expand_blocks(u * period, np.full(batch, L))
            rows = rows[rows < n]
            chunks.append(rows)
            total += rows.shape[0]
        return np.concatenate(chunks)[:target]
    u = _permutation(rng, n_starts)
    rows = _expand_blocks(u * period, np.full(n_starts, L))
    rows = rows[rows < n]
    # distinct starts: stops early if the starts run out before k * L rows (the
    # count does not depend on the order of the starts, so draws stack)
    return rows[:target]


def _seasonal(n, m, L, period, replace, rng, size):
    return _stack_draws(lambda: _seasonal_one(n, m, L, period, replace, rng), size)


def block_bootstrap_indices(
    n_samples,
    method,
    *,
    block_size=10,
    by_end=True,
    replace=True,
    sample_fraction=None,
    period=1,
    random_state=None,
    n_draws=None,
):
    """Draw one tree's in-bag row multiset, exactly as rangerts does.

    Parameters
    ----------
    n_samples : int
        Number of rows ``n`` (chronological order).
    method : {"iid", "moving", "stationary", "circular", "nonoverlapping", \
"seasonal"}
        Bootstrap scheme (rangerts ``bootstrap.ts``; ``"iid"`` is ``NULL``):

        - ``"iid"``: ``m`` draws with replacement (``replace=False``: ``m``
          distinct rows).
        - ``"moving"``: ``k`` blocks ``s..s+L-1``, ``s ~ U{0..n-L}``; ``k*L``
          rows, the remainder of ``m`` dropped. ``by_end`` mirrors the rows
          (``i -> n-1-i``; same distribution). ``replace`` ignored.
        - ``"circular"``: ``k`` blocks ``(s+i) mod n``, ``s ~ U{0..n-1}``.
          ``by_end`` mirrors, ``replace`` ignored.
        - ``"nonoverlapping"``: ``k`` blocks of the fixed partition into
          ``floor(n/L)`` blocks, aligned to the end when ``by_end`` (the first
          ``n mod L`` rows are never drawn) else to the start (the last
          ``n mod L`` rows are never drawn); with replacement, or ``k``
          distinct blocks when ``replace=False``.
        - ``"stationary"``: blocks ``(s+i) mod n`` with ``s ~ U{0..n-1}`` and
          length ``~ Geometric(p=1/L)`` on ``{0, 1, ...}`` (C++
          ``std::geometric_distribution``: mean ``L-1``, zero lengths
          possible), until exactly ``m`` rows (last block truncated).
          ``by_end`` and ``replace`` ignored. Empty draws leave no trace, so
          the *observed* runs are geometric on ``{1, 2, ...}`` with mean
          ``L`` (memorylessness); only the number of draws differs.
        - ``"seasonal"``: ``u ~ U{0..ceil(n/period)-1}``, rows
          ``u*period..u*period+L-1`` kept if ``< n``, until ``k*L`` rows
          (last block truncated). ``replace=False`` uses distinct starts in
          random order (fewer rows if they run out). ``by_end`` ignored.
          Unlike rangerts, which draws exactly ``k`` starts and drops the
          rows past the end (so fewer than ``k*L`` rows when a block
          overhangs), starts are drawn until ``k*L`` rows, so every draw has
          the size of the other methods'.
    block_size : int, default=10
        Block length ``L``.
    by_end : bool, default=True
        Build blocks from the end of the series (see ``method``).
    replace : bool, default=True
        Sampling with replacement (``"iid"``, ``"nonoverlapping"``,
        ``"seasonal"``); also sets the default ``sample_fraction``.
    sample_fraction : float or None, default=None
        ``m = floor(n_samples * sample_fraction)``; ``None`` means 1 if
        ``replace`` else 0.632 (ranger).
    period : int, default=1
        Season length for ``"seasonal"``.
    random_state : int, RandomState, Generator or None, default=None
        Randomness of the draw.
    n_draws : int or None, default=None
        None draws one multiset (a 1-D array); an int draws that many
        independent multisets at once (a 2-D array, one per row; all have the
        same length for given parameters). One call for many draws (e.g. one
        per tree of a forest) saves the per-call overhead; ``n_draws=1`` gives
        the same indices as None.

    Returns
    -------
    indices : ndarray of int64 of shape (n_in_bag,) or (n_draws, n_in_bag)
        In-bag row indices, with repetitions (a multiset). Block methods return
        blocks in draw order, rows ascending inside each block (modulo ``n``
        for wrap-around).

    Examples
    --------
    >>> from skasync.bootstrap import block_bootstrap_indices
    >>> idx = block_bootstrap_indices(395, "moving", block_size=10, random_state=0)
    >>> idx.shape
    (390,)
    >>> int(block_bootstrap_indices(25, "nonoverlapping", block_size=10,
    ...                             random_state=0).min()) >= 5
    True
    >>> block_bootstrap_indices(395, "moving", random_state=0, n_draws=4).shape
    (4, 390)
    """
    n = check_int(n_samples, "n_samples", 1)
    if method is None:
        method = "iid"
    if method not in BLOCK_METHODS:
        raise ValueError(f"method must be one of {BLOCK_METHODS}, got {method!r}.")
    L = check_int(block_size, "block_size", 1)
    period = check_int(period, "period", 1)
    for name, value in (("replace", replace), ("by_end", by_end)):
        # bool("no") is True: a string or None would silently pick a branch.
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}.")
    m = _n_inbag(n, bool(replace), sample_fraction, method)
    size = 1 if n_draws is None else check_int(n_draws, "n_draws", 1)
    rng = _check_rng(random_state)
    if method == "iid":
        if not replace and m > n:
            raise ValueError(f"cannot draw m={m} distinct rows out of n={n}.")
        out = _iid(n, m, bool(replace), rng, size)
    elif method == "moving":
        out = _moving(n, m, L, bool(by_end), rng, size)
    elif method == "circular":
        out = _circular(n, m, L, bool(by_end), rng, size)
    elif method == "nonoverlapping":
        out = _nonoverlapping(n, m, L, bool(by_end), bool(replace), rng, size)
    elif method == "stationary":
        out = _stationary(n, m, L, rng, size)
    else:
        out = _seasonal(n, m, L, period, bool(replace), rng, size)
    out = np.asarray(out, dtype=np.int64)
    return out[0] if n_draws is None else out


class BlockBootstrap(BaseCrossValidator):
    """Bootstrap splitter yielding (in-bag, out-of-bag) indices.

    Each of the ``n_resamplings`` splits draws an in-bag multiset with
    :func:`block_bootstrap_indices` (duplicates kept, so use the indices to
    index rows, not as a mask) and the out-of-bag rows are those never drawn.
    Shaped like scikit-learn's cross-validators, so it can be passed as
    ``cv=`` (like MAPIE's ``BlockBootstrap``).

    Parameters
    ----------
    n_resamplings : int, default=100
        Number of bootstrap resamples (splits).
    method : str, default="moving"
        See :func:`block_bootstrap_indices`.
    block_size, by_end, replace, sample_fraction, period
        See :func:`block_bootstrap_indices`.
    random_state : int, RandomState, Generator or None, default=None
        With an int, every call to ``split`` yields the same resamples.

    Examples
    --------
    >>> import numpy as np
    >>> from skasync.bootstrap import BlockBootstrap
    >>> cv = BlockBootstrap(3, method="circular", block_size=5, random_state=0)
    >>> [(len(tr), len(te) > 0) for tr, te in cv.split(np.zeros((50, 2)))]
    [(50, True), (50, True), (50, True)]
    """

    def __init__(
        self,
        n_resamplings=100,
        *,
        method="moving",
        block_size=10,
        by_end=True,
        replace=True,
        sample_fraction=None,
        period=1,
        random_state=None,
    ):
        self.n_resamplings = n_resamplings
        self.method = method
        self.block_size = block_size
        self.by_end = by_end
        self.replace = replace
        self.sample_fraction = sample_fraction
        self.period = period
        self.random_state = random_state

    def split(self, X, y=None, groups=None):
        """Generate (in-bag, out-of-bag) index arrays.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows in chronological order.
        y, groups : ignored

        Yields
        ------
        in_bag : ndarray of int64
            In-bag rows, with repetitions.
        out_of_bag : ndarray of int64
            Sorted rows never drawn in this resample.
        """
        X, y, groups = indexable(X, y, groups)
        n = _num_samples(X)
        n_res = check_int(self.n_resamplings, "n_resamplings", 1)
        rng = _check_rng(self.random_state)
        for _ in range(n_res):
            in_bag = block_bootstrap_indices(
                n,
                self.method,
                block_size=self.block_size,
                by_end=self.by_end,
                replace=self.replace,
                sample_fraction=self.sample_fraction,
                period=self.period,
                random_state=rng,
            )
            drawn = np.zeros(n, dtype=bool)
            drawn[in_bag] = True
            yield in_bag, np.flatnonzero(~drawn).astype(np.int64)

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of resamples, ``n_resamplings``.

        Parameters
        ----------
        X, y, groups : ignored

        Returns
        -------
        n_splits : int
        """
        return check_int(self.n_resamplings, "n_resamplings", 1)
