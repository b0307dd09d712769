"""Seeded time-series simulators (the reference benchmark's DGPs).

With an int ``random_state`` and the default parameters these reproduce
``benchmarks/reference/rangerts/gen_series.py`` value for value:
``rng = numpy.random.default_rng(seed)``, ``e = rng.standard_normal(burn_in + n)``,
start values 0, the first ``burn_in`` values discarded. The same seed gives the
same innovations for every DGP (common random numbers).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.signal import lfilter

from ..bootstrap._sieve import largest_inverse_root
from ..utils._validation import check_int

__all__ = [
    "make_ar",
    "make_ma",
    "make_arma",
    "make_setar",
    "make_garch",
    "make_seasonal_ar",
    "make_series",
    "REFERENCE_DGPS",
]


def _rng(random_state):
    # int / None -> numpy Generator (PCG64), as gen_series.py; this differs from
    # sklearn's check_random_state (legacy RandomState) on purpose, to reproduce
    # the reference CSVs for the same seed.
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    if random_state is None or (
        isinstance(random_state, Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(random_state)
    raise ValueError(
        "random_state must be None, an int, a numpy Generator or RandomState, got "
        f"{random_state!r}."
    )


def _check_common(n_samples, burn_in, noise=1.0):
    n_samples = check_int(n_samples, "n_samples", 1)
    burn_in = check_int(burn_in, "burn_in", 0)
    if (
        not isinstance(noise, Real)
        or isinstance(noise, bool)
        or not np.isfinite(noise)
        or noise <= 0
    ):
        raise ValueError(f"noise must be a float > 0, got {noise!r}.")
    return n_samples, burn_in, float(noise)


def _check_coef(coef, name):
    c = np.atleast_1d(np.asarray(coef, dtype=np.float64))
    if c.ndim != 1 or not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be a finite 1-D sequence, got {coef!r}.")
    return c


def _warn_if_not_stationary(ar, name):
    """Warn when the AR polynomial has a root on or inside the unit circle:
    the series is then a random walk or explodes (wanted sometimes, so not
    an error)."""
    largest = largest_inverse_root(ar)
    if largest >= 1.0:
        warnings.warn(
            f"{name}={ar.tolist()!r} is not stationary (a characteristic root "
            f"of modulus {largest:.3g} >= 1): the series is a random walk or "
            "explodes.",
            UserWarning,
            stacklevel=3,
        )


def _innovations(n, burn_in, noise, random_state):
    e = _rng(random_state).standard_normal(burn_in + n)
    return e * noise if noise != 1.0 else e


def _lagged_sum(x, coef):
    """``sum_j coef[j] * x[t - j - 1]`` with zeros before time 0."""
    out = np.zeros_like(x)
    for j, c in enumerate(coef):
        if c != 0.0 and j + 1 < x.shape[0]:
            out[j + 1 :] += c * x[: -(j + 1)]
    return out


def _finish(y, mu, burn_in, return_mean):
    y = y[burn_in:].copy()
    if return_mean:
        return y, mu[burn_in:].copy()
    return y


def make_ar(
    n_samples,
    coef=(0.6,),
    *,
    burn_in=200,
    noise=1.0,
    random_state=None,
    return_mean=False,
):
    """Simulate an AR(p) series ``y_t = sum_j coef_j y_{t-j} + e_t``.

    Parameters
    ----------
    n_samples : int
        Length of the returned series.
    coef : sequence of float, default=(0.6,)
        AR coefficients ``phi_1..phi_p``.
    burn_in : int, default=200
        Leading values discarded (start values are 0).
    noise : float, default=1.0
        Standard deviation of the Gaussian innovations.
    random_state : int, Generator, RandomState or None, default=None
        An int seeds ``numpy.random.default_rng`` (as ``gen_series.py``).
    return_mean : bool, default=False
        Also return the true one-step conditional mean ``mu_t``.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``.

    Examples
    --------
    >>> from skasync.datasets import make_ar
    >>> y, mu = make_ar(500, coef=(0.6,), random_state=1, return_mean=True)
    >>> y.shape
    (500,)
    """
    n, burn_in, noise = _check_common(n_samples, burn_in, noise)
    coef = _check_coef(coef, "coef")
    _warn_if_not_stationary(coef, "coef")
    e = _innovations(n, burn_in, noise, random_state)
    y = lfilter([1.0], np.r_[1.0, -coef], e)
    return _finish(y, _lagged_sum(y, coef), burn_in, return_mean)


def make_ma(
    n_samples,
    coef=(0.8,),
    *,
    burn_in=200,
    noise=1.0,
    random_state=None,
    return_mean=False,
):
    """Simulate an MA(q) series ``y_t = e_t + sum_j coef_j e_{t-j}``.

    Parameters
    ----------
    n_samples : int
        Length of the returned series.
    coef : sequence of float, default=(0.8,)
        MA coefficients ``theta_1..theta_q``.
    burn_in, noise, random_state, return_mean
        As in :func:`make_ar`.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``: ``sum_j coef_j e_{t-j}``.

    Examples
    --------
    >>> from skasync.datasets import make_ma
    >>> make_ma(100, random_state=0).shape
    (100,)
    """
    n, burn_in, noise = _check_common(n_samples, burn_in, noise)
    coef = _check_coef(coef, "coef")
    e = _innovations(n, burn_in, noise, random_state)
    mu = _lagged_sum(e, coef)
    return _finish(mu + e, mu, burn_in, return_mean)


def make_arma(
    n_samples,
    ar=(0.5,),
    ma=(0.4,),
    *,
    burn_in=200,
    noise=1.0,
    random_state=None,
    return_mean=False,
):
    """Simulate an ARMA(p, q) series.

    ``y_t = sum_i ar_i y_{t-i} + e_t + sum_j ma_j e_{t-j}``.

    Parameters
    ----------
    n_samples : int
        Length of the returned series.
    ar : sequence of float, default=(0.5,)
        AR coefficients ``phi_1..phi_p``.
    ma : sequence of float, default=(0.4,)
        MA coefficients ``theta_1..theta_q``.
    burn_in, noise, random_state, return_mean
        As in :func:`make_ar`.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``: ``sum_i ar_i y_{t-i} + sum_j ma_j e_{t-j}``.

    Examples
    --------
    >>> from skasync.datasets import make_arma
    >>> make_arma(100, ar=(0.5,), ma=(0.4,), random_state=0).shape
    (100,)
    """
    n, burn_in, noise = _check_common(n_samples, burn_in, noise)
    ar = _check_coef(ar, "ar")
    _warn_if_not_stationary(ar, "ar")
    ma = _check_coef(ma, "ma")
    e = _innovations(n, burn_in, noise, random_state)
    y = lfilter(np.r_[1.0, ma], np.r_[1.0, -ar], e)
    mu = _lagged_sum(y, ar) + _lagged_sum(e, ma)
    return _finish(y, mu, burn_in, return_mean)


def make_seasonal_ar(
    n_samples,
    coef=0.5,
    seasonal_coef=0.3,
    period=12,
    *,
    burn_in=200,
    noise=1.0,
    random_state=None,
    return_mean=False,
):
    """Simulate ``y_t = coef y_{t-1} + seasonal_coef y_{t-period} + e_t``.

    Parameters
    ----------
    n_samples : int
    coef : float, default=0.5
    seasonal_coef : float, default=0.3
    period : int, default=12
        Season length (>= 2).
    burn_in, noise, random_state, return_mean
        As in :func:`make_ar`.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``.

    Examples
    --------
    >>> from skasync.datasets import make_seasonal_ar
    >>> make_seasonal_ar(120, random_state=0).shape
    (120,)
    """
    phi = np.zeros(check_int(period, "period", 2))
    phi[0] = coef
    phi[-1] = seasonal_coef
    return make_ar(
        n_samples,
        phi,
        burn_in=burn_in,
        noise=noise,
        random_state=random_state,
        return_mean=return_mean,
    )


def make_setar(
    n_samples,
    coef_low=0.6,
    coef_high=-0.5,
    threshold=0.0,
    *,
    burn_in=200,
    noise=1.0,
    random_state=None,
    return_mean=False,
):
    """Simulate a two-regime SETAR(1) series.

    ``y_t = coef_low y_{t-1} + e_t`` if ``y_{t-1} <= threshold``, else
    ``coef_high y_{t-1} + e_t``. Nonlinear, so a (fast) scalar loop.

    Parameters
    ----------
    n_samples : int
    coef_low : float, default=0.6
    coef_high : float, default=-0.5
    threshold : float, default=0.0
    burn_in, noise, random_state, return_mean
        As in :func:`make_ar`.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``.

    Examples
    --------
    >>> from skasync.datasets import make_setar
    >>> make_setar(100, random_state=0).shape
    (100,)
    """
    n, burn_in, noise = _check_common(n_samples, burn_in, noise)
    e = _innovations(n, burn_in, noise, random_state).tolist()
    lo, hi, thr = float(coef_low), float(coef_high), float(threshold)
    if not np.all(np.isfinite([lo, hi, thr])):
        raise ValueError(
            "coef_low, coef_high and threshold must be finite, got "
            f"{coef_low!r}, {coef_high!r}, {threshold!r}."
        )
    y = [0.0] * len(e)
    mu = [0.0] * len(e)
    prev = 0.0
    for t, et in enumerate(e):
        m = lo * prev if prev <= thr else hi * prev
        mu[t] = m
        prev = y[t] = m + et
    return _finish(np.asarray(y), np.asarray(mu), burn_in, return_mean)


def make_garch(
    n_samples,
    omega=0.1,
    alpha=0.1,
    beta=0.8,
    *,
    sigma2_0=None,
    burn_in=200,
    random_state=None,
    return_mean=False,
    return_sigma2=False,
):
    """Simulate a GARCH(1,1) series ``y_t = sigma_t z_t``.

    ``sigma_t^2 = omega + alpha y_{t-1}^2 + beta sigma_{t-1}^2`` with
    ``z_t`` i.i.d. N(0, 1), ``y`` before time 0 equal to 0.

    Parameters
    ----------
    n_samples : int
    omega, alpha, beta : float, default=0.1, 0.1, 0.8
        ``omega > 0``, ``alpha, beta >= 0``.
    sigma2_0 : float or None, default=None
        ``sigma^2`` before time 0; ``None`` means the unconditional variance
        ``omega / (1 - alpha - beta)`` (1 for the defaults) when
        ``alpha + beta < 1``, else ``omega``.
    burn_in, random_state, return_mean
        As in :func:`make_ar`; the conditional mean is 0.
    return_sigma2 : bool, default=False
        Also return the conditional variances ``sigma_t^2`` (last output).

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean`` (zeros).
    sigma2 : ndarray of shape (n_samples,)
        Only if ``return_sigma2``.

    Examples
    --------
    >>> from skasync.datasets import make_garch
    >>> make_garch(100, random_state=0).shape
    (100,)
    """
    n, burn_in, _ = _check_common(n_samples, burn_in)
    omega, alpha, beta = float(omega), float(alpha), float(beta)
    # Written so that NaN fails every comparison and is rejected.
    if not (0 < omega < np.inf and 0 <= alpha < np.inf and 0 <= beta < np.inf):
        raise ValueError(
            "need finite omega > 0 and finite alpha, beta >= 0, got "
            f"omega={omega}, alpha={alpha}, beta={beta}."
        )
    if alpha + beta >= 1:
        warnings.warn(
            f"alpha + beta = {alpha + beta:g} >= 1: the variance has no finite "
            "mean and the series may explode.",
            UserWarning,
            stacklevel=2,
        )
    if sigma2_0 is None:
        sigma2_0 = omega / (1 - alpha - beta) if alpha + beta < 1 else omega
    elif not 0 < float(sigma2_0) < np.inf:
        raise ValueError(
            f"sigma2_0 must be None or a finite float > 0, got {sigma2_0!r}."
        )
    z = _innovations(n, burn_in, 1.0, random_state).tolist()
    y = [0.0] * len(z)
    s2 = [0.0] * len(z)
    sig2_prev, y_prev = float(sigma2_0), 0.0
    sqrt = np.sqrt
    for t, zt in enumerate(z):
        sig2 = omega + alpha * y_prev**2 + beta * sig2_prev
        y_prev = y[t] = float(sqrt(sig2)) * zt
        s2[t] = sig2_prev = sig2
    y = np.asarray(y)
    out = [y[burn_in:].copy()]
    if return_mean:
        out.append(np.zeros(n))
    if return_sigma2:
        out.append(np.asarray(s2)[burn_in:].copy())
    return out[0] if len(out) == 1 else tuple(out)


#: Reference benchmark DGP names (``gen_series.py``) -> (simulator, kwargs).
REFERENCE_DGPS = {
    "ar1_03": (make_ar, {"coef": (0.3,)}),
    "ar1_06": (make_ar, {"coef": (0.6,)}),
    "ar1_09": (make_ar, {"coef": (0.9,)}),
    "ar2": (make_ar, {"coef": (0.5, -0.3)}),
    "ma1": (make_ma, {"coef": (0.8,)}),
    "arma11": (make_arma, {"ar": (0.5,), "ma": (0.4,)}),
    "setar": (make_setar, {"coef_low": 0.6, "coef_high": -0.5}),
    "seasonal_ar": (
        make_seasonal_ar,
        {"coef": 0.5, "seasonal_coef": 0.3, "period": 12},
    ),
    "garch11": (make_garch, {"omega": 0.1, "alpha": 0.1, "beta": 0.8, "sigma2_0": 1.0}),
}


def make_series(dgp, n_samples, *, random_state=None, return_mean=False):
    """Simulate one of the reference benchmark DGPs by name.

    ``make_series(dgp, n, random_state=seed, return_mean=True)`` equals
    ``gen_series.generate(dgp, n, seed)`` (up to floating-point rounding).

    Parameters
    ----------
    dgp : str
        One of ``REFERENCE_DGPS``: ``"ar1_03"``, ``"ar1_06"``, ``"ar1_09"``,
        ``"ar2"``, ``"ma1"``, ``"arma11"``, ``"setar"``, ``"seasonal_ar"``,
        ``"garch11"``.
    n_samples : int
    random_state : int, Generator, RandomState or None, default=None
    return_mean : bool, default=False

    Returns
    -------
    y : ndarray of shape (n_samples,)
    mu : ndarray of shape (n_samples,)
        Only if ``return_mean``.

    Examples
    --------
    >>> from skasync.datasets import make_series
    >>> y, mu = make_series("arma11", 500, random_state=1, return_mean=True)
    """
    if dgp not in REFERENCE_DGPS:
        raise ValueError(
            f"unknown dgp {dgp!r}; choose one of {sorted(REFERENCE_DGPS)}."
        )
    func, kwargs = REFERENCE_DGPS[dgp]
    return func(n_samples, random_state=random_state, return_mean=return_mean, **kwargs)
