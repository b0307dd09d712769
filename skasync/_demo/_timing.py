"""Wall time of one fit, the ``fit s`` column of every demo table."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time


def timed_fit(estimator, X, y):
    """Fit ``estimator`` on ``(X, y)``; return the seconds it took."""
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start
