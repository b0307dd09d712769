"""Every bootstrap of ARSieveForestRegressor on real series, with refits.

1. Backtests on series that statsmodels ships (no download): yearly
   sunspots, the Nile's yearly flow, Mauna Loa CO2 (weekly, made monthly and
   differenced), Pacific sea-surface temperature (El Niño, monthly), and US
   quarterly inflation and unemployment (``macrodata``). The last
   ``n_test`` values are forecast in folds of 10: at each fold's start every
   model is refitted on all earlier values, then predicts each value of the
   fold one step ahead from the true lags (**one-step**) and the whole fold
   recursively from its start (**10-step**, the mean squared error over
   horizons 1..10). Models: the six bootstraps, the AR sieve fitted by OLS,
   scikit-learn's ``RandomForestRegressor``, LightGBM's random-forest mode
   and statsmodels ``AutoReg`` with the same lags and with its AIC order.
2. Why ``"ar-sieve"`` loses on sunspots: one fit on all but the last 50
   years (9 lags, as the backtest), then the experiments that tell the
   hypotheses apart: the AR order, the simulated series' level, spread and
   sign against the real series, the forest's shrinkage towards the mean,
   where the errors fall, a linear twin of the series, a square-root
   transform and the OLS sieve.

Writes ``real_series.json``, then ``real_series.md`` and ``real_series.png``
rendered from it, to ``--out`` (default ``benchmarks/results``).

Usage::

    python benchmarks/bench_real_series.py --quick     # 100 trees, 1 seed
    python benchmarks/bench_real_series.py --seeds 3   # 500 trees (the committed run)
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time
import warnings

import numpy as np
from _common import (
    environment,
    make_parser,
    markdown_table,
    parse_args,
    result_stem,
    write_results,
)
from scipy.stats import rankdata

from skasync.ensemble._ar_sieve_forest import BOOTSTRAPS

FOLD = 10  # refit every FOLD values; also the recursive horizon
FORESTS = [
    *BOOTSTRAPS,
    "ar-sieve (order <= lags)",
    "ar-sieve (ols)",
    "sklearn RF",
    "LightGBM rf",
]
LINEAR = ["AutoReg(p)", "AutoReg(AIC)"]
MODELS = FORESTS + LINEAR


# ----------------------------------------------------------------------- data
def _statsmodels(name):
    import statsmodels.api as sm

    return getattr(sm.datasets, name).load_pandas().data


def load_co2_monthly():
    """Mauna Loa CO2: weekly values with gaps -> monthly means -> differences.

    59 of the 2284 weeks are NaN. A month's value is the mean of its observed
    weeks; months with none would be filled by linear interpolation (none
    are, once the weeks are averaged). The level trends upwards beyond any
    training value, which no tree can forecast, so the models see the
    month-on-month differences.
    """
    weekly = _statsmodels("co2")["co2"]
    monthly = weekly.resample("MS").mean().interpolate("linear")
    return np.diff(monthly.to_numpy())


def load_elnino():
    """Monthly sea-surface temperature (Niño region), 1950-2010, in time order."""
    frame = _statsmodels("elnino")
    return frame.drop(columns="YEAR").to_numpy().ravel()


# name -> (loader, n_lags, n_test, description)
SERIES = {
    "sunspots": (
        lambda: _statsmodels("sunspots")["SUNACTIVITY"].to_numpy(),
        9,
        50,
        "yearly sunspot numbers 1700-2008 (309)",
    ),
    "nile": (
        lambda: _statsmodels("nile")["volume"].to_numpy(),
        5,
        20,
        "yearly flow of the Nile at Aswan 1871-1970 (100)",
    ),
    "co2 (monthly, diff)": (
        load_co2_monthly,
        12,
        60,
        "Mauna Loa CO2, weekly 1958-2001 -> monthly means, differenced (525)",
    ),
    "elnino": (
        load_elnino,
        12,
        60,
        "monthly sea-surface temperature 1950-2010 (732)",
    ),
    "macro infl": (
        lambda: _statsmodels("macrodata")["infl"].to_numpy(),
        4,
        40,
        "US quarterly inflation 1959-2009 (203)",
    ),
    "macro unemp": (
        lambda: _statsmodels("macrodata")["unemp"].to_numpy(),
        4,
        40,
        "US quarterly unemployment rate 1959-2009 (203)",
    ),
}


# --------------------------------------------------------------------- models
def make_forest(model, n_lags, n_trees, seed):
    """A fresh lag-matrix regressor for ``model`` (one of FORESTS)."""
    if model == "sklearn RF":
        from sklearn.ensemble import RandomForestRegressor

        # skasync's defaults: mtry = floor(sqrt(p)), nodes of <= 5 not split.
        return RandomForestRegressor(
            n_estimators=n_trees,
            max_features=max(1, int(np.sqrt(n_lags))),
            min_samples_split=6,
            random_state=seed,
            n_jobs=1,
        )
    if model == "LightGBM rf":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(
            boosting_type="rf",
            n_estimators=n_trees,
            num_leaves=255,
            min_child_samples=3,
            bagging_fraction=0.632,
            bagging_freq=1,
            feature_fraction_bynode=max(1, int(np.sqrt(n_lags))) / n_lags,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
        )
    from skasync import ARSieveForestRegressor

    bootstrap, method, order_max = model, "yule-walker", None
    if model == "ar-sieve (ols)":
        bootstrap, method = "ar-sieve", "ols"
    elif model == "ar-sieve (order <= lags)":
        # The AIC order searched up to the lag count: no truncated sieve.
        bootstrap, order_max = "ar-sieve", n_lags
    return ARSieveForestRegressor(
        n_estimators=n_trees,
        bootstrap=bootstrap,
        ar_method=method,
        ar_order_max=order_max,
        random_state=seed,
        n_jobs=1,
    )


def _recursive(regressor, history, n_lags, steps):
    window = list(history[-n_lags:])
    out = np.empty(steps)
    for k in range(steps):
        row = np.asarray(window[::-1][:n_lags])[None, :]
        out[k] = regressor.predict(row)[0]
        window.append(out[k])
    return out


def _autoreg(train, lags):
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    if lags == "aic":
        maxlag = int(min(len(train) // 4, 10 * np.log10(len(train))))
        sel = ar_select_order(train, maxlag=maxlag, ic="aic", trend="c")
        lags = max(sel.ar_lags) if sel.ar_lags else 0
    return AutoReg(train, lags=lags, trend="c").fit(), lags


def backtest(y, n_lags, n_test, model, n_trees, seed):
    """One-step and recursive predictions of the last ``n_test`` values."""
    from skasync.preprocessing import make_lag_matrix

    X, target = make_lag_matrix(y, n_lags)
    one, multi = [], []
    for start in range(len(y) - n_test, len(y), FOLD):
        train = y[:start]
        stop = min(start + FOLD, len(y))
        rows = slice(start - n_lags, stop - n_lags)  # rows whose target is y[t]
        if model in LINEAR:
            fit, p = _autoreg(train, n_lags if model == "AutoReg(p)" else "aic")
            params = np.asarray(fit.params)
            # y_t = c + sum_j phi_j y_{t-j}, from the true lags
            lagged = np.column_stack(
                [y[t - p : t][::-1] for t in range(start, stop)]
            ).T if p else np.zeros((stop - start, 0))
            one.append(params[0] + lagged @ params[1:])
            multi.append(np.asarray(fit.predict(start=start, end=stop - 1)))
        else:
            reg = make_forest(model, n_lags, n_trees, seed)
            reg.fit(X[: start - n_lags], target[: start - n_lags])
            one.append(reg.predict(X[rows]))
            multi.append(_recursive(reg, train, n_lags, stop - start))
    truth = y[len(y) - n_test :]
    return {
        "one_step": float(np.mean((np.concatenate(one) - truth) ** 2)),
        "ten_step": float(np.mean((np.concatenate(multi) - truth) ** 2)),
    }


def run_backtests(seeds, n_trees):
    rows = []
    for name, (load, n_lags, n_test, _) in SERIES.items():
        y = np.asarray(load(), dtype=np.float64)
        for model in MODELS:
            for seed in seeds if model in FORESTS else seeds[:1]:
                t0 = time.perf_counter()
                res = backtest(y, n_lags, n_test, model, n_trees, seed)
                rows.append(
                    {
                        "series": name,
                        "model": model,
                        "seed": seed,
                        "seconds": time.perf_counter() - t0,
                        **res,
                    }
                )
        print(f"backtests {name} done", flush=True)
    return rows


# ------------------------------------------------------------------ diagnosis
def _marginal(values):
    from scipy import stats

    values = np.asarray(values)
    return {
        "mean": float(values.mean()),
        "sd": float(values.std()),
        "skew": float(stats.skew(values.ravel())),
        "max": float(values.max(axis=-1).mean()),
        "q99": float(np.quantile(values, 0.99)),
        "negative": float((values < 0).mean()),
    }


def diagnose_sunspots(n_trees, seed):
    """The experiments behind the sunspots finding (one split, one seed)."""
    from sklearn.linear_model import LinearRegression

    from skasync import ARSieveForestRegressor
    from skasync.bootstrap import fit_ar_sieve, simulate_ar_sieve
    from skasync.preprocessing import make_lag_matrix

    load, n_lags, n_test, _ = SERIES["sunspots"]
    y = np.asarray(load(), dtype=np.float64)

    def split(series):
        X, t = make_lag_matrix(series, n_lags)
        return X[:-n_test], t[:-n_test], X[-n_test:], t[-n_test:]

    def forest(**kw):
        return ARSieveForestRegressor(n_estimators=n_trees, random_state=seed, **kw)

    def mse(pred, truth):
        return float(np.mean((pred - truth) ** 2))

    Xtr, ttr, Xte, tte = split(y)
    train = y[:-n_test]
    out = {}
    yw = fit_ar_sieve(train)
    ols = fit_ar_sieve(train, method="ols")
    out["aic_order"] = yw.order
    out["sigma2_yw"] = yw.sigma2
    out["resid_var_yw"] = float(yw.resid.var())
    linear = yw.mean + (Xte - yw.mean) @ np.r_[yw.coef, np.zeros(n_lags)][:n_lags]
    out["mse_linear_yw"] = mse(linear, tte)

    fits = {}
    for label, kw in [
        ("ar-sieve", {}),
        ("iid", {"bootstrap": "iid"}),
        ("moving", {"bootstrap": "moving"}),
        ("ar-sieve, order 2", {"ar_order": 2}),
        ("ar-sieve, order 3", {"ar_order": 3}),
        ("ar-sieve, order 9", {"ar_order": 9}),
        ("ar-sieve, burn_in 100", {"burn_in": 100}),
        ("ar-sieve, max_features None", {"max_features": None}),
        ("ar-sieve, ar_method ols", {"ar_method": "ols"}),
    ]:
        fits[label] = forest(**kw).fit(Xtr, ttr)
    out["mse"] = {k: mse(f.predict(Xte), tte) for k, f in fits.items()}

    # A square root makes the cycles more symmetric; predictions are squared back.
    Xs, ts, Xse, _ = split(np.sqrt(y))
    for label, kw in [("ar-sieve", {}), ("iid", {"bootstrap": "iid"})]:
        pred = forest(**kw).fit(Xs, ts).predict(Xse) ** 2
        out["mse"][f"{label}, sqrt"] = mse(pred, tte)

    # The series the ar-sieve trees train on, against the real one.
    n_rows = ttr.shape[0]
    out["marginal"] = {"real (training)": _marginal(train)}
    for label, fit in (("YW sieve", yw), ("OLS sieve", ols)):
        sims = simulate_ar_sieve(
            fit, n_rows, n_start_values=n_lags, random_state=seed, n_series=200
        )[:, n_lags:]
        out["marginal"][f"{label} (simulated)"] = _marginal(sims)

    # Shrinkage: forest prediction regressed on the linear AR predictor.
    out["slope_on_linear"] = {}
    for label in ("ar-sieve", "iid", "moving"):
        pred = fits[label].predict(Xte)
        lr = LinearRegression().fit(linear[:, None], pred)
        out["slope_on_linear"][label] = float(lr.coef_[0])
    out["max_prediction"] = {
        label: float(fits[label].predict(Xte).max()) for label in ("ar-sieve", "iid")
    }
    out["max_prediction"]["linear"] = float(linear.max())
    out["max_target"] = float(tte.max())

    # Where the errors fall: test rows whose lag 1 is above 100.
    high = Xte[:, 0] > 100
    out["high_rows"] = int(high.sum())
    out["high_share"] = {}
    for label, pred in [
        ("ar-sieve", fits["ar-sieve"].predict(Xte)),
        ("iid", fits["iid"].predict(Xte)),
        ("linear", linear),
    ]:
        err = (pred - tte) ** 2
        out["high_share"][label] = {
            "mse_high": float(err[high].mean()),
            "mse_rest": float(err[~high].mean()),
            "share": float(err[high].sum() / err.sum()),
        }

    # Linear twins: series simulated from the YW sieve itself (long burn-in),
    # same length and split. No defect: the ar-sieve forest must do as well
    # as the block/iid ones there.
    twins = {k: [] for k in ("ar-sieve", "iid", "moving", "linear AR(9)")}
    for twin_seed in range(5):
        z = simulate_ar_sieve(
            yw, len(y) + 200, n_start_values=n_lags, random_state=twin_seed
        )[n_lags + 200 :]
        Ztr, ztr, Zte, zte = split(z)
        for label in ("ar-sieve", "iid", "moving"):
            kw = {} if label == "ar-sieve" else {"bootstrap": label}
            twins[label].append(mse(forest(**kw).fit(Ztr, ztr).predict(Zte), zte))
        zfit = fit_ar_sieve(z[:-n_test], order=n_lags)
        twins["linear AR(9)"].append(
            mse(zfit.mean + (Zte - zfit.mean) @ zfit.coef, zte)
        )
    out["twin_mse"] = {k: float(np.mean(v)) for k, v in twins.items()}
    return out


def check_sieves():
    """Per series: the AIC order, and whether the truncated sieve is stationary.

    With more AIC lags than lag columns the forest truncates the sieve to the
    lag count; the truncated polynomial can have a root outside the unit
    circle, and then the simulated series diverge.
    """
    import dataclasses

    from skasync.bootstrap import fit_ar_sieve, simulate_ar_sieve

    out = {}
    for name, (load, n_lags, n_test, _) in SERIES.items():
        train = np.asarray(load(), dtype=np.float64)[:-n_test]
        for method in ("yule-walker", "ols"):
            fit = fit_ar_sieve(train, method=method)
            coef = np.zeros(n_lags)
            p = min(n_lags, fit.order)
            coef[:p] = fit.coef[:p]
            sims = simulate_ar_sieve(
                dataclasses.replace(fit, coef=coef),
                train.shape[0] - n_lags,
                n_start_values=n_lags,
                random_state=0,
                n_series=50,
            )[:, n_lags:]
            out[f"{name}|{method}"] = {
                "order": fit.order,
                "n_lags": n_lags,
                # Largest inverse root of 1 - sum phi_j z^j: >= 1 is explosive.
                "root": float(np.abs(np.roots(np.r_[1.0, -coef])).max()),
                "sd_real": float(train.std()),
                "sd_sim": float(sims.std()),
            }
    return out


# --------------------------------------------------------------------- report
def summarize(rows):
    """Mean over seeds: {(series, model): {"one_step": ..., "ten_step": ...}}."""
    table = {}
    for name in SERIES:
        for model in MODELS:
            sel = [r for r in rows if r["series"] == name and r["model"] == model]
            table[name, model] = {
                key: float(np.mean([r[key] for r in sel]))
                for key in ("one_step", "ten_step", "seconds")
            }
            table[name, model]["sd_one"] = float(np.std([r["one_step"] for r in sel]))
    return table


def _fmt(value):
    return f"{value:.4g}"


def _table(table, key, series_names):
    lines = []
    header = ["series", *MODELS]
    rows = []
    for name in series_names:
        values = [table[name, m][key] for m in MODELS]
        best = min(values)
        rows.append(
            [name]
            + [f"**{_fmt(v)}**" if v == best else _fmt(v) for v in values]
        )
    # Mean rank of each model over the series (1 = best); tied models share
    # the mean of their ranks.
    ranks = np.array(
        [rankdata([table[name, m][key] for m in MODELS]) for name in series_names]
    )
    rows.append(["mean rank", *[f"{r:.1f}" for r in ranks.mean(axis=0)]])
    lines += markdown_table(header, rows)
    return lines


def render(results):
    env, run = results["environment"], results["run"]
    table = summarize(results["backtests"])
    names = list(SERIES)
    lines = []
    w = lines.append
    w("# Every bootstrap on real series (statsmodels data sets)")
    w("")
    w(
        f"Generated by `{results['command']}` on {env['date']} ({env['machine']}, "
        f"{env['cpu_count']} CPUs shared with other jobs, Python {env['python']}); "
        f"total {results['seconds'] / 60:.1f} min. {run['n_trees']} trees, "
        f"seeds {run['seeds']} (forests: mean over seeds)."
    )
    w("")
    w("## Series")
    w("")
    lines += markdown_table(
        ["series", "description", "lags", "test values"],
        [[n, s[3], s[1], s[2]] for n, s in SERIES.items()],
    )
    w("")
    w(
        "CO2: the weekly series has 59 missing weeks; a month is the mean of its "
        "observed weeks (months without one would be interpolated linearly), and "
        "the models see month-on-month differences because no tree can forecast "
        "a level above its training range."
    )
    w("")
    w(
        f"Protocol: the last `test values` are forecast in folds of {FOLD}; at each "
        "fold's start every model is refitted on all earlier values. One-step: "
        "each value of the fold from its true lags. 10-step: the fold forecast "
        "recursively from its start (MSE over horizons 1..10). Forests: "
        "skasync's defaults (mtry floor(sqrt(lags)), nodes of <= 5 rows not "
        "split); sklearn RF with the same mtry and min_samples_split 6; LightGBM "
        "`boosting_type='rf'`, 255 leaves, min_child_samples 3, "
        "bagging_fraction 0.632 every tree, the same mtry fraction per node "
        "(`feature_fraction_bynode`). `ar-sieve (ols)`: `ar_method='ols'`; "
        "`ar-sieve (order <= lags)`: `ar_order_max` = the lag count, so the AIC "
        "order is never truncated. "
        "AutoReg: statsmodels, constant, the same lags or the AIC order. "
        "Bold: the best of the row."
    )
    w("")
    w("## One-step MSE")
    w("")
    lines += _table(table, "one_step", names)
    w("")
    w("## 10-step recursive MSE")
    w("")
    lines += _table(table, "ten_step", names)
    w("")
    if len(run["seeds"]) > 1:
        rel = max(
            table[n, m]["sd_one"] / table[n, m]["one_step"] for n in names for m in FORESTS
        )
        w(f"Largest standard deviation of a forest's one-step MSE over the seeds: {rel:.1%}.")
        w("")
    d = results["diagnosis"]
    w("## Why ar-sieve loses on sunspots")
    w("")
    w(
        f"One fit on the first {309 - 50} years, 9 lags, one-step MSE on the last "
        f"50. AIC order of the Yule-Walker sieve: {d['aic_order']}. Linear "
        f"Yule-Walker AR predictor: MSE {d['mse_linear_yw']:.0f}."
    )
    w("")
    lines += markdown_table(
        ["forest", "one-step MSE"],
        [[k, f"{v:.0f}"] for k, v in d["mse"].items()],
    )
    w("")
    w("The series the trees train on (simulated: 200 series of the training length):")
    w("")
    lines += markdown_table(
        ["series", "mean", "sd", "skew", "max (mean per series)", "99 % quantile",
         "share < 0"],
        [
            [k, f"{v['mean']:.1f}", f"{v['sd']:.1f}", f"{v['skew']:.2f}",
             f"{v['max']:.0f}", f"{v['q99']:.0f}", f"{v['negative']:.3f}"]
            for k, v in d["marginal"].items()
        ],
    )
    w("")
    w(
        f"Yule-Walker innovation variance {d['sigma2_yw']:.0f}, variance of the "
        f"residuals the sieve resamples {d['resid_var_yw']:.0f}."
    )
    w("")
    w(
        "Slope of each forest's test predictions on the linear AR predictor (1 = "
        "no shrinkage): "
        + ", ".join(f"{k} {v:.2f}" for k, v in d["slope_on_linear"].items())
        + ". Largest test prediction: "
        + ", ".join(f"{k} {v:.0f}" for k, v in d["max_prediction"].items())
        + f" (largest target {d['max_target']:.0f})."
    )
    w("")
    w(
        f"Test rows whose lag 1 is above 100: {d['high_rows']} of 50. "
        + "; ".join(
            f"{k}: MSE {v['mse_high']:.0f} there and {v['mse_rest']:.0f} elsewhere, "
            f"{v['share']:.0%} of its squared error"
            for k, v in d["high_share"].items()
        )
        + "."
    )
    w("")
    w(
        "Linear twins (5 series simulated from the sieve itself, same length and "
        "split; mean one-step MSE): "
        + ", ".join(f"{k} {v:.0f}" for k, v in d["twin_mse"].items())
        + "."
    )
    w("")
    w("## The sieve the ar-sieve trees simulate from, per series")
    w("")
    w(
        "AIC order of the sieve fitted on the first training window; when it "
        "exceeds the lag count the forest truncates the coefficients to the lags. "
        "`root`: the largest modulus of the inverse roots of the truncated AR "
        "polynomial (>= 1: explosive); sd of the simulated training-length "
        "series (50 of them) against the real one."
    )
    w("")
    lines += markdown_table(
        ["series", "method", "AIC order", "lags", "root", "sd real", "sd simulated"],
        [
            [*key.split("|"), v["order"], v["n_lags"], f"{v['root']:.3f}",
             f"{v['sd_real']:.3g}", f"{v['sd_sim']:.3g}"]
            for key, v in d["sieves"].items()
        ],
    )
    w("")
    w(f"![relative MSE]({run['figure']})")
    w("")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summarize(results["backtests"])
    names = list(SERIES)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    width = 0.8 / len(MODELS)
    for ax, key, title in (
        (axes[0], "one_step", "one-step"),
        (axes[1], "ten_step", "10-step recursive"),
    ):
        for i, model in enumerate(MODELS):
            rel = [
                table[n, model][key] / table[n, "AutoReg(p)"][key] for n in names
            ]
            ax.bar(
                np.arange(len(names)) + (i - len(MODELS) / 2) * width,
                rel,
                width,
                label=model,
                color=f"C{i % 10}",
                hatch="//" if i >= 10 else None,
            )
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(f"{title} MSE / AutoReg(p)")
    axes[0].set_ylabel("MSE relative to AutoReg with the same lags")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = make_parser(__doc__, "100 trees", n_seeds=3)
    args = parse_args(parser, argv)
    n_trees = 100 if args.quick else 500
    seeds = list(range(args.seeds))
    t_start = time.perf_counter()
    env = environment()
    with warnings.catch_warnings():
        # LightGBM's feature-name notice on NumPy input; statsmodels' frequency
        # notes on plain arrays.
        warnings.simplefilter("ignore", UserWarning)
        backtests = run_backtests(seeds, n_trees)
        diagnosis = diagnose_sunspots(n_trees, seeds[0])
        diagnosis["sieves"] = check_sieves()
    results = {
        "command": args.command,
        "environment": env,
        "seconds": time.perf_counter() - t_start,
        "run": {
            "n_trees": n_trees,
            "seeds": seeds,
            "figure": f"{result_stem('real_series', args.quick)}.png",
        },
        "backtests": backtests,
        "diagnosis": diagnosis,
    }
    results = write_results(args, "real_series", results, render, plot)
    print(render(results))


if __name__ == "__main__":
    main()
