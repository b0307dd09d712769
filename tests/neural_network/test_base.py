import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync.neural_network._base import BaseTorchClassifier
from skasync.neural_network._fit_records import EpochResult, History
from skasync.neural_network._torch_utils import make_linear, make_optimizer


class TinyMLP(BaseTorchClassifier):
    _parameter_constraints = {**BaseTorchClassifier._parameter_constraints}

    def __init__(
        self,
        batch_size="auto",
        learning_rate_init=0.01,
        alpha=1e-4,
        max_iter=50,
        tol=1e-4,
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        target_score=None,
        max_time=None,
        device="cpu",
        torch_num_threads=None,
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        for k, v in locals().items():
            if k != "self":
                setattr(self, k, v)

    def _init_model(self, n_features, n_classes, generator):
        self.module_ = torch.nn.Sequential(
            make_linear(n_features, 16, generator),
            torch.nn.ReLU(),
            make_linear(16, n_classes, generator),
        )
        self.optimizer_ = make_optimizer(
            self.module_.parameters(), "adam", self.learning_rate_init
        )

    def _fit_epoch(self, X, y, *, batches, context):
        total = 0.0
        for idx in batches:
            loss = torch.nn.functional.cross_entropy(self.module_(X[idx]), y[idx])
            self.optimizer_.zero_grad()
            loss.backward()
            self.optimizer_.step()
            total += float(loss) * len(idx)
        return EpochResult(loss=total / X.shape[0])

    def _forward_logits(self, X):
        return self.module_(X)

    def _torch_modules(self):
        return {"module_": self.module_} if hasattr(self, "module_") else {}


@parametrize_with_checks(
    [TinyMLP(random_state=0), TinyMLP(random_state=0, early_stopping=True)],
    expected_failed_checks=lambda est: est._expected_failed_checks(),
)
def test_checks(estimator, check):
    check(estimator)


# --- behaviour of the shared base beyond the sklearn checks -----------------


def test_one_class_error_names_the_fix(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="at least 2 classes"):
        TinyMLP().fit(X[:20], np.zeros(20))


def test_nan_input_rejected(digits):
    X, y = digits
    X = X.copy()
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TinyMLP(max_iter=2).fit(X, y)


def test_wrong_width_at_predict(digits):
    X, y = digits
    clf = TinyMLP(max_iter=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :10])


def test_string_labels_round_trip(digits):
    X, y = digits
    labels = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )[y]
    clf = TinyMLP(max_iter=5, random_state=0).fit(X, labels)
    assert set(clf.predict(X[:50])) <= set(labels)
    assert clf.score(X, labels) > 0.5


def test_same_seed_same_model_and_global_rng_untouched(digits):
    X, y = digits
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = TinyMLP(max_iter=3, random_state=7).fit(X, y)
    assert torch.equal(torch.rand(1), expected_next)  # fit did not draw from it
    second = TinyMLP(max_iter=3, random_state=7).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_pickle_and_clone(digits):
    X, y = digits
    clf = TinyMLP(max_iter=3, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X))
    fresh = clone(clf)
    assert not hasattr(fresh, "classes_")
    assert fresh.get_params() == clf.get_params()


def test_partial_fit_requires_classes_then_trains(digits):
    X, y = digits
    clf = TinyMLP(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:500], y[:500], classes=np.arange(10))
    assert clf.n_iter_ == 1
    for _ in range(5):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 6
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="not seen"):
        clf.partial_fit(X[:5], np.array([11, 11, 11, 11, 11]))


def test_warm_start_continues(digits):
    X, y = digits
    clf = TinyMLP(max_iter=3, random_state=0, warm_start=True, tol=0).fit(X, y)
    clf.fit(X, y)
    assert clf.n_iter_ == 6
    assert len(clf.history_) == 6
    cold = TinyMLP(max_iter=3, random_state=0, tol=0).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 3


def test_history_columns_and_early_stopping(digits):
    X, y = digits
    clf = TinyMLP(
        max_iter=40,
        random_state=0,
        early_stopping=True,
        n_iter_no_change=3,
        target_score=0.9,
    ).fit(X, y)
    assert isinstance(clf.history_, History)
    assert clf.history_[:, "loss"] == clf.loss_curve_
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.time_to_target_ is not None  # digits reach 90% quickly
    assert clf.validation_scores_[-1] >= 0.9


def test_convergence_warning_only_when_max_iter_ends_the_fit(digits):
    # As MLPClassifier: a fit that runs out of epochs warns; one stopped by
    # its stopping rule, and partial_fit, do not.
    from sklearn.exceptions import ConvergenceWarning

    X, y = digits
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\)"):
        TinyMLP(max_iter=2, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        stopped = TinyMLP(max_iter=50, tol=10.0, n_iter_no_change=2).fit(X, y)
        assert stopped.n_iter_ == 3
        TinyMLP(random_state=0).partial_fit(X, y, classes=np.unique(y))


def test_a_warm_start_after_the_target_was_reached_trains_its_epochs(digits):
    X, y = digits
    clf = TinyMLP(
        max_iter=30, random_state=0, early_stopping=True, target_score=0.5, tol=0
    ).fit(X, y)
    first = clf.n_iter_
    assert clf.time_to_target_ is not None and first < 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.set_params(warm_start=True, target_score=None, max_iter=4).fit(X, y)
    assert clf.n_iter_ == first + 4


@pytest.mark.usefixtures("torch_threads_sentinel")
def test_torch_threads_restored_also_on_error(digits):
    X, y = digits
    before = torch.get_num_threads()

    class Failing(TinyMLP):
        def _fit_epoch(self, X, y, *, batches, context):
            assert torch.get_num_threads() == 1
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
        Failing(torch_num_threads=1).fit(X, y)
    assert torch.get_num_threads() == before


def test_cuda_requested_without_cuda_is_a_clear_error(digits):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available on this machine")
    X, y = digits
    with pytest.raises(ValueError, match="CUDA is not available"):
        TinyMLP(device="cuda").fit(X, y)


def test_check_layer_sizes_accepts_ints_and_rejects_the_rest():
    from skasync.neural_network._torch_utils import check_layer_sizes

    assert check_layer_sizes((8, np.int64(4)), "sizes") == [8, 4]
    assert check_layer_sizes(5, "sizes") == [5]
    assert check_layer_sizes((), "sizes") == []
    for bad in [(8, 0), (1.5,), (True,), ("8",)]:
        with pytest.raises(ValueError, match="sizes must contain positive ints"):
            check_layer_sizes(bad, "sizes")


@pytest.mark.parametrize(
    "make, name",
    [
        ("AsyncLayerwiseMLPClassifier", "hidden_layer_sizes"),
        ("BlockLocalClassifier", "hidden_layer_sizes"),
        ("BlockLocalClassifier", "feedback_hidden"),
        ("BlockLocalClassifier", "aux_hidden"),
    ],
)
def test_layer_size_parameters_reject_floats_by_name(make, name):
    import skasync

    X, y = load_digits(return_X_y=True)
    params = {"hidden_layer_sizes": (8, 8), "max_iter": 1, name: (8.5,)}
    if make == "BlockLocalClassifier":
        params["n_blocks"] = 2
    else:
        params["mode"] = "serial"
    clf = getattr(skasync, make)(**params)
    with pytest.raises(ValueError, match=f"{name} must contain positive ints"):
        clf.fit(X[:100], y[:100])


# Behaviour both torch estimators share through BaseTorchClassifier.
def _both_estimators():
    from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier

    return [
        AsyncLayerwiseMLPClassifier(
            hidden_layer_sizes=(16,), mode="serial", max_iter=3
        ),
        BlockLocalClassifier(hidden_layer_sizes=(16, 16), max_iter=3),
    ]


# Parameters each estimator rejects against the data, after validate_data
# and classes_: a straggler the mode does not have, streams without CUDA.
_FAILS_ITS_CHECKS = {
    "AsyncLayerwiseMLPClassifier": ({"straggler_workers": [5]}, "straggler_workers"),
    "BlockLocalClassifier": ({"parallel": "streams"}, "CUDA|cuda"),
}


@pytest.mark.parametrize(
    "estimator", _both_estimators(), ids=lambda e: type(e).__name__
)
def test_a_fresh_fit_that_fails_its_checks_leaves_no_fitted_model(estimator):
    """The failed fit set the new classes_ before its checks failed: the old
    network must not be used with them (predict raised IndexError)."""
    from sklearn.exceptions import NotFittedError

    X, y = load_digits(return_X_y=True)
    X = X / 16
    three = y < 3
    estimator.fit(X[three], y[three])
    good = estimator.get_params()
    bad, match = _FAILS_ITS_CHECKS[type(estimator).__name__]
    estimator.set_params(**bad)
    with pytest.raises(ValueError, match=match):
        estimator.fit(X[y < 2], y[y < 2])
    with pytest.raises(NotFittedError):
        estimator.predict(X[:3])
    estimator.set_params(**good).fit(X[three], y[three])
    assert estimator.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize(
    "estimator", _both_estimators(), ids=lambda e: type(e).__name__
)
def test_warm_start_may_turn_early_stopping_on(estimator):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    estimator.fit(X, y)
    assert estimator.validation_scores_ is None
    estimator.set_params(warm_start=True, early_stopping=True, max_iter=2)
    estimator.fit(X, y)
    assert len(estimator.validation_scores_) == 2
    assert 0 < estimator.best_validation_score_ <= 1


@pytest.mark.parametrize(
    "estimator", _both_estimators(), ids=lambda e: type(e).__name__
)
def test_validation_fraction_that_leaves_nothing_names_the_parameter(estimator):
    X, y = load_digits(return_X_y=True)
    estimator.set_params(early_stopping=True, validation_fraction=0.9)
    with pytest.raises(ValueError, match=r"^validation_fraction=0.9 leaves no"):
        estimator.fit(X[:5] / 16, y[:5])


def test_partial_fit_checks_parameters_on_every_call(digits):
    X, y = digits
    clf = TinyMLP(random_state=0).partial_fit(X, y, classes=np.unique(y))
    clf.set_params(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        clf.partial_fit(X, y)


@pytest.mark.parametrize(
    "device, match", [("gpu", "not a torch device"), ("meta", "holds no data")]
)
def test_a_device_torch_cannot_train_on_names_the_parameter(digits, device, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        TinyMLP(device=device).fit(X, y)


def test_verbose_prints_mlpclassifiers_lines(digits, capsys):
    # One "Iteration i, loss = ..." line per epoch, as MLPClassifier prints,
    # with the validation score under early stopping; the losses are
    # loss_curve_'s.
    X, y = digits
    clf = TinyMLP(max_iter=3, tol=0, verbose=1, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 3
    for epoch, (line, loss, score) in enumerate(
        zip(lines, clf.loss_curve_, clf.validation_scores_), start=1
    ):
        assert line == (
            f"Iteration {epoch}, loss = {loss:.8f}, validation score = {score:.4f}"
        )


def test_convergence_warning_as_an_error_leaves_the_best_weights(digits):
    # The warning comes after the best early-stopping state is loaded: with
    # warnings turned into errors, the fit still ends on the best weights.
    from sklearn.exceptions import ConvergenceWarning

    X, y = digits
    params = dict(
        max_iter=12,
        tol=0,
        n_iter_no_change=100,
        early_stopping=True,
        learning_rate_init=0.05,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = TinyMLP(**params).fit(X, y)
    best = int(np.argmax(reference.validation_scores_))
    assert best < len(reference.validation_scores_) - 1  # not the last epoch
    clf = TinyMLP(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
