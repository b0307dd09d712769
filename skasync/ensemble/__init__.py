"""Random forests for time series: AR-sieve and rangerts block-bootstrap forests."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from ._ar_sieve_forest import ARSieveForestRegressor, ForecastResult
from ._plot import ForecastDisplay

__all__ = ["ARSieveForestRegressor", "ForecastDisplay", "ForecastResult"]
