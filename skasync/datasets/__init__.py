"""Seeded time-series simulators (AR, MA, ARMA, SETAR, GARCH, seasonal AR)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from ._simulators import (
    REFERENCE_DGPS,
    make_ar,
    make_arma,
    make_garch,
    make_ma,
    make_seasonal_ar,
    make_series,
    make_setar,
)

__all__ = [
    "REFERENCE_DGPS",
    "make_ar",
    "make_arma",
    "make_garch",
    "make_ma",
    "make_seasonal_ar",
    "make_series",
    "make_setar",
]
