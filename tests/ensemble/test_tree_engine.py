# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import pickle

import numpy as np
import pytest
from _helpers import leaves_of
from sklearn.tree import DecisionTreeRegressor

from skasync.ensemble._tree import (
    BinnedFeatures,
    PackedForest,
    Tree,
    bin_features,
    grow_tree,
    grow_tree_dense,
    grow_trees,
    grow_trees_on_series,
    pack_trees,
    predict_mean,
    predict_trees,
)
from skasync.ensemble._tree._ranking import _radix_argsort


def _f32(a):
    # sklearn trees compare float32 features: use float32-representable data so
    # midpoint thresholds agree bit for bit.
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _data(seed, n, p, noise=1.0):
    rng = np.random.default_rng(seed)
    X = _f32(rng.normal(size=(n, p)))
    y = X[:, 0] + np.sin(3 * X[:, -1]) + noise * rng.normal(size=n)
    return X, y


def _leaf_partition(tree_apply, X):
    """Map each row to a canonical leaf label (order of first appearance)."""
    leaves = tree_apply(X)
    _, first, inv = np.unique(leaves, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv]


# --------------------------------------------------------------------------- binning
def test_bin_features_exact():
    X = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 5.0], [3.0, -1.0]])
    b = bin_features(X)
    assert isinstance(b, BinnedFeatures)
    assert b.codes.dtype == np.uint8 and b.codes.flags.f_contiguous
    np.testing.assert_array_equal(b.codes, [[2, 1], [0, 1], [1, 2], [2, 0]])
    np.testing.assert_array_equal(b.n_bins, [3, 3])
    np.testing.assert_allclose(b.thresholds[0], [1.5, 2.5])
    np.testing.assert_allclose(b.thresholds[1], [0.0, 3.0])


def test_bin_features_quantile_and_dtypes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 3))
    X[:, 2] = np.round(X[:, 2])  # few distinct values: stays exact
    b = bin_features(X, max_bins=32)
    assert b.codes.dtype == np.uint8
    assert b.n_bins[0] <= 32 and b.n_bins[0] >= 20
    assert b.n_bins[2] == np.unique(X[:, 2]).size
    for f in range(3):
        c = b.codes[:, f].astype(np.int64)
        order = np.argsort(X[:, f], kind="stable")
        assert np.all(np.diff(c[order]) >= 0)  # codes are monotone in the values
        assert np.unique(c).size == b.n_bins[f]  # no empty bins
        k = b.n_bins[f]
        # every value lies on the right side of the stored thresholds
        t = b.thresholds[f, : k - 1]
        np.testing.assert_array_equal(np.searchsorted(t, X[:, f], side="left"), c)
    assert bin_features(rng.normal(size=(300, 2))).codes.dtype == np.uint16
    assert bin_features(rng.normal(size=(70000, 1))).codes.dtype == np.uint32


def test_bin_features_rejects_bad_input():
    with pytest.raises(ValueError):
        bin_features(np.array([[np.nan]]))
    with pytest.raises(ValueError):
        bin_features(np.ones((3, 2)), max_bins=1)


# --------------------------------------------------------------------------- vs sklearn
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "max_depth, min_samples_split", [(-1, 2), (-1, 6), (4, 6), (7, 13)]
)
def test_single_feature_equals_sklearn(seed, max_depth, min_samples_split):
    # One feature: no cross-feature ties, so the trees must be identical and
    # predictions agree everywhere, including on new points between thresholds.
    X, y = _data(seed, 300, 1)
    idx = np.random.default_rng(seed + 10).integers(0, 300, 300)
    tree = grow_tree(
        bin_features(X),
        y,
        idx,
        max_features=1,
        min_samples_split=min_samples_split,
        max_depth=max_depth,
        seed=seed,
    )
    sk = DecisionTreeRegressor(
        min_samples_split=min_samples_split,
        max_depth=None if max_depth < 0 else max_depth,
        random_state=0,
    ).fit(X[idx], y[idx])
    assert tree.feature.size == sk.tree_.node_count
    X_new = _f32(np.random.default_rng(seed + 20).normal(size=(2000, 1)) * 1.5)
    packed = pack_trees([tree])
    np.testing.assert_allclose(
        predict_mean(packed, X_new), sk.predict(X_new), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        predict_mean(packed, X), sk.predict(X), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_depth, min_samples_split", [(-1, 2), (-1, 6), (5, 10)])
@pytest.mark.parametrize("dense", [False, True])
def test_all_features_equals_sklearn(seed, max_depth, min_samples_split, dense):
    # max_features = p: the same best split as sklearn at every node. Different
    # features can induce the *same* partition of a small node (an exact tie
    # that sklearn breaks by its random feature order), so compare what is
    # tie-invariant: node count, predictions on the training rows and the
    # partition of the training rows into leaves.
    n, p = 250, 4
    X, y = _data(seed, n, p)
    if dense:
        idx = np.arange(n)
        tree = grow_tree_dense(
            X,
            y,
            max_features=p,
            min_samples_split=min_samples_split,
            max_depth=max_depth,
            seed=seed,
        )
    else:
        idx = np.random.default_rng(seed + 1).integers(0, n, n)
        tree = grow_tree(
            bin_features(X),
            y,
            idx,
            max_features=p,
            min_samples_split=min_samples_split,
            max_depth=max_depth,
            seed=seed,
        )
    sk = DecisionTreeRegressor(
        min_samples_split=min_samples_split,
        max_depth=None if max_depth < 0 else max_depth,
        random_state=0,
    ).fit(X[idx], y[idx])
    assert tree.feature.size == sk.tree_.node_count
    packed = pack_trees([tree])
    np.testing.assert_allclose(
        predict_mean(packed, X[idx]), sk.predict(X[idx]), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(
        _leaf_partition(lambda Z: leaves_of(tree, Z), X[idx]),
        _leaf_partition(sk.apply, X[idx]),
    )
    np.testing.assert_array_equal(
        np.sort(tree.n_node_samples), np.sort(sk.tree_.n_node_samples)
    )


def test_duplicates_behave_like_repeated_rows():
    X, y = _data(5, 120, 1)
    rng = np.random.default_rng(0)
    idx = np.repeat(np.arange(120), rng.integers(0, 4, 120))  # 0..3 copies each
    rng.shuffle(idx)
    tree = grow_tree(
        bin_features(X),
        y,
        idx,
        max_features=1,
        min_samples_split=6,
        max_depth=-1,
        seed=3,
    )
    sk = DecisionTreeRegressor(min_samples_split=6, random_state=0).fit(X[idx], y[idx])
    assert tree.n_node_samples[0] == idx.size
    X_new = _f32(rng.normal(size=(1000, 1)))
    np.testing.assert_allclose(
        predict_mean(pack_trees([tree]), X_new),
        sk.predict(X_new),
        rtol=1e-12,
        atol=1e-12,
    )
    # Same as growing on the physically repeated rows.
    tree_rep = grow_tree_dense(
        X[idx], y[idx], max_features=1, min_samples_split=6, max_depth=-1, seed=3
    )
    np.testing.assert_allclose(
        predict_mean(pack_trees([tree_rep]), X_new),
        sk.predict(X_new),
        rtol=1e-12,
        atol=1e-12,
    )


def test_lag_matrix_fast_path_matches_generic_binning():
    # grow_tree_dense ranks a lag matrix with one sort of the series; the tree
    # must equal the one grown from column-wise exact bins.
    rng = np.random.default_rng(0)
    s = _f32(np.cumsum(rng.normal(size=210)) * 0.1)
    X = np.column_stack([s[5 - k : 205 - k] for k in range(1, 6)])
    y = s[5:205]
    for XX in (X, X[:, ::-1].copy(), np.round(X, 1)):
        kw = dict(max_features=2, min_samples_split=6, max_depth=-1, seed=11)
        a = grow_tree_dense(XX, y, **kw)
        b = grow_tree(bin_features(XX), y, np.arange(XX.shape[0]), **kw)
        for name in Tree._fields:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


# --------------------------------------------------------------------------- properties
def test_determinism_and_seed_dependence():
    X, y = _data(0, 400, 6)
    b = bin_features(X)
    idx = np.random.default_rng(0).integers(0, 400, 400)
    kw = dict(max_features=2, min_samples_split=6, max_depth=-1)
    t1 = grow_tree(b, y, idx, seed=42, **kw)
    t2 = grow_tree(b, y, idx, seed=42, **kw)
    t3 = grow_tree(b, y, idx, seed=43, **kw)
    for name in Tree._fields:
        np.testing.assert_array_equal(getattr(t1, name), getattr(t2, name))
    assert not (
        t1.feature.size == t3.feature.size and np.array_equal(t1.feature, t3.feature)
    )
    d1 = grow_tree_dense(X, y, seed=7, **kw)
    d2 = grow_tree_dense(X, y, seed=7, **kw)
    np.testing.assert_array_equal(d1.threshold, d2.threshold)


def test_candidate_features_are_uniform():
    # Root split feature with mtry=1 on pure-noise features: uniform over p.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = rng.normal(size=60)
    b = bin_features(X)
    counts = np.bincount(
        [
            grow_tree(
                b,
                y,
                np.arange(60),
                max_features=1,
                min_samples_split=2,
                max_depth=1,
                seed=s,
            ).feature[0]
            for s in range(2000)
        ],
        minlength=4,
    )
    assert counts.min() > 400 and counts.max() < 600


@pytest.mark.parametrize("min_samples_split", [2, 6, 20])
def test_structure_and_stopping_rules(min_samples_split):
    X, y = _data(3, 500, 3)
    idx = np.random.default_rng(1).integers(0, 500, 500)
    tree = grow_tree(
        bin_features(X),
        y,
        idx,
        max_features=2,
        min_samples_split=min_samples_split,
        max_depth=-1,
        seed=0,
    )
    internal = tree.feature >= 0
    leaf = ~internal
    # Split nodes have >= min_samples_split samples, children sum to parents.
    assert np.all(tree.n_node_samples[internal] >= min_samples_split)
    np.testing.assert_array_equal(
        tree.n_node_samples[tree.left[internal]]
        + tree.n_node_samples[tree.right[internal]],
        tree.n_node_samples[internal],
    )
    assert np.all(tree.n_node_samples >= 1)
    assert np.all(tree.left[leaf] == -1) and np.all(tree.right[leaf] == -1)
    # Leaf values are the means of y over their (multiset) samples.
    leaves = leaves_of(tree, X[idx])
    for node in np.unique(leaves)[:50]:
        np.testing.assert_allclose(
            tree.value[node], y[idx][leaves == node].mean(), rtol=1e-12
        )
        assert tree.n_node_samples[node] == np.sum(leaves == node)
    depth_tree = grow_tree(
        bin_features(X),
        y,
        idx,
        max_features=2,
        min_samples_split=2,
        max_depth=3,
        seed=0,
    )
    assert depth_tree.feature.size <= 15


def test_constant_target_and_constant_features_give_a_leaf():
    X, y = _data(0, 50, 2)
    t = grow_tree_dense(
        X, np.full(50, 2.5), max_features=2, min_samples_split=2, max_depth=-1, seed=0
    )
    assert t.feature.size == 1 and t.value[0] == 2.5
    # Candidates all constant in the node: a leaf, no redraw (ranger).
    Xc = np.column_stack([np.ones(50), X[:, 0]])
    leafs = [
        grow_tree_dense(
            Xc, y, max_features=1, min_samples_split=2, max_depth=-1, seed=s
        ).feature.size
        for s in range(40)
    ]
    assert min(leafs) == 1 and max(leafs) > 1


def test_quantile_bins_close_to_sklearn():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(3000, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.3 * rng.normal(size=3000)
    X_test = rng.uniform(-2, 2, size=(2000, 3))
    y_test = np.sin(2 * X_test[:, 0]) + X_test[:, 1] ** 2
    idxs = rng.integers(0, 3000, (10, 3000))

    def bagged_mse(max_bins):
        b = bin_features(X, max_bins=max_bins)
        assert max_bins is None or b.n_bins.max() <= max_bins
        trees = [
            grow_tree(
                b, y, i, max_features=3, min_samples_split=6, max_depth=-1, seed=s
            )
            for s, i in enumerate(idxs)
        ]
        return np.mean((predict_mean(pack_trees(trees), X_test) - y_test) ** 2)

    sk_pred = np.mean(
        [
            DecisionTreeRegressor(min_samples_split=6, random_state=0)
            .fit(X[i], y[i])
            .predict(X_test)
            for i in idxs
        ],
        axis=0,
    )
    sk_mse = np.mean((sk_pred - y_test) ** 2)
    # Exact bins: the same bagged trees as sklearn up to cross-feature ties.
    assert abs(bagged_mse(None) - sk_mse) < 0.05 * sk_mse
    # 64 quantile bins on 3000 distinct values: a small discretisation loss.
    assert bagged_mse(64) < 1.25 * sk_mse


def test_pack_predict_and_pickle():
    X, y = _data(2, 300, 4)
    b = bin_features(X)
    rng = np.random.default_rng(0)
    trees = [
        grow_tree(
            b,
            y,
            rng.integers(0, 300, 300),
            max_features=2,
            min_samples_split=6,
            max_depth=-1,
            seed=s,
        )
        for s in range(7)
    ]
    packed = pack_trees(trees)
    assert isinstance(packed, PackedForest)
    X_new = rng.normal(size=(50, 4))
    per_tree = predict_trees(packed, X_new)
    assert per_tree.shape == (50, 7)
    for t, tree in enumerate(trees):
        np.testing.assert_array_equal(per_tree[:, t], tree.value[leaves_of(tree, X_new)])
    np.testing.assert_allclose(
        per_tree.mean(axis=1), predict_mean(packed, X_new), rtol=1e-13
    )
    clone = pickle.loads(pickle.dumps(packed))
    np.testing.assert_array_equal(predict_trees(clone, X_new), per_tree)
    assert all(isinstance(a, np.ndarray) for a in clone)
    with pytest.raises(ValueError):
        predict_trees(packed, X_new[:, :1])


def test_parameter_validation():
    X, y = _data(0, 20, 2)
    b = bin_features(X)
    with pytest.raises(ValueError):
        grow_tree(
            b,
            y,
            np.arange(20),
            max_features=0,
            min_samples_split=2,
            max_depth=-1,
            seed=0,
        )
    with pytest.raises(ValueError):
        grow_tree(
            b,
            y,
            np.array([0, 20]),
            max_features=1,
            min_samples_split=2,
            max_depth=-1,
            seed=0,
        )
    with pytest.raises(ValueError):
        grow_tree(
            b,
            y[:5],
            np.arange(5),
            max_features=1,
            min_samples_split=2,
            max_depth=-1,
            seed=0,
        )
    # max_features above p is capped, any int seed works.
    grow_tree(
        b,
        y,
        np.arange(20),
        max_features=9,
        min_samples_split=2,
        max_depth=-1,
        seed=-(2**70),
    )


def test_dense_rejects_non_finite_and_threads_agree():
    X, y = _data(0, 200, 3)
    Xn = X.copy()
    Xn[5, 1] = np.nan
    with pytest.raises(ValueError):
        grow_tree_dense(
            Xn, y, max_features=1, min_samples_split=2, max_depth=-1, seed=0
        )
    # The kernels release the GIL: trees grown in threads equal serial ones.
    from concurrent.futures import ThreadPoolExecutor

    b = bin_features(X)
    idx = np.random.default_rng(0).integers(0, 200, 200).astype(np.int32)

    def grow(s):
        return grow_tree(
            b, y, idx, max_features=2, min_samples_split=6, max_depth=-1, seed=s
        )

    with ThreadPoolExecutor(2) as ex:
        threaded = list(ex.map(grow, range(8)))
    for s, tree in enumerate(threaded):
        np.testing.assert_array_equal(tree.threshold, grow(s).threshold)


def _assert_packed_equals(packed, trees):
    off = packed.node_offsets
    assert off.shape == (len(trees) + 1,)
    for t, tree in enumerate(trees):
        for name in Tree._fields:
            np.testing.assert_array_equal(
                getattr(packed, name)[off[t] : off[t + 1]], getattr(tree, name)
            )


def test_grow_trees_equals_one_tree_per_row():
    X, y = _data(8, 200, 3)
    rng = np.random.default_rng(1)
    idx = np.stack(
        [rng.integers(0, 200, 200), rng.permutation(200), np.repeat(np.arange(50), 4)]
    )
    kw = dict(max_features=2, min_samples_split=6, max_depth=-1)
    b = bin_features(X)
    packed = grow_trees(b, y, idx, seeds=[3, 4, 5], **kw)
    _assert_packed_equals(
        packed, [grow_tree(b, y, i, seed=s, **kw) for i, s in zip(idx, [3, 4, 5])]
    )
    with pytest.raises(ValueError, match="out of range"):
        grow_trees(b, y, idx + 1, seeds=[3, 4, 5], **kw)
    with pytest.raises(ValueError, match="seeds"):
        grow_trees(b, y, idx, seeds=[3, 4], **kw)
    with pytest.raises(ValueError, match="2-d"):
        grow_trees(b, y, idx[0], seeds=[3], **kw)


@pytest.mark.parametrize("n_lags", [1, 2, 5])
def test_grow_trees_on_series_equals_dense_lag_matrix(n_lags):
    rng = np.random.default_rng(n_lags)
    series = np.cumsum(rng.normal(size=(3, 150)), axis=1)
    series[1, ::7] = series[1, 0]  # ties across lags
    kw = dict(max_features=2, min_samples_split=6, max_depth=-1)
    packed = grow_trees_on_series(series, n_lags, seeds=[0, 1, 2], **kw)
    trees = []
    for k in range(3):
        # lag matrix: column j = lag j + 1, target = the value itself
        X = np.stack(
            [series[k, n_lags - 1 - j : 150 - 1 - j] for j in range(n_lags)], axis=1
        )
        trees.append(grow_tree_dense(X, series[k, n_lags:], seed=k, **kw))
    _assert_packed_equals(packed, trees)
    bad = series.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        grow_trees_on_series(bad, n_lags, seeds=[0, 1, 2], **kw)
    with pytest.raises(ValueError, match="n_lags"):
        grow_trees_on_series(series[:, :n_lags], n_lags, seeds=[0, 1, 2], **kw)


def test_radix_argsort_is_a_stable_sort():
    rng = np.random.default_rng(0)
    cases = [
        rng.normal(size=500) * 1e3,
        np.round(rng.normal(size=300), 1),  # many ties
        np.array([-0.0, 0.0, 1.0, -1.0, 5e-324, -5e-324, 1e308, -1e308, 0.0]),
        np.full(9, 2.5),
        np.array([7.0]),
    ]
    for v in cases:
        order = _radix_argsort(v)
        np.testing.assert_array_equal(v[order], np.sort(v))
        # stable: equal values keep their input order (-0.0 == 0.0 may swap)
        pos = np.empty(v.size, dtype=np.int64)
        pos[order] = np.arange(v.size)
        same = (v[:, None] == v[None, :]) & (
            np.signbit(v)[:, None] == np.signbit(v)[None, :]
        )
        i, j = np.nonzero(same & (np.arange(v.size)[:, None] < np.arange(v.size)))
        assert np.all(pos[i] < pos[j])


@pytest.mark.parametrize("level", [1e6, 1e9, -3e10])
def test_splits_do_not_depend_on_the_level_of_y(level):
    # The split score is a sum of squared sums, about n * mean**2 of raw y:
    # at a level of 1e8 above a unit spread the candidates' differences were
    # lost to rounding and the root split on another feature (test MSE 0.18
    # at level 0, 0.68 at 1e8, 0.99 at 1e9). Shifting y must not change a
    # variance-reduction tree beyond the rounding of y + level itself.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    f = lambda X: np.sin(2 * X[:, 0]) + X[:, 1]  # noqa: E731
    y = f(X) + 0.3 * rng.normal(size=400)
    X_test = rng.normal(size=(2000, 3))
    kw = dict(max_features=3, min_samples_split=6, max_depth=-1, seed=0)
    base = grow_tree(bin_features(X), y, np.arange(400), **kw)
    shifted = grow_tree(bin_features(X), y + level, np.arange(400), **kw)
    assert shifted.feature[0] == base.feature[0]
    assert shifted.threshold[0] == base.threshold[0]
    mse = {
        name: np.mean((predict_mean(pack_trees([t]), X_test) - shift - f(X_test)) ** 2)
        for name, t, shift in (("base", base, 0.0), ("shifted", shifted, level))
    }
    assert mse["shifted"] < 1.1 * mse["base"], mse
