"""Plain helper functions shared by several test modules.

Fixtures live in conftest.py; these are called inside tests (pytest puts
tests/ on ``sys.path`` when it loads tests/conftest.py, hence
``from _helpers import ...``).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import threading

import numpy as np


def skasync_threads():
    """Names of the worker threads skasync started that are still running.

    The process pool's launcher thread is not one: it lives with the
    process by design. Listed, not ``is_alive()``: on CPython <= 3.11 a join interrupted by
    Ctrl-C makes ``is_alive()`` False for a thread that is still running.
    """
    from skasync.utils._processes import LAUNCHER_THREAD

    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("skasync-") and t.name != LAUNCHER_THREAD
    ]


def leaf_of(tree, x):
    """Plain-Python descent of one tree to the leaf ``x`` lands in.

    The reference for the compiled predictors: ``x <= threshold`` goes left.
    """
    node = 0
    while tree.feature[node] >= 0:
        go_left = x[tree.feature[node]] <= tree.threshold[node]
        node = tree.left[node] if go_left else tree.right[node]
    return node


def leaves_of(tree, X):
    """:func:`leaf_of` for every row of ``X``."""
    return np.array([leaf_of(tree, x) for x in X], dtype=np.int64)
