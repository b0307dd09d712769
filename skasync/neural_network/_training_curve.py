"""Training curves of the torch classifiers (scikit-learn Display pattern).

Structure
---------
* :class:`TrainingCurveDisplay`: one ``history_`` column against wall-clock
  time or epochs; :meth:`~TrainingCurveDisplay.from_estimator` reads a fitted
  classifier (or the classifier at the end of a Pipeline), several curves
  share one Axes through ``ax``.
* :func:`_history_of` and :func:`_curve_values`: the checks and the column
  extraction behind it.

matplotlib is imported when plotting, not with this module, and torch is not
imported at all.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from skasync.utils._plotting import axes_or_new, check_matplotlib_support

__all__ = ["TrainingCurveDisplay"]

_X_LABELS = {"wall_time": "wall-clock time (s)", "epoch": "epoch"}
_Y_LABELS = {
    "loss": "training loss",
    "validation_score": "validation accuracy",
    "train_score": "training accuracy",
}
# Why a column may be absent: the parameters that make a fit record it.
_Y_HINTS = {
    "validation_score": "it is recorded only with early_stopping=True",
    "train_score": (
        "it is recorded only with target_score set and early_stopping=False"
    ),
}


def _history_of(estimator):
    """The fitted classifier's ``history_`` (the last step of a Pipeline)."""
    if isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    check_is_fitted(estimator)
    history = getattr(estimator, "history_", None)
    if history is None:
        raise TypeError(
            "TrainingCurveDisplay needs a fitted estimator with a history_ "
            "attribute (AsyncLayerwiseMLPClassifier, BlockLocalClassifier, or a "
            f"Pipeline ending in one); got {type(estimator).__name__}."
        )
    return estimator, history


def _curve_values(history, x, y):
    """The ``x`` and ``y`` columns of ``history`` as float arrays.

    Epochs without a ``y`` value (e.g. a ``warm_start`` continuation that
    switched ``early_stopping`` on) are left out.
    """
    # isinstance first: a list is unhashable, and the message should name x.
    if not isinstance(x, str) or x not in _X_LABELS:
        raise ValueError(f"x must be one of {sorted(_X_LABELS)}; got {x!r}.")
    if not isinstance(y, str):
        raise TypeError(f"y must be the name of a history_ column; got {y!r}.")
    columns = sorted({name for record in history for name in record})
    for param, column in (("x", x), ("y", y)):
        # A column that no fit records (a typo) versus one left empty by the
        # fit's parameters (the hints below).
        if history and column not in columns and column not in _Y_HINTS:
            raise ValueError(
                f"{param}={column!r} is not a history_ column; columns are {columns}."
            )
    pairs = [(record[x], record[y]) for record in history if record.get(y) is not None]
    if not pairs:
        hint = f" ({_Y_HINTS[y]})" if y in _Y_HINTS else ""
        raise ValueError(
            f"y={y!r}: history_ has no {y!r} values{hint}; its columns are {columns}."
        )
    try:
        values = np.asarray(pairs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"history_ column {y!r} does not hold one number per epoch; "
            "choose a scalar column such as 'loss' or 'validation_score'."
        ) from None
    return values[:, 0], values[:, 1]


class TrainingCurveDisplay:
    """Loss or accuracy of a torch classifier against wall-clock time or epochs.

    For estimators whose point is speed, the curve against wall-clock time
    shows which training mode gets there first.  Build it with
    :meth:`from_estimator`; the constructor only stores values.  To compare
    several fits, pass the first display's ``ax_`` as ``ax`` to the next
    :meth:`from_estimator` call.  matplotlib is imported when plotting
    (``pip install 'skasync[plot]'``).

    Parameters
    ----------
    x_values : ndarray of shape (n_epochs,)
        Seconds since the start of the fit (``x_name="wall_time"``) or epoch
        numbers (``x_name="epoch"``) at the end of each epoch.
    y_values : ndarray of shape (n_epochs,)
        The plotted ``history_`` column.
    x_name : {"wall_time", "epoch"}, default="wall_time"
        The ``history_`` column of ``x_values``.
    y_name : str, default="loss"
        The ``history_`` column of ``y_values``, e.g. ``"loss"``,
        ``"validation_score"`` or ``"train_score"``.
    estimator_name : str or None, default=None
        Label of the line.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure containing the curve.
    line_ : matplotlib Line2D
        The curve.

    See Also
    --------
    skasync.ensemble.ForecastDisplay : Fan chart of forest forecasts.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skasync import AsyncLayerwiseMLPClassifier
    >>> from skasync.neural_network import TrainingCurveDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> curves = []
    >>> for lr in [0.01, 0.1]:
    ...     clf = AsyncLayerwiseMLPClassifier(
    ...         hidden_layer_sizes=(32,), mode="serial", learning_rate_init=lr,
    ...         max_iter=5, early_stopping=True, random_state=0).fit(X / 16, y)
    ...     ax = curves[0].ax_ if curves else None
    ...     curves.append(TrainingCurveDisplay.from_estimator(
    ...         clf, y="validation_score", ax=ax, label=f"lr={lr}"))
    >>> [c.line_.get_label() for c in curves]
    ['lr=0.01', 'lr=0.1']
    >>> curves[0].ax_.get_xlabel()
    'wall-clock time (s)'
    """

    def __init__(
        self,
        *,
        x_values,
        y_values,
        x_name="wall_time",
        y_name="loss",
        estimator_name=None,
    ):
        self.x_values = x_values
        self.y_values = y_values
        self.x_name = x_name
        self.y_name = y_name
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(
        cls, estimator, *, x="wall_time", y="loss", ax=None, label=None, **kwargs
    ):
        """Plot one ``history_`` column of a fitted torch classifier.

        Parameters
        ----------
        estimator : estimator instance
            A fitted :class:`~skasync.AsyncLayerwiseMLPClassifier` or
            :class:`~skasync.BlockLocalClassifier`, or a fitted Pipeline
            ending in one.
        x : {"wall_time", "epoch"}, default="wall_time"
            Seconds since the start of the fit (``partial_fit`` and
            ``warm_start`` continue the clock) or epoch numbers.
        y : str, default="loss"
            A ``history_`` column: ``"loss"`` (always recorded),
            ``"validation_score"`` (with ``early_stopping=True``),
            ``"train_score"`` (with ``target_score`` and without
            ``early_stopping``), or another scalar column such as
            ``"samples_per_second"``.
        ax : matplotlib Axes or None, default=None
            Axes to draw on, e.g. the ``ax_`` of an earlier display; a new
            figure is created when None.
        label : str or None, default=None
            Label of the line; defaults to the estimator's class name and
            ``mode``. ``""`` leaves the line out of the legend.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        display : TrainingCurveDisplay
        """
        check_matplotlib_support(f"{cls.__name__}.from_estimator")
        estimator, history = _history_of(estimator)
        x_values, y_values = _curve_values(history, x, y)
        if label is None:
            label = type(estimator).__name__
            mode = getattr(estimator, "mode", None)
            if isinstance(mode, str):
                label = f"{label} ({mode})"
        return cls(
            x_values=x_values,
            y_values=y_values,
            x_name=x,
            y_name=y,
            estimator_name=label,
        ).plot(ax=ax, **kwargs)

    def plot(self, ax=None, *, label=None, **kwargs):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; a new figure is created when None.
        label : str or None, default=None
            Label of the line; defaults to ``estimator_name``. ``""`` leaves
            the line out of the legend.
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        self : TrainingCurveDisplay
        """
        ax = axes_or_new(ax, f"{type(self).__name__}.plot")
        kwargs.setdefault("marker", ".")
        (self.line_,) = ax.plot(
            self.x_values,
            self.y_values,
            label=self.estimator_name if label is None else label,
            **kwargs,
        )
        ax.set_xlabel(_X_LABELS.get(self.x_name, self.x_name))
        ax.set_ylabel(_Y_LABELS.get(self.y_name, self.y_name))
        if self.line_.get_label() and not self.line_.get_label().startswith("_"):
            ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self
