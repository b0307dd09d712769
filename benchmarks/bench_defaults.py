"""What a new user gets: every torch classifier at its defaults beside MLPClassifier.

Usage::

    python benchmarks/bench_defaults.py [--out benchmarks/results] [--repeats 3]

Each classifier runs at its default parameters (``random_state=0`` only) in
``make_pipeline(StandardScaler(), clf)`` on scikit-learn's toy data sets
(iris, wine, breast_cancer, digits).  For each it records

* the 5-fold cross-validated accuracy (``cross_val_score``'s default folds),
* the wall time of one fit on the whole data set (median of ``--repeats``
  fits, after one warm-up fit so that torch's first-call costs are left
  out), the epochs run (``n_iter_``) and the time per epoch,
* the fit time as a ratio to MLPClassifier's.

Writes ``defaults.json`` (the results), ``defaults.md`` (rendered from the
JSON) and ``defaults.png`` to ``--out``.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
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
    """The default classifiers, MLPClassifier first (the reference)."""
    return {
        "MLPClassifier": lambda: MLPClassifier(random_state=0),
        "AsyncLayerwiseMLPClassifier": lambda: AsyncLayerwiseMLPClassifier(
            random_state=0
        ),
        "BlockLocalClassifier": lambda: BlockLocalClassifier(random_state=0),
        "BlockLocalClassifier(mode='backprop')": lambda: BlockLocalClassifier(
            mode="backprop", random_state=0
        ),
    }


def measure(make, X, y, repeats):
    pipe = make_pipeline(StandardScaler(), make())
    pipe.fit(X, y)  # warm-up: torch's first-call costs are not the estimator's
    times, epochs = [], []
    for _ in range(repeats):
        pipe = make_pipeline(StandardScaler(), make())
        start = time.perf_counter()
        pipe.fit(X, y)
        times.append(time.perf_counter() - start)
        epochs.append(int(pipe[-1].n_iter_))
    cv = cross_val_score(make_pipeline(StandardScaler(), make()), X, y)
    fit_s = float(np.median(times))
    return {
        "cv_accuracy": float(cv.mean()),
        "cv_std": float(cv.std()),
        "fit_seconds": fit_s,
        "fit_seconds_all": times,
        "n_iter": epochs[0],
        "ms_per_epoch": 1e3 * fit_s / max(1, epochs[0]),
    }


def run(repeats):
    results = {}
    for data_name, load in DATASETS.items():
        X, y = load(return_X_y=True)
        rows = {}
        for clf_name, make in classifiers().items():
            with warnings.catch_warnings():
                # MLPClassifier's ConvergenceWarning and the threads-do-not-pay
                # warning are part of what a user sees, not of the timing.
                warnings.simplefilter("ignore")
                rows[clf_name] = measure(make, X, y, repeats)
            print(data_name, clf_name, rows[clf_name], flush=True)
        reference = rows["MLPClassifier"]
        for row in rows.values():
            row["fit_time_vs_mlp"] = row["fit_seconds"] / reference["fit_seconds"]
            row["cv_points_vs_mlp"] = 100 * (row["cv_accuracy"] - reference["cv_accuracy"])
        results[data_name] = {"shape": list(X.shape), "classifiers": rows}
    return results


def render_markdown(payload):
    lines = [
        "# Defaults against MLPClassifier",
        "",
        "Written by `benchmarks/bench_defaults.py` from `defaults.json`. Each "
        "classifier at its defaults (`random_state=0`) in "
        "`make_pipeline(StandardScaler(), clf)`; fit time is the median of "
        f"{payload['repeats']} fits on the whole data set after a warm-up fit; "
        "accuracy is 5-fold `cross_val_score`.",
        "",
        f"Machine: {payload['machine']}",
        "",
        "| data | classifier | CV accuracy | vs MLP (points) | fit (s) | vs MLP "
        "fit time | epochs | ms / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for data_name, entry in payload["results"].items():
        shape = "x".join(str(s) for s in entry["shape"])
        for clf_name, r in entry["classifiers"].items():
            lines.append(
                f"| {data_name} ({shape}) | {clf_name} | {r['cv_accuracy']:.4f} "
                f"| {r['cv_points_vs_mlp']:+.1f} | {r['fit_seconds']:.3f} "
                f"| {r['fit_time_vs_mlp']:.2f}x | {r['n_iter']} "
                f"| {r['ms_per_epoch']:.1f} |"
            )
    return "\n".join(lines) + "\n"


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
        axes[0].bar(x + i * width, [r["fit_seconds"] for r in rows], width, label=clf_name)
        axes[1].bar(x + i * width, [r["cv_accuracy"] for r in rows], width, label=clf_name)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), "
            f"scikit-learn {sklearn.__version__}"
        ),
        "repeats": args.repeats,
        "results": run(args.repeats),
    }
    (out / "defaults.json").write_text(json.dumps(payload, indent=1))
    (out / "defaults.md").write_text(render_markdown(payload))
    plot(payload, out / "defaults.png")
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
