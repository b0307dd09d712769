"""matplotlib as an optional dependency of the Display classes."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause


def check_matplotlib_support(caller):
    """Raise an ImportError naming the ``plot`` extra if matplotlib is missing.

    Parameters
    ----------
    caller : str
        What needs matplotlib, for the message (e.g.
        ``"TrainingCurveDisplay.plot"``).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib. Install it with "
            "`pip install 'skasync[plot]'` (or `pip install matplotlib`)."
        ) from exc
