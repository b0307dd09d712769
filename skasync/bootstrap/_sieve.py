"""AR-sieve fit (R ``stats::ar()`` defaults) and AR-sieve series simulation."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from ..utils._validation import check_int, check_series
from ._random import _check_rng, _integers

__all__ = ["ARSieveFit", "fit_ar_sieve", "simulate_ar_sieve"]

_METHODS = ("yule-walker", "ols")


@dataclass
class ARSieveFit:
    """Result of :func:`fit_ar_sieve`.

    Attributes
    ----------
    order : int
        Selected (or fixed) AR order ``p``.
    coef : ndarray of shape (order,)
        AR coefficients ``phi_1..phi_p`` of the demeaned process.
    mean : float
        Process mean ``xbar`` (the sample mean for Yule-Walker, as R's
        ``x.mean``).
    resid : ndarray of shape (n_samples - order,)
        Residuals for ``t = p..n-1`` (0-based), centred to mean zero.
    aic : ndarray of shape (order_max + 1,)
        ``n * log(sigma2_k) + 2 k`` for ``k = 0..order_max`` (R's ``ar()$aic``
        is this minus its minimum).  ``inf`` marks orders whose innovation
        variance is not positive (numerically degenerate fits).  For
        ``method="ols"`` it holds statsmodels' AutoReg AIC values, or NaN
        when the order was fixed (no order was selected).
    sigma2 : float
        Innovation variance of the selected order: the Levinson-Durbin value
        ``gamma(0) * prod(1 - kappa_k**2)`` for Yule-Walker (R's ``var.pred``
        additionally multiplies by ``n / (n - (p + 1))``), the residual variance
        for OLS.
    order_max : int
        Largest order considered.
    """

    order: int
    coef: np.ndarray
    mean: float
    resid: np.ndarray
    aic: np.ndarray
    sigma2: float
    order_max: int


def largest_inverse_root(coef):
    """Largest modulus of the inverse roots of ``1 - sum_j coef_j z^j``.

    The AR process with these coefficients is stationary when it is below
    1 (0 for an empty ``coef``).
    """
    coef = np.asarray(coef, dtype=np.float64)
    if coef.size == 0:
        return 0.0
    # The inverse roots are the roots of z^p - sum_j coef_j z^(p-j).
    return float(np.abs(np.roots(np.r_[1.0, -coef])).max())


def _default_order_max(n):
    # R stats::ar.yw: min(n.obs - 1, floor(10 * log10(n.obs)))
    return int(min(n - 1, math.floor(10.0 * math.log10(n))))


def _validate_orders(n, order, order_max):
    if order is not None:
        order = check_int(order, "order", 0, allow_none=True)
        if order >= n:
            raise ValueError(
                f"order={order} must be < n_samples={n}; use a smaller order or a "
                "longer series."
            )
    if order_max is not None:
        order_max = check_int(order_max, "order_max", 0, allow_none=True)
        if order_max >= n:
            raise ValueError(
                f"order_max={order_max} must be < n_samples={n}; the default is "
                "min(n_samples - 1, floor(10 * log10(n_samples)))."
            )
        if order is not None and order > order_max:
            raise ValueError(
                f"order={order} exceeds order_max={order_max}; raise order_max or "
                "leave it at None."
            )
    else:
        order_max = _default_order_max(n)
        if order is not None:
            order_max = max(order_max, order)
    return order, order_max


def _yw_residuals(xc, coef):
    # e_t = xc_t - sum_j coef_j xc_{t-j}, valid for t >= p (no pre-sample values)
    p = coef.shape[0]
    e = lfilter(np.r_[1.0, -coef], [1.0], xc)[p:]
    return e - e.mean()


def _autocovariances(xc, n_lags):
    """Biased (``1/n``) autocovariances of a demeaned series, lags 0..n_lags."""
    n = xc.shape[0]
    return np.array([xc[: n - k] @ xc[k:] for k in range(n_lags + 1)]) / n


def _levinson_durbin(acov, order_max):
    """Yule-Walker fits of every order 1..order_max by Levinson-Durbin.

    ``phi[1:k + 1, k]`` are the AR(k) coefficients and ``sigma[k]`` its
    innovation variance, as statsmodels' ``levinson_durbin`` (not imported:
    loading ``statsmodels.tsa.stattools`` doubled the first fit of a process).
    """
    phi = np.zeros((order_max + 1, order_max + 1))
    sigma = np.zeros(order_max + 1)
    sigma[0] = acov[0]
    phi[1, 1] = acov[1] / acov[0]
    sigma[1] = acov[0] - phi[1, 1] * acov[1]
    for k in range(2, order_max + 1):
        phi[k, k] = (acov[k] - phi[1:k, k - 1] @ acov[1:k][::-1]) / sigma[k - 1]
        phi[1:k, k] = phi[1:k, k - 1] - phi[k, k] * phi[1:k, k - 1][::-1]
        sigma[k] = sigma[k - 1] * (1.0 - phi[k, k] ** 2)
    return phi, sigma


def _fit_yule_walker(x, order, order_max):
    n = x.shape[0]
    mean = float(x.mean())
    xc = x - mean
    # Biased (1/n) autocovariances of the demeaned series, as R's ar.yw.
    acov = _autocovariances(xc, order_max)
    gamma0 = float(acov[0])
    if not gamma0 > 0.0 or gamma0 <= 1e-28 * max(mean * mean, 1e-300):
        raise ValueError(
            "zero-variance series: all values are (numerically) equal, so one "
            "cannot fit an AR sieve. Check the input series."
        )
    sig = np.empty(order_max + 1)
    sig[0] = gamma0
    phi = None
    if order_max >= 1:
        # A degenerate order divides by zero; the AIC below rules it out.
        with np.errstate(divide="ignore", invalid="ignore"):
            phi, sigma = _levinson_durbin(acov, order_max)
        sig[1:] = sigma[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        aic = n * np.log(sig) + 2.0 * np.arange(order_max + 1)
    # Non-positive / NaN innovation variances (degenerate fits) are not eligible,
    # and neither is any larger order built on top of them.
    bad = ~(sig > 0.0) | ~np.isfinite(aic)
    if bad.any():
        aic[np.argmax(bad) :] = np.inf
    if order is None:
        # first minimum, like R's which.max(xaic == min(xaic))
        order = int(np.argmin(aic))
    coef = np.zeros(0) if order == 0 else phi[1 : order + 1, order].copy()
    resid = _yw_residuals(xc, coef)
    return ARSieveFit(
        order=order,
        coef=coef,
        mean=mean,
        resid=resid,
        aic=aic,
        sigma2=float(sig[order]),
        order_max=order_max,
    )


def _fit_ols(x, order, order_max):
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    n = x.shape[0]
    # OLS on n - order_max rows with order_max + 1 regressors needs
    # n - order_max >= order_max + 2
    cap = max((n - 2) // 2, 0)
    if (order or 0) > cap:
        raise ValueError(
            f"method='ols' with order={order} needs n_samples >= 2 * order + 2, "
            f"got n_samples={n}; use a smaller order or method='yule-walker'."
        )
    order_max = min(order_max, cap)
    if order is None and order_max == 0:
        order = 0
        aic = np.full(1, np.nan)
    elif order is None:
        sel = ar_select_order(x, maxlag=order_max, ic="aic", trend="c")
        order = 0 if not sel.ar_lags else int(max(sel.ar_lags))
        aic = np.full(order_max + 1, np.inf)
        for k, v in sel.aic.items():
            k = 0 if not k else int(max(k))
            aic[k] = v
    else:
        aic = np.full(order_max + 1, np.nan)
    mean = float(x.mean())
    if order == 0:
        coef = np.zeros(0)
        resid = x - mean
    else:
        res = AutoReg(x, lags=order, trend="c").fit()
        params = np.asarray(res.params)
        const, coef = float(params[0]), params[1:].copy()
        denom = 1.0 - coef.sum()
        # Process mean of the fitted AR. OLS (unlike Yule-Walker) may fit a
        # non-stationary AR: it has no process mean (c / (1 - sum phi)
        # changes sign past a unit root), so the sample mean stands in.
        root = largest_inverse_root(coef)
        if root >= 1.0:
            warnings.warn(
                f"method='ols' fitted a non-stationary AR({order}) (largest "
                f"inverse root {root:.3f} >= 1): the sample mean is used as its "
                "mean, and series simulated from it diverge. "
                "method='yule-walker' always fits a stationary AR.",
                UserWarning,
                stacklevel=3,
            )
        elif abs(denom) > 1e-8:
            mean = const / denom
        resid = np.asarray(res.resid, dtype=np.float64)
    resid = resid - resid.mean()
    return ARSieveFit(
        order=order,
        coef=coef,
        mean=mean,
        resid=resid,
        aic=aic,
        sigma2=float(np.mean(resid**2)),
        order_max=order_max,
    )


def fit_ar_sieve(series, *, order=None, order_max=None, method="yule-walker"):
    """Fit the AR sieve exactly like R ``stats::ar()`` with its defaults.

    Yule-Walker on the biased (``1/n``) autocovariances of the demeaned series,
    solved by Levinson-Durbin; the order minimises
    ``AIC(p) = n log(sigma2_p) + 2 p`` over ``p = 0..order_max`` (first minimum
    on ties); residuals for ``t = p..n-1`` are centred to mean zero.

    Parameters
    ----------
    series : array-like of shape (n_samples,)
        Training series in time order. Must be finite and non-constant.
    order : int or None, default=None
        ``None`` selects the order by AIC; an int fixes it (``0 <= order <
        n_samples``).
    order_max : int or None, default=None
        Largest order considered. ``None`` means
        ``min(n_samples - 1, floor(10 * log10(n_samples)))`` (R's default),
        raised to ``order`` if a larger fixed order is requested.
    method : {"yule-walker", "ols"}, default="yule-walker"
        ``"yule-walker"`` is R-exact. ``"ols"`` uses statsmodels ``AutoReg``
        with a constant (order by ``ar_select_order(ic="aic")``); it is not
        guaranteed to be stationary. Its ``mean`` is ``c / (1 - sum(coef))``
        for a stationary fit, and the sample mean (with a warning) for a
        non-stationary one, which has no process mean.

    Returns
    -------
    fit : ARSieveFit
        Order, coefficients, mean, centred residuals, AIC per order,
        innovation variance and ``order_max``.

    Raises
    ------
    ValueError
        For NaN/inf, fewer than 2 values, a constant series, or invalid orders.

    Examples
    --------
    >>> import numpy as np
    >>> from skasync.bootstrap import fit_ar_sieve
    >>> from skasync.datasets import make_ar
    >>> y = make_ar(500, coef=(0.6,), random_state=0)
    >>> fit = fit_ar_sieve(y)
    >>> fit.order, fit.order_max
    (1, 26)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    x = check_series(
        series, min_samples=2, nonfinite_hint="The AR sieve needs a complete series."
    )
    n = x.shape[0]
    order, order_max = _validate_orders(n, order, order_max)
    if np.ptp(x) == 0.0:
        raise ValueError(
            "zero-variance series: all values are equal, so one cannot fit an "
            "AR sieve. Check the input series."
        )
    if method == "ols":
        return _fit_ols(x, order, order_max)
    return _fit_yule_walker(x, order, order_max)


def simulate_ar_sieve(
    fit,
    n_values,
    *,
    n_start_values=None,
    burn_in=0,
    random_state=None,
    n_series=None,
):
    """Simulate one AR-sieve bootstrap series (the authors' scheme).

    ``n_start = max(len(fit.coef), n_start_values or 0)`` start values equal to
    ``fit.mean`` are followed by ``burn_in + n_values`` values of
    ``x_t = mean + sum_j coef_j (x_{t-j} - mean) + e_t``, ``e_t`` drawn i.i.d.
    with replacement from ``fit.resid``.

    Layout of the returned array (length ``n_start + n_values``):

    * ``burn_in == 0`` (the authors' code): ``out[:n_start]`` are the start
      values (all equal to ``fit.mean``) and ``out[n_start:]`` the
      ``n_values`` simulated values;
    * ``burn_in > 0``: the internal series is ``n_start`` means, then
      ``burn_in + n_values`` simulated values; the first ``burn_in`` simulated
      values are discarded *together with the means*, so ``out[:n_start]`` are
      the last ``n_start`` values before the kept ones (pre-sample context
      for lags: burn-in values, preceded by means when ``burn_in < n_start``)
      and ``out[n_start:]`` the ``n_values`` kept values.

    Either way ``make_lag_matrix(out, n_start)`` yields exactly ``n_values``
    rows whose targets are the simulated values.

    Parameters
    ----------
    fit : ARSieveFit
        Output of :func:`fit_ar_sieve`, or any object with ``coef``, ``mean``
        and ``resid``. The order used is ``len(fit.coef)``, so coefficients
        zero-padded (or truncated) to the number of lag columns can be passed
        via ``dataclasses.replace(fit, coef=...)``; zero padding does not
        change the recursion.
    n_values : int
        Number of simulated values after the start block (>= 0).
    n_start_values : int or None, default=None
        Minimum number of start values (e.g. the number of lag columns).
    burn_in : int, default=0
        Simulated values discarded after the start block.
    random_state : int, RandomState, Generator or None, default=None
        Controls the residual draws.
    n_series : int or None, default=None
        None simulates one series (a 1-D array); an int simulates that many
        independent series at once, one per row (one call instead of one per
        series, e.g. per tree of a forest). ``n_series=1`` gives the same
        values as None.

    Returns
    -------
    series : ndarray of shape (n_start + n_values,) or \
(n_series, n_start + n_values)

    Examples
    --------
    >>> from skasync.bootstrap import fit_ar_sieve, simulate_ar_sieve
    >>> from skasync.datasets import make_ar
    >>> fit = fit_ar_sieve(make_ar(300, random_state=0), order=2)
    >>> x = simulate_ar_sieve(fit, 100, n_start_values=5, random_state=0)
    >>> x.shape, bool((x[:5] == fit.mean).all())
    ((105,), True)
    >>> simulate_ar_sieve(fit, 100, n_start_values=5, random_state=0,
    ...                   n_series=3).shape
    (3, 105)
    """
    coef = np.asarray(fit.coef, dtype=np.float64).ravel()
    resid = np.asarray(fit.resid, dtype=np.float64).ravel()
    # len(coef) is the order used, so a zero-padded or truncated copy
    # (dataclasses.replace(fit, coef=...)) works without touching fit.order.
    order = coef.shape[0]
    mean = float(fit.mean)
    if (
        not np.all(np.isfinite(coef))
        or not np.isfinite(mean)
        or not np.all(np.isfinite(resid))
    ):
        raise ValueError("fit.coef, fit.mean and fit.resid must be finite.")
    n_values = check_int(n_values, "n_values", 0)
    burn_in = check_int(burn_in, "burn_in", 0)
    n_start_values = check_int(n_start_values, "n_start_values", 0, allow_none=True)
    if resid.shape[0] == 0:
        raise ValueError("fit.resid is empty; cannot draw bootstrap innovations.")
    n_start = max(order, n_start_values or 0)
    n_sim = burn_in + n_values
    size = 1 if n_series is None else check_int(n_series, "n_series", 1)
    rng = _check_rng(random_state)
    e = resid[_integers(rng, 0, resid.shape[0], size=(size, n_sim))]
    # The start block deviations (x - mean) are all zero, so the lfilter initial
    # conditions are zero and the recursion can start cleanly from them.
    dev = lfilter([1.0], np.r_[1.0, -coef], e, axis=1) if n_sim else e
    out = np.empty((size, n_start + n_sim))
    out[:, :n_start] = mean
    out[:, n_start:] = mean + dev
    out = out[:, out.shape[1] - (n_start + n_values) :]
    return out[0] if n_series is None else out
