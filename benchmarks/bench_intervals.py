"""Coverage and interval score of the forest's prediction intervals (issue 11).

Protocol: for each DGP, training length n and replicate series s = 0..S-1
(``--seeds S``, default 200; 10 with ``--quick``, which also drops n = 1 000),
simulate n + 10 values, fit on the first n (5 lags, 100 trees, seed s) and
forecast the last 10 recursively from the end of the training series with
central 80, 90 and 95 % intervals (quantiles 0.1/0.9, 0.05/0.95,
0.025/0.975). An interval covers when the true future value lies inside it;
coverage is the share over the S x 10 (series, horizon) pairs, its standard
error is taken over the S series (horizons of one series are dependent). The
interval score is Winkler's, ``(u - l) + (2 / a) * (l - y)_+ + (2 / a) *
(y - u)_+`` with ``a = 1 - level``, averaged over series and horizons (lower
is better; it rewards narrow intervals and penalises misses). Two intervals
are compared on the same series: the summary gives the mean difference of
their 90 % scores with its standard error over the series (the series'
own difficulty cancels out of it).

DGPs: AR(2) (0.6, -0.3), ARMA(1, 1) (0.5, 0.4), SETAR (0.6 below 0, -0.5
above), SETAR (0.9 below 0, -0.9 above: conditional mean -0.9 |y|), AR(1)
0.6 with GARCH(1, 1) innovations (0.1, 0.1, 0.8); unit innovation variance
for all.

Intervals compared:

* ``ARSB conformal``: ARSieveForestRegressor (AR-sieve bootstrap),
  ``forecast(interval_method="auto")``, the default, which is
  ``"conformal"`` here: the point forecast plus split-conformal quantiles of
  the forest's recursive h-step errors from every training origin (honest
  for the AR-sieve forest, whose trees never saw the observations), horizon
  by horizon;
* ``ARSB residual-paths``: the same forest, paths run by the forest mean and
  driven by its honest one-step residuals ``forecast_resid_``;
* ``ARSB tree-paths``: the same forest, the method before issue 11;
* ``ARSB sieve-resid paths`` (ablation): paths run by the forest mean, as
  residual-paths, but driven by the AR-sieve residuals ``ar_resid_`` of the
  old method;
* ``moving residual-paths`` / ``moving tree-paths``: the moving-block forest
  (block size 10, ``oob_score=True``); its default (``"auto"``) is
  ``residual-paths``, since its trees learnt the training rows;
* ``skforecast ARSB``: skforecast's ``ForecasterRecursive`` around the same
  AR-sieve forest settings (lags 5), ``predict_quantiles`` with bootstrapped
  in-sample residuals (binned, its default; 500 paths);
* ``skforecast moving``: the same around the moving-block forest;
* ``ARSB conformal, EWMA-scaled`` (ablation): the default's errors divided
  by a local volatility before their conformal quantiles are taken, and the
  quantiles multiplied by the volatility at the forecast origin (normalised
  split conformal). The volatility is an exponentially weighted mean of the
  squared one-step errors, its decay chosen among ``EWMA_DECAYS`` by the
  Gaussian quasi-likelihood of those errors; at each horizon the scale is
  ``sqrt(w * local + (1 - w) * overall)`` with ``w`` among ``EWMA_WEIGHTS``
  chosen by the 90 % interval score on the training origins. Only
  volatility that moves can earn its keep (the GARCH DGP);
* ``AutoReg``: statsmodels ``AutoReg`` with the AIC order among 1..5,
  Gaussian intervals; ``ARIMA(1,0,1)``: statsmodels' Gaussian intervals of
  the true model class, on the ARMA DGP only;
* ``oracle``: the limit, not a method. Quantiles of the true conditional
  distribution of the next 10 values given the simulator's state at the
  forecast origin (true coefficients, last innovation and GARCH variance),
  from 20 000 Monte-Carlo paths. No interval built from n observations can
  expect a lower Winkler score, so the gap of a method to the oracle is its
  headroom.

``--add-oracle`` computes only the oracle rows, for the seeds and sizes of
the ``intervals.json`` already in ``--out``, and renders the report again:
the oracle depends on the simulated series alone, not on the other methods.
``--add-scaled`` does the same for the EWMA-scaled ablation, which needs
only the AR-sieve forest of each series (same settings and seed).
``--add-dgp KEY`` runs every interval on one DGP (a key of ``DGPS``) for
those seeds and sizes and adds its cells.

The run measures coverage, not time. Writes ``intervals.json``, then
``intervals.md`` and ``intervals.png`` to ``--out`` (default
``benchmarks/results``; ``intervals.quick.*`` with ``--quick``).

Usage::

    python benchmarks/bench_intervals.py --quick
    python benchmarks/bench_intervals.py
    python benchmarks/bench_intervals.py --add-oracle
    python benchmarks/bench_intervals.py --add-scaled
    python benchmarks/bench_intervals.py --add-dgp setar_strong
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import json
import time
import warnings
from pathlib import Path

import numpy as np
from _common import (
    environment,
    make_parser,
    markdown_table,
    parse_args,
    result_stem,
    write_results,
)
from scipy.signal import lfilter

from skasync import ARSieveForestRegressor
from skasync.datasets import make_ar, make_arma, make_garch, make_setar
from skasync.ensemble._forecast import _order_statistics, recursive_forecast
from skasync.preprocessing import make_lag_matrix

N_LAGS = 5
HORIZON = 10
N_TREES = 100
LEVELS = (0.8, 0.9, 0.95)
# Sorted, as forecast requires: level k's bounds are columns 2 - k and 3 + k.
QUANTILES = (0.025, 0.05, 0.1, 0.9, 0.95, 0.975)
# SETAR(1) regime coefficients (below 0, above 0). The second process's
# conditional mean is -0.9 |y|, which no linear AR can follow: the first
# one's nonlinearity fades within two or three steps and leaves a linear
# model within 1 % of the oracle, so only the second can show whether a
# forest's intervals are best where nonlinearity matters.
SETAR_COEF = {"setar": (0.6, -0.5), "setar_strong": (0.9, -0.9)}


def _garch_ar(n, random_state):
    # AR(1) filter over GARCH(1,1) innovations; 100 extra values burn the AR in.
    e = make_garch(n + 100, random_state=random_state)
    return lfilter([1.0], [1.0, -0.6], e)[100:]


DGPS = {
    "ar2": (
        "AR(2) 0.6, -0.3",
        lambda n, s: make_ar(n, coef=(0.6, -0.3), random_state=s),
    ),
    "arma11": ("ARMA(1,1) 0.5, 0.4", lambda n, s: make_arma(n, random_state=s)),
    "setar": (
        "SETAR 0.6 / -0.5",
        lambda n, s: make_setar(n, *SETAR_COEF["setar"], random_state=s),
    ),
    "setar_strong": (
        "SETAR 0.9 / -0.9",
        lambda n, s: make_setar(n, *SETAR_COEF["setar_strong"], random_state=s),
    ),
    "garch_ar": ("AR(1) 0.6, GARCH(1,1) noise", _garch_ar),
}

ORACLE = "oracle"
N_ORACLE_PATHS = 20_000


def oracle_intervals(dgp, n, seed):
    """Quantiles of the true conditional distribution of the next HORIZON values.

    Monte Carlo over N_ORACLE_PATHS paths of the DGP itself, started from the
    simulator's state after the n training values of replicate ``seed``: the
    last values, plus the last innovation (ARMA) or the last innovation and
    conditional variance (GARCH), which the series alone does not reveal.
    """
    z = np.random.default_rng(seed).standard_normal((HORIZON, N_ORACLE_PATHS))
    total = n + HORIZON
    if dgp == "ar2":
        y = make_ar(total, coef=(0.6, -0.3), random_state=seed)
        lag1, lag2 = (
            np.full(N_ORACLE_PATHS, y[n - 1]),
            np.full(N_ORACLE_PATHS, y[n - 2]),
        )

        def step(h):
            nonlocal lag1, lag2
            lag1, lag2 = 0.6 * lag1 - 0.3 * lag2 + z[h], lag1
            return lag1

    elif dgp == "arma11":
        y, mu = make_arma(total, random_state=seed, return_mean=True)
        last, shock = np.full(N_ORACLE_PATHS, y[n - 1]), y[n - 1] - mu[n - 1]

        def step(h):
            nonlocal last, shock
            last, shock = 0.5 * last + 0.4 * shock + z[h], z[h]
            return last

    elif dgp in SETAR_COEF:
        low, high = SETAR_COEF[dgp]
        y = make_setar(total, low, high, random_state=seed)
        last = np.full(N_ORACLE_PATHS, y[n - 1])

        def step(h):
            nonlocal last
            last = np.where(last <= 0.0, low * last, high * last) + z[h]
            return last

    elif dgp == "garch_ar":
        # As _garch_ar: the same innovations, sigma2 alongside.
        e, sigma2 = make_garch(total + 100, random_state=seed, return_sigma2=True)
        y = lfilter([1.0], [1.0, -0.6], e)[100:]
        last = np.full(N_ORACLE_PATHS, y[n - 1])
        shock, var = e[100 + n - 1], sigma2[100 + n - 1]

        def step(h):
            nonlocal last, shock, var
            var = 0.1 + 0.1 * shock**2 + 0.8 * var
            shock = np.sqrt(var) * z[h]
            last = 0.6 * last + shock
            return last

    else:
        raise ValueError(f"no oracle for DGP {dgp!r}")
    # The oracle must continue exactly the series the methods were given.
    np.testing.assert_allclose(y, DGPS[dgp][1](total, seed))
    return np.array([np.quantile(step(h), QUANTILES) for h in range(HORIZON)])


def forest(bootstrap, seed):
    return ARSieveForestRegressor(
        N_TREES,
        bootstrap=bootstrap,
        oob_score=bootstrap != "ar-sieve",
        random_state=seed,
    )


DEFAULT = "ARSB conformal"


def forest_intervals(y, seed):
    X, target = make_lag_matrix(y, N_LAGS)
    out = {}
    for name, bootstrap in (("ARSB", "ar-sieve"), ("moving", "moving")):
        fitted = forest(bootstrap, seed).fit(X, target)
        default = fitted.forecast(y, HORIZON, QUANTILES, random_state=seed)
        if bootstrap == "ar-sieve":
            assert default.interval_method == "conformal"
            out[DEFAULT] = default.quantiles
        for method in ("residual-paths", "tree-paths"):
            kw = {"n_paths": 1000} if method == "tree-paths" else {}
            res = fitted.forecast(
                y, HORIZON, QUANTILES, interval_method=method, random_state=seed, **kw
            )
            out[f"{name} {method}"] = res.quantiles
        if bootstrap == "ar-sieve":
            out["ARSB sieve-resid paths"] = sieve_resid_paths(fitted, y, seed)
            out[SCALED] = ewma_scaled_conformal(fitted, default.mean)
    return out


SCALED = "ARSB conformal, EWMA-scaled"
EWMA_DECAYS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.94, 0.97, 0.99)
EWMA_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def ewma_variance(resid, decay):
    """``v[i]``: EWMA of ``resid[:i] ** 2``, started at their mean (len + 1)."""
    v = np.empty(resid.shape[0] + 1)
    v[0] = np.mean(resid**2)
    for i, r in enumerate(resid):
        v[i + 1] = decay * v[i] + (1.0 - decay) * r * r
    return v


def ewma_scaled_conformal(fitted, mean):
    """The ablation: normalised split conformal with an EWMA volatility."""
    errors = fitted._horizon_errors(HORIZON)
    one_step = errors[0]

    def quasi_likelihood(decay):  # Gaussian, after a 20-value burn-in
        v = ewma_variance(one_step, decay)[20:-1]
        return np.mean(np.log(v) + one_step[20:] ** 2 / v)

    local = ewma_variance(one_step, min(EWMA_DECAYS, key=quasi_likelihood))
    overall = np.mean(one_step**2)
    level90 = QUANTILES.index(0.05), QUANTILES.index(0.95)
    q = np.empty((HORIZON, len(QUANTILES)))
    for step, err in enumerate(errors[:HORIZON]):
        ranks = np.asarray(_order_statistics(err.shape[0], QUANTILES)) - 1
        best = np.inf
        for w in EWMA_WEIGHTS:
            scale = np.sqrt(w * local[: err.shape[0]] + (1.0 - w) * overall)
            z = np.sort(err / scale)[ranks]
            lo, hi = z[level90[0]] * scale, z[level90[1]] * scale
            miss = np.maximum(lo - err, 0.0) + np.maximum(err - hi, 0.0)
            in_sample = np.mean(hi - lo + 20.0 * miss)  # 90 % Winkler
            if in_sample < best:
                best = in_sample
                q[step] = mean[step] + z * np.sqrt(w * local[-1] + (1.0 - w) * overall)
    return q


def sieve_resid_paths(fitted, y, seed):
    """The ablation: residual-paths driven by the AR-sieve residuals."""
    return recursive_forecast(
        fitted._forest,
        y[::-1][:N_LAGS],
        HORIZON,
        QUANTILES,
        method="residual-paths",
        resid=fitted.ar_resid_,
        n_paths=1000,
        random_state=seed,
    ).quantiles


def skforecast_intervals(y, seed):
    import pandas as pd
    from skforecast.recursive import ForecasterRecursive

    out = {}
    series = pd.Series(y, name="y")
    for name, bootstrap in (("ARSB", "ar-sieve"), ("moving", "moving")):
        est = forest(bootstrap, seed).set_params(oob_score=False)
        forecaster = ForecasterRecursive(estimator=est, lags=N_LAGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            forecaster.fit(series, store_in_sample_residuals=True, random_state=seed)
            q = forecaster.predict_quantiles(
                steps=HORIZON,
                quantiles=list(QUANTILES),
                n_boot=500,
                use_in_sample_residuals=True,
                random_state=seed,
            )
        out[f"skforecast {name}"] = q.to_numpy()
    return out


def linear_intervals(y, dgp):
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order
    from statsmodels.tsa.arima.model import ARIMA

    out = {}
    n = y.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lags = ar_select_order(y, maxlag=N_LAGS, ic="aic").ar_lags or [1]
        res = AutoReg(y, lags=max(lags)).fit()
        pred = res.get_prediction(start=n, end=n + HORIZON - 1)
        out["AutoReg"] = _gaussian_columns(pred)
        if dgp == "arma11":
            fc = ARIMA(y, order=(1, 0, 1)).fit().get_forecast(HORIZON)
            out["ARIMA(1,0,1)"] = _gaussian_columns(fc)
    return out


def _gaussian_columns(pred):
    cis = [np.asarray(pred.conf_int(alpha=1 - level)) for level in LEVELS]
    return np.column_stack([ci[:, 0] for ci in cis[::-1]] + [ci[:, 1] for ci in cis])


def score(q, future):
    """Per level: covered (horizon,) and Winkler score (horizon,)."""
    cover, wink = [], []
    for k, level in enumerate(LEVELS):
        lo, hi = q[:, 2 - k], q[:, 3 + k]
        a = 1 - level
        cover.append((future >= lo) & (future <= hi))
        miss = np.maximum(lo - future, 0) + np.maximum(future - hi, 0)
        wink.append(hi - lo + 2 / a * miss)
    return np.array(cover, dtype=float), np.array(wink)


def run_cell(dgp, n, n_series):
    simulate = DGPS[dgp][1]
    cover, wink = {}, {}
    for seed in range(n_series):
        y_all = simulate(n + HORIZON, seed)
        y, future = y_all[:n], y_all[n:]
        intervals = {
            **forest_intervals(y, seed),
            **skforecast_intervals(y, seed),
            **linear_intervals(y, dgp),
            ORACLE: oracle_intervals(dgp, n, seed),
        }
        for name, q in intervals.items():
            c, w = score(q, future)
            cover.setdefault(name, []).append(c)
            wink.setdefault(name, []).append(w)
    return {name: summarise(cover[name], wink[name]) for name in cover}


def summarise(cover, wink):
    """Coverage and Winkler means of one interval over the series of a cell."""
    c = np.array(cover)  # (series, level, horizon)
    w = np.array(wink)
    n_series = c.shape[0]
    return {
        "coverage": c.mean(axis=(0, 2)),
        "coverage_se": c.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(n_series),
        "coverage_by_horizon": c.mean(axis=0),
        "winkler": w.mean(axis=(0, 2)),
        "winkler_se": w.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(n_series),
        "winkler_by_horizon": w.mean(axis=0),
        # Per series, for the paired comparisons of the summary: two
        # intervals scored on the same series share most of their noise.
        "winkler90_by_series": np.round(w[:, 1].mean(axis=1), 5),
    }


def added_row(dgp, n, n_series, intervals):
    """One interval's row of a cell, for seeds 0..n_series - 1 (the --add-*
    options): ``intervals(dgp, n, seed, y)`` gives its quantiles."""
    cover, wink = [], []
    for seed in range(n_series):
        y_all = DGPS[dgp][1](n + HORIZON, seed)
        c, w = score(intervals(dgp, n, seed, y_all[:n]), y_all[n:])
        cover.append(c)
        wink.append(w)
    return summarise(cover, wink)


def scaled_intervals(dgp, n, seed, y):
    """The EWMA-scaled ablation around the series' own AR-sieve forest."""
    fitted = forest("ar-sieve", seed).fit(*make_lag_matrix(y, N_LAGS))
    return ewma_scaled_conformal(fitted, fitted.forecast(y, HORIZON).mean)


# ------------------------------------------------------------------- report
def render_markdown(results):
    lines = [
        "# Prediction intervals: coverage and interval score",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{results['n_series']} replicate series per DGP and n; horizons "
        f"1-{HORIZON}; {N_LAGS} lags, {N_TREES} trees. Coverage in % of the "
        f"{results['n_series']} x {HORIZON} (series, horizon) pairs (± one "
        "standard error over series); Winkler interval score (lower is better), "
        "averaged over series and horizons. "
        f"Run took {results['seconds']:.0f} s on {results['machine']}.",
        "",
    ]
    for key, rows in (("oracle", "oracle"), ("scaled", "EWMA-scaled")):
        if f"{key}_command" in results:
            lines += [
                f"The {rows} rows were added by `{results[f'{key}_command']}` "
                f"({results[f'{key}_seconds']:.0f} s) for the same seeds.",
                "",
            ]
    for dgp, added in results.get("added_dgps", {}).items():
        lines += [
            f"The {results['dgps'][dgp]} cells were added by `{added['command']}` "
            f"({added['seconds']:.0f} s) for the same seeds.",
            "",
        ]
    levels = [f"{round(100 * lv)} %" for lv in results["levels"]]
    for dgp, label in results["dgps"].items():
        for n in results["sizes"]:
            cell = results["cells"][f"{dgp}/{n}"]
            lines += [f"## {label}, n = {n}", ""]
            header = ["interval"]
            header += [f"cover {lv}" for lv in levels]
            header += [f"Winkler {lv}" for lv in levels]
            rows = []
            for name, r in cell.items():
                row = [name]
                row += [
                    f"{100 * c:.1f} ± {100 * se:.1f}"
                    for c, se in zip(r["coverage"], r["coverage_se"])
                ]
                row += [f"{w:.3f}" for w in r["winkler"]]
                rows.append(row)
            lines += markdown_table(header, rows) + [""]
    lines += [
        f"## Summary: the default ({DEFAULT}) against the rest",
        "",
        "The last two columns compare 90 % Winkler scores on the same series: "
        "the mean difference to the linear model, in % of its score, ± its "
        "standard error over the series; * marks a difference beyond two "
        "standard errors. The best forest interval is the best of the "
        "interval_methods the forests offer (not the ablations), picked after "
        "the fact: its difference is optimistic.",
        "",
    ]
    lines += summary_lines(results)
    return "\n".join(lines) + "\n"


def summary_lines(results):
    """Worst coverage gap, and the Winkler ratio to the best other interval."""
    header = [
        "DGP",
        "n",
        "largest coverage gap to nominal (pts)",
        "Winkler / linear model (90 %)",
        "best Winkler (90 %)",
        "headroom: default / oracle, linear / oracle (90 %)",
        "horizon 1: Winkler / linear model, best (90 %)",
        "default - linear, 90 % (paired, ± SE)",
        "best forest interval - linear (paired, ± SE)",
    ]
    rows = []
    default = DEFAULT
    for dgp, label in results["dgps"].items():
        for n in results["sizes"]:
            cell = results["cells"][f"{dgp}/{n}"]
            ours = cell[default]
            gap = max(abs(c - lv) for c, lv in zip(ours["coverage"], results["levels"]))
            linear = "ARIMA(1,0,1)" if "ARIMA(1,0,1)" in cell else "AutoReg"
            ratio = ours["winkler"][1] / cell[linear]["winkler"][1]
            row = [label, n, f"{100 * gap:.1f}", f"{ratio:.3f} ({linear})"]
            row.append(best_method(cell))
            if ORACLE in cell:
                limit = cell[ORACLE]["winkler"][1]
                row.append(
                    f"{ours['winkler'][1] / limit:.3f} / "
                    f"{cell[linear]['winkler'][1] / limit:.3f}"
                )
            else:
                row.append("not run")
            if "winkler_by_horizon" in ours:
                first = cell[linear]["winkler_by_horizon"][1][0]
                row.append(
                    f"{ours['winkler_by_horizon'][1][0] / first:.3f}, "
                    f"{best_method(cell, horizon=0)}"
                )
            else:
                row.append("not run")
            row.append(paired_difference(ours, cell[linear]))
            forest = best_method(cell, among=FOREST_INTERVALS)
            row.append(f"{paired_difference(cell[forest], cell[linear])}, {forest}")
            rows.append(row)
    return markdown_table(header, rows)


# The intervals a user can ask the package's forests for (its
# interval_methods; not the ablations, skforecast's, the linear models or
# the oracle). The best of them is picked after the fact, so its
# difference to the linear model is optimistic.
FOREST_INTERVALS = (
    DEFAULT,
    "ARSB residual-paths",
    "ARSB tree-paths",
    "moving residual-paths",
    "moving tree-paths",
)


def paired_difference(ours, theirs):
    """Mean 90 % Winkler difference over the same series, in % of ``theirs``,
    with its standard error; ``*`` marks a difference beyond 2 SE."""
    if "winkler90_by_series" not in ours or "winkler90_by_series" not in theirs:
        return "not run"
    diff = np.asarray(ours["winkler90_by_series"]) - theirs["winkler90_by_series"]
    scale = 100 / np.mean(theirs["winkler90_by_series"])
    mean = scale * diff.mean()
    se = scale * diff.std(ddof=1) / np.sqrt(diff.size)
    return f"{mean:+.1f} % ± {se:.1f}{' *' if abs(mean) > 2 * se else ''}"


def best_method(cell, horizon=None, among=None):
    """The interval with the lowest 90 % Winkler score, the oracle aside:
    over all horizons, or at one (0-based); only those in ``among`` if given."""
    methods = [
        name for name in cell if name != ORACLE and (among is None or name in among)
    ]
    if horizon is None:
        return min(methods, key=lambda name: cell[name]["winkler"][1])
    return min(methods, key=lambda name: cell[name]["winkler_by_horizon"][1][horizon])


DOCS_TABLE = Path(__file__).resolve().parent.parent / "docs" / "intervals_table.inc"
DOCS_COLUMNS = (
    DEFAULT,
    "ARSB residual-paths",
    "moving residual-paths",
    "ARSB tree-paths",
    "skforecast ARSB",
)


def docs_table(results):
    """The csv-table that the user guide and docs/benchmarks.rst include."""
    header = ["process", "n"]
    header += [
        f"{name} (default)" if name == DEFAULT else name for name in DOCS_COLUMNS
    ]
    header += ["linear"] + [f"W90 {name}" for name in DOCS_COLUMNS]
    header += ["W90 linear", "W90 oracle", "best W90"]
    lines = [
        ".. csv-table:: Coverage (%) of the 80 / 90 / 95 % intervals over horizons "
        f"1-{HORIZON} ({results['n_series']} series per row), and the Winkler score "
        "of the 90 % interval (W90, lower is better; the oracle's, from the true "
        "conditional distribution, is the limit). Written by "
        "benchmarks/bench_intervals.py.",
        "   :header: " + ", ".join(f'"{h}"' for h in header),
        "   :widths: auto",
        "",
    ]
    for dgp, label in results["dgps"].items():
        for n in results["sizes"]:
            cell = results["cells"][f"{dgp}/{n}"]
            linear = "ARIMA(1,0,1)" if "ARIMA(1,0,1)" in cell else "AutoReg"
            names = [*DOCS_COLUMNS, linear]
            row = [label, str(n)]
            row += [
                " / ".join(f"{100 * c:.1f}" for c in cell[m]["coverage"]) for m in names
            ]
            row[-1] += f" ({linear})"
            row += [f"{cell[m]['winkler'][1]:.3f}" for m in names]
            row.append(f"{cell[ORACLE]['winkler'][1]:.3f}" if ORACLE in cell else "")
            row.append(best_method(cell))
            lines.append("   " + ", ".join(f'"{v}"' for v in row))
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    dgps = list(results["dgps"])
    fig, axes = plt.subplots(
        len(sizes),
        len(dgps),
        figsize=(3.2 * len(dgps), 2.8 * len(sizes)),
        squeeze=False,
        sharey=True,
    )
    steps = np.arange(1, HORIZON + 1)
    for i, n in enumerate(sizes):
        for j, dgp in enumerate(dgps):
            ax = axes[i, j]
            for name, r in results["cells"][f"{dgp}/{n}"].items():
                style = "-" if name == DEFAULT or "residual" in name else ":"
                ax.plot(
                    steps,
                    100 * np.array(r["coverage_by_horizon"][1]),
                    style,
                    label=name,
                    lw=1.2,
                )
            ax.axhline(90, color="black", lw=0.8)
            ax.axhspan(87.5, 92.5, color="0.9", zorder=0)
            ax.set_title(f"{results['dgps'][dgp]}, n = {n}", fontsize=8)
            ax.set_xlabel("horizon")
    for ax in axes[:, 0]:
        ax.set_ylabel("coverage of the 90 % interval (%)")
    axes[0, -1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = make_parser(
        __doc__, "10 series per cell (unless --seeds), n = 200 only", n_seeds=200
    )
    parser.add_argument(
        "--add-oracle",
        action="store_true",
        help="only compute the oracle rows into the intervals.json in --out, "
        "for its seeds and sizes, and render the report again",
    )
    parser.add_argument(
        "--add-scaled",
        action="store_true",
        help="only compute the EWMA-scaled ablation rows into the intervals.json "
        "in --out, for its seeds and sizes, and render the report again",
    )
    parser.add_argument(
        "--add-dgp",
        choices=list(DGPS),
        help="only run the cells of this DGP (every interval) into the "
        "intervals.json in --out, for its seeds and sizes, and render the "
        "report again",
    )
    args = parse_args(parser, argv)
    if args.add_dgp:
        return add_dgp(args, args.add_dgp)
    if args.add_oracle:
        return add_rows(
            args, ORACLE, "oracle", lambda d, n, seed, y: oracle_intervals(d, n, seed)
        )
    if args.add_scaled:
        return add_rows(args, SCALED, "scaled", scaled_intervals)
    # --quick: 10 series per cell, or --seeds where given (any number).
    n_series = args.seeds if args.seeds_given or not args.quick else 10
    sizes = [200] if args.quick else [200, 1000]
    env = environment()
    start = time.perf_counter()
    cells = {}
    for dgp in DGPS:
        for n in sizes:
            t0 = time.perf_counter()
            cells[f"{dgp}/{n}"] = run_cell(dgp, n, n_series)
            print(f"{dgp} n={n}: {time.perf_counter() - t0:.0f} s", flush=True)
    payload = {
        "command": args.command,
        "environment": env,
        "machine": f"{env['processor']}, {env['cpu_count']} cores",
        "seconds": time.perf_counter() - start,
        "n_series": n_series,
        "sizes": sizes,
        "levels": LEVELS,
        "horizon": HORIZON,
        "dgps": {dgp: label for dgp, (label, _) in DGPS.items()},
        "cells": cells,
    }
    report(args, payload)


def saved_results(args):
    """The intervals.json in --out, which the --add-* options extend."""
    path = Path(args.out) / f"{result_stem('intervals', args.quick)}.json"
    return json.loads(path.read_text())


def add_dgp(args, dgp):
    """Add (or replace) the cells of ``dgp``, every interval, for the seeds
    and sizes of the intervals.json in --out."""
    payload = saved_results(args)
    start = time.perf_counter()
    # Rows in the order of the cells already there (the --add-* rows last).
    order = list(next(iter(payload["cells"].values())))
    for n in payload["sizes"]:
        cell = run_cell(dgp, n, payload["n_series"])
        rank = {
            name: order.index(name) if name in order else len(order) for name in cell
        }
        payload["cells"][f"{dgp}/{n}"] = dict(
            sorted(cell.items(), key=lambda r: rank[r[0]])
        )
    # The declared order of DGPS, whatever order they were run in.
    payload["dgps"] = {
        key: label
        for key, (label, _) in DGPS.items()
        if key == dgp or key in payload["dgps"]
    }
    payload.setdefault("added_dgps", {})[dgp] = {
        "command": args.command,
        "seconds": time.perf_counter() - start,
    }
    report(args, payload)


def add_rows(args, name, key, intervals):
    """Add (or replace) the rows of interval ``name`` (see :func:`added_row`)
    in the intervals.json in --out; ``key`` names its command in the report."""
    payload = saved_results(args)
    start = time.perf_counter()
    for dgp in payload["dgps"]:
        for n in payload["sizes"]:
            cell = payload["cells"][f"{dgp}/{n}"]
            cell[name] = added_row(dgp, n, payload["n_series"], intervals)
            if ORACLE in cell:  # the limit stays the last row
                cell[ORACLE] = cell.pop(ORACLE)
    payload[f"{key}_command"] = args.command
    payload[f"{key}_seconds"] = time.perf_counter() - start
    report(args, payload)


def report(args, payload):
    results = write_results(args, "intervals", payload, render_markdown, plot)
    if not args.quick:
        DOCS_TABLE.write_text(docs_table(results))
    print(render_markdown(results))


if __name__ == "__main__":
    main()
