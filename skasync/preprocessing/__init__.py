"""Lag-matrix construction and checks for autoregressive regression."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from ._lags import (
    LagFeatures,
    check_lag_matrix,
    make_lag_matrix,
    series_from_lag_matrix,
)

__all__ = [
    "LagFeatures",
    "check_lag_matrix",
    "make_lag_matrix",
    "series_from_lag_matrix",
]
