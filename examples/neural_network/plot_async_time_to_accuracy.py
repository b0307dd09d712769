"""
=================================================================
PD-ASGD vs Hogwild!, synchronous and serial SGD, with a straggler
=================================================================

:class:`~skasync.AsyncLayerwiseMLPClassifier` trains one MLP with
Partial Decoupled ASGD (``mode="pd-asgd"``, arXiv 2410.05985: forward and
backward passes in separate threads, layer-wise lock-free updates) or, on the
same network and thread budget, with Hogwild!, synchronous data-parallel or
serial SGD.  Their point is speed, so the curve to look at is validation
accuracy against **wall-clock time**, not epochs:
:class:`~skasync.neural_network.TrainingCurveDisplay` draws it from the
fitted ``history_``.

The second panel delays one worker (a *straggler*): the asynchronous modes
keep going without it, synchronous data parallel waits for it at every step.
Timings depend on the machine (the figures below were made by the machine
that built this documentation); see
:doc:`/benchmarks` for measured ratios over several seeds.
"""

# %%
# The data and the modes
# ----------------------
# scikit-learn's digits, standardised; two hidden layers of 256 units,
# batches of 64, 12 epochs.  ``early_stopping=True`` holds out 20 % of the
# rows and records their accuracy in ``history_`` after every epoch
# (``n_iter_no_change=100`` lets every mode run all 12 epochs).  Each thread
# runs torch with one intra-op thread, so ``"serial"`` is a one-core
# baseline and the threaded modes share the machine's cores among their
# three threads.

import math
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skasync import AsyncLayerwiseMLPClassifier
from skasync.neural_network import TrainingCurveDisplay

X, y = load_digits(return_X_y=True)
X = StandardScaler().fit_transform(X)
# Every mode runs its 12 epochs on purpose, so that the curves are comparable.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

common = dict(
    hidden_layer_sizes=(256, 256),
    batch_size=64,
    max_iter=12,
    early_stopping=True,
    validation_fraction=0.2,
    n_iter_no_change=100,
    torch_num_threads=1,
    random_state=0,
)
# Extra parameters per mode (empty: the defaults); add entries here to
# compare other settings, e.g. n_workers or solver="adam".
modes = {"pd-asgd": {}, "hogwild": {}, "sync": {}, "serial": {}}
target = 0.95


def time_to(clf, score):
    """Seconds until the validation accuracy first reached ``score``."""
    for record in clf.history_:
        if record["validation_score"] >= score:
            return record["wall_time"]
    return math.inf


fitted = {
    mode: AsyncLayerwiseMLPClassifier(mode=mode, **common, **params).fit(X, y)
    for mode, params in modes.items()
}

# %%
# A straggler
# -----------
# ``straggler_delay`` sleeps before every step of worker 0 (a backward thread
# in PD-ASGD, one of the workers in Hogwild! and sync).  The delay is four
# times the time of one serial step measured above, the benchmark's largest
# delay.

serial = fitted["serial"]
n_train = X.shape[0] - math.ceil(common["validation_fraction"] * X.shape[0])
steps = serial.n_iter_ * math.ceil(n_train / common["batch_size"])
delay = 4 * serial.history_[-1]["wall_time"] / steps
print(
    f"one serial step: {1000 * delay / 4:.2f} ms; straggler delay {1000 * delay:.2f} ms"
)
delayed = {
    mode: AsyncLayerwiseMLPClassifier(
        mode=mode, straggler_delay=delay, **common, **params
    ).fit(X, y)
    for mode, params in modes.items()
    if mode != "serial"  # one loop has no other worker to keep going
}

# %%
# Validation accuracy against wall-clock time
# -------------------------------------------
# Each display draws one fit; passing the first display's ``ax_`` (here a
# prepared Axes) puts several fits on one plot.

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
for ax, fits, title in [
    (axes[0], fitted, "no straggler"),
    (axes[1], {**delayed, "serial (no delay)": serial}, "one straggler"),
]:
    for k, (label, clf) in enumerate(fits.items()):
        TrainingCurveDisplay.from_estimator(
            clf,
            x="wall_time",
            y="validation_score",
            ax=ax,
            label=label,
            color=f"C{k}",
        )
    ax.axhline(target, color="0.5", ls=":", lw=1)
    ax.set_title(title)
axes[0].set_ylim(0.85, 1.0)
axes[1].set_ylabel("")
fig.tight_layout()

for name, fits in [("no straggler", fitted), ("one straggler", delayed)]:
    times = ", ".join(f"{m} {time_to(c, target):.2f} s" for m, c in fits.items())
    print(f"{name}: time to {target:.0%} validation accuracy: {times}")

# %%
# All modes reach about the same accuracy per epoch; what differs is the
# time an epoch takes.  With a straggler, ``"sync"`` slows down to the pace of
# its slowest worker at every step, while PD-ASGD and Hogwild! lose little:
# the other threads keep updating.  With layers this small, one-thread
# ``"serial"`` training is as fast as the threaded modes or faster: the
# threads mostly take turns for Python's GIL.  The benchmark page shows the
# threaded modes overtaking serial training with layers of 1024 units.
plt.show()
