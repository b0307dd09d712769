"""Command-line interface: ``skasync demo`` (also ``python -m skasync demo``).

The demo is the package's main job: it fits every estimator inside a
:class:`~sklearn.pipeline.Pipeline` with :class:`~sklearn.model_selection.GridSearchCV`
on bundled or simulated data, prints one table per estimator against its
baselines (score and fit time) and writes plots to a folder it names.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from skasync import __version__
from skasync.utils._progress import Progress

DEMO_SECTIONS = ("forest", "async", "block-local")


def _format_table(header, rows):
    """Plain-text table with right-aligned numeric columns."""
    cells = [header] + [[_format_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row_index, row in enumerate(cells):
        # Labels (first column) left-aligned, numbers right-aligned.
        lines.append(
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths))
            ).rstrip()
        )
        if row_index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _format_cell(value):
    if isinstance(value, float):
        if value != value:  # NaN: not measured for this row
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _timed_fit(estimator, X, y):
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start


def _demo_forest(progress, output_dir, n_jobs):
    """AR-sieve forest vs the rangerts block bootstraps and sklearn's forest."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_squared_error
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
    from sklearn.pipeline import Pipeline

    from skasync import ARSieveForestRegressor, LagFeatures, make_lag_matrix
    from skasync.datasets import make_arma
    from skasync.ensemble._ar_sieve_forest import BOOTSTRAPS

    series = make_arma(600, ar=(0.5,), ma=(0.4,), random_state=1)
    X, y = make_lag_matrix(series, 5)
    n_test = 100
    X_train, y_train, X_test, y_test = (
        X[:-n_test],
        y[:-n_test],
        X[-n_test:],
        y[-n_test:],
    )

    pipeline = Pipeline(
        [
            ("lags", LagFeatures()),
            ("forest", ARSieveForestRegressor(n_estimators=100, random_state=0)),
        ]
    )
    bootstraps = list(BOOTSTRAPS)
    grid = GridSearchCV(
        pipeline,
        {"lags__n_lags": [2, 5], "forest__bootstrap": bootstraps},
        cv=TimeSeriesSplit(n_splits=3, gap=5),
        scoring="neg_mean_squared_error",
        n_jobs=n_jobs,
    )
    grid.fit(X_train, y_train)
    progress.update("forest grid search")

    rows = []
    for bootstrap in bootstraps:
        model = pipeline.set_params(
            lags__n_lags=grid.best_params_["lags__n_lags"], forest__bootstrap=bootstrap
        )
        seconds = _timed_fit(model, X_train, y_train)
        cv_mask = [
            params["forest__bootstrap"] == bootstrap
            and params["lags__n_lags"] == grid.best_params_["lags__n_lags"]
            for params in grid.cv_results_["params"]
        ]
        cv_mse = -float(grid.cv_results_["mean_test_score"][np.flatnonzero(cv_mask)[0]])
        test_mse = mean_squared_error(y_test, model.predict(X_test))
        rows.append([bootstrap, cv_mse, test_mse, seconds])
    sk_forest = RandomForestRegressor(
        n_estimators=100, max_features=2, min_samples_split=6, random_state=0
    )
    seconds = _timed_fit(sk_forest, X_train, y_train)
    rows.append(
        [
            "sklearn RandomForest",
            float("nan"),
            mean_squared_error(y_test, sk_forest.predict(X_test)),
            seconds,
        ]
    )
    progress.update("forest baselines")

    forest = pipeline.set_params(forest__bootstrap="ar-sieve").fit(X_train, y_train)
    table = _format_table(["bootstrap", "CV MSE", "test MSE", "fit s"], rows)
    text = (
        f"ARSieveForestRegressor on a simulated ARMA(1,1) series (n={series.size}, "
        f"last {n_test} one-step forecasts held out; best grid: {grid.best_params_}; "
        f"AR order {forest[-1].ar_order_})\n{table}"
    )
    plot_path = _plot_forecast(
        forest[-1], series[:-n_test], series[-n_test:], output_dir
    )
    return text, plot_path


def _demo_classifiers(progress, output_dir, n_jobs, section):
    """Digits in Pipeline(StandardScaler, clf) with GridSearchCV over the modes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y
    )
    if section == "async":
        from skasync import AsyncLayerwiseMLPClassifier

        estimator = AsyncLayerwiseMLPClassifier(
            hidden_layer_sizes=(128,),
            max_iter=30,
            learning_rate_init=0.05,
            random_state=0,
        )
        from skasync.neural_network._modes import ASYNC_MODES, mode_names

        modes = list(mode_names(ASYNC_MODES))
        title = "AsyncLayerwiseMLPClassifier on digits"
    else:
        from skasync import BlockLocalClassifier

        estimator = BlockLocalClassifier(
            hidden_layer_sizes=(128, 128, 128, 128), max_iter=30, random_state=0
        )
        from skasync.neural_network._modes import BLOCK_LOCAL_MODES, mode_names

        modes = list(mode_names(BLOCK_LOCAL_MODES))
        title = "BlockLocalClassifier on digits"
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", estimator)])
    # GridSearchCV chooses the learning rate for every mode; the table then
    # compares modes at their own best setting.
    grid = GridSearchCV(
        pipeline,
        {"clf__mode": modes, "clf__learning_rate_init": _learning_rates(section)},
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
        model = pipeline.set_params(**params)
        seconds = _timed_fit(model, X_train, y_train)
        rows.append(
            [
                mode,
                params["clf__learning_rate_init"],
                float(results["mean_test_score"][best]),
                model.score(X_test, y_test),
                seconds,
            ]
        )
        curves[mode] = list(model[-1].loss_curve_)
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
        seconds = _timed_fit(sk_model, X_train, y_train)
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
    table = _format_table(["mode", "lr", "CV accuracy", "test accuracy", "fit s"], rows)
    text = f"{title} (n_train={len(y_train)}, n_test={len(y_test)})\n{table}"
    plot_path = _plot_loss_curves(
        curves, title, output_dir, f"{section}_loss_curves.png"
    )
    return text, plot_path


def _learning_rates(section):
    return [0.02, 0.1] if section == "async" else [0.001, 0.003]


def _plot_loss_curves(curves, title, output_dir, file_name):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    path = output_dir / file_name
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_forecast(forest, history, future, output_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    horizon = 20
    forecast = forest.forecast(history, horizon, quantiles=(0.05, 0.95))
    steps = np.arange(1, horizon + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(-60, 0) + 1, history[-60:], color="black", label="history")
    ax.plot(steps, future[:horizon], color="grey", linestyle=":", label="actual")
    ax.plot(steps, forecast.mean, color="C0", label="forecast")
    ax.fill_between(
        steps,
        forecast.quantiles[:, 0],
        forecast.quantiles[:, 1],
        color="C0",
        alpha=0.25,
        label="90% interval",
    )
    ax.set_xlabel("step")
    ax.set_title("ARSieveForestRegressor recursive forecast")
    ax.legend()
    path = output_dir / "forest_forecast.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_demo(
    output_dir="skasync_demo_output",
    sections=DEMO_SECTIONS,
    n_jobs=None,
    verbose=1,
    stream=None,
):
    """Run the demo and return its report as a string.

    Parameters
    ----------
    output_dir : str or path-like, default="skasync_demo_output"
        Folder for the plots (created if needed).
    sections : iterable of str, default=("forest", "async", "block-local")
        Which estimators to show.
    n_jobs : int or None, default=None
        ``n_jobs`` of the grid searches (None: all cores, at most 2).
    verbose : int, default=1
        Show progress.
    stream : file-like, default=None
        Where the report is printed (stdout when None).

    Returns
    -------
    report : str
        The printed tables.
    """
    stream = sys.stdout if stream is None else stream
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if n_jobs is None:
        n_jobs = min(2, os.cpu_count() or 1)
    unknown = set(sections) - set(DEMO_SECTIONS)
    if unknown:
        raise ValueError(
            f"Unknown demo sections {sorted(unknown)}; choose from {DEMO_SECTIONS}."
        )
    steps = {"forest": 2, "async": 2, "block-local": 2}
    start = time.perf_counter()
    reports, plots = [], []
    with (
        Progress(
            sum(steps[s] for s in sections), "skasync demo", verbose=verbose
        ) as progress,
        warnings.catch_warnings(),
    ):
        # loky recycles a worker whose memory grew by a few hundred MB (torch's
        # allocator after a fit) and warns about it; the job is resubmitted,
        # so the warning is only noise in the demo's output.
        warnings.filterwarnings(
            "ignore", message="A worker stopped while some jobs", category=UserWarning
        )
        for section in sections:
            if section == "forest":
                text, plot = _demo_forest(progress, output_dir, n_jobs)
            else:
                text, plot = _demo_classifiers(progress, output_dir, n_jobs, section)
            reports.append(text)
            if plot is not None:
                plots.append(plot)
    report = "\n\n".join(reports)
    report += f"\n\nTotal demo time: {time.perf_counter() - start:.1f} s"
    report += f"\nPlots written to {output_dir.resolve()}: " + (
        ", ".join(p.name for p in plots) if plots else "none (install the 'plot' extra)"
    )
    print(report, file=stream, flush=True)
    return report


def main(argv=None):
    """Entry point of the ``skasync`` console script."""
    parser = argparse.ArgumentParser(
        prog="skasync", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--version", action="version", version=f"skasync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="fit every estimator in Pipelines with GridSearchCV and "
        "print a table against the baselines",
    )
    demo.add_argument(
        "--output",
        default="skasync_demo_output",
        help="folder for the plots (default: %(default)s)",
    )
    demo.add_argument(
        "--only",
        nargs="+",
        choices=DEMO_SECTIONS,
        default=list(DEMO_SECTIONS),
        help="run only these sections",
    )
    demo.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="parallel jobs of the grid searches (default: up to 2)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(
            args.output,
            sections=args.only,
            n_jobs=args.n_jobs,
            verbose=0 if args.quiet else 1,
        )
    return 0
