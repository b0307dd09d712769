"""Random-number helpers shared by the bootstrap samplers."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
from sklearn.utils import check_random_state


def _check_rng(random_state):
    """Return a ``RandomState`` or ``Generator`` from ``random_state``.

    ``numpy.random.Generator`` instances are passed through unchanged; everything
    else (``None``, int, ``RandomState``) goes through
    :func:`sklearn.utils.check_random_state`.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    return check_random_state(random_state)


def _integers(rng, low, high, size=None):
    """Uniform integers on ``[low, high)`` as int64 for both RNG flavours."""
    if isinstance(rng, np.random.Generator):
        return rng.integers(low, high, size=size, dtype=np.int64)
    return rng.randint(low, high, size=size, dtype=np.int64)


def _geometric0(rng, p, size):
    """Geometric draws on ``{0, 1, 2, ...}`` (failures before the first success).

    This is the support of C++ ``std::geometric_distribution`` used by rangerts;
    numpy's ``geometric`` counts trials (support ``{1, 2, ...}``), hence ``- 1``.
    """
    return rng.geometric(p, size=size).astype(np.int64) - 1


def _permutation(rng, n):
    return rng.permutation(n).astype(np.int64)
