"""Input validation shared by the time-series code (one home for it)."""

from numbers import Integral

import numpy as np


def check_int(value, name, low, *, allow_none=False, hint=""):
    """Return ``value`` as an int ``>= low``, or raise ``ValueError`` naming it.

    Booleans are rejected although they are ``Integral``: ``True`` as a
    count is almost always a mistake.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Parameter name used in the error message.
    low : int
        Smallest accepted value.
    allow_none : bool, default=False
        Accept ``None`` and return it unchanged.
    hint : str, default=""
        What the parameter means, added to the message in parentheses.

    Returns
    -------
    value : int or None
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        expected = f"None or an int >= {low}" if allow_none else f"an int >= {low}"
        if hint:
            expected += f" ({hint})"
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return int(value)


def check_no_bool_counts(estimator):
    """Reject ``True``/``False`` for the integer parameters of ``estimator``.

    sklearn's ``Interval(Integral, ...)`` constraints accept bools as 1 and
    0. The integer parameters are read from the estimator's
    ``_parameter_constraints`` (``Integral`` or an ``Interval`` of it), so the
    list cannot drift from the constraints.

    Parameters
    ----------
    estimator : BaseEstimator
        An estimator with ``_parameter_constraints``.
    """
    from sklearn.utils._param_validation import Interval

    for name, constraints in estimator._parameter_constraints.items():
        takes_int = any(
            c is Integral or (isinstance(c, Interval) and c.type is Integral)
            for c in constraints
        )
        value = getattr(estimator, name)
        if takes_int and isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r} (a bool).")


def check_series(series, *, name="series", min_samples=1, nonfinite_hint=""):
    """Return ``series`` as a finite 1-D float64 array, or raise ``ValueError``.

    A single column ``(n, 1)`` is accepted and flattened, since that is what
    ``df[["y"]]`` or ``y.reshape(-1, 1)`` give; anything wider is an error
    rather than a silent ravel, which would interleave several series.
    Complex input is an error too, rather than a silent loss of the imaginary
    parts.

    Parameters
    ----------
    series : array-like of shape (n_samples,) or (n_samples, 1)
        The time series, in time order.
    name : str, default="series"
        Parameter name used in the error messages.
    min_samples : int, default=1
        Shortest accepted length.
    nonfinite_hint : str, default=""
        Extra advice appended to the NaN/inf message (what the caller needs a
        complete series for).

    Returns
    -------
    x : ndarray of shape (n_samples,)
        float64 copy or view of ``series``.
    """
    # Before the float conversion, which would drop the imaginary parts.
    if np.iscomplexobj(series):
        raise ValueError(
            f"{name} is complex; complex data are not supported. Pass real "
            f"values, e.g. the real part or the modulus of {name}."
        )
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D time series (shape (n_samples,)), got shape "
            f"{x.shape}. Pass a single column in time order, e.g. df['y'] or "
            "y.ravel()."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{name} contains NaN or infinity; pass complete, finite "
            f"observations.{' ' + nonfinite_hint if nonfinite_hint else ''}"
        )
    if x.shape[0] < min_samples:
        raise ValueError(
            f"{name} has n_samples={x.shape[0]} values but at least "
            f"{min_samples} are needed."
        )
    return x


def fit_count_to_data(value, default, limit, *, name, limit_text, stacklevel=2):
    """The worker (or block) count a fit uses when the data allow only ``limit``.

    Small data is not bad input: with fewer batches than workers, fewer
    workers take part.  ``value=None`` means the parameter was left at its
    default, which is then capped silently; an explicit count above the
    limit is capped with a ``UserWarning`` that says what was used.

    Parameters
    ----------
    value : int or None
        The parameter as the user set it (already validated as an int >= 1).
    default : int
        The count ``None`` stands for.
    limit : int
        The most the data allow (>= 1).
    name : str
        Parameter name, for the warning.
    limit_text : str
        Why the limit is what it is, e.g. "the 2 batches per epoch".
    stacklevel : int, default=2
        Passed to :func:`warnings.warn`.

    Returns
    -------
    count : int
        ``min(value or default, limit)``, at least 1.
    """
    import warnings

    limit = max(1, int(limit))
    if value is None:
        return max(1, min(int(default), limit))
    if value > limit:
        warnings.warn(
            f"{name}={value} is more than {limit_text}: {limit} take part in this "
            "fit (see the fitted attribute "
            f"{name}_). Lower {name} or pass more data to silence this warning.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
        return limit
    return int(value)
