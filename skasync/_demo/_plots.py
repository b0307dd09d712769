"""The demo's figures (written only when matplotlib is installed).

* :func:`plot_loss_curves`: training loss of each mode against wall-clock
  time (:class:`~skasync.neural_network.TrainingCurveDisplay`).
* :func:`plot_forecast`: a recursive forecast of the forest with its interval.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause


def _pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_loss_curves(estimators, title, path):
    """Plot the training loss of ``{label: fitted classifier}`` against
    wall-clock time, on a log scale; the path, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    from skasync.neural_network import TrainingCurveDisplay

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, estimator in estimators.items():
        TrainingCurveDisplay.from_estimator(
            estimator, x="wall_time", ax=ax, label=label
        )
    ax.set_yscale("log")
    ax.set_title(title)
    return _save(plt, fig, path)


def plot_forecast(forest, history, future, path, horizon=20):
    """Plot the last 60 values of ``history``, then ``forest``'s forecast.

    The forecast is recursive over ``horizon`` steps with its 90 % interval
    (a :class:`~skasync.ensemble.ForecastDisplay`), drawn beside the first
    ``horizon`` values of ``future``. Returns the path, or None without
    matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    from skasync.ensemble import ForecastDisplay

    fig, ax = plt.subplots(figsize=(7, 4))
    display = ForecastDisplay.from_estimator(
        forest, history, horizon, n_history=60, name="forecast", ax=ax
    )
    steps = display.line_.get_xdata()[1:]
    ax.plot(steps, future[:horizon], color="0.3", linestyle=":", label="actual")
    ax.set_title("ARSieveForestRegressor recursive forecast")
    ax.legend()
    return _save(plt, fig, path)
