"""Torch-based classifiers: asynchronous layer-wise SGD and block-local learning,
and the Display of their training curves."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import importlib

_EXPORTS = {
    "AsyncLayerwiseMLPClassifier": "skasync.neural_network._async_layerwise",
    "BlockLocalClassifier": "skasync.neural_network._block_local",
    "TrainingCurveDisplay": "skasync.neural_network._training_curve",
}

__all__ = ["AsyncLayerwiseMLPClassifier", "BlockLocalClassifier", "TrainingCurveDisplay"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skasync.neural_network' has no attribute {name!r}")


def __dir__():
    # The lazy exports are not in globals() until first use.
    return __all__
