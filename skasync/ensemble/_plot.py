"""Fan chart of recursive forest forecasts (scikit-learn Display pattern)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from sklearn.utils.validation import check_is_fitted

from skasync.ensemble._forecast import check_levels
from skasync.utils._plotting import axes_or_new, check_matplotlib_support
from skasync.utils._validation import check_int, check_series

__all__ = ["ForecastDisplay"]

# gids of the artists drawn once per Axes when forecasts are overlaid.
_OBSERVED_GID = "skasync-forecast-observed"
_ORIGIN_GID = "skasync-forecast-origin"
_N_HISTORY_HINT = "number of last observations shown"


def _check_forecast_inputs(history, mean, quantiles, levels):
    """The constructor's values as float arrays, or a ValueError naming one."""
    # The forecast line starts at the last observation: one is needed.
    history = check_series(history, name="history")
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 1 or mean.shape[0] == 0:
        raise ValueError(
            "mean must hold the point forecasts, shape (horizon,) with "
            f"horizon >= 1; got shape {mean.shape}."
        )
    if quantiles is None:
        return history, mean, None, None
    if levels is None:
        raise ValueError(
            "quantiles needs levels, the quantile level of each column (e.g. "
            "levels=(0.05, 0.95)); pass both or neither."
        )
    # The rules forecast applies to its quantiles: the legend names them.
    levels = check_levels(levels, name="levels")
    q = np.asarray(quantiles, dtype=np.float64)
    if q.shape != (mean.shape[0], len(levels)):
        raise ValueError(
            f"quantiles must have shape (horizon, n_levels) = "
            f"({mean.shape[0]}, {len(levels)}) to match mean and levels; got "
            f"shape {q.shape}."
        )
    return history, mean, q, levels


def _drawn(ax, gid, x, y):
    """Whether ``ax`` already has a line ``gid`` with data ``(x, y)``."""
    return any(
        line.get_gid() == gid
        and np.array_equal(line.get_xdata(), x)
        and np.array_equal(line.get_ydata(), y)
        for line in ax.get_lines()
    )


class ForecastDisplay:
    """Observed series, recursive point forecast and prediction interval.

    Build it with :meth:`from_estimator` (or :meth:`from_forecast`); the
    constructor only stores values. matplotlib is imported when plotting.
    To compare forecasts, pass the first display's ``ax_`` as ``ax`` to the
    next call: each forecast takes the next colour of the Axes' colour cycle
    (or the ``color`` given), and the observed series is drawn once.

    Parameters
    ----------
    history : ndarray of shape (n_history,)
        Observed values shown before the forecast origin.
    mean : ndarray of shape (horizon,)
        Point forecasts.
    quantiles : ndarray of shape (horizon, n_levels) or None, default=None
        Forecast quantiles; the band spans the first and last column. With a
        single level, that quantile is drawn as a dashed line.
    levels : tuple of float or None, default=None
        Quantile levels of the columns of ``quantiles``; required with
        ``quantiles``.
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
    band_ : matplotlib PolyCollection, Line2D or None
        The shaded interval between the first and last quantile, the dashed
        quantile line with a single level, or None without quantiles.

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
    def from_forecast(
        cls, history, forecast, *, n_history=100, name=None, ax=None, **kwargs
    ):
        """Plot a :class:`~skasync.ensemble.ForecastResult`.

        Parameters
        ----------
        history : array-like of shape (n_samples,)
            The series the forecast starts from.
        forecast : ForecastResult
            Output of :meth:`ARSieveForestRegressor.forecast`.
        n_history : int or None, default=100
            Number of last observations shown, at least 1 (the forecast line
            starts at the last one); None shows all.
        name : str or None, default=None
            Label of the forecast line.
        ax : matplotlib Axes or None, default=None
            Axes to draw on, e.g. the ``ax_`` of an earlier display; a new
            figure is created when None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the forecast
            line, e.g. ``color``; the band takes the line's colour.

        Returns
        -------
        display : ForecastDisplay
        """
        n_history = check_int(
            n_history, "n_history", 1, allow_none=True, hint=_N_HISTORY_HINT
        )
        # A 2-column history is an error, not a silently interleaved ravel.
        history = check_series(history, name="history")
        if n_history is not None:
            history = history[-n_history:]
        return cls(
            history=history,
            mean=forecast.mean,
            quantiles=forecast.quantiles,
            levels=forecast.levels,
            estimator_name=name,
        ).plot(ax=ax, **kwargs)

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
        **kwargs,
    ):
        """Forecast with a fitted forest and plot the result.

        Parameters
        ----------
        estimator : ARSieveForestRegressor
            Fitted forest on lag-only ``X``.
        history : array-like of shape (n_samples,)
            Observed series; the forecast starts after its last value.
        horizon : int
            Number of steps ahead.
        quantiles : sequence of float or None, default=(0.05, 0.95)
            Levels of the band (first and last are shaded; a single level is
            drawn as a dashed line); None for no band.
        interval_method : {"auto", "conformal", "residual-paths", \
"tree-paths"}, default="auto"
            How the band is made, see :meth:`ARSieveForestRegressor.forecast`.
        n_paths : int or None, default=None
            Simulated paths, see :meth:`ARSieveForestRegressor.forecast`.
        random_state : int, RandomState instance or None, default=0
            Controls the simulated paths.
        n_history : int or None, default=100
            Number of last observations shown, at least 1 (the forecast line
            starts at the last one); None shows all.
        name : str or None, default=None
            Label of the forecast line; defaults to the estimator's class name.
        ax : matplotlib Axes or None, default=None
            Axes to draw on, e.g. the ``ax_`` of an earlier display; a new
            figure is created when None.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the forecast
            line, e.g. ``color``; the band takes the line's colour.

        Returns
        -------
        display : ForecastDisplay
        """
        # Before the forecast, which can take long: fail fast.
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        check_int(n_history, "n_history", 1, allow_none=True, hint=_N_HISTORY_HINT)
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
            name=type(estimator).__name__ if name is None else name,
            ax=ax,
            **kwargs,
        )

    def plot(self, ax=None, *, name=None, **kwargs):
        """Draw the chart.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on, e.g. the ``ax_`` of an earlier display; a new
            figure is created when None. The observed series and the
            forecast origin are drawn once per Axes.
        name : str or None, default=None
            Label of the forecast line; defaults to ``estimator_name``, then
            ``"forecast"``.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot` for the forecast
            line, e.g. ``color`` or ``ls``; without ``color`` the line takes
            the next colour of the Axes' cycle. The band takes the line's
            colour.

        Returns
        -------
        self : ForecastDisplay
        """
        history, mean, q, levels = _check_forecast_inputs(
            self.history, self.mean, self.quantiles, self.levels
        )
        ax = axes_or_new(ax, f"{type(self).__name__}.plot")
        n = history.shape[0]
        past = np.arange(n)
        if not _drawn(ax, _OBSERVED_GID, past, history):
            ax.plot(
                past, history, color="0.3", lw=1, label="observed", gid=_OBSERVED_GID
            )
        if not _drawn(ax, _ORIGIN_GID, [n - 0.5, n - 0.5], [0, 1]):
            ax.axvline(n - 0.5, color="0.6", ls=":", lw=1, gid=_ORIGIN_GID)
        if name is None:
            name = self.estimator_name
        # Line and band start at the last observation, so that one step
        # ahead is still a visible segment and a visible wedge.
        x = np.arange(n - 1, n + mean.shape[0])
        kwargs = {"label": "forecast" if name is None else name, **kwargs}
        (self.line_,) = ax.plot(x, np.r_[history[-1], mean], **kwargs)
        color = self.line_.get_color()
        self.band_ = None
        if q is not None and len(levels) == 1:
            # One level spans no interval: draw the quantile itself.
            (self.band_,) = ax.plot(
                x,
                np.r_[history[-1], q[:, 0]],
                color=color,
                ls="--",
                lw=1,
                label=f"{levels[0]:g} quantile",
            )
        elif q is not None:
            self.band_ = ax.fill_between(
                x,
                np.r_[history[-1], q[:, 0]],
                np.r_[history[-1], q[:, -1]],
                color=color,
                alpha=0.25,
                lw=0,
                label=f"{levels[0]:g}–{levels[-1]:g} quantiles",
            )
        ax.set_xlabel("time step")
        ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self
