"""Time-to-accuracy of AsyncLayerwiseMLPClassifier's modes and sklearn's MLPClassifier.

Every mode trains the same MLP on the same data with the same core budget,
for >= 3 seeds, under each back-end of ``--backends`` (both by default, side
by side: one table per data set and back-end, sharing the serial and
sklearn runs). ``backend="threads"``: PD-ASGD 1 forward + 2 backward
threads, Hogwild and sync 3 threads, all with cores // 3 intra-op threads;
``backend="processes"``: the estimator's own worker counts for the cores
(on 2 cores PD-ASGD 1 forward + 1 backward process, Hogwild and sync 2),
one intra-op thread each. Serial and sklearn: one loop with one intra-op /
BLAS thread (see SERIAL_THREADS). Training is
driven one epoch at a time with ``partial_fit``; the clock runs only during
``partial_fit``, and validation / test accuracy are measured between epochs
with the clock stopped.

Reported: time to a target validation accuracy
(TARGET_FRACTION x the serial run's best), ratios hogwild/pd-asgd,
sync/pd-asgd, d-asgd/pd-asgd, the same with one straggler delayed 1x, 2x, 4x
the serial step time, final test accuracy, throughput, an MFU proxy and
per-layer staleness.

The process back-end's pool is started (and its start-up paid) before the
first timed epoch; bench_backends.py reports the start-up itself.

Run (the 2 cores are shared, so take the lock):
    flock /tmp/skasync-bench.lock python benchmarks/bench_async_mlp.py
    python benchmarks/bench_async_mlp.py --quick     # 1 seed, 10k MNIST-1D, few epochs
Writes async_mlp.json, then async_mlp.md and async_mlp.png rendered from it, to
--out (default benchmarks/results; async_mlp.quick.* with --quick).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import itertools
import time
import warnings
from contextlib import nullcontext

import numpy as np
import torch
from _common import (
    digits_split,
    environment,
    load_average,
    load_mnist1d,
    make_parser,
    markdown_table,
    parse_args,
    time_to,
    usable_cores,
    write_results,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skasync import AsyncLayerwiseMLPClassifier
from skasync.neural_network._modes import ASYNC_MODES, mode_names, modes_where

# The tables list the one-thread reference first and PD-ASGD last: the mode
# table's order reversed. Only the parallel modes get a straggler.
MODES = list(mode_names(ASYNC_MODES))[::-1]
DELAY_MODES = list(modes_where(ASYNC_MODES, parallel=True))[::-1]
# The modes whose time to target is compared with PD-ASGD's, in table order.
RIVALS = ["hogwild", "sync", "d-asgd"]
TARGET_FRACTION = 0.98
# On the shared 2-core machine, OpenMP intra-op threads (and BLAS threads for
# sklearn) collapse when another process holds a core: in the pilot, serial
# with 2 intra-op threads ran digits 10x slower than with 1 (38 s vs 3 s for
# 4 epochs) and sklearn 3.5x slower. Serial and sklearn therefore run with 1
# thread, their fastest setting here; the serial 2-thread throughput is
# still measured and reported.
SERIAL_THREADS = 1
DELAY_FACTORS = [1, 2, 4]

# Wide enough that every layer op is far above the ~25 us at which a thread
# starts to pay: digits 64x256x256, mnist1d 128x256x256.
DATASETS = {
    "digits": {
        "hidden": (256, 256),
        "batch_size": 64,
        "lr": 0.01,
        "epochs": 25,
        "time_cap": 60.0,
    },
    "mnist1d": {
        "hidden": (256, 256),
        "batch_size": 128,
        "lr": 0.02,
        "epochs": 12,
        "time_cap": 35.0,
    },
    # Not in the default run: the same data with 4x wider layers (16x the
    # FLOPs per op), where each op keeps a core busy far longer than the
    # Python work between ops. `--datasets mnist1d-wide --stem async_mlp_wide`.
    "mnist1d-wide": {
        "hidden": (1024, 1024),
        "batch_size": 128,
        "lr": 0.02,
        "epochs": 10,
        "time_cap": 120.0,
    },
}
DEFAULT_DATASETS = ["digits", "mnist1d"]
BACKENDS = ["threads", "processes"]


def load(name, quick):
    if name == "digits":
        X_train, X_test, y_train, y_test = digits_split(test_size=0.25)
        source = "sklearn digits (1797 x 64)"
    else:
        split = load_mnist1d(10_000 if quick else 60_000)
        X_train, X_test, y_train, y_test = (
            split.X_train,
            split.X_test,
            split.y_train,
            split.y_test,
        )
        source = split.description
    X_train, X_val, y_train, y_val = train_test_split(
        X_train, y_train, test_size=0.1, random_state=0, stratify=y_train
    )
    scaler = StandardScaler().fit(X_train)

    def f32(a):
        return scaler.transform(a).astype(np.float32)

    return {
        "X": f32(X_train),
        "y": y_train,
        "X_val": f32(X_val),
        "y_val": y_val,
        "X_test": f32(X_test),
        "y_test": y_test,
        "source": source,
    }


def make_model(mode, cfg, seed, delay, backend="threads"):
    if mode == "sklearn":
        return MLPClassifier(
            cfg["hidden"],
            solver="sgd",
            learning_rate_init=cfg["lr"],
            momentum=0.9,
            nesterovs_momentum=True,
            alpha=1e-4,
            batch_size=cfg["batch_size"],
            random_state=seed,
        )
    # A RandomState instance (not an int) so each partial_fit epoch draws a
    # new shuffle from the same seeded stream.
    return AsyncLayerwiseMLPClassifier(
        cfg["hidden"],
        mode=mode,
        # Named, not "auto": each table is of one back-end.
        backend=backend,
        learning_rate_init=cfg["lr"],
        momentum=0.9,
        nesterovs_momentum=True,
        alpha=1e-4,
        batch_size=cfg["batch_size"],
        straggler_delay=delay,
        straggler_workers="one",
        # serial: one intra-op thread (see SERIAL_THREADS); the threaded modes
        # keep the default max(1, cores // 3).
        torch_num_threads=SERIAL_THREADS if mode == "serial" else None,
        random_state=np.random.RandomState(seed),
    )


def run(mode, data, cfg, seed, delay=0.0, target=None, epochs=None, backend="threads"):
    """Train epoch by epoch; the clock runs only inside partial_fit."""
    clf = make_model(mode, cfg, seed, delay, backend)
    classes = np.unique(data["y"])
    epochs = epochs or cfg["epochs"]
    curve = []  # (train seconds, val acc, test acc)
    elapsed = 0.0
    # sklearn's BLAS limit is entered once, outside the clock (as in
    # bench_backends.py), not around every timed epoch.
    with (
        warnings.catch_warnings(),
        threadpool_limits(SERIAL_THREADS) if mode == "sklearn" else nullcontext(),
    ):
        warnings.simplefilter("ignore", (UserWarning, ConvergenceWarning))
        for epoch in range(epochs):
            start = time.perf_counter()
            clf.partial_fit(
                data["X"], data["y"], classes=classes if epoch == 0 else None
            )
            elapsed += time.perf_counter() - start
            val = clf.score(data["X_val"], data["y_val"])
            test = clf.score(data["X_test"], data["y_test"])
            curve.append((elapsed, val, test))
            if target is not None and val >= target:
                break  # delay runs only need the time to target
            if elapsed > cfg["time_cap"]:
                break
    out = {"mode": mode, "seed": seed, "delay": delay, "curve": curve}
    if mode != "sklearn":
        # serial runs one loop in this process under either back-end.
        out["backend"] = clf.backend_ if mode != "serial" else None
        out["workers"] = clf.n_workers_
        out["throughput"] = clf.throughput_["samples_per_second"]
        out["staleness"] = clf.staleness_
        out["updates"] = clf.n_updates_
        out["busy"] = clf._log.busy_seconds
        out["samples"] = clf._log.samples
    return out


def peak_matmul_flops():
    """Peak float32 matmul FLOP/s of the machine (MFU denominator).

    Measured with one intra-op thread and multiplied by the usable cores:
    measuring with all intra-op threads on the shared machine lets OpenMP
    collapse and gave MFU proxies above 1 in the first full run.
    """
    from skasync.utils._threads import torch_threads

    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    best = 0.0
    with torch_threads(1):
        for _ in range(3):
            a @ b
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            best = max(best, 10 * 2 * 1024**3 / (time.perf_counter() - start))
    return best * usable_cores()


def model_flops_per_sample(n_features, hidden, n_classes):
    sizes = [n_features, *hidden, n_classes]
    macs = sum(a * b for a, b in itertools.pairwise(sizes))
    return 6 * macs  # forward 2 FLOPs per MAC, backward twice the forward


def fmt(x, digits=2):
    if x is None:
        return "n/r"
    if isinstance(x, float) and not np.isfinite(x):
        return "n/r"
    return f"{x:.{digits}f}"


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def ratio_text(num, den, n_missing_num):
    if num is None or den is None:
        return "n/r"
    text = f"{num / den:.2f}"
    return text + (" (lower bound)" if n_missing_num else "")


def bench_dataset(name, cfg, seeds, quick, log, backends):
    data = load(name, quick)
    log(f"## {name}: {data['source']}")
    # Warm-up (torch's lazy initialisation costs ~1 s on the first epoch of a
    # process; the process pool starts on its first fit) and the serial
    # 2-intra-op-thread throughput for the record.
    warm = dict(cfg, epochs=1)
    run("serial", data, warm, 0)
    for backend in backends:
        run("hogwild", data, warm, 0, backend=backend)
    clf = make_model("serial", cfg, 0, 0.0).set_params(torch_num_threads=None)
    n_threads = clf._fit_num_threads()
    clf.partial_fit(data["X"], data["y"], classes=np.unique(data["y"]))
    serial_2t = clf.throughput_["samples_per_second"]
    log(
        f"  serial with {n_threads} intra-op threads: {serial_2t:.0f} samples/s (1 epoch)"
    )
    # The same record for sklearn with all cores as BLAS threads: the
    # sklearn goal is measured with SERIAL_THREADS, this says what that costs.
    sk = make_model("sklearn", cfg, 0, 0.0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.partial_fit(data["X"], data["y"], classes=np.unique(data["y"]))
    sklearn_2t = len(data["X"]) / (time.perf_counter() - start)
    log(
        f"  sklearn with {n_threads} BLAS threads: {sklearn_2t:.0f} samples/s (1 epoch)"
    )
    # serial and sklearn run once per seed; their rows appear in the table of
    # every back-end.
    plan = [("serial", None), ("sklearn", None)]
    plan += [(m, b) for b in backends for m in MODES if m != "serial"]
    results = []
    for seed in seeds:
        for mode, backend in plan:
            r = run(mode, data, cfg, seed, backend=backend or "threads")
            results.append(r)
            last = r["curve"][-1]
            log(
                f"  {mode:8s} {backend or '':9s} seed={seed} epochs={len(r['curve'])} "
                f"t={last[0]:.1f}s val={max(c[1] for c in r['curve']):.4f} "
                f"test={last[2]:.4f}"
            )
    serial = [r for r in results if r["mode"] == "serial"]
    target = TARGET_FRACTION * float(
        np.mean([max(c[1] for c in r["curve"]) for r in serial])
    )
    n_batches = int(np.ceil(len(data["X"]) / cfg["batch_size"]))
    step_time = float(
        np.mean([r["busy"] / (len(r["curve"]) * n_batches) for r in serial])
    )
    log(
        f"  target validation accuracy {target:.4f}, serial step time {step_time * 1e3:.2f} ms"
    )
    delayed = []
    for factor in [2] if quick else DELAY_FACTORS:
        for seed in seeds:
            for backend in backends:
                for mode in DELAY_MODES:
                    r = run(
                        mode,
                        data,
                        cfg,
                        seed,
                        delay=factor * step_time,
                        target=target,
                        backend=backend,
                    )
                    r["factor"] = factor
                    delayed.append(r)
                    log(
                        f"  {mode:8s} {backend:9s} delay={factor}x seed={seed} "
                        f"epochs={len(r['curve'])} "
                        f"tta={fmt(time_to(r['curve'], target))}"
                    )
    return {
        "name": name,
        "source": data["source"],
        "n_features": data["X"].shape[1],
        "n_train": len(data["X"]),
        "n_val": len(data["X_val"]),
        "n_test": len(data["X_test"]),
        "cfg": cfg,
        "results": results,
        "delayed": delayed,
        "target": target,
        "step_time": step_time,
        "n_batches": n_batches,
        "serial_2t": serial_2t,
        "serial_2t_threads": n_threads,
        "sklearn_2t": sklearn_2t,
        "backends": backends,
    }


def runs_of(records, backend):
    """The records of one back-end's table: its own runs, serial and sklearn."""
    return [r for r in records if r.get("backend") in (backend, None)]


def summarise(bench, peak, seeds, backend):
    """The Markdown lines of one data set and back-end, and their digest."""
    cfg = bench["cfg"]
    target = bench["target"]
    results = runs_of(bench["results"], backend)
    delayed = runs_of(bench["delayed"], backend)
    lines = []
    per_mode = {}
    for mode in MODES + ["sklearn"]:
        runs = [r for r in results if r["mode"] == mode]
        ttas = [time_to(r["curve"], target) for r in runs]
        per_mode[mode] = {
            "tta": mean_or_none(ttas),
            "missing": sum(t is None for t in ttas),
            "tta_std": float(np.std([t for t in ttas if t is not None]))
            if any(ttas)
            else None,
            "test": [r["curve"][-1][2] for r in runs],
            "time": [r["curve"][-1][0] for r in runs],
            "epochs": [len(r["curve"]) for r in runs],
            "runs": runs,
        }
    flops = model_flops_per_sample(bench["n_features"], cfg["hidden"], 10)
    workers = ", ".join(
        f"{mode} {per_mode[mode]['runs'][0]['workers']}"
        for mode in MODES
        if mode != "serial" and "workers" in per_mode[mode]["runs"][0]
    )
    lines += [
        f"### {bench['name']}, backend={backend!r}: {bench['source']}",
        "",
        f"Workers ({backend}): {workers or 'not recorded'}.",
        "",
        (
            f"MLP {bench['n_features']}-{'-'.join(map(str, cfg['hidden']))}-10 (ReLU), "
            f"batch {cfg['batch_size']}, SGD lr {cfg['lr']} Nesterov momentum 0.9, "
            f"alpha 1e-4, {cfg['epochs']} epochs (cap {cfg['time_cap']:.0f} s of training "
            f"per run), {bench['n_train']} train / {bench['n_val']} validation / "
            f"{bench['n_test']} test samples, seeds {seeds}."
        ),
        (
            f"Target: validation accuracy >= {target:.4f} ({TARGET_FRACTION:.0%} of the serial "
            f"runs' mean best). One-thread serial step time (fwd + bwd + update of one "
            f"batch) {bench['step_time'] * 1e3:.2f} ms; "
            f"{flops / 1e6:.2f} MFLOP per training sample."
        ),
        "",
    ]
    rows = []
    for mode in MODES + ["sklearn"]:
        m = per_mode[mode]
        tta = fmt(m["tta"]) + (
            f" ± {m['tta_std']:.2f}" if m["tta_std"] is not None else ""
        )
        if m["missing"]:
            tta += f" ({m['missing']} not reached)"
        acc = f"{100 * np.mean(m['test']):.2f} ± {100 * np.std(m['test']):.2f}"
        if mode == "sklearn":
            n_samples = bench["n_train"]
            tput = np.mean([e * n_samples / t for e, t in zip(m["epochs"], m["time"])])
            stale = "-"
        else:
            tput = np.mean([r["throughput"] for r in m["runs"]])
            stale = "; ".join(
                f"{np.mean([r['staleness'][k]['mean'] for r in m['runs']]):.2f} / "
                f"{np.mean([r['staleness'][k]['p95'] for r in m['runs']]):.1f} / "
                f"{max(r['staleness'][k]['max'] for r in m['runs'])}"
                for k in range(len(m["runs"][0]["staleness"]))
            )
        rows.append(
            [
                mode,
                tta,
                acc,
                f"{np.mean(m['time']):.2f}",
                f"{np.mean(m['epochs']):.1f}",
                f"{tput:.0f}",
                f"{tput * flops / peak:.2f}",
                stale,
            ]
        )
    lines += markdown_table(
        [
            "mode",
            "time to target (s)",
            "final test acc (%)",
            "train time (s)",
            "epochs",
            "samples/s",
            "MFU proxy",
            "staleness per layer: mean / p95 / max",
        ],
        rows,
    )
    lines += [
        "",
        (
            f"Serial with {bench['serial_2t_threads']} intra-op threads (the nominal "
            f"budget, 1 epoch): {bench['serial_2t']:.0f} samples/s; sklearn with "
            f"{bench['serial_2t_threads']} BLAS threads: {bench['sklearn_2t']:.0f} "
            "samples/s."
        ),
        "",
        (
            "Time-to-target ratios (mean TTA of the mode / mean TTA of pd-asgd; "
            "> 1 means PD-ASGD is faster; a run that never reached the target "
            "counts at its full training time: 'lower bound' when some runs of "
            "the mode did, 'pd-asgd capped' when some of PD-ASGD's did):"
        ),
        "",
    ]

    def capped(runs):
        values = []
        for r in runs:
            t = time_to(r["curve"], target)
            values.append(r["curve"][-1][0] if t is None else t)
        return (
            float(np.mean(values)) if values else None,
            sum(time_to(r["curve"], target) is None for r in runs),
        )

    # The same rule as the delay rows: a run that never reached the target
    # counts at its full training time, on both sides of the ratio.
    den, den_miss = capped(per_mode["pd-asgd"]["runs"])
    row = ["none"]
    for mode in RIVALS:
        num, miss = capped(per_mode[mode]["runs"])
        row.append(
            ratio_text(num, den, miss) + (" (pd-asgd capped)" if den_miss else "")
        )
    ratio_rows = [row]
    delay_rows = {}
    for factor in sorted({r["factor"] for r in delayed}):
        runs = {
            m: [r for r in delayed if r["factor"] == factor and r["mode"] == m]
            for m in DELAY_MODES
        }
        den, den_miss = capped(runs["pd-asgd"])
        row = [f"{factor}x step ({factor * bench['step_time'] * 1e3:.1f} ms)"]
        tt = {}
        for mode in RIVALS:
            num, miss = capped(runs[mode])
            row.append(
                ratio_text(num, den, miss) + (" (pd-asgd capped)" if den_miss else "")
            )
            tt[mode] = num
        tt["pd-asgd"] = den
        delay_rows[factor] = tt
        ratio_rows.append(row)
    lines += markdown_table(
        ["delay on one worker"] + [f"{mode} / pd-asgd" for mode in RIVALS],
        ratio_rows,
    )
    lines += ["", "Mean time to target (s) with a straggler:", ""]
    lines += markdown_table(
        ["delay"] + DELAY_MODES,
        [
            [f"{factor}x"] + [fmt(tt[m]) for m in DELAY_MODES]
            for factor, tt in delay_rows.items()
        ],
    )

    # sklearn goal: PD-ASGD reaches sklearn's final test accuracy in <= half its time.
    sk_acc = float(np.mean(per_mode["sklearn"]["test"]))
    sk_time = float(np.mean(per_mode["sklearn"]["time"]))
    pd_runs = per_mode["pd-asgd"]["runs"]
    pd_to_sk = [time_to(r["curve"], sk_acc, column=2) for r in pd_runs]
    n_missed = sum(t is None for t in pd_to_sk)
    # A seed that never reached it counts at its full training time: the
    # mean is then a lower bound ("≥"), as in the ratio tables.
    pd_to_sk_capped = float(
        np.mean(
            [r["curve"][-1][0] if t is None else t for r, t in zip(pd_runs, pd_to_sk)]
        )
    )
    bound = "≥ " if n_missed else ""
    lines += [
        "",
        (
            f"sklearn MLPClassifier: final test accuracy {100 * sk_acc:.2f} % in "
            f"{sk_time:.2f} s; PD-ASGD reaches that test accuracy in "
            f"{bound}{fmt(pd_to_sk_capped)} s, i.e. {bound}"
            f"{fmt(pd_to_sk_capped / sk_time)} of sklearn's time ("
            + (
                f"{n_missed} of {len(pd_to_sk)} seeds never did and count at "
                "their full training time: a lower bound"
                if n_missed
                else f"all {len(pd_to_sk)} seeds reached it"
            )
            + ")."
        ),
        "",
    ]
    summary = {
        "tta": {m: per_mode[m]["tta"] for m in per_mode},
        "test": {m: float(np.mean(per_mode[m]["test"])) for m in per_mode},
        "delays": {str(k): v for k, v in delay_rows.items()},
        "sklearn_time": sk_time,
        "sklearn_acc": sk_acc,
        # None unless every seed reached it; the lower bound in any case.
        "pd_to_sklearn": None if n_missed else pd_to_sk_capped,
        "pd_to_sklearn_lower_bound": pd_to_sk_capped,
        "target": target,
    }
    return lines, summary


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (bench, backend)
        for bench in results["datasets"]
        for backend in bench.get("backends", ["threads"])
    ]
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(12, 4.2 * len(panels)), squeeze=False
    )
    colors = dict(
        zip(MODES + ["sklearn"], plt.rcParams["axes.prop_cycle"].by_key()["color"])
    )
    for row, (bench, backend) in zip(axes, panels):
        records = runs_of(bench["results"], backend)
        delayed = runs_of(bench["delayed"], backend)
        ax = row[0]
        for mode in MODES + ["sklearn"]:
            for i, r in enumerate(r for r in records if r["mode"] == mode):
                t, val, _ = zip(*r["curve"])
                ax.plot(
                    t,
                    val,
                    color=colors[mode],
                    alpha=0.8,
                    label=mode if i == 0 else None,
                )
        ax.axhline(bench["target"], color="k", ls="--", lw=0.8, label="target")
        ax.set(
            xlabel="training time (s)",
            ylabel="validation accuracy",
            title=f"{bench['name']}, {backend}: no delay",
            ylim=(max(0, bench["target"] - 0.25), None),
        )
        ax.legend(fontsize=8)
        ax = row[1]
        factors = sorted({r["factor"] for r in delayed})
        for mode in DELAY_MODES:
            base = [r for r in records if r["mode"] == mode]
            ys = [
                np.mean(
                    [
                        time_to(r["curve"], bench["target"]) or r["curve"][-1][0]
                        for r in base
                    ]
                )
            ]
            for f in factors:
                runs = [r for r in delayed if r["mode"] == mode and r["factor"] == f]
                ys.append(
                    np.mean(
                        [
                            time_to(r["curve"], bench["target"]) or r["curve"][-1][0]
                            for r in runs
                        ]
                    )
                )
            ax.plot([0] + factors, ys, "o-", color=colors[mode], label=mode)
        ax.set(
            xlabel="delay of one worker (x serial step time)",
            ylabel="time to target (s, mean over seeds)",
            title=f"{bench['name']}, {backend}: one straggler",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render(results):
    """The Markdown report, from the JSON results alone."""
    env = results["environment"]
    peak, seeds = results["peak_flops"], results["seeds"]
    header = [
        "# AsyncLayerwiseMLPClassifier: time to accuracy by mode",
        "",
        (
            f"Generated by `{results['command']}` in {results['seconds']:.0f} s on "
            f"{env['date']}."
        ),
        "",
        (
            f"Environment: {env['cpu']}, {env['usable_cores']} usable cores (1-minute "
            f"load average {env['load_average']:.2f} just before the run, "
            f"{results['load_average_after']:.2f} at the end, the run's own threads "
            f"included), Python {env['python']} (GIL build), torch {env['torch']}, "
            f"numpy {env['numpy']}; peak float32 matmul {peak / 1e9:.1f} GFLOP/s "
            "(one-thread peak x cores; MFU proxy = samples/s x FLOP per sample / this peak)."
        ),
        (
            f"Threads: pd-asgd and d-asgd 1 forward + 2 backward threads, queue 2; hogwild "
            f"and sync 3 threads; each with max(1, {env['usable_cores']} // 3) intra-op "
            "threads. Processes: the worker counts under each table, one intra-op "
            "thread each, the pool started before the first timed epoch (each "
            "`partial_fit` still pays its hand-over). "
            f"serial and sklearn: one loop with {results['serial_threads']} "
            "intra-op / BLAS thread (their fastest setting on the loaded machine of the "
            "first runs; see SERIAL_THREADS in the script and the 2-thread records below "
            "each table). Delays: `straggler_delay` on worker 0 (a backward thread in "
            "pd/d-asgd, a worker in hogwild/sync, thread or process) before every step, "
            "as multiples of the "
            "one-thread serial step time."
        ),
        "'n/r': not reached within the epoch / time budget.",
        "",
    ]
    tables = []
    for bench in results["datasets"]:
        for backend in bench.get("backends", ["threads"]):
            tables += summarise(bench, peak, seeds, backend)[0]
    return "\n".join(
        header + tables + ["", "## Log", "", "```"] + results["log"] + ["```", ""]
    )


def main(argv=None):
    parser = make_parser(
        __doc__, "a 10k MNIST-1D, at most 8 epochs, one delay", n_seeds=3
    )
    parser.add_argument(
        "--datasets", nargs="*", default=DEFAULT_DATASETS, choices=list(DATASETS)
    )
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument(
        "--stem",
        default="async_mlp",
        help="results file names: <out>/<stem>.json/.md/.png",
    )
    args = parse_args(parser, argv)
    seeds = list(range(args.seeds))
    log_lines = []

    def log(text):
        print(text, flush=True)
        log_lines.append(text)

    start = time.time()
    env = environment()
    peak = peak_matmul_flops()
    benches = []
    for name in args.datasets:
        cfg = dict(DATASETS[name])
        if args.quick:
            cfg["epochs"] = min(cfg["epochs"], 8)
            cfg["time_cap"] = 20.0
        benches.append(bench_dataset(name, cfg, seeds, args.quick, log, args.backends))
    results = {
        "command": args.command,
        "environment": env,
        "load_average_after": load_average(),
        "seconds": time.time() - start,
        "peak_flops": peak,
        "serial_threads": SERIAL_THREADS,
        "seeds": seeds,
        "summary": {
            f"{b['name']}/{backend}": summarise(b, peak, seeds, backend)[1]
            for b in benches
            for backend in args.backends
        },
        "datasets": benches,
        "log": log_lines,
    }
    write_results(args, args.stem, results, render, plot)


if __name__ == "__main__":
    main()
