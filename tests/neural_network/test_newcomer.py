# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""A new user's first try: the defaults in a StandardScaler pipeline.

Each torch classifier at its defaults scores within 2 points of
MLPClassifier's defaults in 5-fold cross-validation on scikit-learn's toy
data sets (``benchmarks/bench_defaults.py`` records the same runs with
their fit times).
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier

LOADERS = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}
_MLP_SCORES = {}


def _cv_accuracy(clf, X, y):
    with warnings.catch_warnings():
        # MLPClassifier's ConvergenceWarning at max_iter=200 and our
        # "threads do not pay on layers this small" are what a user sees;
        # they are not what this test is about.
        warnings.simplefilter("ignore")
        return float(
            np.mean(cross_val_score(make_pipeline(StandardScaler(), clf), X, y))
        )


def _mlp_score(name):
    if name not in _MLP_SCORES:
        X, y = LOADERS[name](return_X_y=True)
        _MLP_SCORES[name] = _cv_accuracy(MLPClassifier(random_state=0), X, y)
    return _MLP_SCORES[name]


@pytest.mark.parametrize("name", list(LOADERS))
@pytest.mark.parametrize(
    "make",
    [AsyncLayerwiseMLPClassifier, BlockLocalClassifier],
    ids=lambda c: c.__name__,
)
def test_defaults_score_like_mlpclassifier(name, make):
    X, y = LOADERS[name](return_X_y=True)
    score = _cv_accuracy(make(random_state=0), X, y)
    reference = _mlp_score(name)
    assert score >= reference - 0.02, (
        f"{make.__name__} defaults: {score:.4f} CV accuracy on {name}, "
        f"MLPClassifier {reference:.4f}"
    )


@pytest.mark.parametrize(
    "estimator",
    [
        AsyncLayerwiseMLPClassifier(mode="serial", max_iter=2),
        AsyncLayerwiseMLPClassifier(mode="hogwild", n_workers=np.int64(2), max_iter=2),
        AsyncLayerwiseMLPClassifier(
            mode="pd-asgd",
            n_backward_workers=np.int64(2),
            queue_size=np.int64(3),
            max_iter=2,
        ),
        BlockLocalClassifier(
            n_blocks=np.int64(2), n_microbatches=np.int64(2), max_iter=2
        ),
    ],
    ids=["serial", "hogwild", "pd-asgd", "block-local"],
)
def test_numpy_integers_from_a_grid_are_accepted_as_counts(estimator):
    # GridSearchCV grids are often built with np.arange: every count then
    # arrives as a NumPy integer, which the parameter check accepts.
    from sklearn.model_selection import GridSearchCV

    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        estimator,
        {"batch_size": np.arange(16, 33, 16), "max_iter": np.array([2])},
        cv=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search.fit(X, y)
    assert search.best_params_["batch_size"] in (16, 32)
    assert np.isfinite(search.best_score_)
