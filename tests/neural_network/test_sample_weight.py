# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""sample_weight and target_score of both torch classifiers (MLPClassifier semantics)."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier
from skasync.neural_network._torch_utils import seed_from

pytestmark = pytest.mark.filterwarnings("ignore:mode=.*layer ops are small:UserWarning")

ASYNC_MODES = ["serial", "sync", "hogwild", "d-asgd", "pd-asgd"]
BLL_SETTINGS = [
    dict(mode="bll"),
    dict(mode="bll", parallel="threads", n_microbatches=2),
    dict(mode="bll", backward_schedule="joint", denoise_weight=0.1),
    dict(mode="local_aux"),
    dict(mode="backprop"),
]


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _async(**params):
    base = dict(hidden_layer_sizes=(8,), random_state=0, torch_num_threads=1)
    return AsyncLayerwiseMLPClassifier(**{**base, **params})


def _bll(**params):
    base = dict(
        hidden_layer_sizes=(8, 8),
        n_blocks=2,
        random_state=0,
        device="cpu",
        torch_num_threads=1,
    )
    return BlockLocalClassifier(**{**base, **params})


# One full batch, no shuffling, one plain SGD step: the weighted fit and the
# fit on repeated rows take the same step iff the weighted loss is the mean
# over the repeated rows (and the L2 penalty is divided by the weight sum).
ONE_FULL_BATCH_STEP = dict(
    batch_size=10_000,
    max_iter=1,
    shuffle=False,
    solver="sgd",
    momentum=0.0,
    alpha=0.1,
)


def _repeated(X, y, weights):
    return np.repeat(X, weights, axis=0), np.repeat(y, weights)


def _reference_weighted_step(clf0, X, y, w, lr, alpha):
    """One SGD step of the weighted mean cross-entropy, written out in numpy."""
    W = [c.copy() for c in clf0.coefs_]
    b = [i.copy() for i in clf0.intercepts_]
    h = [X]
    for layer in range(len(W)):
        z = h[-1] @ W[layer] + b[layer]
        h.append(np.maximum(z, 0) if layer < len(W) - 1 else z)
    logits = h[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(p.shape[1])[y]) * (w / w.sum())[:, None]
    new_W, new_b = [], []
    for layer in reversed(range(len(W))):
        grad_W = h[layer].T @ delta + alpha * W[layer] / w.sum()
        grad_b = delta.sum(0)
        if layer > 0:
            delta = (delta @ W[layer].T) * (h[layer] > 0)
        new_W.insert(0, W[layer] - lr * grad_W)
        new_b.insert(0, b[layer] - lr * grad_b)
    return new_W, new_b


@pytest.mark.parametrize("mode", ASYNC_MODES)
def test_async_integer_weights_equal_repeated_rows(iris, mode):
    X, y = iris
    w = check_random_state(0).randint(0, 4, len(y))
    params = dict(mode=mode, **ONE_FULL_BATCH_STEP)
    weighted = _async(**params).fit(X, y, sample_weight=w)
    repeated = _async(**params).fit(*_repeated(X, y, w))
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(weighted.loss_, repeated.loss_, rtol=1e-5)
    # ... and both are the step of the weighted loss written out by hand,
    # from the same initial weights (a fit with max_iter=1 and lr ~ 0).
    start = _async(**{**params, "learning_rate_init": 1e-30}).fit(X, y)
    W, b = _reference_weighted_step(start, X, y, w.astype(float), 0.01, 0.1)
    for got, want in zip(weighted.coefs_ + weighted.intercepts_, W + b):
        np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("settings", BLL_SETTINGS, ids=str)
def test_block_local_integer_weights_equal_repeated_rows(iris, settings):
    X, y = iris
    w = check_random_state(1).randint(0, 4, len(y))
    # The decorrelation term is a statistic of the whole batch (unweighted
    # by design), so it is off here; every other term is per sample.
    params = dict(decorrelation_weight=0.0, **ONE_FULL_BATCH_STEP, **settings)
    weighted = _bll(**params).fit(X, y, sample_weight=w)
    repeated = _bll(**params).fit(*_repeated(X, y, w))
    for a, b in zip(weighted.blocks_.parameters(), repeated.blocks_.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(weighted.loss_, repeated.loss_, rtol=1e-5)


@pytest.mark.parametrize(
    "make", [lambda: _async(mode="pd-asgd", max_iter=5), lambda: _bll(max_iter=5)]
)
def test_weights_follow_the_rows_into_the_validation_split(iris, make):
    X, y = iris
    w = check_random_state(2).uniform(0.0, 3.0, len(y))
    w[::7] = 0.0
    clf = make().set_params(early_stopping=True, validation_fraction=0.3, max_iter=1)
    clf.fit(X, y, sample_weight=w)
    # The split the base makes: the first seed drawn from random_state.
    seed = seed_from(check_random_state(0))
    _, X_val, _, y_val, _, w_val = train_test_split(
        X, y, w, test_size=0.3, random_state=seed, stratify=y
    )
    expected = accuracy_score(y_val, clf.predict(X_val), sample_weight=w_val)
    assert clf.validation_scores_[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    "make", [lambda: _async(mode="serial", max_iter=3), lambda: _bll(max_iter=3)]
)
def test_held_out_rows_that_all_weigh_zero_are_scored_unweighted(iris, make):
    # A weighted accuracy of rows that all weigh 0 is undefined: it read 0.0
    # every epoch, and early stopping silently kept the first epoch.
    X, y = iris
    seed = seed_from(check_random_state(0))
    _, val_rows = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=seed, stratify=y
    )
    w = np.ones(len(y))
    w[val_rows] = 0.0
    clf = make().set_params(early_stopping=True, validation_fraction=0.2)
    with pytest.warns(UserWarning, match="all have sample_weight 0"):
        clf.fit(X, y, sample_weight=w)
    expected = accuracy_score(y[val_rows], clf.predict(X[val_rows]))
    # The restored (best) epoch scored what predict now scores.
    assert clf.best_validation_score_ == pytest.approx(expected)
    assert expected > 0.0


@pytest.mark.parametrize(
    "make", [lambda: _async(mode="pd-asgd", max_iter=20), lambda: _bll(max_iter=20)]
)
def test_a_class_of_zero_weight_stays_in_classes(iris, make):
    X, y = iris
    w = np.where(y == 2, 0.0, 1.0)
    clf = make().fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (150, 3)
    # Nothing taught the model class 2: it is rarely predicted for class 2.
    assert np.mean(clf.predict(X[y == 2]) == 2) < 0.5
    clf.partial_fit(X, y, sample_weight=w)
    assert clf.n_iter_ >= 2


def test_partial_fit_takes_sample_weight(iris):
    X, y = iris
    w = check_random_state(3).uniform(0.5, 2.0, len(y))
    for clf in (_async(mode="serial"), _bll()):
        for rows in np.array_split(np.arange(150), 3):
            clf.partial_fit(X[rows], y[rows], classes=[0, 1, 2], sample_weight=w[rows])
        assert clf.n_iter_ == 3


@pytest.mark.parametrize("make", [_async, _bll])
@pytest.mark.parametrize(
    "weights, match",
    [
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "sample_weight"),
        (lambda n: np.r_[np.inf, np.ones(n - 1)], "sample_weight"),
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "sample_weight"),
        (lambda n: np.ones(n - 1), "sample_weight"),
        (lambda n: np.zeros(n), "sample_weight is zero everywhere"),
    ],
    ids=["nan", "inf", "negative", "wrong-length", "all-zero"],
)
def test_bad_sample_weight(iris, make, weights, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        make(max_iter=1).fit(X, y, sample_weight=weights(len(y)))


@pytest.mark.parametrize("make", [_async, _bll])
def test_target_score_without_early_stopping_is_training_accuracy(iris, make):
    X, y = iris
    clf = make(max_iter=500, target_score=0.9, learning_rate_init=0.01)
    clf.fit(X, y)
    assert clf.time_to_target_ is not None
    scores = clf.history_[:, "train_score"]
    # Training stops at the first epoch whose training accuracy reached it.
    assert scores[-1] >= 0.9 and all(s < 0.9 for s in scores[:-1])
    assert clf.n_iter_ < 500
    assert scores[-1] == pytest.approx(clf.score(X, y))
    assert clf.time_to_target_ == clf.history_[-1]["wall_time"]
