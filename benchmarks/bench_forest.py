"""Benchmark ARSieveForestRegressor against the R reference (rangerts / rangertsARS).

1. Accuracy on the R reference set (``benchmarks/reference/rangerts``), protocol
   of its README: 5 lags, training rows t = 5..n-T-1, one-step test forecasts from the
   true lags on the last T = 100 points, 500 trees, mtry 2, min.node.size 5, seed =
   replication (``--seeds N``: the first N of the 5; 1 with ``--quick``). All six
   bootstraps and the linear Yule-Walker AR(p) forecast, next
   to R's results.csv, with paired per-replication differences and Monte-Carlo SE.
2. Speed (same run): median of 3 fits, one thread, 395 rows, 500 trees, for
   ``ar-sieve`` and ``moving``, vs R (timing.csv) and vs sklearn's
   ``RandomForestRegressor`` on the same rows.
3. Scaling: ar1_06 of length n = 1 000, 10 000, 100 000 (``--quick`` stops at
   10 000), 5 lags, 500 trees, n_jobs 1 and 2; fit seconds and peak RSS, each
   configuration in its own subprocess.
4. Speed anchor against LightGBM's random-forest mode (``--anchor-only`` runs
   just this and writes ``forest_anchor.*``): the same series and sizes,
   100 trees, one thread; fit seconds (median of 3) and
   one-step test MSE of skasync ``moving``, sklearn and LightGBM
   ``boosting_type="rf"`` at full depth and with 255 leaves, one subprocess
   per n; and the first fit of a fresh process against a warm one.

Writes ``forest.json``, then ``forest.md`` and ``forest.png`` rendered from it,
to ``--out`` (default ``benchmarks/results``; ``forest.quick.*`` with ``--quick``).

Usage::

    python benchmarks/bench_forest.py --quick
    flock /tmp/skasync-bench.lock python benchmarks/bench_forest.py
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from _common import (
    HERE,
    environment,
    load_average,
    make_parser,
    markdown_table,
    parse_args,
    result_stem,
    write_results,
)

from skasync.ensemble._ar_sieve_forest import BOOTSTRAPS

REFERENCE = HERE / "reference" / "rangerts"
METHODS = list(BOOTSTRAPS)
R_NAME = {"ar-sieve": "arsb", "ar_yw": "ar_yw"}
DGPS = ["ar1_06", "arma11"]
SEEDS = [1, 2, 3, 4, 5]  # the replications of the reference set
N_TREES = 500
# R's scaling table (reference README): n -> (moving s, moving MB, arsb s, arsb MB)
R_SCALING = {
    1_000: (0.32, 236, 0.59, 295),
    10_000: (8.45, 503, 12.96, 1147),
    100_000: (229.0, 3350, 313.0, 9800),
}


def _forest(method, seed, n_jobs=1):
    from skasync import ARSieveForestRegressor

    return ARSieveForestRegressor(
        n_estimators=N_TREES,
        bootstrap=method,
        block_size=10,
        by_end=True,
        max_features=2,
        min_node_size=5,
        random_state=seed,
        n_jobs=n_jobs,
    )


def _sklearn_forest(seed, n_jobs=1):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(
        n_estimators=N_TREES,
        max_features=2,
        min_samples_split=6,
        random_state=seed,
        n_jobs=n_jobs,
    )


def _split(y, T=100, n_lags=5):
    from skasync.preprocessing import make_lag_matrix

    X, target = make_lag_matrix(y, n_lags)
    n_train = len(y) - T - n_lags
    return X[:n_train], target[:n_train], X[n_train:], target[n_train:]


def _load(dgp, seed, n=500):
    base = REFERENCE / "series" / f"{dgp}_n{n}_s{seed}"
    y = np.loadtxt(f"{base}.csv", delimiter=",", skiprows=1)
    mu = np.loadtxt(f"{base}_mu.csv", delimiter=",", skiprows=1)
    return y, mu


def _warm_up():
    # Load the numba kernels (JIT cache) before anything is timed.
    from skasync import ARSieveForestRegressor
    from skasync.datasets import make_ar
    from skasync.preprocessing import make_lag_matrix

    X, y = make_lag_matrix(make_ar(120, random_state=0), 5)
    for b in ("ar-sieve", "moving"):
        ARSieveForestRegressor(n_estimators=4, bootstrap=b, random_state=0).fit(X, y)


# --------------------------------------------------------------------- accuracy
def run_accuracy(seeds):
    from skasync.bootstrap import fit_ar_sieve

    with open(REFERENCE / "results.csv") as fh:
        r_rows = list(csv.DictReader(fh))
    r = {(row["dgp"], int(row["seed"]), row["method"]): row for row in r_rows}
    out = []  # dicts: dgp, seed, method, mse, r_mse, oracle, fit_s, ar_order
    for dgp in DGPS:
        for seed in seeds:
            y, mu = _load(dgp, seed)
            Xtr, ytr, Xte, yte = _split(y)
            oracle = float(np.mean((y[-100:] - mu[-100:]) ** 2))
            for method in METHODS:
                t0 = time.perf_counter()
                forest = _forest(method, seed).fit(Xtr, ytr)
                fit_s = time.perf_counter() - t0
                mse = float(np.mean((forest.predict(Xte) - yte) ** 2))
                rr = r[(dgp, seed, R_NAME.get(method, method))]
                out.append(
                    {
                        "dgp": dgp,
                        "seed": seed,
                        "method": method,
                        "mse": mse,
                        "r_mse": float(rr["test_mse"]),
                        "oracle": oracle,
                        "fit_s": fit_s,
                        "ar_order": forest.ar_order_,
                        "r_ar_order": int(rr["ar_order"]),
                    }
                )
            # Linear Yule-Walker AR(p) with the full AIC order, fitted on the
            # first n - T values (R ar()).
            fit = fit_ar_sieve(y[: len(y) - 100])
            p = fit.order
            pred = np.array(
                [
                    fit.mean
                    + sum(fit.coef[j] * (y[t - j - 1] - fit.mean) for j in range(p))
                    for t in range(len(y) - 100, len(y))
                ]
            )
            rr = r[(dgp, seed, "ar_yw")]
            out.append(
                {
                    "dgp": dgp,
                    "seed": seed,
                    "method": "ar_yw",
                    "mse": float(np.mean((y[-100:] - pred) ** 2)),
                    "r_mse": float(rr["test_mse"]),
                    "oracle": oracle,
                    "fit_s": 0.0,
                    "ar_order": p,
                    "r_ar_order": int(rr["ar_order"]),
                }
            )
            print(f"accuracy {dgp} seed {seed} done", flush=True)
    return out


def summarize_accuracy(rows):
    table = []
    for dgp in DGPS:
        for method in METHODS + ["ar_yw"]:
            sel = [x for x in rows if x["dgp"] == dgp and x["method"] == method]
            ours = np.array([x["mse"] for x in sel])
            theirs = np.array([x["r_mse"] for x in sel])
            diff = ours - theirs
            # One replication (--quick) has no standard error.
            se = (
                float(diff.std(ddof=1) / np.sqrt(len(diff)))
                if len(diff) > 1
                else float("nan")
            )
            rel = float(diff.mean() / theirs.mean())
            ok = abs(rel) <= 0.03 or abs(diff.mean()) <= 2 * se
            table.append(
                {
                    "dgp": dgp,
                    "method": method,
                    "ours": ours.mean(),
                    "r": theirs.mean(),
                    "diff": diff.mean(),
                    "se": se,
                    "rel": rel,
                    "ok": ok,
                    "oracle": np.mean([x["oracle"] for x in sel]),
                    "orders_match": all(x["ar_order"] == x["r_ar_order"] for x in sel),
                }
            )
    return table


# --------------------------------------------------------------------- speed
def _median_fit(make, X, y, reps=3):
    times = []
    for _ in range(reps):
        est = make()
        t0 = time.perf_counter()
        est.fit(X, y)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), est


def run_speed():
    y, _ = _load("ar1_06", 1)
    Xtr, ytr, Xte, _yte = _split(y)
    res = {}
    for method in ("ar-sieve", "moving"):
        fit_s, est = _median_fit(lambda m=method: _forest(m, 1), Xtr, ytr)
        t0 = time.perf_counter()
        est.predict(Xte)
        res[method] = {"fit": fit_s, "predict": time.perf_counter() - t0}
    fit_s, est = _median_fit(lambda: _sklearn_forest(1), Xtr, ytr)
    t0 = time.perf_counter()
    est.predict(Xte)
    res["sklearn"] = {"fit": fit_s, "predict": time.perf_counter() - t0}
    with open(REFERENCE / "timing.csv") as fh:
        timing = list(csv.DictReader(fh))
    for method, rname in (("ar-sieve", "arsb"), ("moving", "moving")):
        vals = [float(t["fit_elapsed"]) for t in timing if t["method"] == rname]
        res[method]["r_fit"] = statistics.median(vals)
        vals = [float(t["predict_elapsed"]) for t in timing if t["method"] == rname]
        res[method]["r_predict"] = statistics.median(vals)
    return res


# --------------------------------------------------------------------- scaling
def _peak_rss_mb():
    """Peak RSS of this process in MB.

    ``/proc/self/status`` VmHWM is the high-water mark of this process's own
    address space; ``ru_maxrss`` would also include the parent's size at fork
    time (Linux keeps it across ``execve``).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method, n, n_jobs):
    """Run one scaling configuration and print a JSON line (in a subprocess)."""
    from skasync.datasets import make_series

    _warm_up()
    y = make_series("ar1_06", n, random_state=1)
    Xtr, ytr, _, _ = _split(y)
    rss_before = _peak_rss_mb()
    if method == "sklearn":
        est = _sklearn_forest(1, n_jobs)
    else:
        est = _forest(method, 1, n_jobs)
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "method": method,
                "n": n,
                "n_jobs": n_jobs,
                "rows": len(ytr),
                "fit": fit_s,
                "peak_mb": _peak_rss_mb(),
                "base_mb": rss_before,
            }
        )
    )


def run_scaling(sizes, sklearn_max_n):
    out = []
    for n in sizes:
        for method in ("ar-sieve", "moving", "sklearn"):
            if method == "sklearn" and n > sklearn_max_n:
                continue
            for n_jobs in (1, 2):
                cmd = [sys.executable, __file__, "--child", method, str(n), str(n_jobs)]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
                stdout, _ = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"child failed: {cmd}")
                res = json.loads(stdout.strip().splitlines()[-1])
                out.append(res)
                print(f"scaling {res}", flush=True)
    return out


def probe_parallel_capacity():
    """Wall-time speed-up of a pure nogil numba loop on 2 threads vs 1.

    Shows how much of a second core the (shared) machine actually gives us:
    close to 2 means a free core, close to 1 means none.
    """
    import threading

    from numba import njit

    @njit(nogil=True)
    def spin(n):
        s = 0.0
        for i in range(n):
            s += np.sqrt(i)
        return s

    spin(10)

    def run(k):
        threads = [threading.Thread(target=spin, args=(200_000_000,)) for _ in range(k)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    t1, t2 = run(1), run(2)
    return 2 * t1 / t2


# --------------------------------------------------------------- speed anchor
ANCHOR_TREES = 100
ANCHOR_MODELS = ("skasync moving", "sklearn", "LightGBM rf full depth", "LightGBM rf 255 leaves")


def _anchor_model(name, n_rows, seed=1):
    if name == "skasync moving":
        from skasync import ARSieveForestRegressor

        return ARSieveForestRegressor(
            n_estimators=ANCHOR_TREES,
            bootstrap="moving",
            max_features=2,
            min_node_size=5,
            random_state=seed,
            n_jobs=1,
        )
    if name == "sklearn":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=ANCHOR_TREES,
            max_features=2,
            min_samples_split=6,
            random_state=seed,
            n_jobs=1,
        )
    from lightgbm import LGBMRegressor

    # Random-forest mode: bagging without replacement (the 0.632 of distinct
    # rows of a bootstrap), 2 of the 5 lags per node as mtry 2. Full depth:
    # as many leaves as the bagged rows allow with 3 per leaf (a larger cap
    # only makes LightGBM allocate histograms for leaves that cannot exist).
    full = int(0.632 * n_rows / 3) + 1
    return LGBMRegressor(
        boosting_type="rf",
        n_estimators=ANCHOR_TREES,
        num_leaves=max(full, 2) if name.endswith("full depth") else 255,
        max_depth=-1,
        min_child_samples=3,
        bagging_fraction=0.632,
        bagging_freq=1,
        feature_fraction_bynode=0.4,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )


def anchor_child(n, full_max_n):
    """Fit every anchor model at size ``n``; print a JSON line (subprocess)."""
    import warnings

    from skasync.datasets import make_series

    warnings.simplefilter("ignore", UserWarning)  # LightGBM's feature names
    _warm_up()
    y = make_series("ar1_06", n, random_state=1)
    Xtr, ytr, Xte, yte = _split(y)
    _anchor_model("LightGBM rf 255 leaves", 200).fit(Xtr[:200], ytr[:200])
    out = []
    for name in ANCHOR_MODELS:
        if n > full_max_n and name in ("sklearn", "LightGBM rf full depth"):
            continue
        fit_s, est = _median_fit(
            lambda m=name: _anchor_model(m, len(ytr)), Xtr, ytr
        )
        mse = float(np.mean((est.predict(Xte) - yte) ** 2))
        out.append({"model": name, "n": n, "rows": len(ytr), "fit": fit_s, "mse": mse})
    print(json.dumps(out))


FIRST_FIT = """
import time
t0 = time.perf_counter()
from skasync import ARSieveForestRegressor
from skasync.datasets import make_series
from skasync.preprocessing import make_lag_matrix
t1 = time.perf_counter()
X, y = make_lag_matrix(make_series("ar1_06", 10_000, random_state=1), 5)
times = []
for _ in range(3):
    forest = ARSieveForestRegressor(
        n_estimators=100, bootstrap="moving", max_features=2, random_state=1, n_jobs=1
    )
    t = time.perf_counter()
    forest.fit(X, y)
    times.append(time.perf_counter() - t)
print(t1 - t0, times[0], min(times[1:]))
"""


def run_first_fit(reps=3):
    """Import, first and warm fit seconds in ``reps`` fresh processes."""
    out = []
    for _ in range(reps):
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_FIT],
            capture_output=True,
            text=True,
            check=True,
        )
        imp, first, warm = map(float, proc.stdout.split())
        out.append({"import": imp, "first": first, "warm": warm})
    return out


def run_anchor(sizes, full_max_n):
    out = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--anchor-child", str(n), str(full_max_n)]
        stdout = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        out += json.loads(stdout.strip().splitlines()[-1])
        print(f"anchor n={n} done", flush=True)
    return out


def render_anchor(anchor, first_fit, full_max_n):
    """The speed-anchor section (Markdown lines)."""
    lines = [
        f"## Speed anchor: LightGBM random-forest mode ({ANCHOR_TREES} trees, one thread)",
        "",
        "ar1_06 seed 1, 5 lags, training rows t = 5..n-101, one-step MSE on the "
        "last 100 values; fit seconds: median of 3 fits "
        "after a warm-up, one subprocess per n. skasync: `bootstrap='moving'`, "
        "mtry 2, min_node_size 5. sklearn: mtry 2, min_samples_split 6. "
        "LightGBM: `boosting_type='rf'`, bagging_fraction 0.632 every tree, "
        "feature_fraction_bynode 0.4 (2 of 5 lags), min_child_samples 3, "
        "255 bins, `num_leaves` 255 or, for full depth, as many as the bagged "
        "rows allow with 3 per leaf (0.632 rows / 3 + 1). sklearn and full "
        f"depth only up to n = {full_max_n:,}.",
        "",
    ]
    lines += markdown_table(
        ["n", "model", "fit s", "test MSE"],
        [
            [f"{r['n']:,}", r["model"], f"{r['fit']:.2f}", f"{r['mse']:.3f}"]
            for r in anchor
        ],
    )
    first = [r["first"] for r in first_fit]
    warm = [r["warm"] for r in first_fit]
    imp = [r["import"] for r in first_fit]
    lines += [
        "",
        f"First fit in a fresh process ({len(first_fit)} processes, n = 10 000, "
        f"100 trees, moving, one thread; numba's on-disk cache already written): "
        f"median {statistics.median(first):.2f} s against "
        f"{statistics.median(warm):.2f} s for a later fit in the same process; "
        f"`import skasync` {statistics.median(imp):.2f} s.",
        "",
    ]
    return lines


# --------------------------------------------------------------------- report
def render(results):
    """The Markdown report, from the JSON results alone."""
    env, run = results["environment"], results["run"]
    acc = summarize_accuracy(results["accuracy"])
    speed, scaling = results["speed"], results["scaling"]
    seeds = sorted({row["seed"] for row in results["accuracy"]})
    n = len(seeds)
    lines = []
    w = lines.append
    w("# ARSieveForestRegressor vs R rangerts / rangertsARS")
    w("")
    w(
        f"Generated by `{results['command']}` on {env['date']} ({env['machine']}, "
        f"{env['cpu_count']} CPUs shared with other jobs, Python {env['python']}, "
        f"NumPy {env['numpy']}); total {results['seconds'] / 60:.1f} min. R "
        "figures: `benchmarks/reference/rangerts` (R 4.2.2, 2-core AMD EPYC VM, "
        "one thread)."
    )
    w("")
    w(
        f"CPU affinity of the run: {env['usable_cores']} core(s) (e.g. `taskset -c "
        f"0`); 1-minute load average of the shared machine {env['load_average']:.2f} "
        f"at the start and {run['load_after']:.2f} at the end (other jobs included), "
        "so the times are upper bounds."
    )
    w("")
    w("## 1. Accuracy on the reference set")
    w("")
    w(
        "Protocol of the reference README: 5 lags, 395 training rows, one-step "
        "forecasts from the true lags on the last 100 points, 500 trees, mtry 2, "
        "min.node.size 5 (min_samples_split 6), block.size 10, by.end TRUE, seed = "
        f"replication ({', '.join(map(str, seeds))}). Mean test MSE over {n} "
        f"seed{'s' if n > 1 else ''}; "
        "`diff` = mean paired (Python - R) difference, `SE` its Monte-Carlo "
        f"standard error (sd of the {n} differences / sqrt {n}). Pass: |diff| <= "
        "3 % of R's mean or <= 2 SE."
    )
    w("")
    lines += markdown_table(
        ["dgp", "method", "oracle", "Python", "R", "diff", "SE", "diff %", "pass"],
        [
            [
                row["dgp"],
                row["method"],
                f"{row['oracle']:.3f}",
                f"{row['ours']:.4f}",
                f"{row['r']:.4f}",
                f"{row['diff']:+.4f}",
                f"{row['se']:.4f}",
                f"{100 * row['rel']:+.1f}",
                "yes" if row["ok"] else "**no**",
            ]
            for row in acc
        ],
    )
    n_ok = sum(r["ok"] for r in acc)
    w("")
    w(
        f"{n_ok} of {len(acc)} (dgp, method) cells pass. AIC orders p̂ identical to R's "
        f"on every series: {all(r['orders_match'] for r in acc)}."
    )
    for dgp in DGPS:
        ars = next(r for r in acc if r["dgp"] == dgp and r["method"] == "ar-sieve")
        blk = [
            r["ours"]
            for r in acc
            if r["dgp"] == dgp and r["method"] not in ("ar-sieve", "ar_yw")
        ]
        w(
            f"- {dgp}: ar-sieve {ars['ours']:.3f} vs block/iid bootstraps "
            f"{min(blk):.3f}–{max(blk):.3f} (mean {np.mean(blk):.3f})."
        )
    w("")
    w("## 2. Speed (n = 500, 395 rows, 500 trees, one thread)")
    w("")
    w(
        "Median of 3 fits (R: median over the 10 reference series of its medians "
        "of 3). sklearn: `RandomForestRegressor(n_estimators=500, max_features=2, "
        "min_samples_split=6, n_jobs=1)` on the same rows. Fit of `ar-sieve` "
        "includes the AR fit."
    )
    w("")
    sk = speed["sklearn"]
    lines += markdown_table(
        [
            "method",
            "Python fit s",
            "R fit s",
            "Python / R",
            "sklearn RF fit s",
            "sklearn / Python",
            "Python predict s (100 rows)",
            "R predict s",
        ],
        [
            [
                method,
                f"{s['fit']:.3f}",
                f"{s['r_fit']:.3f}",
                f"{s['fit'] / s['r_fit']:.2f}",
                f"{sk['fit']:.3f}",
                f"{sk['fit'] / s['fit']:.1f}",
                f"{s['predict']:.4f}",
                f"{s['r_predict']:.4f}",
            ]
            for method, s in ((m, speed[m]) for m in ("ar-sieve", "moving"))
        ],
    )
    w("")
    w(
        f"ar-sieve / moving fit-time ratio: Python "
        f"{speed['ar-sieve']['fit'] / speed['moving']['fit']:.2f}, R "
        f"{speed['ar-sieve']['r_fit'] / speed['moving']['r_fit']:.2f}."
    )
    w("")
    w(
        "Where the fit time goes (py-spy, 1 kHz, 40-60 fits on one core; details "
        "in the docstring of `skasync/ensemble/_ar_sieve_forest.py`): before the "
        "batched fit the numba tree kernel was 58 % (ar-sieve) and 63 % (moving) of "
        "a fit and per-tree Python work most of the rest (AR simulation 18 % and "
        "lag matrices 10 % of ar-sieve, bootstrap indices 17 % of moving, per-tree "
        "packing and wrappers; 0.100 s ar-sieve, 0.062 s moving on a quiet core); "
        "joblib's thread pool added ~11 ms to any fit with n_jobs=2. Now each chunk "
        "of up to 50 trees is one numba call on one batch of draws, and the kernel "
        "is 89-90 % of a fit; the rest is the batched draws (2-4 %), packing "
        "(2 %), the AR fit and input checks. The kernel itself got faster too: "
        "radix ranking of each AR-sieve series, and a row drawn w times is one "
        "slot of weight w."
    )
    w("")
    w("## 3. Scaling (ar1_06 seed 1, 5 lags, 500 trees)")
    w("")
    w(
        "Training rows t = 5..n-101 as in the protocol (n - 105 rows). Each "
        "configuration runs in its own subprocess; `peak MB` is that process's "
        "peak RSS (VmHWM from `/proc/self/status`; `ru_maxrss` would include the "
        "parent's size at fork), including the Python/NumPy/numba runtime; `base MB` "
        "is the peak before the fit (imports, data, JIT warm-up). R: one thread."
    )
    w("")
    rows = []
    for n in sorted({s["n"] for s in scaling}):
        for method in ("ar-sieve", "moving", "sklearn"):
            cfg = {
                s["n_jobs"]: s for s in scaling if s["n"] == n and s["method"] == method
            }
            if not cfg:
                rows.append(
                    [
                        f"{n:,}",
                        method,
                        "",
                        (
                            f"skipped (> --sklearn-max-n={run['sklearn_max_n']:,}; "
                            "too slow on the shared box)"
                        ),
                    ]
                    + [""] * 6
                )
                continue
            rfit, rmb = "", ""
            if n in R_SCALING and method != "sklearn":
                mv_s, mv_mb, ar_s, ar_mb = R_SCALING[n]
                rfit, rmb = (ar_s, ar_mb) if method == "ar-sieve" else (mv_s, mv_mb)
            rows.append(
                [
                    f"{n:,}",
                    method,
                    f"{cfg[1]['rows']:,}",
                    f"{cfg[1]['fit']:.2f}",
                    f"{cfg[2]['fit']:.2f}",
                    f"{cfg[1]['peak_mb']:.0f}",
                    f"{cfg[2]['peak_mb']:.0f}",
                    f"{cfg[1]['base_mb']:.0f}",
                    rfit,
                    rmb,
                ]
            )
    lines += markdown_table(
        [
            "n",
            "method",
            "rows",
            "fit s (1 job)",
            "fit s (2 jobs)",
            "peak MB (1 job)",
            "peak MB (2 jobs)",
            "base MB",
            "R fit s",
            "R peak MB",
        ],
        rows,
    )
    w("")
    before, after = run["capacity_before"], run["capacity_after"]
    if env["usable_cores"] == 1:
        cores = (
            "The run was pinned to one core, so the n_jobs=2 column only shows the "
            "cost of the 2-thread pool; "
        )
    elif min(before, after) >= 1.7:
        cores = (
            "A second core was free, so the n_jobs=2 column shows the speed-up "
            "of growing trees in two threads; "
        )
    else:
        cores = (
            "The 2 cores are shared with other jobs, so the n_jobs=2 column shows "
            "little or no speed-up here; "
        )
    w(
        f"Parallel capacity of the machine during the run: 2 threads of a pure "
        f"nogil numba loop ran {before:.2f}x (before the scaling runs) "
        f"and {after:.2f}x (after) as fast as 1 thread (2.0 = a free second core). "
        + cores
        + "the trees are grown in nogil numba code and the forest is identical for "
        "any n_jobs."
    )
    w("")
    if "anchor" in results:
        lines += render_anchor(
            results["anchor"], results["first_fit"], run["anchor_full_max_n"]
        )
    w(f"![accuracy and scaling]({run['figure']})")
    w("")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc_rows, scaling = results["accuracy"], results["scaling"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    methods = METHODS + ["ar_yw"]
    for k, dgp in enumerate(DGPS):
        for i, m in enumerate(methods):
            sel = [x for x in acc_rows if x["dgp"] == dgp and x["method"] == m]
            ours = [x["mse"] for x in sel]
            theirs = [x["r_mse"] for x in sel]
            xpos = i + (k - 0.5) * 0.4
            ax.scatter(
                [xpos - 0.07] * len(ours),
                ours,
                s=12,
                color=f"C{k}",
                marker="o",
                label=f"{dgp} Python" if i == 0 else None,
            )
            ax.scatter(
                [xpos + 0.07] * len(theirs),
                theirs,
                s=12,
                color=f"C{k}",
                marker="x",
                label=f"{dgp} R" if i == 0 else None,
            )
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_ylabel("test MSE (per seed)")
    ax.set_title("Open reference set: Python (o) vs R (x)")
    ax.legend(fontsize=8)
    ax = axes[1]
    styles = {"ar-sieve": "C0", "moving": "C1", "sklearn": "C2"}
    for method, color in styles.items():
        for n_jobs, ls in ((1, "-"), (2, "--")):
            pts = sorted(
                (s["n"], s["fit"])
                for s in scaling
                if s["method"] == method and s["n_jobs"] == n_jobs
            )
            if pts:
                ax.plot(
                    *zip(*pts),
                    ls,
                    color=color,
                    marker="o",
                    label=f"{method} ({n_jobs} job{'s' if n_jobs > 1 else ''})",
                )
    for idx, (name, color) in enumerate((("R moving", "C1"), ("R arsb", "C0"))):
        pts = [
            (n, v[2 * idx if name == "R moving" else 2]) for n, v in R_SCALING.items()
        ]
        ax.plot(*zip(*sorted(pts)), ":", color=color, marker="s", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("series length n")
    ax.set_ylabel("fit seconds (500 trees)")
    ax.set_title("Scaling")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = make_parser(__doc__, "the scaling table stops at n = 10 000", n_seeds=5)
    parser.add_argument(
        "--sklearn-max-n",
        type=int,
        default=10_000,
        help="largest n for sklearn in the scaling table (its fit "
        "grows ~x10-15 per decade: ~6 min per config at 100 000)",
    )
    parser.add_argument(
        "--anchor-only",
        action="store_true",
        help="run only the LightGBM speed anchor and the first-fit timing "
        "(writes forest_anchor.*)",
    )
    parser.add_argument(
        "--anchor-full-max-n",
        type=int,
        default=10_000,
        help="largest n for sklearn and full-depth LightGBM in the anchor table "
        "(full depth takes minutes at 100 000)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--anchor-child", nargs=2, help=argparse.SUPPRESS)
    args = parse_args(parser, argv)
    if args.child:
        method, n, n_jobs = args.child
        child(method, int(n), int(n_jobs))
        return
    if args.anchor_child:
        anchor_child(*map(int, args.anchor_child))
        return
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    if args.anchor_only:
        t_start = time.perf_counter()
        env = environment()
        results = {
            "command": args.command,
            "environment": env,
            "anchor": run_anchor(sizes, args.anchor_full_max_n),
            "first_fit": run_first_fit(),
            "anchor_full_max_n": args.anchor_full_max_n,
        }
        results["seconds"] = time.perf_counter() - t_start

        def render_only(res):
            head = [
                "# ARSieveForestRegressor: speed anchor against LightGBM rf",
                "",
                f"Generated by `{res['command']}` on {res['environment']['date']} "
                f"({res['environment']['machine']}, "
                f"{res['environment']['cpu_count']} CPUs shared with other jobs, "
                f"load average {res['environment']['load_average']:.2f}); total "
                f"{res['seconds'] / 60:.1f} min.",
                "",
            ]
            body = render_anchor(
                res["anchor"], res["first_fit"], res["anchor_full_max_n"]
            )
            return "\n".join(head + body) + "\n"

        results = write_results(args, "forest_anchor", results, render_only)
        print(render_only(results))
        return
    if args.seeds > len(SEEDS):
        parser.error(f"the reference set has {len(SEEDS)} replications")
    if not (REFERENCE / "results.csv").is_file():
        sys.exit(f"reference set not found at {REFERENCE}")
    t_start = time.perf_counter()
    env = environment()
    _warm_up()
    accuracy = run_accuracy(SEEDS[: args.seeds])
    speed = run_speed()
    print(f"speed {speed}", flush=True)
    capacity_before = probe_parallel_capacity()
    scaling = run_scaling(sizes, args.sklearn_max_n)
    capacity_after = probe_parallel_capacity()
    anchor = run_anchor(sizes, args.anchor_full_max_n)
    first_fit = run_first_fit()
    results = {
        "command": args.command,
        "environment": env,
        "seconds": time.perf_counter() - t_start,
        "run": {
            "load_after": load_average(),
            "capacity_before": capacity_before,
            "capacity_after": capacity_after,
            "sklearn_max_n": args.sklearn_max_n,
            "anchor_full_max_n": args.anchor_full_max_n,
            "figure": f"{result_stem('forest', args.quick)}.png",
        },
        "accuracy": accuracy,
        "speed": speed,
        "scaling": scaling,
        "anchor": anchor,
        "first_fit": first_fit,
    }
    results = write_results(args, "forest", results, render, plot)
    print(render(results))


if __name__ == "__main__":
    main()
