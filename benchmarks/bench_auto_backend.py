"""``backend="auto"`` against the better of threads and processes (issue 9).

The goal: ``"auto"`` must never be clearly slower than the better of the two
back-ends on the benchmark sets. For every data set and parallel mode this
script times whole ``fit`` calls of AsyncLayerwiseMLPClassifier with
``backend="threads"``, ``"processes"`` and ``"auto"``, in two situations:

* **first fit**: no worker pool exists (``shutdown_pool()`` before each
  timed fit), so a process fit pays the pool's start-up, as a script's
  first fit does;
* **warm pool**: a pool of the right size is waiting (an untimed
  process fit of the same estimator before the timed ones), as the later
  fits of a ``GridSearchCV`` or ``partial_fit`` loop find it.

Each fit trains a fixed number of epochs (``tol=0`` and
``n_iter_no_change=max_iter``, so no run stops early and the back-ends do
the same work): 30 on the scikit-learn toy sets (the epochs the rule
assumes), and few on MNIST-1D, where one epoch is long. The figure is
``auto`` over ``min(threads, processes)`` of the same situation (median
wall time of ``--seeds`` repetitions each, three times as many on the toy
sets); "clearly slower" means above
1.15 and more than 0.1 s behind. The one-thread serial loop, the rule's
unit, is timed beside them.

Data: iris, wine, breast_cancer and digits (scikit-learn, standardised,
estimator defaults: one hidden layer of 100, batch ``min(200, n)``) and
MNIST-1D 60k (48 000 training rows) at the default width, 256-256 and
1024-1024 (batch 128, as ``bench_backends.py``).

Run (keep other work off the machine)::

    python benchmarks/bench_auto_backend.py            # ~20 min on 2 cores
    python benchmarks/bench_auto_backend.py --quick    # toy sets, 3 repetitions

Writes ``auto_backend.json``, ``.md`` and ``.png`` to ``--out``. Within
a cell the back-ends run in a fixed order (threads, processes, auto), and
only the process and auto fits of a warm pool follow an untimed process
fit; ``auto_backend.run1.md`` and ``.run2.md`` are the committed earlier
runs (the rule before its recalibration, and the recalibrated rule with
fewer repetitions).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time
import warnings

import numpy as np
from _common import (
    environment,
    load_mnist1d,
    make_parser,
    markdown_table,
    parse_args,
    write_results,
)
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from skasync import AsyncLayerwiseMLPClassifier
from skasync.utils import _processes

MODES = ("pd-asgd", "hogwild", "sync")
BACKENDS = ("threads", "processes", "auto")
SITUATIONS = ("first fit", "warm pool")
CLEARLY_SLOWER = 1.15  # ratio to the better back-end
CLEARLY_SLOWER_S = 0.1  # and seconds behind it
TOY_EPOCHS = 30
# Fits of the toy sets take 0.02-0.6 s, and any back-end's fit there
# sometimes takes 0.1-0.25 s longer (seen on all three): more repetitions
# keep such a spike out of their medians.
TOY_REPEATS_FACTOR = 3


def _toy(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def data_sets(quick):
    """``(name, X, y, estimator params, repetitions factor)`` of each set."""
    sets = [
        (name, *_toy(loader), {"max_iter": TOY_EPOCHS}, TOY_REPEATS_FACTOR)
        for name, loader in (
            ("iris", load_iris),
            ("wine", load_wine),
            ("breast_cancer", load_breast_cancer),
            ("digits", load_digits),
        )
    ]
    if quick:
        return sets
    split = load_mnist1d(60_000)
    X = StandardScaler().fit_transform(split.X_train).astype(np.float32)
    y = split.y_train
    for label, hidden, epochs in (
        ("100", (100,), 5),
        ("256-256", (256, 256), 4),
        ("1024-1024", (1024, 1024), 2),
    ):
        params = {"hidden_layer_sizes": hidden, "max_iter": epochs, "batch_size": 128}
        sets.append((f"{split.name} {label}", X, y, params, 1))
    return sets


def timed_fit(X, y, mode, backend, params, seed):
    clf = AsyncLayerwiseMLPClassifier(
        mode=mode,
        backend=backend,
        # The reference loop runs on one thread (the rule's unit).
        torch_num_threads=1 if mode == "serial" else None,
        tol=0.0,
        n_iter_no_change=params["max_iter"],
        random_state=seed,
        **params,
    )
    with warnings.catch_warnings():
        # ConvergenceWarning (fixed epochs) and the threads' small-ops warning.
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        clf.fit(X, y)
        wall = time.perf_counter() - start
    return wall, clf.backend_


def measure_cell(X, y, mode, params, repeats):
    """Median wall time of each back-end in each situation, and auto's picks."""
    out = {}
    for situation in SITUATIONS:
        walls = {b: [] for b in BACKENDS}
        picks = []
        for seed in range(repeats):
            for backend in BACKENDS:
                if situation == "first fit":
                    _processes.shutdown_pool()
                elif backend != "threads":
                    # The untimed fit leaves the pool this fit will find.
                    timed_fit(X, y, mode, "processes", params, seed)
                wall, used = timed_fit(X, y, mode, backend, params, seed)
                walls[backend].append(wall)
                if backend == "auto":
                    picks.append(used)
        medians = {b: float(np.median(w)) for b, w in walls.items()}
        best = min(medians["threads"], medians["processes"])
        out[situation] = {
            "walls": walls,
            "median": medians,
            "auto_picks": picks,
            "auto_over_best": medians["auto"] / best,
            "auto_behind_s": medians["auto"] - best,
        }
        print(
            f"  {mode:8s} {situation:9s} threads {medians['threads']:.3f} s, "
            f"processes {medians['processes']:.3f} s, auto {medians['auto']:.3f} s "
            f"({'/'.join(sorted(set(picks)))}): {medians['auto'] / best:.2f}x the "
            "better",
            flush=True,
        )
    _processes.shutdown_pool()
    return out


def clearly_slower(cell):
    return (
        cell["auto_over_best"] > CLEARLY_SLOWER
        and cell["auto_behind_s"] > CLEARLY_SLOWER_S
    )


# ------------------------------------------------------------------- report
def render_markdown(results):
    env = results["environment"]
    lines = [
        '# backend="auto" against the better of threads and processes',
        "",
        f"Command: `{results['command']}`  ",
        f"Run on {env['date']}, {env['cpu']}, {env['usable_cores']} usable cores, "
        f"torch {env['torch']}; {results['seconds']:.0f} s. Median wall time of "
        f"{results['repeats']} fit(s) per cell ({TOY_REPEATS_FACTOR * results['repeats']} "
        "on the scikit-learn toy sets), each a fixed number of epochs "
        "(no early stop). First fit: no pool exists, so processes pay the "
        "pool's start-up; warm pool: a pool of the right size is waiting.",
        "",
    ]
    header = [
        "data",
        "epochs",
        "mode",
        "situation",
        "serial, 1 thread (s)",
        "threads (s)",
        "processes (s)",
        "auto (s)",
        "auto picked",
        "auto / better",
    ]
    rows = []
    flagged = []
    for item in results["cells"]:
        for situation in SITUATIONS:
            cell = item[situation]
            m = cell["median"]
            picks = sorted(set(cell["auto_picks"]))
            ratio = f"{cell['auto_over_best']:.2f}"
            if clearly_slower(cell):
                ratio = f"**{ratio}**"
                flagged.append((item, situation))
            rows.append(
                [
                    item["data"],
                    item["epochs"],
                    item["mode"],
                    situation,
                    f"{item['serial_one_thread']:.3f}",
                    f"{m['threads']:.3f}",
                    f"{m['processes']:.3f}",
                    f"{m['auto']:.3f}",
                    "/".join(picks),
                    ratio,
                ]
            )
    lines += markdown_table(header, rows)
    ratios = [c[s]["auto_over_best"] for c in results["cells"] for s in SITUATIONS]
    lines += [
        "",
        f"auto / better: median {np.median(ratios):.2f}, worst {max(ratios):.2f} "
        f"over {len(ratios)} cells. Bold: clearly slower (above "
        f"{CLEARLY_SLOWER} and more than {CLEARLY_SLOWER_S} s behind): "
        f"{len(flagged)} cell(s)"
        + (
            ": " + "; ".join(f"{c['data']} {c['mode']} ({s})" for c, s in flagged) + "."
            if flagged
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SITUATIONS), figsize=(12, 4.5), sharey=True)
    for ax, situation in zip(axes, SITUATIONS):
        labels, ratios, colours = [], [], []
        for item in results["cells"]:
            cell = item[situation]
            labels.append(f"{item['data']} {item['mode']}")
            ratios.append(cell["auto_over_best"])
            colours.append("tab:red" if clearly_slower(cell) else "tab:blue")
        ax.barh(range(len(labels)), ratios, color=colours)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.axvline(CLEARLY_SLOWER, color="tab:red", lw=0.8, ls="--")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("auto's wall time / the better back-end's")
        ax.set_title(situation)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = make_parser(__doc__, "the four scikit-learn toy sets only", 3)
    args = parse_args(parser, argv)
    start = time.perf_counter()
    cells = []
    for name, X, y, params, factor in data_sets(args.quick):
        repeats = factor * args.seeds
        print(f"{name} ({X.shape[0]} x {X.shape[1]}, {params})", flush=True)
        # The first fit of a process pays torch's warm-up: not timed.
        timed_fit(X, y, "serial", "threads", params, 0)
        serial = float(
            np.median(
                [
                    timed_fit(X, y, "serial", "threads", params, seed)[0]
                    for seed in range(repeats)
                ]
            )
        )
        print(f"  serial, one thread: {serial:.3f} s", flush=True)
        for mode in MODES:
            cell = measure_cell(X, y, mode, params, repeats)
            cells.append(
                {
                    "data": name,
                    "epochs": params["max_iter"],
                    "mode": mode,
                    "serial_one_thread": serial,
                    "repeats": repeats,
                    **cell,
                }
            )
    results = {
        "command": args.command,
        "environment": environment(),
        "repeats": args.seeds,
        "seconds": time.perf_counter() - start,
        "cells": cells,
    }
    write_results(args, "auto_backend", results, render_markdown, plot)


if __name__ == "__main__":
    main()
