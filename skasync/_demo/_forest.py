"""Demo section ``forest``: the AR-sieve forest against the block bootstraps.

A grid search over the lag count and every bootstrap of
:class:`~skasync.ARSieveForestRegressor` on a simulated ARMA(1,1) series
chooses the bootstrap by ``TimeSeriesSplit`` cross-validation (which one
wins depends on the series: ``docs/user_guide/ar_sieve_forest.rst``); then
one row per bootstrap (at the best lag count, the CV choice marked) and
scikit-learn's :class:`~sklearn.ensemble.RandomForestRegressor` as the
baseline, and a plot of a recursive forecast.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np

from ._plots import plot_forecast
from ._tables import format_table
from ._timing import timed_fit

N_STEPS = 2  # progress steps: the grid search, the baselines


def demo_forest(progress, output_dir, n_jobs):
    """Run the section; return its report text and its plot path (or None)."""
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

    best_n_lags = grid.best_params_["lags__n_lags"]
    chosen = grid.best_params_["forest__bootstrap"]
    rows = []
    for bootstrap in bootstraps:
        model = pipeline.set_params(
            lags__n_lags=best_n_lags, forest__bootstrap=bootstrap
        )
        seconds = timed_fit(model, X_train, y_train)
        cv_mask = [
            params["forest__bootstrap"] == bootstrap
            and params["lags__n_lags"] == best_n_lags
            for params in grid.cv_results_["params"]
        ]
        cv_mse = -float(grid.cv_results_["mean_test_score"][np.flatnonzero(cv_mask)[0]])
        test_mse = mean_squared_error(y_test, model.predict(X_test))
        name = f"{bootstrap} (CV choice)" if bootstrap == chosen else bootstrap
        rows.append([name, cv_mse, test_mse, seconds])
    sk_forest = RandomForestRegressor(
        n_estimators=100, max_features=2, min_samples_split=6, random_state=0
    )
    seconds = timed_fit(sk_forest, X_train, y_train)
    rows.append(
        [
            "sklearn RandomForest",
            float("nan"),
            mean_squared_error(y_test, sk_forest.predict(X_test)),
            seconds,
        ]
    )
    progress.update("forest baselines")

    test_rank = 1 + sum(row[2] < rows[bootstraps.index(chosen)][2] for row in rows)
    # The plotted forecast is the CV choice's; a block forest's intervals draw
    # on its out-of-bag residuals.
    forest = pipeline.set_params(forest__bootstrap=chosen, forest__oob_score=True).fit(
        X_train, y_train
    )
    table = format_table(["bootstrap", "CV MSE", "test MSE", "fit s"], rows)
    text = (
        f"ARSieveForestRegressor on a simulated ARMA(1,1) series (n={series.size}, "
        f"last {n_test} one-step forecasts held out; AR order "
        f"{forest[-1].ar_order_}).\nBootstrap chosen by TimeSeriesSplit(3) CV: "
        f"{chosen!r} with {best_n_lags} lags (test MSE rank {test_rank} of "
        f"{len(rows)}; plotted).\n{table}"
    )
    plot_path = plot_forecast(
        forest[-1],
        series[:-n_test],
        series[-n_test:],
        output_dir / "forest_forecast.png",
    )
    return text, plot_path
