"""Fan chart of recursive forest forecasts (scikit-learn Display pattern)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from sklearn.utils.validation import check_is_fitted

from skasync.utils._plotting import axes_or_new

__all__ = ["ForecastDisplay"]


class ForecastDisplay:
    """Observed series, recursive point forecast and prediction interval.

    Build it with :meth:`from_estimator` (or :meth:`from_forecast`); the
    constructor only stores values. matplotlib is imported when plotting.

    Parameters
    ----------
    history : ndarray of shape (n_history,)
        Observed values shown before the forecast origin.
    mean : ndarray of shape (horizon,)
        Point forecasts.
    quantiles : ndarray of shape (horizon, n_levels) or None, default=None
        Forecast quantiles; the band spans the first and last column.
    levels : tuple of float or None, default=None
        Quantile levels of the columns of ``quantiles``.
    estimator_name : str or None, default=None
        Label of the forecast line.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the chart.
    figure_ : matplotlib Figure
        Figure containing the chart.
    line_ : matplotlib Line2D
        The point-forecast line.

    Examples
    --------
    >>> from skasync import ARSieveForestRegressor
    >>> from skasync.datasets import make_ar
    >>> from skasync.ensemble import ForecastDisplay
    >>> from skasync.preprocessing import make_lag_matrix
    >>> y = make_ar(200, random_state=0)
    >>> forest = ARSieveForestRegressor(n_estimators=20, random_state=0)
    >>> forest = forest.fit(*make_lag_matrix(y, 3))
    >>> disp = ForecastDisplay.from_estimator(forest, y, horizon=10)
    >>> disp.line_.get_label()
    'ARSieveForestRegressor'
    """

    def __init__(
        self, *, history, mean, quantiles=None, levels=None, estimator_name=None
    ):
        self.history = history
        self.mean = mean
        self.quantiles = quantiles
        self.levels = levels
        self.estimator_name = estimator_name

    @classmethod
    def from_forecast(cls, history, forecast, *, n_history=100, name=None, ax=None):
        """Plot a :class:`~skasync.ensemble.ForecastResult`.

        Parameters
        ----------
        history : array-like of shape (n_history,)
            The series the forecast starts from.
        forecast : ForecastResult
            Output of :meth:`ARSieveForestRegressor.forecast`.
        n_history : int or None, default=100
            Number of last observations shown; None shows all.
        name : str or None, default=None
            Label of the forecast line.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure is created when None.

        Returns
        -------
        display : ForecastDisplay
        """
        history = np.asarray(history, dtype=np.float64).ravel()
        if n_history is not None:
            history = history[-int(n_history) :]
        return cls(
            history=history,
            mean=forecast.mean,
            quantiles=forecast.quantiles,
            levels=forecast.levels,
            estimator_name=name,
        ).plot(ax=ax)

    @classmethod
    def from_estimator(
        cls,
        estimator,
        history,
        horizon,
        *,
        quantiles=(0.05, 0.95),
        interval_method="auto",
        n_paths=None,
        random_state=0,
        n_history=100,
        name=None,
        ax=None,
    ):
        """Forecast with a fitted forest and plot the result.

        Parameters
        ----------
        estimator : ARSieveForestRegressor
            Fitted forest on lag-only ``X``.
        history : array-like of shape (n_history,)
            Observed series; the forecast starts after its last value.
        horizon : int
            Number of steps ahead.
        quantiles : sequence of float or None, default=(0.05, 0.95)
            Levels of the band (first and last are shaded); None for no band.
        interval_method : {"auto", "conformal", "residual-paths", \
"tree-paths"}, default="auto"
            How the band is made, see :meth:`ARSieveForestRegressor.forecast`.
        n_paths : int or None, default=None
            Simulated paths, see :meth:`ARSieveForestRegressor.forecast`.
        random_state : int, RandomState instance or None, default=0
            Controls the simulated paths.
        n_history : int or None, default=100
            Number of last observations shown; None shows all.
        name : str or None, default=None
            Label of the forecast line; defaults to the estimator's class name.
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure is created when None.

        Returns
        -------
        display : ForecastDisplay
        """
        check_is_fitted(estimator)
        result = estimator.forecast(
            history,
            horizon,
            quantiles,
            interval_method=interval_method,
            n_paths=n_paths,
            random_state=random_state,
        )
        return cls.from_forecast(
            history,
            result,
            n_history=n_history,
            name=name or type(estimator).__name__,
            ax=ax,
        )

    def plot(self, ax=None):
        """Draw the chart.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure is created when None.

        Returns
        -------
        self : ForecastDisplay
        """
        ax = axes_or_new(ax, f"{type(self).__name__}.plot")
        history = np.asarray(self.history, dtype=np.float64)
        n = history.shape[0]
        steps = np.arange(n, n + len(self.mean))
        ax.plot(np.arange(n), history, color="0.3", lw=1, label="observed")
        # Connect the forecast to the last observation.
        (self.line_,) = ax.plot(
            np.r_[n - 1, steps],
            np.r_[history[-1], self.mean],
            color="C0",
            label=self.estimator_name or "forecast",
        )
        if self.quantiles is not None:
            q = np.asarray(self.quantiles)
            lo, hi = self.levels[0], self.levels[-1]
            ax.fill_between(
                steps,
                q[:, 0],
                q[:, -1],
                color="C0",
                alpha=0.25,
                label=f"{lo:g}–{hi:g} quantiles",
            )
        ax.axvline(n - 0.5, color="0.6", ls=":", lw=1)
        ax.set_xlabel("time step")
        ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self
