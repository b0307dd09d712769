"""AR-sieve bootstrap random forest (ARSB-RF) and rangerts block-bootstrap forests.

Where the fit time goes (py-spy at 1 kHz over 40-60 fits of the speed benchmark:
500 trees, 395 rows, 5 lags, mtry 2, min_node_size 5, one core). Before, with one
Python call per tree (0.100 s ar-sieve, 0.062 s moving on a quiet core; R 0.217 s
and 0.109 s): the numba tree kernel was 58 % of an ar-sieve fit, the per-tree AR
simulation (``simulate_ar_sieve``, lfilter) 18 % and the lag matrix 10 %; for
moving the kernel was 63 %, the per-tree ``block_bootstrap_indices`` 17 %; per-tree
packing and ``estimators_`` views 3-4 %, the rest per-tree wrapper calls. joblib's
thread pool added ~11 ms to any fit with n_jobs > 1 (its result polling), which
made n_jobs=2 slower than n_jobs=1 on small series. Now each chunk of up to 50
trees is one batch of draws (``n_series``/``n_draws``) and one kernel call
(:func:`~skasync.ensemble._tree_engine.grow_trees`), threads come from a
``concurrent.futures`` pool and ``estimators_`` is built on first access: the
kernel is 89-90 % of a fit, the rest the batched draws (ar-sieve 4 %, moving 2 %),
packing 2 %, the AR fit (1 %) and input checks. Fits: ar-sieve 0.052 s, moving 0.036 s
(kernel speed-ups included: radix ranking of the series, weighted distinct rows).
With a second core free (load 1.2 from other jobs, not pinned), n_jobs=2 now
runs 1.8x faster than n_jobs=1: n = 500 ar-sieve 0.055 -> 0.031 s, moving 0.037
-> 0.021 s; n = 1000 ar-sieve 0.128 -> 0.071 s, moving 0.086 -> 0.047 s.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from numbers import Integral, Real
from types import SimpleNamespace

import numpy as np
from joblib.parallel import ThreadingBackend, effective_n_jobs, get_active_backend
from numba import njit
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, validate_data

from ..bootstrap import block_bootstrap_indices, fit_ar_sieve, simulate_ar_sieve
from ..preprocessing import check_lag_matrix
from ..preprocessing._lags import same_observations
from ..utils._validation import check_int, check_no_bool_counts, check_series
from ._tree_engine import (
    PackedForest,
    Tree,
    bin_features,
    descend,
    grow_trees,
    grow_trees_on_series,
    predict_mean,
    walk_arrays,
)

__all__ = ["ARSieveForestRegressor", "ForecastResult"]

BOOTSTRAPS = ("ar-sieve", "iid", "moving", "stationary", "circular", "nonoverlapping")

ForecastResult = namedtuple("ForecastResult", ["mean", "quantiles", "levels"])
ForecastResult.__doc__ = """Result of :meth:`ARSieveForestRegressor.forecast`.

Attributes
----------
mean : ndarray of shape (horizon,)
    Recursive point forecasts: the forest mean at each step, fed back as lag 1.
quantiles : ndarray of shape (horizon, n_levels) or None
    Pointwise quantiles of the simulated future paths at ``levels`` (None when
    no quantiles were requested). With ``quantiles=(0.05, 0.95)``,
    ``quantiles[:, 0]`` and ``quantiles[:, 1]`` are the lower and upper bounds of
    a 90 % prediction interval.
levels : tuple of float or None
    The requested quantile levels, in the order of the columns of ``quantiles``.
"""


# --------------------------------------------------------------------------- kernels
@njit(nogil=True, cache=True)
def _oob_accumulate(
    feature, threshold, left, right, value, offsets, X, sample_indices, out_sum, out_cnt
):
    # Predict each tree t of a chunk on the rows absent from sample_indices[t]
    # (its out-of-bag rows) and accumulate.
    inbag = np.zeros(X.shape[0], dtype=np.bool_)
    for t in range(sample_indices.shape[0]):
        inbag[:] = False
        for s in range(sample_indices.shape[1]):
            inbag[sample_indices[t, s]] = True
        for r in range(X.shape[0]):
            if inbag[r]:
                continue
            node = descend(feature, threshold, left, right, offsets[t], X, r)
            out_sum[r] += value[node]
            out_cnt[r] += 1


@njit(nogil=True, cache=True)
def _predict_own_tree(
    feature, threshold, left, right, value, offsets, tree_ids, Z, out
):
    # Row k of Z is predicted by tree tree_ids[k] only (one tree per path).
    for k in range(Z.shape[0]):
        node = descend(feature, threshold, left, right, offsets[tree_ids[k]], Z, k)
        out[k] = value[node]


# --------------------------------------------------------------------------- workers
# Each worker call grows a chunk of trees: one batch of bootstrap draws (from the
# chunk's own seed) and one numba call for all its trees, so the Python cost is
# per chunk, not per tree. Chunks are fixed by the data size alone (never by
# n_jobs), hence the forest does not depend on n_jobs or the backend.
def _grow_sieve_chunk(mean, coef, resid, n_rows, burn_in, draw_seed, seeds, tree_kw):
    """Grow one tree per seed, each on its own synthetic AR-sieve series.

    Only the sieve (mean, coefficients, residuals) is shipped, never the data.
    """
    spec = SimpleNamespace(order=coef.shape[0], coef=coef, mean=mean, resid=resid)
    series = simulate_ar_sieve(
        spec,
        n_rows,
        n_start_values=coef.shape[0],
        burn_in=burn_in,
        random_state=np.random.default_rng(draw_seed),
        n_series=seeds.shape[0],
    )
    return grow_trees_on_series(series, coef.shape[0], seeds=seeds, **tree_kw), None


def _grow_block_chunk(binned, y, X_oob, boot_kw, draw_seed, seeds, tree_kw):
    """Grow one tree per seed on a rangerts-style in-bag multiset of rows."""
    n = y.shape[0]
    idx = block_bootstrap_indices(
        n,
        random_state=np.random.default_rng(draw_seed),
        n_draws=seeds.shape[0],
        **boot_kw,
    )
    packed = grow_trees(binned, y, idx, seeds=seeds, **tree_kw)
    if X_oob is None:
        return packed, None
    oob_sum = np.zeros(n)
    oob_cnt = np.zeros(n, dtype=np.int64)
    _oob_accumulate(
        *walk_arrays(packed),
        X_oob,
        idx,
        oob_sum,
        oob_cnt,
    )
    return packed, (oob_sum, oob_cnt)


def _chunks(n_trees, n_rows):
    """Split ``range(n_trees)`` into the chunks of trees grown per worker call.

    Large chunks amortise the Python cost of a call (~0.1 ms); the cap of about
    2.5 M in-bag rows per chunk bounds the memory of its draws and trees in
    flight (~2 MB per tree at n = 100 000), and a few chunks per job balance
    the load. The split depends only on the data size, never on ``n_jobs``.
    """
    size = max(1, min(50, 2_500_000 // max(n_rows, 1)))
    return [slice(i, min(i + size, n_trees)) for i in range(0, n_trees, size)]


def _run_chunks(func, args_list, n_jobs, verbose):
    """Yield ``func(*args)`` for each ``args``, in order, on the joblib backend.

    The default threads backend runs on a ``concurrent.futures`` pool: joblib's
    own thread pool costs ~11 ms per call (its result polling), a fifth of a
    500-tree fit at n = 395. Other backends (``joblib.parallel_config``, e.g.
    dask or loky) and ``verbose > 0`` (joblib's progress messages) go through
    :class:`~sklearn.utils.parallel.Parallel`.
    """
    backend, _ = get_active_backend(prefer="threads")
    n_jobs = min(effective_n_jobs(n_jobs), len(args_list))
    if type(backend) is ThreadingBackend and not verbose:
        if n_jobs == 1:
            yield from (func(*args) for args in args_list)
            return
        with ThreadPoolExecutor(n_jobs) as pool:
            yield from pool.map(lambda args: func(*args), args_list)
        return
    yield from Parallel(
        n_jobs=n_jobs, verbose=verbose, prefer="threads", return_as="generator"
    )(delayed(func)(*args) for args in args_list)


class _ForestBuilder:
    """Append chunks of packed trees to flat node arrays as they arrive.

    Copying each chunk into preallocated arrays and dropping it keeps the peak
    memory near one forest. Packing all trees at the end would need two (and
    the freed chunk arrays stay in the heap), e.g. ~2.3 GB instead of ~1.2 GB
    for n = 100 000 rows.
    """

    def __init__(self, n_trees):
        self.n_trees = n_trees
        self.arrays = None
        self.n_nodes = 0
        self.offsets = [np.zeros(1, dtype=np.int64)]

    def add(self, chunk):
        k = chunk.feature.shape[0]
        if self.arrays is None:
            # Trees of one forest have similar sizes; growth is rare.
            n_chunk = chunk.node_offsets.shape[0] - 1
            cap = int(1.1 * k * self.n_trees / n_chunk) + 64
            self.arrays = {
                name: np.empty(cap, dtype=getattr(chunk, name).dtype)
                for name in Tree._fields
            }
        cap = self.arrays["feature"].shape[0]
        if self.n_nodes + k > cap:
            new_cap = max(int(1.25 * cap), self.n_nodes + k)
            for arr in self.arrays.values():
                arr.resize(new_cap, refcheck=False)  # realloc, no second copy
        for name, arr in self.arrays.items():
            arr[self.n_nodes : self.n_nodes + k] = getattr(chunk, name)
        self.offsets.append(chunk.node_offsets[1:] + self.n_nodes)
        self.n_nodes += k

    def finish(self):
        for arr in self.arrays.values():
            arr.resize(self.n_nodes, refcheck=False)
        return PackedForest(**self.arrays, node_offsets=np.concatenate(self.offsets))


def _unpack(packed):
    """Per-tree :class:`Tree` views into the packed forest (no copies)."""
    off = packed.node_offsets
    return [
        Tree(*(getattr(packed, name)[off[t] : off[t + 1]] for name in Tree._fields))
        for t in range(off.shape[0] - 1)
    ]


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
      reference ``rangertsARS`` runs); see ``sieve_coef_``. The trees never see
      the observations, so there is no out-of-bag estimate.
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
        Draw with replacement (``"iid"`` and ``"nonoverlapping"``); ignored by
        the other bootstraps, as in rangerts.
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
        rows of each tree. Only for the i.i.d. and block bootstraps;
        ``"ar-sieve"`` trees have no out-of-bag rows, so True raises.
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
    estimators_ : list of Tree
        The fitted trees as light, picklable namedtuples of node arrays (views
        into a packed forest used for fast prediction).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit (only for inputs with string column
        names).
    oob_prediction_ : ndarray of shape (n_samples,)
        Out-of-bag predictions (NaN for rows that were in-bag for every tree).
        Only with ``oob_score=True`` and an i.i.d./block bootstrap.
    oob_score_ : float
        R² of ``oob_prediction_`` on the rows that have one.

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

    # ------------------------------------------------------------------ helpers
    def _resolve_max_features(self, n_features):
        mf = self.max_features
        if mf is None:
            return n_features
        if mf == "sqrt":
            return max(1, int(np.sqrt(n_features)))
        if mf == "log2":
            return max(1, int(np.log2(n_features)))
        if isinstance(mf, Integral):
            if mf > n_features:
                raise ValueError(
                    f"max_features={mf} exceeds the number of features of X "
                    f"({n_features}); pass an int <= {n_features}, a float in "
                    "(0, 1], 'sqrt' or None."
                )
            return int(mf)
        return max(1, int(mf * n_features))

    def _check_order(self, X, y):
        """Number of leading lag columns; raise if the rows are not time-ordered."""
        n_features = X.shape[1]
        spread = np.ptp(y)
        if not same_observations(X[1:, 0], y[:-1], spread).all():
            # check_lag_matrix raises its detailed, actionable message.
            check_lag_matrix(X, y, n_lag_columns=1)
        k = 1
        while (
            k < n_features and same_observations(X[1:, k], X[:-1, k - 1], spread).all()
        ):
            k += 1
        if k < n_features and self.bootstrap == "ar-sieve":
            raise ValueError(
                "bootstrap='ar-sieve' takes lag-only X: columns 0..{0} are lags "
                "1..{1} of y, but column {1} is not lag {2} (X[t, {1}] != "
                "X[t-1, {0}]). Its trees see only synthetic lags, so extra "
                "(exogenous) or transformed (e.g. scaled) columns are not "
                "supported. Drop the extra columns (build X with "
                "make_lag_matrix(series, n_lags)), do not scale the lags, use a "
                "block bootstrap (e.g. bootstrap='moving') that accepts extra "
                "columns after the lags, or pass check_input_order=False to "
                "treat every column as a lag.".format(k - 1, k, k + 1)
            )
        return k

    def _fit_sieve(self, series):
        n = series.shape[0]
        for name in ("ar_order", "ar_order_max"):
            val = getattr(self, name)
            if val is not None and val >= n:
                raise ValueError(
                    f"{name}={val} needs a training series longer than {val} "
                    f"values, but X and y give a series of {n} values (rows + "
                    f"lags). Lower {name} or pass more rows."
                )
        if (
            self.ar_order is not None
            and self.ar_order_max is not None
            and self.ar_order > self.ar_order_max
        ):
            raise ValueError(
                f"ar_order={self.ar_order} exceeds ar_order_max="
                f"{self.ar_order_max}; raise ar_order_max or leave it at None."
            )
        if np.ptp(series) == 0.0:
            raise ValueError(
                "The training series rebuilt from X and y is constant (zero "
                "variance), so the AR sieve, fitted for every bootstrap, cannot "
                "be estimated. Pass a non-constant series (y and its lags)."
            )
        try:
            return fit_ar_sieve(
                series,
                order=self.ar_order,
                order_max=self.ar_order_max,
                method=self.ar_method,
            )
        except ValueError as exc:
            raise ValueError(
                f"Cannot fit the AR sieve (ar_order={self.ar_order}, "
                f"ar_order_max={self.ar_order_max}, ar_method="
                f"{self.ar_method!r}) on the training series of {n} values "
                f"rebuilt from X and y: {exc}"
            ) from exc

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
        n_lags = self._check_order(X, y) if self.check_input_order else n_features
        max_features = self._resolve_max_features(n_features)
        block = self.bootstrap != "ar-sieve"
        if self.oob_score and not block:
            raise ValueError(
                "oob_score=True is only available for the i.i.d. and block "
                "bootstraps: bootstrap='ar-sieve' trees are grown on synthetic "
                "series and have no out-of-bag rows. Use e.g. "
                "bootstrap='moving' or set oob_score=False."
            )
        if block and self.bootstrap != "iid" and self.block_size > n_rows:
            raise ValueError(
                f"block_size={self.block_size} is larger than the number of "
                f"training rows ({n_rows}); use a smaller block_size or a longer "
                "series."
            )

        # The sieve is fitted for every bootstrap, so its attributes always exist.
        series = np.concatenate([X[0, :n_lags][::-1], y])
        sieve = self._fit_sieve(series)
        self.ar_order_ = int(sieve.order)
        self.ar_coef_ = np.asarray(sieve.coef, dtype=np.float64)
        self.ar_mean_ = float(sieve.mean)
        self.ar_resid_ = np.asarray(sieve.resid, dtype=np.float64)
        self.ar_aic_ = np.asarray(sieve.aic, dtype=np.float64)
        self.ar_order_max_ = int(sieve.order_max)
        self.n_lags_ = int(n_lags)
        # Zero-pad, or truncate as the reference rangertsARS runs do (their
        # residuals stay those of the full AR(p) fit).
        sieve_coef = np.zeros(n_lags)
        p = min(self.ar_order_, n_lags)
        sieve_coef[:p] = self.ar_coef_[:p]
        self.sieve_coef_ = sieve_coef

        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        tree_kw = dict(
            max_features=max_features,
            min_samples_split=self.min_node_size + 1,
            max_depth=-1 if self.max_depth is None else self.max_depth,
        )
        chunks = _chunks(self.n_estimators, n_rows)
        # The bootstrap draws of chunk c come from their own seed draw_seeds[c].
        draw_seeds = rng.randint(np.iinfo(np.int32).max, size=len(chunks))
        if block:
            binned = bin_features(X, self.max_bins)
            boot_kw = dict(
                method=self.bootstrap,
                block_size=self.block_size,
                by_end=self.by_end,
                replace=self.replace,
                sample_fraction=self.sample_fraction,
            )
            X_oob = X if self.oob_score else None
            func = _grow_block_chunk
            args_list = [
                (binned, y, X_oob, boot_kw, draw_seed, seeds[chunk], tree_kw)
                for chunk, draw_seed in zip(chunks, draw_seeds)
            ]
        else:
            func = _grow_sieve_chunk
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
        # Results arrive in submission order, so the forest does not depend on
        # the backend or n_jobs; the generator lets us pack chunk by chunk.
        # Threads by default: the kernels release the GIL, and a chunk's
        # arguments are shared, not pickled.
        results = _run_chunks(func, args_list, self.n_jobs, self.verbose)
        builder = _ForestBuilder(self.n_estimators)
        oob_sum = oob_cnt = 0
        for chunk_trees, chunk_oob in results:
            builder.add(chunk_trees)
            del chunk_trees
            if chunk_oob is not None:
                oob_sum = oob_sum + chunk_oob[0]
                oob_cnt = oob_cnt + chunk_oob[1]
        self._forest = builder.finish()
        # estimators_ (per-tree views) is built on first access.
        self.__dict__.pop("estimators_", None)

        if self.oob_score:
            has = oob_cnt > 0
            pred = np.full(n_rows, np.nan)
            pred[has] = oob_sum[has] / oob_cnt[has]
            self.oob_prediction_ = pred
            if has.sum() < 2:
                raise ValueError(
                    "Too few out-of-bag rows to compute oob_score_; increase "
                    "n_estimators or set oob_score=False."
                )
            self.oob_score_ = float(r2_score(y[has], pred[has]))
        return self

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
        self, history, horizon, quantiles=None, *, n_paths=None, random_state=0
    ):
        """Recursive multi-step forecasts from the end of a series.

        The point forecast feeds each prediction back as lag 1. Prediction
        intervals (``quantiles``) come from ``n_paths`` simulated future paths:
        path ``k`` is run recursively by tree ``k mod n_estimators`` alone, on
        its own path (model uncertainty: the spread between trees), and each
        step adds an innovation drawn i.i.d. from the centred AR sieve
        residuals ``ar_resid_`` (noise uncertainty; a residual bootstrap).
        The quantiles are pointwise over the paths.

        Parameters
        ----------
        history : array-like of shape (n_history,)
            The observed series in time order; its last ``n_features_in_``
            values are the lags of the first forecast. Usually the training
            series, possibly extended with newer observations.
        horizon : int
            Number of steps ahead, >= 1.
        quantiles : sequence of float in (0, 1) or None, default=None
            Quantile levels of the simulated paths, e.g. ``(0.05, 0.95)`` for
            a 90 % interval. None skips the simulation.
        n_paths : int or None, default=None
            Number of simulated paths; None means one per tree.
        random_state : int, RandomState instance or None, default=0
            Controls the innovation draws of the simulated paths.

        Returns
        -------
        result : ForecastResult
            Named tuple ``(mean, quantiles, levels)``: ``mean`` of shape
            ``(horizon,)``, ``quantiles`` of shape ``(horizon, n_levels)`` or
            None, ``levels`` the quantile levels or None.

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
        levels = None
        if quantiles is not None:
            try:
                requested = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
            except (TypeError, ValueError):
                requested = np.empty((0, 0))  # not numbers: the error below
            levels = tuple(requested.tolist()) if requested.ndim == 1 else ()
            if not levels or not all(0.0 < q < 1.0 for q in levels):
                raise ValueError(
                    f"quantiles must be levels in (0, 1), e.g. (0.05, 0.95); got "
                    f"{quantiles!r}."
                )
        forest = self._forest
        n_trees = forest.node_offsets.shape[0] - 1

        # Point forecast: forest mean, fed back as lag 1.
        lags = h[::-1][:L].copy()  # lags[j] = lag j + 1
        mean = np.empty(horizon)
        for step in range(horizon):
            mean[step] = predict_mean(forest, lags[None, :])[0]
            lags[1:] = lags[:-1]
            lags[0] = mean[step]
        if levels is None:
            return ForecastResult(mean, None, None)

        n_paths = check_int(n_paths, "n_paths", 1, allow_none=True)
        if n_paths is None:
            n_paths = n_trees
        rng = check_random_state(random_state)
        tree_ids = np.arange(n_paths, dtype=np.int64) % n_trees
        Z = np.tile(h[::-1][:L], (n_paths, 1))
        paths = np.empty((n_paths, horizon))
        pred = np.empty(n_paths)
        resid = self.ar_resid_
        for step in range(horizon):
            _predict_own_tree(*walk_arrays(forest), tree_ids, Z, pred)
            value = pred + resid[rng.randint(0, resid.shape[0], size=n_paths)]
            paths[:, step] = value
            Z[:, 1:] = Z[:, :-1]
            Z[:, 0] = value
        q = np.quantile(paths, levels, axis=0).T
        return ForecastResult(mean, q, levels)

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
    def estimators_(self):
        """list of Tree: the fitted trees, as views into the packed forest."""
        # Made on first access: building 500 namedtuples of views costs ~1.5 ms,
        # 2-3 % of a small fit.
        return _unpack(self._forest)

    def __getstate__(self):
        state = dict(super().__getstate__())
        # The per-tree views are rebuilt from the packed forest when accessed.
        state.pop("estimators_", None)
        return state
