"""What a new user gets: every torch classifier at its defaults beside MLPClassifier.

Usage::

    python benchmarks/bench_defaults.py [--quick] [--seeds N] [--repeats 3]
                                        [--out benchmarks/results]

Each classifier runs at its default parameters (only ``random_state``: 0,
or 0..N-1 with ``--seeds N``) in ``make_pipeline(StandardScaler(), clf)`` on
scikit-learn's toy data sets (iris, wine, breast_cancer, digits;
``--quick``: iris and wine, one repeat).  For each it records

* the 5-fold cross-validated accuracy (``cross_val_score``'s default folds,
  pooled over the seeds),
* the wall time of one fit on the whole data set (median of ``--repeats``
  fits per seed, after one warm-up fit so that torch's first-call costs are
  left out), the epochs each timed fit ran (``n_iter_``; the report gives
  their median and range) and the time per epoch (the median over the
  timed fits of each fit's time over its own epochs),
* the fit time as a ratio to MLPClassifier's.

Writes ``defaults.json`` (the results), then ``defaults.md`` and
``defaults.png`` rendered from it, to ``--out`` (``defaults.quick.*`` with
``--quick``).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time
import warnings

import numpy as np
import torch
from _common import environment, make_parser, markdown_table, parse_args, write_results
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skasync import AsyncLayerwiseMLPClassifier, BlockLocalClassifier

DATASETS = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}


def classifiers():
    """The default classifiers, MLPClassifier first (the reference).

    Each maker takes the ``random_state``.
    """
    return {
        "MLPClassifier": lambda seed: MLPClassifier(random_state=seed),
        "AsyncLayerwiseMLPClassifier": lambda seed: AsyncLayerwiseMLPClassifier(
            random_state=seed
        ),
        "BlockLocalClassifier": lambda seed: BlockLocalClassifier(random_state=seed),
        "BlockLocalClassifier(mode='backprop')": lambda seed: BlockLocalClassifier(
            mode="backprop", random_state=seed
        ),
    }


def measure(make, X, y, repeats, seeds):
    pipe = make_pipeline(StandardScaler(), make(seeds[0]))
    pipe.fit(X, y)  # warm-up: torch's first-call costs are not the estimator's
    times, epochs, folds = [], [], []
    for seed in seeds:
        for _ in range(repeats):
            pipe = make_pipeline(StandardScaler(), make(seed))
            start = time.perf_counter()
            pipe.fit(X, y)
            times.append(time.perf_counter() - start)
            epochs.append(int(pipe[-1].n_iter_))
        pipe = make_pipeline(StandardScaler(), make(seed))
        folds += cross_val_score(pipe, X, y).tolist()
    fit_s = float(np.median(times))
    return {
        "cv_accuracy": float(np.mean(folds)),
        "cv_std": float(np.std(folds)),
        "fit_seconds": fit_s,
        "fit_seconds_all": times,
        # Each timed fit's epochs (seeds differ, early stopping included),
        # and the time per epoch of each fit over its own epochs.
        "n_iter_all": epochs,
        "n_iter": float(np.median(epochs)),
        "ms_per_epoch": float(
            np.median([1e3 * t / max(1, e) for t, e in zip(times, epochs)])
        ),
    }


def run(data_names, repeats, seeds):
    results = {}
    for data_name in data_names:
        load = DATASETS[data_name]
        X, y = load(return_X_y=True)
        rows = {}
        for clf_name, make in classifiers().items():
            with warnings.catch_warnings():
                # MLPClassifier's ConvergenceWarning and the threads-do-not-pay
                # warning are part of what a user sees, not of the timing.
                warnings.simplefilter("ignore")
                rows[clf_name] = measure(make, X, y, repeats, seeds)
            print(data_name, clf_name, rows[clf_name], flush=True)
        reference = rows["MLPClassifier"]
        for row in rows.values():
            row["fit_time_vs_mlp"] = row["fit_seconds"] / reference["fit_seconds"]
            row["cv_points_vs_mlp"] = 100 * (
                row["cv_accuracy"] - reference["cv_accuracy"]
            )
        results[data_name] = {"shape": list(X.shape), "classifiers": rows}
    return results


def render_markdown(payload):
    lines = [
        "# Defaults against MLPClassifier",
        "",
        (
            f"Written by `{payload['command']}` from its JSON. Each classifier at its "
            f"defaults (`random_state` {', '.join(map(str, payload['seeds']))}) in "
            "`make_pipeline(StandardScaler(), clf)`; fit time is the median of "
            f"{payload['repeats']} fits per seed on the whole data set after a warm-up "
            "fit; accuracy is 5-fold `cross_val_score`."
        ),
        "",
        f"Machine: {payload['machine']}",
        "",
    ]
    rows = []
    first_fit_only = False
    for data_name, entry in payload["results"].items():
        shape = "x".join(str(s) for s in entry["shape"])
        for clf_name, r in entry["classifiers"].items():
            first_fit_only |= "n_iter_all" not in r
            rows.append(
                [
                    f"{data_name} ({shape})",
                    clf_name,
                    f"{r['cv_accuracy']:.4f}",
                    f"{r['cv_points_vs_mlp']:+.1f}",
                    f"{r['fit_seconds']:.3f}",
                    f"{r['fit_time_vs_mlp']:.2f}x",
                    epochs_text(r),
                    f"{r['ms_per_epoch']:.1f}",
                ]
            )
    lines += markdown_table(
        [
            "data",
            "classifier",
            "CV accuracy",
            "vs MLP (points)",
            "fit (s)",
            "vs MLP fit time",
            "epochs",
            "ms / epoch",
        ],
        rows,
    )
    if first_fit_only:
        lines += [
            "",
            (
                "This JSON predates the per-fit epochs: its epochs are the first "
                "timed fit's (seed 0) and its ms / epoch is the median fit time "
                "over those epochs, for every seed; a new run gives the median "
                "and range of each fit's epochs and the median of each fit's "
                "time per epoch."
            ),
        ]
    return "\n".join(lines) + "\n"


def epochs_text(r):
    """The median of the fits' epochs, with their range where they differ."""
    if "n_iter_all" not in r:
        return f"{r['n_iter']} (seed 0)"
    low, high = min(r["n_iter_all"]), max(r["n_iter_all"])
    median = f"{r['n_iter']:g}"
    return median if low == high else f"{median} ({low}-{high})"


def plot(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data_names = list(payload["results"])
    clf_names = list(next(iter(payload["results"].values()))["classifiers"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(clf_names)
    x = np.arange(len(data_names))
    for i, clf_name in enumerate(clf_names):
        rows = [payload["results"][d]["classifiers"][clf_name] for d in data_names]
        axes[0].bar(
            x + i * width, [r["fit_seconds"] for r in rows], width, label=clf_name
        )
        axes[1].bar(
            x + i * width, [r["cv_accuracy"] for r in rows], width, label=clf_name
        )
    for ax, title in zip(axes, ["fit time (s, log scale)", "5-fold CV accuracy"]):
        ax.set_xticks(x + 0.4 - width / 2)
        ax.set_xticklabels(data_names)
        ax.set_title(title)
    axes[0].set_yscale("log")
    axes[1].set_ylim(0.8, 1.0)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Defaults in a StandardScaler pipeline")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = make_parser(__doc__, "iris and wine, one repeat", n_seeds=1)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed fits per classifier and seed (default: 3, 1 with --quick)",
    )
    args = parse_args(parser, argv)
    repeats = args.repeats or (1 if args.quick else 3)
    data_names = ["iris", "wine"] if args.quick else list(DATASETS)
    seeds = list(range(args.seeds))
    env = environment()
    payload = {
        "command": args.command,
        "environment": env,
        "machine": (
            f"{env['processor']}, {env['cpu_count']} cores, torch {env['torch']} "
            f"({torch.get_num_threads()} intra-op threads), scikit-learn "
            f"{env['scikit-learn']}"
        ),
        "repeats": repeats,
        "seeds": seeds,
        "results": run(data_names, repeats, seeds),
    }
    payload = write_results(args, "defaults", payload, render_markdown, plot)
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
