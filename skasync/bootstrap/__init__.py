"""Bootstrap samplers for time series: rangerts block bootstraps and the AR sieve."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from ._blocks import BLOCK_METHODS, BlockBootstrap, block_bootstrap_indices
from ._sieve import ARSieveFit, fit_ar_sieve, simulate_ar_sieve

__all__ = [
    "ARSieveFit",
    "BLOCK_METHODS",
    "BlockBootstrap",
    "block_bootstrap_indices",
    "fit_ar_sieve",
    "simulate_ar_sieve",
]
