"""AR-sieve bootstrap random forest (ARSB-RF) and rangerts block-bootstrap forests.

Structure:

- :class:`ARSieveForestRegressor`: checks the lag matrix, fits the AR sieve
  (:func:`skasync.bootstrap.fit_ar_sieve`), draws the seeds of the trees and
  of each chunk's bootstrap draws, and has the chunks grown by
  :mod:`._forest_builder`; it predicts with the packed trees of :mod:`._tree`
  and forecasts through :mod:`._forecast`.
- ``BOOTSTRAPS``: the names of the bootstraps (also used by the command line).
- ``_CHECKS_THAT_FIT_RANDOM_X``: scikit-learn's common checks that its
  lag-matrix contract fails.

Where the fit time goes: ``docs/benchmarks.rst``.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import inspect
import warnings
from functools import cached_property
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..bootstrap._blocks import _n_inbag
from ..preprocessing._lags import make_lag_matrix
from ..utils._validation import check_int, check_no_bool_counts, check_series
from ._forecast import (
    ForecastResult,
    check_interval_method,
    check_levels,
    conformal_error_count,
    horizon_errors,
    recursive_forecast,
    resolve_interval_method,
)
from ._forest_builder import (
    grow_block_chunk,
    grow_forest,
    grow_sieve_chunk,
    tree_chunks,
)
from ._input_checks import (
    count_lag_columns,
    fit_sieve,
    resolve_max_features,
    truncate_sieve,
)
from ._tree import bin_features, predict_mean, unpack_trees

__all__ = ["ARSieveForestRegressor", "ForecastResult"]

BOOTSTRAPS = ("ar-sieve", "iid", "moving", "stationary", "circular", "nonoverlapping")


def _centred(resid):
    """Residuals minus their mean: the innovations paths draw from."""
    return resid - resid.mean()


# scikit-learn's common checks that fit random (non-lag) X.
_CHECKS_THAT_FIT_RANDOM_X = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_regressor_data_not_an_array",
    "check_regressors_int",
    "check_regressors_no_decision_function",
    "check_regressors_train",
    "check_supervised_y_2d",
)


class ARSieveForestRegressor(RegressorMixin, BaseEstimator):
    """Random forest on lagged values with an AR-sieve or block bootstrap.

    Implements the AR-sieve bootstrap random forest (ARSB-RF) of Fokam, Jentsch,
    Lang and Pauly (arXiv 2410.00942) and, through ``bootstrap``, the i.i.d. and
    block-bootstrap forests of the R package ``rangerts`` as baselines.

    ``X`` is a lag matrix: column ``j`` holds lag ``j + 1`` of ``y`` and the rows
    are consecutive time points in increasing order, as made by
    :func:`skasync.preprocessing.make_lag_matrix`. Use ``TimeSeriesSplit`` (never
    a shuffled split) and do not scale the lags.

    ``fit`` rebuilds the training series ``concat(X[0, ::-1], y)`` and always
    fits the AR sieve on it exactly like R ``stats::ar()`` with its defaults
    (Yule-Walker, demeaned, AIC order, centred residuals). Then:

    - ``bootstrap="ar-sieve"``: each tree simulates its own synthetic series
      ``x_t = mean + sum_j phi_j (x_{t-j} - mean) + e_t`` (start values equal to
      the mean, ``burn_in`` discarded values, ``e_t`` drawn i.i.d. from the
      centred residuals), builds a lag matrix with ``n_features_in_`` columns
      and as many rows as the training data, and grows a tree on all its rows.
      ``phi`` is the fitted ``ar_coef_`` zero-padded to the number of lag
      columns, or truncated to it when the AIC order is larger (as in the
      reference ``rangertsARS`` runs); see ``sieve_coef_``. A truncation
      that is not stationary warns (its series diverge): then pass
      ``ar_order_max`` equal to the number of lags. The trees never see
      the observations, so every row is out-of-bag for every tree.
    - ``"iid"``, ``"moving"``, ``"stationary"``, ``"circular"``,
      ``"nonoverlapping"``: each tree grows on the rows of an in-bag multiset
      drawn exactly as ``rangerts`` 0.0.3 does (duplicated rows, not weights);
      see :func:`skasync.bootstrap.block_bootstrap_indices`.

    Trees follow ranger 0.12: squared-error splits at midpoints, ``max_features``
    candidates per node, nodes with at most ``min_node_size`` samples are leaves.

    Parameters
    ----------
    n_estimators : int, default=500
        Number of trees (R ``num.trees``).
    bootstrap : {"ar-sieve", "iid", "moving", "stationary", "circular", \
"nonoverlapping"}, default="ar-sieve"
        How each tree's training data are drawn (R ``bootstrap.ts``;
        ``"iid"`` is ranger's ordinary bootstrap).
    block_size : int, default=10
        Block length for the block bootstraps (R ``block.size``). For
        ``"stationary"`` block lengths are geometric with ``p = 1 / block_size``
        on ``{0, 1, ...}`` (mean ``block_size - 1``, as rangerts). Ignored by
        ``"ar-sieve"`` and ``"iid"``.
    by_end : bool, default=True
        Build blocks from the end of the series (R ``by.end``); it changes the
        sample only for ``"nonoverlapping"``.
    replace : bool, default=True
        Draw with replacement (``"iid"`` and ``"nonoverlapping"``). The other
        block bootstraps always draw blocks with replacement, as in rangerts,
        but ``replace=False`` still changes their default ``sample_fraction``
        to 0.632. Ignored by ``"ar-sieve"``.
    sample_fraction : float or None, default=None
        Fraction of rows drawn per tree; None means 1 with replacement and 0.632
        without (ranger). Ignored by ``"ar-sieve"``.
    max_features : {"sqrt", "log2"}, int, float or None, default="sqrt"
        Candidate features per split (R ``mtry``): ``"sqrt"`` is
        ``max(1, floor(sqrt(n_features)))``, an int is used as is (at most
        ``n_features_in_``), a float in (0, 1] is a fraction of the features,
        None means all.
    min_node_size : int, default=5
        ranger <= 0.12 ``min.node.size``: nodes with at most ``min_node_size``
        samples (duplicates counted) are not split, i.e. scikit-learn's
        ``min_samples_split = min_node_size + 1``.
    max_depth : int or None, default=None
        Maximum tree depth; None for unlimited.
    ar_order : int or None, default=None
        AR sieve order; None selects it by AIC (R ``ar()``).
    ar_order_max : int or None, default=None
        Largest order considered by AIC; None means
        ``min(n - 1, floor(10 * log10(n)))`` for a series of length ``n``.
    ar_method : {"yule-walker", "ols"}, default="yule-walker"
        ``"yule-walker"`` is R-exact; ``"ols"`` uses statsmodels ``AutoReg``.
    burn_in : int, default=0
        Synthetic values discarded after the start values (0 as the authors'
        code, where the first rows start from the mean).
    check_input_order : bool, default=True
        Check that the rows of ``X`` are contiguous, time-ordered raw lags of
        ``y`` and raise a ``ValueError`` otherwise (shuffled CV, scaled lags,
        extra columns with ``"ar-sieve"``). With False every column is treated
        as a lag (column ``j`` = lag ``j + 1``) without checking; results are
        then only meaningful if that is true.
    max_bins : int or None, default=None
        Block/iid bootstraps bin each feature once; None bins exactly (every
        distinct value, ranger's behaviour), an int >= 2 caps the number of
        quantile bins per feature (faster on long series, approximate splits).
    oob_score : bool, default=False
        Compute ``oob_prediction_`` and ``oob_score_`` (R²) from the out-of-bag
        rows of each tree, and keep the out-of-bag residuals as
        ``forecast_resid_`` (needed by the default prediction intervals of
        :meth:`forecast`). ``"ar-sieve"`` trees never see the observations, so
        every row is out-of-bag for every tree: ``oob_prediction_`` is then the
        forest's prediction of the training rows, and the intervals need no
        ``oob_score`` (True is accepted so that one grid can set it for every
        bootstrap).
    n_jobs : int or None, default=None
        Number of joblib jobs growing trees (threads by default; the trees are
        grown by nogil numba code). None means 1 unless in a
        ``joblib.parallel_config`` context. Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds of the trees (drawn up front, one per tree).
    verbose : int, default=0
        Verbosity of joblib's ``Parallel``.

    Attributes
    ----------
    ar_order_ : int
        AR sieve order (AIC selected unless ``ar_order`` is given).
    ar_coef_ : ndarray of shape (`ar_order_`,)
        AR sieve coefficients ``phi_1..phi_p`` of the demeaned series.
    ar_mean_ : float
        Series mean used by the sieve (R ``x.mean``).
    ar_resid_ : ndarray of shape (n_series - `ar_order_`,)
        Centred AR sieve residuals (the innovations the sieve resamples).
    ar_aic_ : ndarray of shape (`ar_order_max_` + 1,)
        ``n log(sigma2_p) + 2 p`` for each order ``p`` (Yule-Walker).
    ar_order_max_ : int
        Largest order considered.
    sieve_coef_ : ndarray of shape (`n_lags_`,)
        Coefficients the ``"ar-sieve"`` trees simulate with: ``ar_coef_``
        zero-padded or truncated to ``n_lags_``.
    n_lags_ : int
        Number of leading lag columns of ``X``: ``n_features_in_`` unless a
        block/iid bootstrap was fitted with extra (non-lag) trailing columns.
    block_size_ : int or None
        Block length the block bootstraps used: ``block_size``, or the rows
        each tree draws when there are fewer (small data); None for
        ``"ar-sieve"`` and ``"iid"``.
    estimators_ : list of Tree
        The fitted trees as light, picklable namedtuples of node arrays (views
        into a packed forest used for fast prediction).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit (only for inputs with string column
        names).
    oob_prediction_ : ndarray of shape (n_samples,)
        Out-of-bag predictions (NaN for rows that were in-bag for every tree;
        every tree's for ``"ar-sieve"``). Only with ``oob_score=True``.
    oob_score_ : float
        R² of ``oob_prediction_`` on the rows that have one.
    forecast_resid_ : ndarray of shape (n_honest,)
        Centred one-step residuals of the forest on training rows its trees did
        not learn from, the innovations of ``forecast(...,
        interval_method="residual-paths")``: every row for ``"ar-sieve"``
        (its trees grow on synthetic series only), the rows with an
        out-of-bag prediction otherwise. Absent for an i.i.d./block bootstrap
        fitted with ``oob_score=False``.

    See Also
    --------
    skasync.preprocessing.make_lag_matrix : Build ``X, y`` from a series.
    skasync.bootstrap.fit_ar_sieve : The AR sieve fit.
    skasync.bootstrap.block_bootstrap_indices : The rangerts bootstraps.
    sklearn.ensemble.RandomForestRegressor : The i.i.d. forest.

    Notes
    -----
    The AR-sieve trees only ever see data simulated from the fitted linear
    AR(p) model, so the forest is a smoothed tree version of the linear AR
    predictor: accurate for (near-)linear processes, blind to nonlinearity and
    conditional heteroskedasticity the sieve lacks.

    Trees are grown in chunks of up to 50 (fewer for long series), one
    compiled call per chunk with one batch of bootstrap draws from the chunk's
    own seed. Chunks run on threads by default (the numba kernels release the
    GIL); another backend set with ``joblib.parallel_config`` (e.g.
    ``backend="dask"``) is used through :class:`sklearn.utils.parallel.Parallel`.
    The chunks depend only on the data size, so the trees are identical for
    every backend and ``n_jobs``.

    References
    ----------
    .. [1] C. Teguemne Fokam, C. Jentsch, M. Lang, M. Pauly, "AR-Sieve
       Bootstrap for the Random Forest and a simulation-based comparison with
       rangerts time series prediction", arXiv:2410.00942, 2024.
    .. [2] B. Goehry, H. Yan, Y. Goude, P. Massart, J.-M. Poggi, "Random Forests
       for Time Series", REVSTAT, 2023.

    Examples
    --------
    >>> from skasync import ARSieveForestRegressor
    >>> from skasync.datasets import make_ar
    >>> from skasync.preprocessing import make_lag_matrix
    >>> y = make_ar(300, coef=(0.6,), random_state=0)
    >>> X, target = make_lag_matrix(y, n_lags=5)
    >>> forest = ARSieveForestRegressor(n_estimators=50, random_state=0)
    >>> forest = forest.fit(X[:-10], target[:-10])
    >>> forest.ar_order_
    1
    >>> forest.predict(X[-10:]).shape
    (10,)
    >>> fc = forest.forecast(y, horizon=3, quantiles=(0.05, 0.95))
    >>> fc.mean.shape, fc.quantiles.shape
    ((3,), (3, 2))
    """

    _doc_link_module = "skasync"
    _doc_link_template = (
        "https://skasync.readthedocs.io/en/latest/generated/"
        "{estimator_module}.{estimator_name}.html"
    )

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "bootstrap": [StrOptions(set(BOOTSTRAPS))],
        "block_size": [Interval(Integral, 1, None, closed="left")],
        "by_end": ["boolean"],
        "replace": ["boolean"],
        "sample_fraction": [None, Interval(Real, 0, None, closed="neither")],
        "max_features": [
            None,
            StrOptions({"sqrt", "log2"}),
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "min_node_size": [Interval(Integral, 0, None, closed="left")],
        "max_depth": [None, Interval(Integral, 1, None, closed="left")],
        "ar_order": [None, Interval(Integral, 0, None, closed="left")],
        "ar_order_max": [None, Interval(Integral, 0, None, closed="left")],
        "ar_method": [StrOptions({"yule-walker", "ols"})],
        "burn_in": [Interval(Integral, 0, None, closed="left")],
        "check_input_order": ["boolean"],
        "max_bins": [None, Interval(Integral, 2, None, closed="left")],
        "oob_score": ["boolean"],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_estimators=500,
        *,
        bootstrap="ar-sieve",
        block_size=10,
        by_end=True,
        replace=True,
        sample_fraction=None,
        max_features="sqrt",
        min_node_size=5,
        max_depth=None,
        ar_order=None,
        ar_order_max=None,
        ar_method="yule-walker",
        burn_in=0,
        check_input_order=True,
        max_bins=None,
        oob_score=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.block_size = block_size
        self.by_end = by_end
        self.replace = replace
        self.sample_fraction = sample_fraction
        self.max_features = max_features
        self.min_node_size = min_node_size
        self.max_depth = max_depth
        self.ar_order = ar_order
        self.ar_order_max = ar_order_max
        self.ar_method = ar_method
        self.burn_in = burn_in
        self.check_input_order = check_input_order
        self.max_bins = max_bins
        self.oob_score = oob_score
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the AR sieve and grow the forest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Lag matrix (column ``j`` = lag ``j + 1`` of ``y``), rows
            consecutive and increasing in time.
        y : array-like of shape (n_samples,)
            Target: the series value at each row's time.

        Returns
        -------
        self : ARSieveForestRegressor
            Fitted estimator.
        """
        check_no_bool_counts(self)
        try:
            X, y = validate_data(
                self, X, y, dtype=np.float64, y_numeric=True, ensure_min_samples=2
            )
        except ValueError as exc:
            if "Expected 2D array" not in str(exc):
                raise
            raise ValueError(
                "X must be a 2-D lag matrix of shape (n_samples, n_lags), got a "
                "1-D array. If it is the series itself, build X, y = "
                "skasync.preprocessing.make_lag_matrix(series, n_lags); for a "
                "single lag use X.reshape(-1, 1)."
            ) from exc
        X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y, dtype=np.float64)
        n_rows, n_features = X.shape
        n_lags = (
            count_lag_columns(X, y, self.bootstrap)
            if self.check_input_order
            else n_features
        )
        max_features = resolve_max_features(self.max_features, n_features)
        block = self.bootstrap != "ar-sieve"
        # Rows each tree draws: they bound the block length and the chunks.
        drawn = (
            _n_inbag(n_rows, self.replace, self.sample_fraction, self.bootstrap)
            if block
            else n_rows
        )
        block_size = self._block_size_for(n_rows, drawn)

        # What the previous fit derived from its trees goes first: a fit that
        # fails below (too few out-of-bag rows) must not leave the previous
        # calibration beside new trees. estimators_ (per-tree views) and the
        # conformal errors are built again on first use.
        for name in (
            "_forest",
            "estimators_",
            "_horizon_errors_cache",
            "_calibration_series",
            "forecast_resid_",
            "oob_prediction_",
            "oob_score_",
        ):
            self.__dict__.pop(name, None)

        # The sieve is fitted for every bootstrap, so its attributes always exist.
        series = np.concatenate([X[0, :n_lags][::-1], y])
        sieve = fit_sieve(series, self.ar_order, self.ar_order_max, self.ar_method)
        self.ar_order_ = int(sieve.order)
        self.ar_coef_ = np.asarray(sieve.coef, dtype=np.float64)
        self.ar_mean_ = float(sieve.mean)
        self.ar_resid_ = np.asarray(sieve.resid, dtype=np.float64)
        self.ar_aic_ = np.asarray(sieve.aic, dtype=np.float64)
        self.ar_order_max_ = int(sieve.order_max)
        self.n_lags_ = int(n_lags)
        # Zero-pad, or truncate as the reference rangertsARS runs do (their
        # residuals stay those of the full AR(p) fit).
        sieve_coef = truncate_sieve(self.ar_coef_, n_lags, simulates=not block)
        self.sieve_coef_ = sieve_coef

        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        tree_kw = {
            "max_features": max_features,
            "min_samples_split": self.min_node_size + 1,
            "max_depth": -1 if self.max_depth is None else self.max_depth,
        }
        # The chunk size bounds the rows drawn in flight: a block bootstrap
        # with sample_fraction above 1 draws more rows per tree than exist.
        chunks = tree_chunks(self.n_estimators, max(n_rows, drawn))
        # The bootstrap draws of chunk c come from their own seed draw_seeds[c].
        draw_seeds = rng.randint(np.iinfo(np.int32).max, size=len(chunks))
        if block:
            binned = bin_features(X, self.max_bins)
            boot_kw = {
                "method": self.bootstrap,
                "block_size": block_size,
                "by_end": self.by_end,
                "replace": self.replace,
                "sample_fraction": self.sample_fraction,
            }
            X_oob = X if self.oob_score else None
            func = grow_block_chunk
            args_list = [
                (binned, y, X_oob, boot_kw, draw_seed, seeds[chunk], tree_kw)
                for chunk, draw_seed in zip(chunks, draw_seeds)
            ]
        else:
            func = grow_sieve_chunk
            args_list = [
                (
                    self.ar_mean_,
                    sieve_coef,
                    self.ar_resid_,
                    n_rows,
                    self.burn_in,
                    draw_seed,
                    seeds[chunk],
                    tree_kw,
                )
                for chunk, draw_seed in zip(chunks, draw_seeds)
            ]
        forest, oob_sum, oob_cnt = grow_forest(
            func, args_list, self.n_estimators, self.n_jobs, self.verbose
        )
        if self.oob_score and block:
            has = oob_cnt > 0
            # Checked before the trees are kept: a fit that fails here must
            # leave the estimator unfitted, not serving the rejected trees.
            if has.sum() < 2:
                raise ValueError(
                    "Too few out-of-bag rows to compute oob_score_; increase "
                    "n_estimators or set oob_score=False."
                )
            pred = np.full(n_rows, np.nan)
            pred[has] = oob_sum[has] / oob_cnt[has]
            self.oob_prediction_ = pred
            self.oob_score_ = float(r2_score(y[has], pred[has]))
            self.forecast_resid_ = _centred(y[has] - pred[has])
        self._forest = forest
        # The sieve trees never saw the observed rows, so every training row
        # is an honest forecast origin (and its residual an out-of-sample
        # one); the series is kept (n + lags values) for the conformal
        # intervals and forecast_resid_, both computed on first use.
        # Without check_input_order the rows are not known to be consecutive
        # lags of y, so the series is not rebuilt from them.
        lag_only = self.check_input_order and n_lags == n_features
        self._calibration_series = series if lag_only and not block else None
        if not block and (self.oob_score or not lag_only):
            # No sieve tree saw an observed row: every row is out-of-bag for
            # every tree, so the out-of-bag prediction is the forest's own
            # (one grid may then set oob_score=True for every bootstrap).
            pred = predict_mean(forest, X)
            self.forecast_resid_ = _centred(y - pred)
            if self.oob_score:
                self.oob_prediction_ = pred
                self.oob_score_ = float(r2_score(y, pred))
        return self

    def _block_size_for(self, n_rows, drawn):
        """The block length of a block bootstrap on ``n_rows`` rows, of which
        each tree draws ``drawn``.

        Small data is not bad input: a block longer than the rows each tree
        draws is cut to them (recorded in ``block_size_``); a block_size the
        user chose, unlike the default, is cut with a warning.
        """
        if self.bootstrap in ("iid", "ar-sieve"):
            self.block_size_ = None
            return self.block_size
        # Moving and non-overlapping blocks must also fit in the rows (a
        # sample_fraction above 1 draws more rows than there are); stationary
        # lengths are geometric with mean block_size - 1, so 2 is its least.
        longest = min(drawn, n_rows)
        if self.bootstrap == "stationary":
            longest = max(2, longest)
        self.block_size_ = min(self.block_size, longest)
        default = inspect.signature(type(self)).parameters["block_size"].default
        if self.block_size_ < self.block_size and self.block_size != default:
            warnings.warn(
                f"block_size={self.block_size} exceeds the {drawn} rows each tree "
                f"draws or the {n_rows} training rows; blocks of {self.block_size_} "
                "are used (block_size_).",
                UserWarning,
                stacklevel=4,
            )
        return self.block_size_

    def __sklearn_is_fitted__(self):
        # Fitted once trees exist: a fit that failed after its checks (the
        # sieve attributes set, no forest) is not.
        return "_forest" in self.__dict__

    def predict(self, X):
        """One-step predictions: the mean of the trees on the real lags.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Lag matrix with the columns used in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return predict_mean(self._forest, X)

    def forecast(
        self,
        history,
        horizon,
        quantiles=None,
        *,
        interval_method="auto",
        n_paths=None,
        random_state=0,
    ):
        """Recursive multi-step forecasts from the end of a series.

        The point forecast feeds each prediction back as lag 1. Prediction
        intervals (``quantiles``) come from one of these ``interval_method``:

        - ``"conformal"``: the point forecast plus split-conformal quantiles,
          horizon by horizon, of the forest's own errors at that horizon when
          forecasting recursively from every row of the training series. Only
          ``bootstrap="ar-sieve"``: its trees grow on synthetic series, so the
          training rows are honest origins. No paths are simulated.
        - ``"residual-paths"``: pointwise quantiles of ``n_paths`` simulated
          paths. Each step is the forest mean on the path's own lags plus an
          innovation drawn i.i.d. from ``forecast_resid_``, the forest's
          one-step residuals on rows its trees did not learn from (every
          training row for ``"ar-sieve"``, the out-of-bag rows for the other
          bootstraps, which therefore need ``oob_score=True``).
        - ``"auto"`` (default): ``"conformal"`` for an AR-sieve forest with at
          least enough training origins for the most extreme level at the
          last horizon (39 for ``quantiles=(0.025, 0.975)``), else
          ``"residual-paths"``. ``result.interval_method`` says which ran.
        - ``"tree-paths"``: path ``k`` is run by tree ``k mod n_estimators``
          alone, plus an innovation drawn from the centred AR sieve residuals
          ``ar_resid_``. A single tree's error and the residual both count as
          noise, so these intervals are too wide (a nominal 90 % interval
          covers about 96 %); kept for compatibility.

        The coverage and interval score of each method are in the user guide's
        "Prediction intervals" and ``benchmarks/results/intervals.md``.

        Parameters
        ----------
        history : array-like of shape (n_history,)
            The observed series in time order; its last ``n_features_in_``
            values are the lags of the first forecast. Usually the training
            series, possibly extended with newer observations.
        horizon : int
            Number of steps ahead, >= 1.
        quantiles : sequence of float in (0, 1) or None, default=None
            Quantile levels of the simulated paths, strictly increasing, e.g.
            ``(0.05, 0.95)`` for a 90 % interval. None skips the simulation.
        interval_method : {"auto", "conformal", "residual-paths", \
"tree-paths"}, default="auto"
            How the intervals are made (see above). Ignored when
            ``quantiles`` is None.
        n_paths : int or None, default=None
            Number of simulated paths; None means 1000 for
            ``"residual-paths"`` and one per tree for ``"tree-paths"``.
            Unused by ``"conformal"``.
        random_state : int, RandomState instance or None, default=0
            Controls the innovation draws of the simulated paths.

        Returns
        -------
        result : ForecastResult
            Named tuple ``(mean, quantiles, levels, interval_method)``:
            ``mean`` of shape ``(horizon,)``, ``quantiles`` of shape
            ``(horizon, n_levels)`` or None, ``levels`` the quantile levels or
            None, ``interval_method`` the method that ran or None.

        Examples
        --------
        >>> from skasync import ARSieveForestRegressor
        >>> from skasync.datasets import make_ar
        >>> from skasync.preprocessing import make_lag_matrix
        >>> y = make_ar(200, coef=(0.6,), random_state=1)
        >>> forest = ARSieveForestRegressor(n_estimators=20, random_state=0)
        >>> forest = forest.fit(*make_lag_matrix(y, 2))
        >>> res = forest.forecast(y, horizon=5, quantiles=(0.1, 0.5, 0.9))
        >>> res.quantiles.shape, res.levels
        ((5, 3), (0.1, 0.5, 0.9))
        """
        check_is_fitted(self)
        if self.n_lags_ != self.n_features_in_:
            raise ValueError(
                f"forecast needs lag-only X, but the forest was fitted with "
                f"{self.n_features_in_ - self.n_lags_} extra non-lag column(s) "
                "whose future values are unknown. Refit on lag columns only."
            )
        L = self.n_features_in_
        h = check_series(history, name="history")
        if h.shape[0] < L:
            raise ValueError(
                f"history has {h.shape[0]} values but the forest uses {L} lags; "
                f"pass at least the last {L} observations."
            )
        horizon = check_int(horizon, "horizon", 1)
        levels = check_levels(quantiles)
        method = check_interval_method(interval_method)
        calibration = getattr(self, "_calibration_series", None)
        if levels is not None:
            method = resolve_interval_method(
                method,
                n_calibration=0 if calibration is None else calibration.shape[0] - L,
                horizon=horizon,
                levels=levels,
            )
        if method == "tree-paths":
            resid = self.ar_resid_
        elif levels is None or method == "conformal":
            resid = None  # point forecasts and conformal bounds draw no paths
        elif not hasattr(self, "forecast_resid_"):
            chosen = (
                "interval_method='residual-paths'"
                if interval_method == "residual-paths"
                else f"interval_method={interval_method!r} (here 'residual-paths')"
            )
            raise ValueError(
                f"{chosen} draws its innovations from the out-of-bag residuals, "
                f"which a bootstrap={self.bootstrap!r} forest keeps only when "
                "fitted with oob_score=True. Refit with oob_score=True, or pass "
                "interval_method='tree-paths' (wider than nominal)."
            )
        else:
            resid = self.forecast_resid_
            needed = conformal_error_count(levels)
            if resid.shape[0] < needed:
                # The simulated quantiles cannot reach past the largest
                # residuals, so the extreme levels would cover too little.
                warnings.warn(
                    f"interval_method='residual-paths' draws from "
                    f"{resid.shape[0]} residuals, fewer than the {needed} that "
                    f"quantiles={levels} need to reach their tails; the "
                    "intervals may cover less than nominal. A longer series, "
                    "more trees (out-of-bag rows) or less extreme quantiles "
                    "resolve them.",
                    UserWarning,
                    stacklevel=2,
                )
        return recursive_forecast(
            self._forest,
            h[::-1][:L],
            horizon,
            levels,
            method=method,
            resid=resid,
            n_paths=n_paths,
            random_state=random_state,
            errors=(
                self._horizon_errors(horizon)
                if levels is not None and method == "conformal"
                else None
            ),
        )

    def _horizon_errors(self, horizon):
        """h-step errors from every training origin, kept for later forecasts.

        A backtest forecasts many times from one fitted forest; the errors
        cost ``horizon`` predictions of every training row, so they are
        computed once per fit (again only for a longer horizon).
        """
        errors = self.__dict__.get("_horizon_errors_cache")
        if errors is None or len(errors) < horizon:
            X, y = make_lag_matrix(self._calibration_series, self.n_features_in_)
            errors = horizon_errors(self._forest, X, y, horizon)
            self._horizon_errors_cache = errors
        return errors

    # ------------------------------------------------------------------ misc
    def _expected_failed_checks(self):
        """Common checks expected to fail, with the reason.

        With ``check_input_order=True`` (the default) ``fit`` accepts only a
        time-ordered lag matrix of ``y``: these checks fit random ``X``,
        which it rejects with a ``ValueError`` naming the fix. With
        ``check_input_order=False`` every check passes (tested beside the
        estimator's own tests).
        """
        if not self.check_input_order:
            return {}
        reason = (
            "fit needs X to be a time-ordered lag matrix of y (check_input_order="
            "True, the default) and rejects the check's random X with a ValueError "
            "that names the fix; with check_input_order=False the check passes"
        )
        return dict.fromkeys(_CHECKS_THAT_FIT_RANDOM_X, reason)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # AR-sieve trees only see data simulated from the linear AR fit of y, so
        # on arbitrary (non-lag) regression data they cannot score well.
        tags.regressor_tags.poor_score = self.bootstrap == "ar-sieve"
        return tags

    @cached_property
    def forecast_resid_(self):
        # AR-sieve forests only (block forests set it in fit, with OOB rows):
        # predicting every training row costs 15-20 % of a fit, so it is
        # done when a forecast first needs the residuals.
        series = getattr(self, "_calibration_series", None)
        if series is None:
            raise AttributeError(
                "forecast_resid_ exists for bootstrap='ar-sieve' forests and for "
                "the other bootstraps fitted with oob_score=True."
            )
        X, y = make_lag_matrix(series, self.n_features_in_)
        return _centred(y - predict_mean(self._forest, X))

    @cached_property
    def estimators_(self):
        """list of Tree: the fitted trees, as views into the packed forest."""
        # Made on first access: building 500 namedtuples of views costs ~1.5 ms,
        # 2-3 % of a small fit.
        return unpack_trees(self._forest)

    def __getstate__(self):
        state = dict(super().__getstate__())
        # The per-tree views and the conformal errors are rebuilt when used.
        state.pop("estimators_", None)
        state.pop("_horizon_errors_cache", None)
        return state
