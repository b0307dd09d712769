"""skasync: scikit-learn estimators for asynchronous and block-local neural
network training, and AR-sieve bootstrap random forests for time series.

Public estimators are re-exported here.  The torch-based classifiers are
imported lazily so that ``import skasync`` (and the forest) does not pay for
importing torch.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import importlib

__version__ = "0.1.0.dev0"

_LAZY_EXPORTS = {
    "ARSieveForestRegressor": "skasync.ensemble",
    "make_lag_matrix": "skasync.preprocessing",
    "LagFeatures": "skasync.preprocessing",
    "AsyncLayerwiseMLPClassifier": "skasync.neural_network",
    "BlockLocalClassifier": "skasync.neural_network",
}

__all__ = sorted(_LAZY_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        module = importlib.import_module(_LAZY_EXPORTS[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skasync' has no attribute {name!r}")


def __dir__():
    return __all__
