"""The demo's figures (written only when matplotlib is installed).

* :func:`plot_loss_curves`: training loss per epoch of each mode.
* :func:`plot_forecast`: a recursive forecast of the forest with its interval.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np


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


def plot_loss_curves(curves, title, path):
    """Plot ``{label: loss per epoch}`` on a log scale; the path, or None."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    return _save(plt, fig, path)


def plot_forecast(forest, history, future, path, horizon=20):
    """Plot the last 60 values of ``history``, then ``forest``'s forecast.

    The forecast is recursive over ``horizon`` steps with its 90 % interval,
    drawn beside the first ``horizon`` values of ``future``. Returns the
    path, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    forecast = forest.forecast(history, horizon, quantiles=(0.05, 0.95))
    steps = np.arange(1, horizon + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(-60, 0) + 1, history[-60:], color="black", label="history")
    ax.plot(steps, future[:horizon], color="grey", linestyle=":", label="actual")
    ax.plot(steps, forecast.mean, color="C0", label="forecast")
    ax.fill_between(
        steps,
        forecast.quantiles[:, 0],
        forecast.quantiles[:, 1],
        color="C0",
        alpha=0.25,
        label="90% interval",
    )
    ax.set_xlabel("step")
    ax.set_title("ARSieveForestRegressor recursive forecast")
    ax.legend()
    return _save(plt, fig, path)
