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
is better; it rewards narrow intervals and penalises misses).

DGPs: AR(2) (0.6, -0.3), ARMA(1, 1) (0.5, 0.4), SETAR (0.6 below 0, -0.5
above), AR(1) 0.6 with GARCH(1, 1) innovations (0.1, 0.1, 0.8); unit
innovation variance for all.

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
* ``AutoReg``: statsmodels ``AutoReg`` with the AIC order among 1..5,
  Gaussian intervals; ``ARIMA(1,0,1)``: statsmodels' Gaussian intervals of
  the true model class, on the ARMA DGP only.

The run measures coverage, not time. Writes ``intervals.json``, then
``intervals.md`` and ``intervals.png`` to ``--out`` (default
``benchmarks/results``; ``intervals.quick.*`` with ``--quick``).

Usage::

    python benchmarks/bench_intervals.py --quick
    python benchmarks/bench_intervals.py
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time
import warnings
from pathlib import Path

import numpy as np
from _common import environment, make_parser, markdown_table, parse_args, write_results
from scipy.signal import lfilter

from skasync import ARSieveForestRegressor
from skasync.datasets import make_ar, make_arma, make_garch, make_setar
from skasync.ensemble._forecast import recursive_forecast
from skasync.preprocessing import make_lag_matrix

N_LAGS = 5
HORIZON = 10
N_TREES = 100
LEVELS = (0.8, 0.9, 0.95)
# Sorted, as forecast requires: level k's bounds are columns 2 - k and 3 + k.
QUANTILES = (0.025, 0.05, 0.1, 0.9, 0.95, 0.975)
LINEAR = ("ar2", "arma11")


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
    "setar": ("SETAR 0.6 / -0.5", lambda n, s: make_setar(n, random_state=s)),
    "garch_ar": ("AR(1) 0.6, GARCH(1,1) noise", _garch_ar),
}


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
    return out


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
        }
        for name, q in intervals.items():
            c, w = score(q, future)
            cover.setdefault(name, []).append(c)
            wink.setdefault(name, []).append(w)
    cell = {}
    for name in cover:
        c = np.array(cover[name])  # (series, level, horizon)
        w = np.array(wink[name])
        cell[name] = {
            "coverage": c.mean(axis=(0, 2)),
            "coverage_se": c.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(n_series),
            "coverage_by_horizon": c.mean(axis=0),
            "winkler": w.mean(axis=(0, 2)),
            "winkler_se": w.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(n_series),
        }
    return cell


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
    lines += [f"## Summary: the default ({DEFAULT}) against the rest", ""]
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
            best = min(cell, key=lambda name: cell[name]["winkler"][1])
            rows.append([label, n, f"{100 * gap:.1f}", f"{ratio:.3f} ({linear})", best])
    return markdown_table(header, rows)


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
    header += ["W90 linear", "best W90"]
    lines = [
        ".. csv-table:: Coverage (%) of the 80 / 90 / 95 % intervals over horizons "
        f"1-{HORIZON} ({results['n_series']} series per row), and the Winkler score "
        "of the 90 % interval (W90, lower is better). Written by "
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
            row.append(min(cell, key=lambda m: cell[m]["winkler"][1]))
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
    args = parse_args(parser, argv)
    n_series = max(args.seeds, 10) if args.quick else args.seeds
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
    results = write_results(args, "intervals", payload, render_markdown, plot)
    if not args.quick:
        DOCS_TABLE.write_text(docs_table(results))
    print(render_markdown(results))


if __name__ == "__main__":
    main()
