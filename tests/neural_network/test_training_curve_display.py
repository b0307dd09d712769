"""TrainingCurveDisplay: the plotted data are the history_ columns."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier
from skasync.neural_network import TrainingCurveDisplay

plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16, y[:600]


def _async(**params):
    defaults = dict(hidden_layer_sizes=(16,), mode="serial", max_iter=4, random_state=0)
    return AsyncLayerwiseMLPClassifier(**{**defaults, **params})


def _column(estimator, name):
    return [record[name] for record in estimator.history_]


@pytest.mark.parametrize("x", ["wall_time", "epoch"])
def test_plotted_data_are_the_history_columns(digits, x):
    clf = _async(early_stopping=True, n_iter_no_change=10).fit(*digits)
    disp = TrainingCurveDisplay.from_estimator(clf, x=x, y="validation_score")
    assert len(clf.history_) == 4
    np.testing.assert_array_equal(disp.line_.get_xdata(), _column(clf, x))
    np.testing.assert_array_equal(disp.line_.get_ydata(), clf.validation_scores_)
    assert disp.ax_ is disp.line_.axes and disp.figure_ is disp.ax_.figure
    assert disp.ax_.get_ylabel() == "validation accuracy"
    assert disp.line_.get_label() == "AsyncLayerwiseMLPClassifier (serial)"
    if x == "wall_time":
        assert np.all(np.diff(disp.line_.get_xdata()) > 0)
        assert disp.ax_.get_xlabel() == "wall-clock time (s)"
    else:
        np.testing.assert_array_equal(disp.line_.get_xdata(), [1, 2, 3, 4])


def test_loss_curve_of_a_pipeline_and_shared_axes(digits):
    pipe = make_pipeline(StandardScaler(), _async()).fit(*digits)
    first = TrainingCurveDisplay.from_estimator(pipe, label="first")
    other = BlockLocalClassifier(
        hidden_layer_sizes=(16, 16), max_iter=3, random_state=0
    ).fit(*digits)
    second = TrainingCurveDisplay.from_estimator(other, ax=first.ax_, color="k")
    np.testing.assert_array_equal(first.line_.get_ydata(), pipe[-1].loss_curve_)
    np.testing.assert_array_equal(second.line_.get_ydata(), other.loss_curve_)
    assert second.ax_ is first.ax_
    assert [line.get_label() for line in first.ax_.get_lines()] == [
        "first",
        "BlockLocalClassifier (bll)",
    ]
    assert second.line_.get_color() == "k"


def test_train_score_column(digits):
    # An unreachable target: train_score is recorded every epoch.
    clf = _async(target_score=1.0).fit(*digits)
    disp = TrainingCurveDisplay.from_estimator(clf, x="epoch", y="train_score")
    np.testing.assert_array_equal(disp.line_.get_ydata(), _column(clf, "train_score"))
    assert disp.ax_.get_ylabel() == "training accuracy"


def test_constructor_and_plot_without_an_estimator():
    disp = TrainingCurveDisplay(x_values=[0.5, 1.0], y_values=[2.0, 1.0])
    assert not hasattr(disp, "line_")
    disp.plot(label="given")
    np.testing.assert_array_equal(disp.line_.get_xdata(), [0.5, 1.0])
    assert disp.line_.get_label() == "given"


def test_unfitted_estimator_is_refused():
    with pytest.raises(NotFittedError):
        TrainingCurveDisplay.from_estimator(_async())


def test_missing_column_names_the_parameter_that_records_it(digits):
    clf = _async(max_iter=2).fit(*digits)
    with pytest.raises(ValueError, match="only with early_stopping=True"):
        TrainingCurveDisplay.from_estimator(clf, y="validation_score")
    with pytest.raises(ValueError, match="target_score set"):
        TrainingCurveDisplay.from_estimator(clf, y="train_score")
    # A column no fit records: the message names y and the columns there are.
    with pytest.raises(
        ValueError, match=r"y='lossx' is not a history_ column; columns are \[.*'loss'"
    ):
        TrainingCurveDisplay.from_estimator(clf, y="lossx")
    # A per-layer column is not a curve.
    with pytest.raises(ValueError, match="one number per epoch"):
        TrainingCurveDisplay.from_estimator(clf, y="updates")


def test_bad_arguments(digits):
    clf = _async(max_iter=2).fit(*digits)
    with pytest.raises(ValueError, match="x must be one of"):
        TrainingCurveDisplay.from_estimator(clf, x="loss")
    with pytest.raises(TypeError, match="y must be the name"):
        TrainingCurveDisplay.from_estimator(clf, y=0)
    # Unhashable values get the same messages, not "unhashable type".
    with pytest.raises(ValueError, match=r"x must be one of.*got \['epoch'\]"):
        TrainingCurveDisplay.from_estimator(clf, x=["epoch"])
    with pytest.raises(TypeError, match=r"y must be the name.*got \['loss'\]"):
        TrainingCurveDisplay.from_estimator(clf, y=["loss"])
    dummy = DummyClassifier().fit(*digits)
    with pytest.raises(TypeError, match=r"history_ attribute.*DummyClassifier"):
        TrainingCurveDisplay.from_estimator(dummy)


def test_x_column_missing_from_history_is_named(digits):
    clf = _async(max_iter=2).fit(*digits)
    clf.history_ = [
        {k: v for k, v in record.items() if k != "wall_time"} for record in clf.history_
    ]
    with pytest.raises(
        ValueError, match=r"x='wall_time' is not a history_ column; columns are \["
    ):
        TrainingCurveDisplay.from_estimator(clf)
    # Without records there are no columns to name: the empty-history message.
    clf.history_ = []
    with pytest.raises(ValueError, match=r"y='loss': history_ has no 'loss' values"):
        TrainingCurveDisplay.from_estimator(clf)


@pytest.mark.parametrize("call", ["plot", "from_estimator"])
def test_empty_label_is_not_replaced_by_the_default(digits, call):
    if call == "plot":
        disp = TrainingCurveDisplay(x_values=[1.0, 2.0], y_values=[3.0, 4.0])
        disp.estimator_name = "stored"
        disp.plot(label="")
    else:
        disp = TrainingCurveDisplay.from_estimator(
            _async(max_iter=2).fit(*digits), label=""
        )
    # matplotlib keeps "" lines out of the legend (it names them "_child<n>").
    assert disp.line_.get_label().startswith("_child")
    assert disp.ax_.get_legend() is None


def test_dir_lists_the_lazy_exports(monkeypatch):
    import skasync.neural_network as nn

    # As before the first access, which caches the class in the module.
    for name in nn.__all__:
        monkeypatch.delitem(vars(nn), name, raising=False)
    assert set(nn.__all__) <= set(dir(nn))
    assert nn.TrainingCurveDisplay is TrainingCurveDisplay


def test_missing_matplotlib_names_the_plot_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    disp = TrainingCurveDisplay(x_values=[1.0], y_values=[1.0])
    with pytest.raises(ImportError, match=r"skasync\[plot\]"):
        disp.plot()
