"""
=====================================================
Choosing the lags and the bootstrap with GridSearchCV
=====================================================

The number of lags and the bootstrap scheme of
:class:`~skasync.ARSieveForestRegressor` are ordinary hyper-parameters.
Build the lag matrix once with the largest number of lags, let
:class:`~skasync.LagFeatures` keep the first ``n_lags`` columns inside a
:class:`~sklearn.pipeline.Pipeline`, and cross-validate with
:class:`~sklearn.model_selection.TimeSeriesSplit`: every training fold is a
stretch of the past and every test fold the stretch that follows, so no
fold trains on its own future.
"""

# %%
# The folds
# ---------
# ``gap=5`` leaves out the five rows between each training fold and its test
# fold, so that no test row has a training row among its lags.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from skasync import ARSieveForestRegressor, LagFeatures, make_lag_matrix
from skasync.datasets import make_arma

series = make_arma(600, ar=(0.5,), ma=(0.4,), random_state=0)
X, y = make_lag_matrix(series, n_lags=8)
cv = TimeSeriesSplit(n_splits=4, gap=5)

fig, ax = plt.subplots(figsize=(7, 1.8))
for k, (train, test) in enumerate(cv.split(X)):
    ax.plot(train, np.full(train.shape, k), "|", color="C0", ms=8)
    ax.plot(test, np.full(test.shape, k), "|", color="C1", ms=8)
ax.set_yticks(range(4), [f"fold {k + 1}" for k in range(4)])
ax.invert_yaxis()
ax.set_xlabel("row of the lag matrix (time)")
ax.set_title("TimeSeriesSplit(n_splits=4, gap=5): training (blue), test (orange)")
fig.tight_layout()

# %%
# The grid
# --------
# Four bootstraps times five lag counts, 100 trees each, scored by the
# one-step mean squared error of each test fold.

pipe = Pipeline(
    [
        ("lags", LagFeatures()),
        ("forest", ARSieveForestRegressor(n_estimators=100, random_state=0)),
    ]
)
bootstraps = ["ar-sieve", "moving", "stationary", "iid"]
lags = [1, 2, 3, 5, 8]
grid = GridSearchCV(
    pipe,
    {"lags__n_lags": lags, "forest__bootstrap": bootstraps},
    cv=cv,
    scoring="neg_mean_squared_error",
).fit(X, y)
print("best:", grid.best_params_, f"CV MSE {-grid.best_score_:.3f}")

# %%
# The cross-validated error of every combination.  The AR-sieve forest is the
# most accurate at every lag count: its trees learn from series simulated by
# the AR sieve (whose order AIC chooses, independently of the lags the trees
# split on), a good model of this linear series.  The forests that resample
# the observations need three lags or more, and eight lags hurt every
# bootstrap: more columns, fewer rows, noisier splits.

results = grid.cv_results_
fig, ax = plt.subplots(figsize=(6, 4))
for bootstrap in bootstraps:
    rows = [
        i
        for i, params in enumerate(results["params"])
        if params["forest__bootstrap"] == bootstrap
    ]
    order = np.argsort([results["params"][i]["lags__n_lags"] for i in rows])
    rows = np.asarray(rows)[order]
    ax.errorbar(
        np.asarray(lags) + 0.05 * bootstraps.index(bootstrap),
        -results["mean_test_score"][rows],
        yerr=results["std_test_score"][rows] / np.sqrt(cv.n_splits),
        marker="o",
        capsize=3,
        label=bootstrap,
    )
ax.set_xticks(lags)
ax.set_xlabel("number of lags (lags__n_lags)")
ax.set_ylabel("CV mean squared error")
ax.set_title("GridSearchCV over lags x bootstrap (± one standard error)")
ax.legend()
fig.tight_layout()
plt.show()
