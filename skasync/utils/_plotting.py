"""matplotlib as an optional dependency of the Display classes.

* :func:`check_matplotlib_support`: an ImportError naming the ``plot`` extra.
* :func:`axes_or_new`: the Axes a ``plot`` method draws on.
"""

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


def axes_or_new(ax, caller):
    """``ax``, or the Axes of a new figure when ``ax`` is None.

    Parameters
    ----------
    ax : matplotlib Axes or None
        Axes given by the user.
    caller : str
        What draws, for the ImportError without matplotlib.

    Returns
    -------
    ax : matplotlib Axes
    """
    check_matplotlib_support(caller)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax
