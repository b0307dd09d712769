"""
==================================================
What a moving and a stationary bootstrap look like
==================================================

A block bootstrap resamples a time series in stretches of consecutive
observations, so that the dependence within a block survives the
resampling.  :func:`skasync.bootstrap.block_bootstrap_indices` draws one
resample, as the R package ``rangerts`` draws it for one tree of a forest:

* ``"moving"``: blocks of exactly ``block_size`` rows starting anywhere;
* ``"stationary"``: blocks of random, geometrically distributed length
  (mean ``block_size``) that wrap around the end of the series, which makes
  the resampled series stationary;
* and, for contrast, the AR sieve
  (:func:`~skasync.bootstrap.fit_ar_sieve`,
  :func:`~skasync.bootstrap.simulate_ar_sieve`), which resamples the
  residuals of a fitted AR(p) model instead of the observations.
"""

# %%
# One resample of each kind
# -------------------------
# The yearly sunspot numbers (shipped with statsmodels) and one resample of
# each scheme; the dotted lines mark where a new block starts, i.e. where the
# resample jumps to another point in time.

import matplotlib.pyplot as plt
import numpy as np
import statsmodels.api as sm

from skasync.bootstrap import block_bootstrap_indices, fit_ar_sieve, simulate_ar_sieve

series = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
n = series.size
block_size = 20

fig, axes = plt.subplots(4, 1, figsize=(7, 7), sharex=True, sharey=True)
axes[0].plot(series, color="0.2", lw=1)
axes[0].set_title("observed (yearly sunspot numbers, 1700-2008)", fontsize="medium")
for ax, method in zip(axes[1:3], ["moving", "stationary"]):
    rows = block_bootstrap_indices(n, method, block_size=block_size, random_state=1)
    ax.plot(series[rows], color="C0" if method == "moving" else "C1", lw=1)
    # A block ends where the next row is not the following time point.
    starts = np.flatnonzero(rows[1:] != (rows[:-1] + 1) % n) + 1
    for start in starts:
        ax.axvline(start - 0.5, color="0.6", ls=":", lw=0.8)
    lengths = np.diff(np.r_[0, starts, rows.size])
    sizes = f"{lengths.min()} to {lengths.max()}"
    if lengths.min() == lengths.max():
        sizes = str(lengths.min())
    ax.set_title(
        f'"{method}" (block_size={block_size}): {lengths.size} blocks of {sizes} rows',
        fontsize="medium",
    )
fit = fit_ar_sieve(series)
simulated = simulate_ar_sieve(fit, n, burn_in=100, random_state=1)[-n:]
axes[3].plot(simulated, color="C2", lw=1)
axes[3].set_title(
    f"AR sieve: AR({fit.order}) fitted by Yule-Walker, residuals resampled",
    fontsize="medium",
)
axes[3].set_xlabel("position in the resampled series")
fig.tight_layout()

# %%
# The moving blocks copy 20-year stretches, cycles included (15 blocks make
# 300 rows; rangerts drops the remainder of 309); the stationary
# blocks vary in length and some wrap from 2008 back to 1700.  The AR-sieve
# series is new data with the autocorrelation of an AR model: its cycles are
# symmetric, while the observed ones rise faster than they fall.
#
# How often each time point is drawn
# ----------------------------------
# Averaged over 2 000 resamples, every time point appears about once in a
# stationary resample.  The moving blocks cannot start in the last
# ``block_size - 1`` rows, so the first and last rows are drawn less often:
# the known end effect of the moving block bootstrap.

n_resamples = 2000
counts = {}
for method in ["moving", "stationary"]:
    rng = np.random.RandomState(0)
    total = np.zeros(n)
    for _ in range(n_resamples):
        rows = block_bootstrap_indices(
            n, method, block_size=block_size, random_state=rng
        )
        total += np.bincount(rows, minlength=n)
    counts[method] = total / n_resamples

fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(counts["moving"], color="C0", label='"moving"')
ax.plot(counts["stationary"], color="C1", label='"stationary"')
ax.axhline(1, color="0.3", lw=1)
ax.set_xlabel("time point")
ax.set_ylabel("mean draws per resample")
ax.set_title(
    f"Inclusion frequency over {n_resamples} resamples, block_size={block_size}"
)
ax.legend()
fig.tight_layout()
plt.show()
