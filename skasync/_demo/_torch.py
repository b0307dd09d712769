"""Demo sections ``async`` and ``block-local``: the torch classifiers on digits.

Both sections run one routine, :func:`_compare_modes`: scikit-learn's
digits in ``Pipeline(StandardScaler(), classifier)``, a grid search over
every ``mode`` of the classifier's mode table and two learning rates, then
one row per mode at its own best learning rate, scikit-learn's
:class:`~sklearn.neural_network.MLPClassifier` of the same hidden layers as
the baseline, and a plot of the training-loss curves against wall-clock time.

* :func:`demo_async`: :class:`~skasync.AsyncLayerwiseMLPClassifier`, and
  :func:`_compare_backends`: its parallel modes on threads and on
  processes.
* :func:`demo_block_local`: :class:`~skasync.BlockLocalClassifier`.

torch is imported when a section runs, not with this module.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import warnings

from ._plots import plot_loss_curves
from ._tables import format_table
from ._timing import timed_fit

N_STEPS = 2  # progress steps: the grid search, the baselines


def demo_async(progress, output_dir, n_jobs):
    """Run the ``async`` section; return its report text and plot path."""
    from skasync import AsyncLayerwiseMLPClassifier
    from skasync.neural_network._modes import ASYNC_MODES, mode_names

    estimator = AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(128,),
        max_iter=30,
        learning_rate_init=0.05,
        random_state=0,
    )
    text, plot_path = _compare_modes(
        estimator,
        mode_names(ASYNC_MODES),
        [0.02, 0.1],
        "async",
        "AsyncLayerwiseMLPClassifier on digits",
        progress,
        output_dir,
        n_jobs,
    )
    return text + "\n\n" + _compare_backends(estimator), plot_path


def _compare_backends(estimator):
    """The parallel modes on threads and on processes: fit time and start-up.

    Whether the processes pay on the demo's data is read off the rows: the
    time they save a fit, with a warm pool, against the pool's first start.
    """
    import math

    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from skasync.neural_network._modes import ASYNC_MODES, modes_where
    from skasync.utils._processes import pool_is_warm

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    # backend="auto" with the paper's mode, first: what a first fit in this
    # Python process gets (unless an earlier section started the pool).
    auto = clone(estimator).set_params(mode="pd-asgd", backend="auto")
    n_processes = auto._requested_threads("processes")
    warm_before = pool_is_warm(n_processes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        auto.fit(X_train, y_train)
    # The pool's start: paid by auto's fit if it took processes, else by
    # the first warm-up below.
    pool_start = auto.throughput_["startup_seconds"]
    rows, fit_seconds = [], {}
    for mode in modes_where(ASYNC_MODES, parallel=True):
        for backend in ("threads", "processes"):
            model = clone(estimator).set_params(mode=mode, backend=backend)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                if backend == "processes":
                    # Untimed: sizes the pool as this fit's capped worker
                    # count asks, so the timed fit reuses it warm.
                    warm = clone(model).fit(X_train, y_train)
                    pool_start = max(pool_start, warm.throughput_["startup_seconds"])
                seconds = timed_fit(model, X_train, y_train)
            fit_seconds[mode, backend] = seconds
            rows.append(
                [
                    mode,
                    model.backend_,
                    model.throughput_["samples_per_second"],
                    model.throughput_["startup_seconds"],
                    model.score(X_test, y_test),
                    seconds,
                ]
            )
    table = format_table(
        ["mode", "backend", "samples/s", "start-up s", "test accuracy", "fit s"], rows
    )
    saved = {
        mode: fit_seconds[mode, "threads"] - fit_seconds[mode, "processes"]
        for mode, _ in fit_seconds
    }
    best = max(saved, key=saved.get)
    if saved[best] <= 0:
        verdict = (
            "On this data the processes do not pay: even with a warm pool no "
            "mode fits faster on them than on threads."
        )
    elif saved[best] < pool_start:
        verdict = (
            f"On this data the processes save at most {saved[best]:.2f} s a fit "
            f"({best}, warm pool), less than the pool's first start: they pay "
            f"only over {math.ceil(pool_start / saved[best])} or more fits in one "
            "Python process (GridSearchCV, partial_fit)."
        )
    else:
        verdict = (
            f"On this data the processes pay even on a first fit: {best} saves "
            f"{saved[best]:.2f} s, more than the pool's first start."
        )
    pool_state = "the pool was already running" if warm_before else "no pool yet"
    return (
        f"Threads or processes (the pool's first start: {pool_start:.2f} s, paid "
        "once per Python process)\n"
        f"{table}\n"
        f"fit s excludes the pool's first start. {verdict} backend='auto' picked "
        f"{auto.backend_!r} for a first pd-asgd fit ({pool_state}: "
        f"{auto._backend_reason}); on MNIST-1D the processes run at 1.5-1.9x "
        "serial (benchmarks/results/backends.md)."
    )


def demo_block_local(progress, output_dir, n_jobs):
    """Run the ``block-local`` section; return its report text and plot path."""
    from skasync import BlockLocalClassifier
    from skasync.neural_network._modes import BLOCK_LOCAL_MODES, mode_names

    estimator = BlockLocalClassifier(
        hidden_layer_sizes=(128, 128, 128, 128), max_iter=30, random_state=0
    )
    return _compare_modes(
        estimator,
        mode_names(BLOCK_LOCAL_MODES),
        [0.001, 0.003],
        "block-local",
        "BlockLocalClassifier on digits",
        progress,
        output_dir,
        n_jobs,
    )


def _compare_modes(
    estimator, modes, learning_rates, section, title, progress, output_dir, n_jobs
):
    """Grid-search ``modes`` x ``learning_rates``; table and loss-curve plot."""
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    modes = list(modes)
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", estimator)])
    # GridSearchCV chooses the learning rate for every mode; the table then
    # compares modes at their own best setting.
    grid = GridSearchCV(
        pipeline,
        {"clf__mode": modes, "clf__learning_rate_init": learning_rates},
        cv=3,
        n_jobs=n_jobs,
    )
    grid.fit(X_train, y_train)
    progress.update(f"{section} grid search")

    rows = []
    curves = {}
    results = grid.cv_results_
    for mode in modes:
        candidates = [
            i for i, p in enumerate(results["params"]) if p["clf__mode"] == mode
        ]
        best = max(candidates, key=lambda i: results["mean_test_score"][i])
        params = results["params"][best]
        # A clone per mode: the plot needs every mode's fitted history_.
        model = clone(pipeline).set_params(**params)
        seconds = timed_fit(model, X_train, y_train)
        rows.append(
            [
                mode,
                params["clf__learning_rate_init"],
                float(results["mean_test_score"][best]),
                model.score(X_test, y_test),
                seconds,
            ]
        )
        curves[mode] = model[-1]
    sk_model = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "clf",
                MLPClassifier(
                    hidden_layer_sizes=estimator.hidden_layer_sizes,
                    max_iter=200,
                    random_state=0,
                ),
            ),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = timed_fit(sk_model, X_train, y_train)
    rows.append(
        [
            "sklearn MLPClassifier",
            "adam 1e-3",
            float("nan"),
            sk_model.score(X_test, y_test),
            seconds,
        ]
    )
    progress.update(f"{section} baselines")
    table = format_table(["mode", "lr", "CV accuracy", "test accuracy", "fit s"], rows)
    text = f"{title} (n_train={len(y_train)}, n_test={len(y_test)})\n{table}"
    plot_path = plot_loss_curves(
        curves, title, output_dir / f"{section}_loss_curves.png"
    )
    return text, plot_path
