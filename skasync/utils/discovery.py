"""List the public estimators of skasync (as :func:`sklearn.utils.all_estimators`)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import importlib

_ESTIMATOR_MODULES = {
    "ARSieveForestRegressor": "skasync.ensemble",
    "AsyncLayerwiseMLPClassifier": "skasync.neural_network",
    "BlockLocalClassifier": "skasync.neural_network",
    "LagFeatures": "skasync.preprocessing",
}


def all_estimators():
    """Return the public estimator classes that are importable.

    Returns
    -------
    estimators : list of (str, type)
        ``(name, class)`` pairs sorted by name.  An estimator whose module does
        not exist yet is left out.
    """
    found = []
    for name, module_name in sorted(_ESTIMATOR_MODULES.items()):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            found.append((name, getattr(module, name)))
    return found
