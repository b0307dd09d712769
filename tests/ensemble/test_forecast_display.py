"""ForecastDisplay: argument checks, the one-step band and overlaid forecasts."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import sys

import numpy as np
import pytest

from skasync import ARSieveForestRegressor
from skasync.datasets import make_ar
from skasync.ensemble import ForecastDisplay, ForecastResult
from skasync.preprocessing import make_lag_matrix

plt = pytest.importorskip("matplotlib.pyplot")
to_rgb = pytest.importorskip("matplotlib.colors").to_rgb


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def series():
    return make_ar(150, random_state=0)


@pytest.fixture(scope="module")
def forest(series):
    return ARSieveForestRegressor(n_estimators=10, random_state=0).fit(
        *make_lag_matrix(series, 3)
    )


def _legend(disp):
    return [text.get_text() for text in disp.ax_.get_legend().get_texts()]


def _observed(ax):
    return [line for line in ax.get_lines() if line.get_label() == "observed"]


@pytest.mark.parametrize("n_history", [0, -5, True, 2.7, "3"])
def test_n_history_must_be_none_or_a_positive_int(forest, series, n_history):
    msg = r"n_history must be None or an int >= 1 \(number of last"
    with pytest.raises(ValueError, match=msg):
        ForecastDisplay.from_estimator(forest, series, horizon=3, n_history=n_history)
    result = forest.forecast(series, 3)
    with pytest.raises(ValueError, match=msg):
        ForecastDisplay.from_forecast(series, result, n_history=n_history)


@pytest.mark.parametrize("n_history, shown", [(1, 1), (20, 20), (None, 150)])
def test_n_history_is_the_number_of_observations_shown(
    forest, series, n_history, shown
):
    disp = ForecastDisplay.from_estimator(
        forest, series, horizon=3, n_history=n_history
    )
    (observed,) = _observed(disp.ax_)
    np.testing.assert_array_equal(observed.get_ydata(), series[-shown:])
    # The forecast line starts at the last observation.
    np.testing.assert_array_equal(
        disp.line_.get_xdata(), np.arange(shown - 1, shown + 3)
    )


def test_two_column_history_is_not_flattened(series):
    result = ForecastResult(mean=np.zeros(2), quantiles=None, levels=None)
    with pytest.raises(ValueError, match=r"history must be a 1-D .*shape \(150, 2\)"):
        ForecastDisplay.from_forecast(np.c_[series, series], result)


def test_one_step_band_is_visible(forest, series):
    disp = ForecastDisplay.from_estimator(forest, series, horizon=1, n_history=10)
    vertices = disp.band_.get_paths()[0].vertices
    # The band starts at the last observation, as the line does.
    assert vertices[:, 0].min() == 9 and vertices[:, 0].max() == 10
    lo, hi = disp.quantiles[0]
    assert lo < hi
    assert vertices[:, 1].min() == pytest.approx(min(lo, series[-1]))
    assert vertices[:, 1].max() == pytest.approx(max(hi, series[-1]))
    assert disp.band_ in disp.ax_.collections
    assert _legend(disp) == [
        "observed",
        "ARSieveForestRegressor",
        "0.05–0.95 quantiles",
    ]


def test_overlaid_forecasts_take_distinct_colours(forest, series):
    first = ForecastDisplay.from_estimator(forest, series, horizon=4, n_history=30)
    second = ForecastDisplay.from_estimator(
        forest,
        series,
        horizon=4,
        n_history=30,
        interval_method="tree-paths",
        name="tree",
        ax=first.ax_,
    )
    assert second.ax_ is first.ax_
    assert to_rgb(first.line_.get_color()) != to_rgb(second.line_.get_color())
    for disp in (first, second):
        band_rgb = tuple(disp.band_.get_facecolor()[0][:3])
        assert band_rgb == pytest.approx(to_rgb(disp.line_.get_color()))
    # The shared observed series and forecast origin are drawn once.
    assert len(_observed(first.ax_)) == 1
    assert (
        sum(np.allclose(line.get_xdata(), 29.5) for line in first.ax_.get_lines()) == 1
    )
    assert _legend(second) == [
        "observed",
        "ARSieveForestRegressor",
        "0.05–0.95 quantiles",
        "tree",
        "0.05–0.95 quantiles",
    ]


def test_plot_kwargs_go_to_the_forecast_line(series):
    disp = ForecastDisplay(
        history=series[-10:],
        mean=np.zeros(3),
        quantiles=np.c_[-np.ones(3), np.ones(3)],
        levels=(0.1, 0.9),
        estimator_name="stored",
    )
    disp.plot(name="given", color="k", ls="--")
    assert disp.line_.get_color() == "k" and disp.line_.get_linestyle() == "--"
    assert disp.line_.get_label() == "given"
    assert tuple(disp.band_.get_facecolor()[0][:3]) == (0.0, 0.0, 0.0)
    # A history of a different length is a different chart: drawn again.
    other = ForecastDisplay(history=series[-12:], mean=np.ones(3)).plot(ax=disp.ax_)
    assert len(_observed(disp.ax_)) == 2 and other.band_ is None
    assert other.line_.get_label() == "forecast"


def test_without_matplotlib_no_forecast_is_computed(forest, series, monkeypatch):
    def forecast(*args, **kwargs):
        raise AssertionError("forecast computed before the matplotlib check")

    monkeypatch.setattr(ARSieveForestRegressor, "forecast", forecast)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"from_estimator requires.*skasync\[plot\]"):
        ForecastDisplay.from_estimator(forest, series, horizon=3)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"quantiles": np.zeros((3, 2))}, "quantiles needs levels"),
        (
            {"quantiles": np.zeros(3), "levels": (0.5,)},
            r"quantiles must have shape \(horizon, n_levels\) = \(3, 1\).*\(3,\)",
        ),
        (
            {"quantiles": np.zeros((2, 2)), "levels": (0.1, 0.9)},
            r"= \(3, 2\).*shape \(2, 2\)",
        ),
        ({"history": []}, "history has n_samples=0 values"),
        ({"history": np.ones((4, 2))}, "history must be a 1-D"),
        ({"mean": []}, r"mean must hold the point forecasts.*shape \(0,\)"),
        ({"mean": np.zeros((3, 1))}, r"mean must hold.*shape \(3, 1\)"),
        # the levels follow forecast's rules for its quantiles
        (
            {"quantiles": np.zeros((3, 2)), "levels": (0.95, 0.05)},
            r"^levels must be sorted in increasing order.*\(0\.05, 0\.95\)",
        ),
        (
            {"quantiles": np.zeros((3, 2)), "levels": (0.5, 0.5)},
            "^levels must be sorted in increasing order without repeats",
        ),
        (
            {"quantiles": np.zeros((3, 2)), "levels": (1.5, 2.0)},
            r"^levels must be levels in the open interval \(0, 1\)",
        ),
        (
            {"quantiles": np.zeros((3, 2)), "levels": (-1, 0.9)},
            "^levels must be levels in the open interval",
        ),
        (
            {"quantiles": np.zeros((3, 1)), "levels": [[0.5]]},
            "^levels must be levels in the open interval",
        ),
    ],
)
def test_inconsistent_inputs_name_the_parameter(params, message):
    values = {"history": np.arange(5.0), "mean": np.zeros(3), **params}
    with pytest.raises(ValueError, match=message):
        ForecastDisplay(**values).plot()


@pytest.mark.parametrize(
    "quantiles, message",
    [
        ((0.95, 0.05), "^quantiles must be sorted in increasing order"),
        ((0.05, 1.0), r"^quantiles must be levels in the open interval \(0, 1\)"),
    ],
)
def test_from_estimator_passes_on_forecasts_errors(forest, series, quantiles, message):
    with pytest.raises(ValueError, match=message):
        ForecastDisplay.from_estimator(forest, series, horizon=3, quantiles=quantiles)
    assert not plt.get_fignums()  # nothing drawn before the check
    block = ARSieveForestRegressor(n_estimators=5, bootstrap="moving", random_state=0)
    block.fit(*make_lag_matrix(series, 3))
    with pytest.raises(ValueError, match=r"draws its innovations.*oob_score=True"):
        ForecastDisplay.from_estimator(block, series, horizon=3)


def test_single_level_is_a_line_not_an_empty_band(forest, series):
    disp = ForecastDisplay.from_estimator(
        forest, series, horizon=3, quantiles=(0.5,), n_history=10
    )
    assert not disp.ax_.collections
    assert disp.band_ in disp.ax_.get_lines()
    assert disp.band_.get_color() == disp.line_.get_color()
    np.testing.assert_allclose(
        disp.band_.get_ydata(), np.r_[series[-1], disp.quantiles[:, 0]]
    )
    assert _legend(disp) == ["observed", "ARSieveForestRegressor", "0.5 quantile"]


def test_no_quantiles_no_band(forest, series):
    disp = ForecastDisplay.from_estimator(forest, series, horizon=3, quantiles=None)
    assert disp.band_ is None and not disp.ax_.collections
    assert _legend(disp) == ["observed", "ARSieveForestRegressor"]
