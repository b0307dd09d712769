# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""Early-stopping snapshots restore the optimizer state in both torch classifiers."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier

CLASSIFIERS = {
    "async-sgd": lambda **kw: AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(32,), mode="serial", solver="sgd", **kw
    ),
    "async-adam": lambda **kw: AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(32,),
        mode="serial",
        solver="adam",
        learning_rate_init=3e-3,
        **kw,
    ),
    "bll": lambda **kw: BlockLocalClassifier(
        hidden_layer_sizes=(32, 32), n_blocks=2, learning_rate_init=3e-3, **kw
    ),
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:800] / 16.0, y[:800]


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_continuation_after_early_stopping_resumes_the_best_epochs_optimizer(
    digits, name
):
    # A fit that stops after its best validation epoch restores that epoch's
    # weights, and with them the optimizer state of that epoch: continuing it
    # must give what continuing a fit that ended at the best epoch gives.
    X, y = digits
    make = CLASSIFIERS[name]
    params = {
        "batch_size": 64,
        "early_stopping": True,
        "n_iter_no_change": 3,
        "tol": 0.0,
        "max_iter": 60,
        "random_state": 0,
        "torch_num_threads": 1,
    }
    stopped = make(**params).fit(X, y)
    best = int(np.argmax(stopped.validation_scores_)) + 1
    assert best < stopped.n_iter_  # a snapshot of an earlier epoch was restored
    # The same run, ended at the best epoch (serial fits are deterministic).
    reference = make(**{**params, "max_iter": best}).fit(X, y)
    np.testing.assert_array_equal(stopped.predict_proba(X), reference.predict_proba(X))

    # partial_fit keeps the optimizer state in both classifiers.
    for clf in (stopped, reference):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(stopped.predict_proba(X), reference.predict_proba(X))

    # A warm_start fit continues from there (both classifiers rebuild their
    # optimisers on every fit, as MLPClassifier does).
    for clf in (stopped, reference):
        clf.set_params(warm_start=True, max_iter=2).fit(X, y)
    np.testing.assert_array_equal(stopped.predict_proba(X), reference.predict_proba(X))


@pytest.mark.parametrize("first, second", [("sgd", "adam"), ("adam", "sgd")])
def test_a_warm_start_fit_starts_a_new_optimizer(digits, first, second):
    # As MLPClassifier: a fit that is not partial_fit builds a new optimizer,
    # so a changed solver does not take the other's buffers for its own
    # (SGD's velocity read as Adam's first moment with a zero second moment
    # sent the loss from 0.9 to 4e5).
    X, y = digits
    clf = AsyncLayerwiseMLPClassifier(
        (32,),
        mode="serial",
        solver=first,
        batch_size=64,
        max_iter=5,
        learning_rate_init=3e-3,
        tol=0.0,
        random_state=0,
    ).fit(X, y)
    before = clf.loss_curve_[-1]
    clf.set_params(warm_start=True, solver=second, max_iter=2).fit(X, y)
    assert max(clf.loss_curve_[5:]) < 2 * before, clf.loss_curve_
    # Adam counted only this fit's steps: 13 batches in each of 2 epochs.
    n_batches = -(-X.shape[0] // 64)
    expected = 2 * n_batches if second == "adam" else 0
    assert clf._log.adam_steps == [expected] * 2
