# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""Property tests for the rangerts block bootstrap samplers."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_score

from skasync.bootstrap import BLOCK_METHODS, BlockBootstrap, block_bootstrap_indices
from skasync.bootstrap._random import _geometric0

SETTINGS = settings(max_examples=40, deadline=None)

n_st = st.integers(min_value=20, max_value=400)
L_st = st.integers(min_value=2, max_value=15)
seed_st = st.integers(min_value=0, max_value=2**31 - 1)
frac_st = st.one_of(st.none(), st.floats(min_value=0.3, max_value=1.0))


def _m(n, replace, frac):
    if frac is None:
        frac = 1.0 if replace else 0.632
    return math.floor(n * frac)


@SETTINGS
@given(n=n_st, replace=st.booleans(), frac=frac_st, seed=seed_st)
def test_iid(n, replace, frac, seed):
    idx = block_bootstrap_indices(
        n, "iid", replace=replace, sample_fraction=frac, random_state=seed
    )
    assert idx.dtype == np.int64
    assert idx.shape == (_m(n, replace, frac),)
    assert idx.min() >= 0 and idx.max() < n
    if not replace:
        assert np.unique(idx).shape == idx.shape


@SETTINGS
@given(n=n_st, L=L_st, by_end=st.booleans(), frac=frac_st, seed=seed_st)
def test_moving(n, L, by_end, frac, seed):
    m = _m(n, True, frac)
    if m < L:
        with pytest.raises(ValueError, match="block_size"):
            block_bootstrap_indices(n, "moving", block_size=L, sample_fraction=frac)
        return
    idx = block_bootstrap_indices(
        n,
        "moving",
        block_size=L,
        by_end=by_end,
        sample_fraction=frac,
        random_state=seed,
    )
    k = m // L
    assert idx.dtype == np.int64
    assert idx.shape == (k * L,)
    blocks = idx.reshape(k, L)
    assert np.all(np.diff(blocks, axis=1) == 1)  # contiguous runs, no wrap
    assert blocks[:, 0].min() >= 0 and blocks[:, -1].max() <= n - 1
    # by_end mirrors the blocks: same seed, start s <-> n - L - s
    other = block_bootstrap_indices(
        n,
        "moving",
        block_size=L,
        by_end=not by_end,
        sample_fraction=frac,
        random_state=seed,
    ).reshape(k, L)
    np.testing.assert_array_equal(blocks[:, 0], n - L - other[:, 0])


@SETTINGS
@given(n=n_st, L=L_st, by_end=st.booleans(), replace=st.booleans(), seed=seed_st)
def test_circular(n, L, by_end, replace, seed):
    assume(_m(n, replace, None) >= L)
    idx = block_bootstrap_indices(
        n,
        "circular",
        block_size=L,
        by_end=by_end,
        replace=replace,
        random_state=seed,
    )
    k = _m(n, replace, None) // L
    assert idx.shape == (k * L,)
    assert idx.min() >= 0 and idx.max() < n
    blocks = idx.reshape(k, L)
    assert np.all(np.diff(blocks, axis=1) % n == 1)  # contiguous modulo n


def test_circular_wraps_around():
    idx = block_bootstrap_indices(
        30, "circular", block_size=10, random_state=0, sample_fraction=30
    )
    blocks = idx.reshape(-1, 10)
    wrapped = np.any(np.diff(blocks, axis=1) < 0, axis=1)
    assert wrapped.any()
    assert set(np.unique(blocks[wrapped][:, -1])) <= set(range(9))


@SETTINGS
@given(
    n=n_st,
    L=L_st,
    by_end=st.booleans(),
    replace=st.booleans(),
    frac=frac_st,
    seed=seed_st,
)
def test_nonoverlapping(n, L, by_end, replace, frac, seed):
    m = _m(n, replace, frac)
    if m < L:
        with pytest.raises(ValueError):
            block_bootstrap_indices(
                n, "nonoverlapping", block_size=L, replace=replace, sample_fraction=frac
            )
        return
    idx = block_bootstrap_indices(
        n,
        "nonoverlapping",
        block_size=L,
        by_end=by_end,
        replace=replace,
        sample_fraction=frac,
        random_state=seed,
    )
    k = m // L
    assert idx.shape == (k * L,)
    blocks = idx.reshape(k, L)
    assert np.all(np.diff(blocks, axis=1) == 1)
    offset = n % L if by_end else 0
    assert np.all((blocks[:, 0] - offset) % L == 0)  # partition-aligned
    if by_end:
        assert idx.min() >= n % L  # the oldest n mod L rows are never drawn
        assert idx.max() <= n - 1
    else:
        assert idx.max() < n - n % L  # the most recent n mod L never drawn
    if not replace:
        assert np.unique(blocks[:, 0]).shape == (k,)


@SETTINGS
@given(n=n_st, L=L_st, replace=st.booleans(), frac=frac_st, seed=seed_st)
def test_stationary_exact_length(n, L, replace, frac, seed):
    idx = block_bootstrap_indices(
        n,
        "stationary",
        block_size=L,
        replace=replace,
        sample_fraction=frac,
        random_state=seed,
    )
    assert idx.shape == (_m(n, replace, frac),)
    assert idx.min() >= 0 and idx.max() < n


@SETTINGS
@given(n=n_st, L=L_st, period=st.integers(1, 24), replace=st.booleans(), seed=seed_st)
def test_seasonal(n, L, period, replace, seed):
    assume(_m(n, replace, None) >= L)
    idx = block_bootstrap_indices(
        n,
        "seasonal",
        block_size=L,
        period=period,
        replace=replace,
        random_state=seed,
    )
    k = _m(n, replace, None) // L
    if replace:
        assert idx.shape == (k * L,)
    else:
        assert idx.shape[0] <= k * L
    assert idx.min() >= 0 and idx.max() < n
    # every run that does not continue the previous row starts a season
    new_run = np.r_[True, np.diff(idx) != 1]
    assert np.all(idx[new_run] % period == 0)


def test_stationary_geometric_lengths_mean():
    rng = np.random.default_rng(0)
    for L in (2, 5, 10):
        draws = _geometric0(rng, 1.0 / L, 200_000)
        assert draws.min() == 0
        assert abs(draws.mean() - (L - 1)) < 0.05 * L  # C++ std::geometric: L - 1
        assert abs((draws == 0).mean() - 1.0 / L) < 0.01


@pytest.mark.parametrize("L", [5, 10])
def test_stationary_run_lengths(L):
    # Zero-length draws leave no trace, so the observed (non-empty) runs are
    # geometric on {1, 2, ...} with mean L (memorylessness: 1 + Geom0).
    n = 20_000
    idx = block_bootstrap_indices(
        n, "stationary", block_size=L, sample_fraction=3.0, random_state=1
    )
    assert idx.shape == (3 * n,)
    n_runs = 1 + np.count_nonzero(np.diff(idx) % n != 1)
    assert abs(idx.shape[0] / n_runs - L) < 0.05 * L


@pytest.mark.parametrize(
    "method, kwargs, expected",
    [
        ("moving", {}, None),
        ("circular", {}, None),
        ("stationary", {}, None),
        ("iid", {}, None),
        ("nonoverlapping", {"by_end": True}, "end"),
        ("nonoverlapping", {"by_end": False}, "start"),
    ],
)
def test_coverage(method, kwargs, expected):
    n, L = 37, 5
    seen = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(0)
    for _ in range(300):
        seen[
            block_bootstrap_indices(n, method, block_size=L, random_state=rng, **kwargs)
        ] = True
    if expected is None:
        assert seen.all()
    elif expected == "end":
        np.testing.assert_array_equal(np.flatnonzero(~seen), np.arange(n % L))
    else:
        np.testing.assert_array_equal(np.flatnonzero(~seen), np.arange(n - n % L, n))


@pytest.mark.parametrize("method", BLOCK_METHODS)
def test_determinism(method):
    kw = dict(block_size=7, period=4)
    a = block_bootstrap_indices(200, method, random_state=42, **kw)
    b = block_bootstrap_indices(200, method, random_state=42, **kw)
    c = block_bootstrap_indices(
        200, method, random_state=np.random.RandomState(42), **kw
    )
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    g1 = block_bootstrap_indices(
        200, method, random_state=np.random.default_rng(3), **kw
    )
    g2 = block_bootstrap_indices(
        200, method, random_state=np.random.default_rng(3), **kw
    )
    np.testing.assert_array_equal(g1, g2)
    d = block_bootstrap_indices(200, method, random_state=43, **kw)
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("method", BLOCK_METHODS)
@pytest.mark.parametrize("replace", [True, False])
def test_n_draws(method, replace):
    kw = dict(block_size=7, period=4, replace=replace)
    many = block_bootstrap_indices(200, method, random_state=5, n_draws=6, **kw)
    one = block_bootstrap_indices(200, method, random_state=5, **kw)
    assert many.ndim == 2 and many.shape[0] == 6 and many.dtype == np.int64
    # n_draws=1 consumes the stream exactly like a single draw
    np.testing.assert_array_equal(
        block_bootstrap_indices(200, method, random_state=5, n_draws=1, **kw)[0], one
    )
    # the rows are consecutive single draws of one stream
    rng = np.random.RandomState(5)
    for row in many:
        np.testing.assert_array_equal(
            row, block_bootstrap_indices(200, method, random_state=rng, **kw)
        )
    assert len({tuple(row) for row in many}) == 6
    with pytest.raises(ValueError, match="n_draws"):
        block_bootstrap_indices(200, method, n_draws=0, **kw)


def test_reference_sizes():
    # 395 training rows, block 10: block methods draw 39 blocks = 390 rows
    for method in ("moving", "circular", "nonoverlapping"):
        assert block_bootstrap_indices(395, method, random_state=0).shape == (390,)
    assert block_bootstrap_indices(395, "stationary", random_state=0).shape == (395,)
    assert block_bootstrap_indices(395, "iid", random_state=0).shape == (395,)
    assert block_bootstrap_indices(395, "iid", replace=False, random_state=0).shape == (
        249,
    )
    assert block_bootstrap_indices(395, None, random_state=0).shape == (395,)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((100, "blocks"), {}, "method must be one of"),
        ((5, "moving"), {}, "block_size=10"),
        ((100, "moving"), {"block_size": 0}, "block_size must be"),
        ((100, "iid"), {"replace": False, "sample_fraction": 1.5}, "without"),
        ((100, "stationary"), {"block_size": 1}, "block_size >= 2"),
        ((100, "iid"), {"sample_fraction": 0.001}, "no row"),
        ((0, "iid"), {}, "n_samples"),
        ((100, "seasonal"), {"period": 0}, "period"),
    ],
)
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        block_bootstrap_indices(*args, **kwargs)


def test_block_bootstrap_splitter():
    X = np.arange(200.0).reshape(100, 2)
    cv = BlockBootstrap(4, method="moving", block_size=5, random_state=0)
    assert cv.get_n_splits() == 4
    splits = list(cv.split(X))
    assert len(splits) == 4
    for in_bag, oob in splits:
        assert in_bag.shape == (100,)
        assert np.intersect1d(in_bag, oob).size == 0
        np.testing.assert_array_equal(np.union1d(in_bag, oob), np.arange(100))
    again = list(cv.split(X))
    for (a, _), (b, _) in zip(splits, again):
        np.testing.assert_array_equal(a, b)
    assert len({tuple(s[0]) for s in splits}) == 4
    # usable as cv= in scikit-learn
    y = X[:, 0] * 2.0 + 1.0
    scores = cross_val_score(
        LinearRegression(),
        X,
        y,
        cv=BlockBootstrap(3, method="circular", random_state=0),
    )
    assert scores.shape == (3,)
    assert "BlockBootstrap" in repr(cv)


@pytest.mark.parametrize("name", ["replace", "by_end"])
@pytest.mark.parametrize("bad", ["no", None, 0])
def test_replace_and_by_end_must_be_booleans(name, bad):
    # bool("no") is True: the string used to sample with replacement.
    with pytest.raises(TypeError, match=name):
        block_bootstrap_indices(20, "iid", **{name: bad}, random_state=0)


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_get_n_splits_checks_n_resamplings_as_split_does(bad):
    with pytest.raises(ValueError, match="n_resamplings"):
        BlockBootstrap(n_resamplings=bad).get_n_splits()
