# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""Tests of AsyncLayerwiseMLPClassifier and its training engines."""

import _thread
import math
import pickle
import threading
import time
import traceback
import warnings

import numpy as np
import pytest
import torch
from _helpers import skasync_threads
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync import AsyncLayerwiseMLPClassifier
from skasync.neural_network import _shared_mlp
from skasync.neural_network._torch_utils import make_linear, seed_from

MODES = ["serial", "sync", "hogwild", "d-asgd", "pd-asgd"]
THREADED = ["sync", "hogwild", "d-asgd", "pd-asgd"]

# Small layers trigger the "threads do not pay" warning on purpose; the
# tests here are about behaviour, not speed.
pytestmark = pytest.mark.filterwarnings("ignore:mode=.*layer ops are small:UserWarning")

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA is not available on this machine"
)


@pytest.fixture(scope="module")
def digits(digits):
    """conftest's scaled digits, split into train and test."""
    X, y = digits
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def small(**params):
    # One intra-op thread: tiny ops on a shared, loaded CI machine are ~10x
    # slower with OpenMP threads spinning against each other.
    base = dict(
        hidden_layer_sizes=(32,),
        max_iter=3,
        batch_size=32,
        random_state=0,
        torch_num_threads=1,
        # These tests are about the threaded engines (their hooks are
        # closures, which a worker process could not receive); "auto" could
        # pick a warm process pool.
        backend="threads",
    )
    base.update(params)
    return AsyncLayerwiseMLPClassifier(**base)


# ---------------------------------------------------------------- sklearn API
CHECKED = [
    AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(16,),
        mode="serial",
        max_iter=20,
        random_state=0,
        torch_num_threads=1,
    ),
    # batch_size=4: the checks' tiny data sets still give every backward
    # thread a batch. learning_rate_init=1e-3: some checks fit unscaled
    # inputs around 100, where the default 0.01 with stale momentum steps
    # sometimes diverges (a NaN loss, hence a ValueError) depending on how
    # the threads interleave; 1e-3 keeps every interleaving stable.
    AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(16,),
        mode="pd-asgd",
        max_iter=20,
        batch_size=4,
        learning_rate_init=1e-3,
        random_state=0,
        torch_num_threads=1,
    ),
]


@parametrize_with_checks(
    CHECKED, expected_failed_checks=lambda est: est._expected_failed_checks()
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_pipeline_in_grid_search(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "clf",
                AsyncLayerwiseMLPClassifier(
                    hidden_layer_sizes=(32,),
                    max_iter=5,
                    batch_size=64,
                    random_state=0,
                    torch_num_threads=1,
                ),
            ),
        ]
    )
    search = GridSearchCV(
        pipe,
        {"clf__mode": ["serial", "pd-asgd"], "clf__learning_rate_init": [0.01]},
        cv=2,
        n_jobs=2,
    )
    search.fit(X_train, y_train)
    assert search.best_score_ > 0.8
    assert search.score(X_test, y_test) > 0.85
    assert not skasync_threads()


@pytest.mark.parametrize("mode", ["serial", "pd-asgd"])
def test_clone_and_pickle_round_trip(digits, mode):
    X_train, X_test, y_train, _ = digits
    clf = small(mode=mode).fit(X_train, y_train)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(
        restored.predict_proba(X_test), clf.predict_proba(X_test)
    )
    assert restored.staleness_ == clf.staleness_
    fresh = clone(clf)
    assert not hasattr(fresh, "classes_")
    assert fresh.get_params() == clf.get_params()
    # The unpickled model keeps training (optimizer state came along).
    restored.partial_fit(X_train, y_train)
    assert restored.n_iter_ == clf.n_iter_ + 1


# ------------------------------------------------------------- correctness
def _assert_matches_torch_reference(
    clf, X_train, y_train, *, seed, activation, make_optimizer
):
    """Train the same MLP with autograd and ``make_optimizer(parameters)`` on
    the same draws in the same order (one seed for the generator, then the
    layers, then one permutation per epoch); compare the weights."""
    gen = torch.Generator().manual_seed(seed_from(check_random_state(seed)))
    sizes = [X_train.shape[1], *clf.hidden_layer_sizes, len(clf.classes_)]
    layers = [make_linear(a, b, gen, activation) for a, b in zip(sizes[:-1], sizes[1:])]
    nonlinearity = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    modules = [layers[0]]
    for layer in layers[1:]:
        modules += [nonlinearity(), layer]
    model = torch.nn.Sequential(*modules)
    opt = make_optimizer(model.parameters())
    X = torch.as_tensor(X_train, dtype=torch.float32)
    y = torch.as_tensor(np.searchsorted(clf.classes_, y_train))
    for _ in range(clf.max_iter):
        for idx in torch.split(torch.randperm(len(X), generator=gen), clf.batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            penalty = sum((layer.weight**2).sum() for layer in layers)
            loss = loss + 0.5 * clf.alpha * penalty / len(idx)
            loss.backward()
            opt.step()
    for layer, coef, intercept in zip(layers, clf.coefs_, clf.intercepts_):
        np.testing.assert_allclose(
            coef, layer.weight.detach().numpy().T, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            intercept, layer.bias.detach().numpy(), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("fused_sgd", [True, False])
def test_serial_matches_hand_written_torch_loop(digits, fused_sgd, monkeypatch):
    # Both SGD paths: torch's fused kernel and the element-wise fallback
    # (torch < 2.4 has no fused kernel on the CPU).
    if not fused_sgd:
        monkeypatch.setattr(_shared_mlp, "_has_fused_sgd", lambda tensor: False)
    X_train, _, y_train, _ = digits
    X_train, y_train = X_train[:600], y_train[:600]
    seed, lr, mu = 3, 0.05, 0.9
    clf = AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(20, 12),
        mode="serial",
        batch_size=50,
        max_iter=3,
        learning_rate_init=lr,
        momentum=mu,
        nesterovs_momentum=True,
        alpha=1e-3,
        activation="tanh",
        tol=0,
        random_state=seed,
        torch_num_threads=1,
    ).fit(X_train, y_train)
    _assert_matches_torch_reference(
        clf,
        X_train,
        y_train,
        seed=seed,
        activation="tanh",
        make_optimizer=lambda params: torch.optim.SGD(
            params, lr=lr, momentum=mu, nesterov=True
        ),
    )


def test_serial_adam_matches_torch_optim_adam(digits):
    # The Adam path (beta_1, beta_2, epsilon, the L2 term added to the
    # gradient as weight decay) against torch.optim.Adam on the same draws.
    X_train, _, y_train, _ = digits
    X_train, y_train = X_train[:600], y_train[:600]
    seed, lr, betas, eps = 5, 3e-3, (0.8, 0.99), 1e-7
    clf = AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(20,),
        mode="serial",
        solver="adam",
        batch_size=50,
        max_iter=3,
        learning_rate_init=lr,
        beta_1=betas[0],
        beta_2=betas[1],
        epsilon=eps,
        alpha=1e-3,
        tol=0,
        random_state=seed,
        torch_num_threads=1,
    ).fit(X_train, y_train)
    _assert_matches_torch_reference(
        clf,
        X_train,
        y_train,
        seed=seed,
        activation="relu",
        make_optimizer=lambda params: torch.optim.Adam(
            params, lr=lr, betas=betas, eps=eps
        ),
    )


def test_serial_and_sync_are_deterministic(digits):
    X_train, X_test, y_train, _ = digits
    for mode in ("serial", "sync"):
        a = small(mode=mode).fit(X_train, y_train).predict_proba(X_test)
        b = small(mode=mode).fit(X_train, y_train).predict_proba(X_test)
        np.testing.assert_array_equal(a, b)
    # sync averages shard gradients weighted by shard size: one full-batch step.
    serial = small(mode="serial").fit(X_train, y_train).predict_proba(X_test)
    sync = small(mode="sync", n_workers=3).fit(X_train, y_train).predict_proba(X_test)
    np.testing.assert_allclose(serial, sync, atol=1e-4)


def test_serial_snapshot_reuses_one_buffer_and_changes_nothing(digits):
    # One loop, no concurrent writes: the weights copied for the backward
    # equal the live ones, so the reused snapshot buffers must give the same
    # model bit for bit (a stale or half-copied buffer would not).
    X_train, X_test, y_train, _ = digits
    live = small(mode="serial", backward_weights="current").fit(X_train, y_train)
    copied = small(mode="serial", backward_weights="snapshot").fit(X_train, y_train)
    assert (live.backward_weights_, copied.backward_weights_) == ("current", "snapshot")
    for a, b in zip(live.coefs_, copied.coefs_):
        np.testing.assert_array_equal(a, b)


def test_gradient_buffers_belong_to_one_thread():
    # Two Hogwild! or backward threads sharing one buffer would overwrite
    # each other's gradients before their steps read them.
    from skasync.neural_network._async_engines import AsyncLayerwiseConfig
    from skasync.neural_network._shared_mlp import SharedMLP, TrainingLog

    linears = [torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)]
    shared = SharedMLP(
        linears, [{}, {}], TrainingLog(2), AsyncLayerwiseConfig("hogwild")
    )
    mine = shared.gradient_buffers()
    assert shared.gradient_buffers() is mine  # reused batch after batch
    assert [b.shape for b in mine] == [lin.weight.shape for lin in linears]
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(shared.gradient_buffers()))
    worker.start()
    worker.join()
    ptrs = {b.data_ptr() for b in mine}
    assert not ptrs & {b.data_ptr() for b in theirs[0]}
    assert not ptrs & {lin.weight.data_ptr() for lin in linears}


@pytest.mark.parametrize(
    "mode, backend, expected",
    [
        ("hogwild", "processes", "snapshot"),
        ("hogwild", "threads", "current"),
        ("pd-asgd", "processes", "current"),
        ("d-asgd", "processes", "current"),
        ("sync", "processes", "current"),
        ("serial", "threads", "current"),
    ],
)
def test_auto_backward_weights_rule(mode, backend, expected):
    from skasync.neural_network._backends import choose_backward_weights

    assert choose_backward_weights("auto", mode, backend) == expected
    # An explicit choice is kept whatever the mode and back-end.
    for explicit in ("current", "snapshot"):
        assert choose_backward_weights(explicit, mode, backend) == explicit


@pytest.mark.parametrize("mode", MODES)
def test_accuracy_floor_on_digits(digits, mode):
    X_train, X_test, y_train, y_test = digits
    clf = small(hidden_layer_sizes=(64,), mode=mode, max_iter=15)
    clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9
    assert len(clf.coefs_) == 2 and clf.coefs_[0].shape == (64, 64)
    assert clf.intercepts_[1].shape == (10,)
    assert clf.n_updates_[0] == clf.n_updates_[1] == 15 * math.ceil(len(X_train) / 32)
    assert set(clf.throughput_) == {
        "samples_per_second",
        "updates_per_second",
        "startup_seconds",
    }
    assert not skasync_threads()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_pd_asgd_options_train(digits, solver):
    X_train, X_test, y_train, y_test = digits
    clf = small(
        mode="pd-asgd",
        solver=solver,
        max_iter=15,
        backward_weights="snapshot",
        update_lock="layer",
        n_forward_workers=2,
        n_backward_workers=3,
        queue_size=4,
        learning_rate_init=0.003 if solver == "adam" else 0.01,
    )
    assert clf.fit(X_train, y_train).score(X_test, y_test) > 0.85


def test_history_staleness_and_target(digits):
    X_train, _, y_train, _ = digits
    clf = small(
        mode="pd-asgd", max_iter=30, early_stopping=True, target_score=0.8, verbose=2
    )
    clf.fit(X_train, y_train)
    assert clf.time_to_target_ is not None and clf.time_to_target_ > 0
    record = clf.history_[-1]
    for key in (
        "epoch",
        "wall_time",
        "loss",
        "updates",
        "validation_score",
        "samples_per_second",
    ):
        assert key in record
    assert len(clf.staleness_) == 2
    for stats in clf.staleness_:
        assert set(stats) == {"mean", "p95", "max"}
        # mean <= p95 is no invariant: one descheduled thread's stale update
        # can lift the mean of a short fit above the 95th percentile.
        assert 0 <= stats["mean"] <= stats["max"]
        assert 0 <= stats["p95"] <= stats["max"]
    serial = small(mode="serial").fit(X_train, y_train)
    assert all(s["max"] == 0 for s in serial.staleness_)


def test_warm_start_and_partial_fit_continue(digits):
    X_train, _, y_train, _ = digits
    clf = small(mode="pd-asgd", warm_start=True, tol=0).fit(X_train, y_train)
    updates = clf.n_updates_[0]
    clf.fit(X_train, y_train)
    assert clf.n_iter_ == 6 and clf.n_updates_[0] == 2 * updates
    inc = small(mode="hogwild")
    inc.partial_fit(X_train, y_train, classes=np.arange(10))
    inc.partial_fit(X_train, y_train)
    assert inc.n_iter_ == 2


# ------------------------------------------------------- threads and faults
def _steps_slowly(seconds):
    def hook(event, worker):
        if event in ("backward", "step"):
            time.sleep(seconds)

    return hook


@pytest.mark.usefixtures("torch_threads_sentinel")
@pytest.mark.parametrize("mode", THREADED)
def test_worker_exception_reaches_caller_with_traceback(digits, mode):
    X_train, _, y_train, _ = digits
    calls = []

    def failing_hook(event, worker):
        if event == "update":
            calls.append(event)
            if len(calls) == 5:
                raise RuntimeError("injected worker failure")

    clf = small(mode=mode, max_iter=50)
    clf._engine_hook = failing_hook
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="injected worker failure") as info:
        clf.fit(X_train, y_train)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "failing_hook" in frames  # the worker's own frames came along
    assert not skasync_threads()
    assert torch.get_num_threads() == before


def test_backward_failure_while_forward_blocks_on_full_queue(digits):
    # A crashed backward thread must not leave the forward thread stuck on
    # a full queue.
    X_train, _, y_train, _ = digits

    def hook(event, worker):
        if event == "backward":
            time.sleep(0.2)
            raise ValueError("backward thread crashed")

    clf = small(mode="pd-asgd", queue_size=1, max_iter=50)
    clf._engine_hook = hook
    # A deadlock would hang here: pytest-timeout (pyproject) turns it into a
    # failure instead of a stuck CI job.
    with pytest.raises(ValueError, match="backward thread crashed"):
        clf.fit(X_train, y_train)
    assert not skasync_threads()


@pytest.mark.parametrize("mode", THREADED)
def test_max_time_stops_slow_workers(digits, mode):
    # Workers slower than the budget, a queue of 1: fit still returns soon,
    # every thread joined.
    # The stopping rule is off (tol=0 and an endless patience), so only
    # max_time can end the fit: 43 slowed steps an epoch (shared by up to 3
    # workers) allow a few epochs in it, never the 1000 of max_iter.
    X_train, _, y_train, _ = digits
    clf = small(
        mode=mode,
        max_iter=1000,
        max_time=0.4,
        queue_size=1,
        tol=0.0,
        n_iter_no_change=10**6,
    )
    clf._engine_hook = _steps_slowly(0.01)
    clf.fit(X_train, y_train)
    assert clf.n_iter_ <= 10
    assert not skasync_threads()


def test_keyboard_interrupt_from_worker(digits):
    X_train, _, y_train, _ = digits

    def hook(event, worker):
        if event == "backward":
            raise KeyboardInterrupt

    clf = small(mode="pd-asgd", max_iter=50)
    clf._engine_hook = hook
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_train, y_train)
    assert not skasync_threads()


@pytest.mark.usefixtures("torch_threads_sentinel", "sigint_raises_keyboard_interrupt")
@pytest.mark.parametrize("mode", ["pd-asgd", "sync"])
def test_keyboard_interrupt_on_main_thread_joins_workers(digits, mode):
    # Ctrl-C arrives in the main thread while it waits for the workers.
    X_train, _, y_train, _ = digits
    sent = threading.Event()

    def hook(event, worker):
        if event in ("backward", "step"):
            if not sent.is_set():
                sent.set()
                _thread.interrupt_main()
            time.sleep(0.005)

    clf = small(mode=mode, max_iter=1000)
    clf._engine_hook = hook
    before = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_train, y_train)
    assert not skasync_threads()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("mode", THREADED)
@pytest.mark.parametrize("backward_weights", ["current", "snapshot"])
def test_no_version_counter_error_when_weights_change_mid_batch(
    digits, mode, backward_weights
):
    # Slow backward passes guarantee that other threads update the weights
    # between a batch's forward and its backward.
    X_train, _, y_train, _ = digits

    def hook(event, worker):
        if event in ("backward", "step") and worker == 0:
            time.sleep(0.002)

    clf = small(
        mode=mode,
        max_iter=2,
        hidden_layer_sizes=(32, 32),
        backward_weights=backward_weights,
    )
    clf._engine_hook = hook
    clf.fit(X_train, y_train)  # would raise "modified by an inplace operation"
    if mode != "sync":
        assert max(s["max"] for s in clf.staleness_) > 0


def test_straggler_delay_slows_sync(digits, monkeypatch):
    from skasync.neural_network import _async_engines

    X_train, _, y_train, _ = digits
    n_batches = math.ceil(len(X_train) / 128)
    delays = []
    straggle = _async_engines.AsyncLayerwiseConfig.straggle

    def recorded(config, worker):
        if config.straggler_delay > 0 and worker in config.straggler_ids:
            delays.append((worker, config.straggler_delay))
        straggle(config, worker)

    monkeypatch.setattr(_async_engines.AsyncLayerwiseConfig, "straggle", recorded)
    small(
        mode="sync",
        max_iter=1,
        batch_size=128,
        straggler_delay=0.02,
        straggler_workers=[1],
    ).fit(X_train, y_train)
    # The delayed worker sleeps before every synchronous step (each of which
    # the others wait for at the all-reduce), and no other worker sleeps.
    assert delays == [(1, 0.02)] * n_batches
    with pytest.raises(ValueError, match="straggler_workers"):
        small(mode="pd-asgd", straggler_workers=[5]).fit(X_train, y_train)


@pytest.mark.usefixtures("torch_threads_sentinel")
def test_thread_setting_restored_and_split(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    before = torch.get_num_threads()
    seen = []
    clf = small(mode="pd-asgd", max_iter=1, torch_num_threads=None)
    clf._engine_hook = lambda event, worker: seen.append(torch.get_num_threads())
    monkeypatch.setattr(
        "skasync.neural_network._async_layerwise.available_cpus", lambda: 6
    )
    clf.fit(X_train, y_train)
    assert set(seen) == {2}  # 6 cores / (1 forward + 2 backward threads)
    assert torch.get_num_threads() == before
    assert small(mode="serial", torch_num_threads=None)._fit_num_threads() == 6
    assert (
        small(mode="hogwild", n_workers=4, torch_num_threads=1)._fit_num_threads() == 1
    )


# ----------------------------------------------------------------- bad input
def test_nan_inf_one_class_and_wrong_width(digits):
    X_train, X_test, y_train, _ = digits
    X_bad = X_train.copy()
    X_bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small().fit(X_bad, y_train)
    X_bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        small().fit(X_bad, y_train)
    with pytest.raises(ValueError, match="at least 2 classes"):
        small().fit(X_train, np.zeros(len(X_train)))
    clf = small(max_iter=1).fit(X_train, y_train)
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(X_test[:, :10])
    assert not skasync_threads()


@pytest.mark.parametrize(
    "params, name",
    [
        ({"n_backward_workers": 0}, "n_backward_workers"),
        ({"n_forward_workers": -1}, "n_forward_workers"),
        ({"n_workers": 0, "mode": "hogwild"}, "n_workers"),
        ({"queue_size": 0}, "queue_size"),
        ({"mode": "downpour"}, "mode"),
        ({"straggler_delay": -1.0}, "straggler_delay"),
    ],
)
def test_invalid_parameters_name_the_parameter(digits, params, name):
    X_train, _, y_train, _ = digits
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        small(**params).fit(X_train, y_train)
    assert not skasync_threads()


@pytest.mark.parametrize(
    "params, name, used",
    [
        ({"mode": "pd-asgd", "n_backward_workers": 8}, "n_backward_workers", 5),
        ({"mode": "d-asgd", "n_forward_workers": 8}, "n_forward_workers", 5),
        ({"mode": "hogwild", "n_workers": 8}, "n_workers", 5),
        ({"mode": "sync", "n_workers": 8, "batch_size": 4}, "n_workers", 4),
    ],
)
def test_more_workers_than_batches_take_part_as_the_data_allow(
    digits, params, name, used
):
    # 500 rows in batches of 100 are 5 batches: small data is not bad input,
    # the fit runs as many workers as there are batches (shard rows for
    # sync), says so because the count was explicit, and records it.
    X_train, X_test, y_train, y_test = digits
    clf = small(**{"batch_size": 100, "max_iter": 30, **params})
    with pytest.warns(UserWarning, match=f"{name}=8 is more than"):
        clf.fit(X_train[:500], y_train[:500])
    assert getattr(clf, f"{name}_") == used
    assert clf.get_params()[name] == 8
    assert clf.score(X_test, y_test) > 0.8
    assert not skasync_threads()


@pytest.mark.parametrize("mode", MODES)
def test_default_worker_counts_fit_small_data_silently(mode):
    # The cases: iris (150 rows, one batch of "auto" size) and
    # partial_fit on chunks of 57 rows, at the default counts.
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = AsyncLayerwiseMLPClassifier(mode=mode, random_state=0, torch_num_threads=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"n_\w+=\d+ is more than")
        clf.fit(X, y)
        order = check_random_state(0).permutation(len(y))
        inc = clone(clf)
        for start in range(0, len(y), 57):
            rows = order[start : start + 57]
            inc.partial_fit(X[rows], y[rows], classes=np.unique(y))
    expected = {
        "serial": (0, 0, 1),
        "sync": (0, 0, 3),
        "hogwild": (0, 0, 1),
        "d-asgd": (1, 1, 2),
        "pd-asgd": (1, 1, 2),
    }[mode]
    got = (clf.n_forward_workers_, clf.n_backward_workers_, clf.n_workers_)
    assert got == expected
    assert clf.queue_size_ == max(1, expected[1])
    assert clf.score(X, y) > 0.8
    assert inc.n_iter_ == 3
    assert not skasync_threads()


def test_warm_start_and_partial_fit_after_a_failed_first_fit(digits):
    # The failed fit set classes_ but built no model: the next fit starts
    # afresh instead of "continuing" a model that does not exist.
    X_train, _, y_train, _ = digits
    X, y = X_train[:500], y_train[:500]
    clf = small(mode="pd-asgd", straggler_workers=[5], batch_size=100)
    with pytest.raises(ValueError, match="straggler_workers"):
        clf.fit(X, y)
    clf.set_params(straggler_workers="one", warm_start=True).fit(X, y)
    assert clf.n_iter_ == 3
    inc = small(mode="serial", batch_size=100, n_workers=None)
    inc.set_params(mode="pd-asgd", straggler_workers=[5])
    with pytest.raises(ValueError, match="straggler_workers"):
        inc.partial_fit(X, y, classes=np.arange(10))
    inc.set_params(straggler_workers="one")
    # the same unsorted classes on every call
    inc.partial_fit(X, y, classes=np.arange(10)[::-1])
    inc.partial_fit(X, y, classes=np.arange(10)[::-1])
    assert inc.n_iter_ == 2


def test_max_time_that_ends_before_a_batch(digits, monkeypatch):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="max_time=1e-06 s ran out before the first"):
        small(mode="pd-asgd", max_time=1e-6).fit(X_train, y_train)
    assert not skasync_threads()
    # The deadline passes between two epochs: the empty epoch is not a NaN
    # loss, and training stops with what the first epoch learnt.
    clf = small(mode="pd-asgd", max_iter=50, max_time=0.5, tol=0)
    make_batches = clf._make_batches
    calls = []

    def late_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            time.sleep(0.6)
        return make_batches(*args, **kwargs)

    monkeypatch.setattr(clf, "_make_batches", late_second_epoch)
    clf.fit(X_train, y_train)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    assert math.isfinite(clf.loss_curve_[0])
    assert not skasync_threads()


def test_small_ops_warn():
    # On threads (a warm pool left by an earlier test would send "auto" to
    # processes, where the warning does not apply).
    X, y = load_digits(return_X_y=True)
    clf = AsyncLayerwiseMLPClassifier(
        (8,), mode="hogwild", backend="threads", max_iter=1, batch_size=8
    )
    with pytest.warns(UserWarning, match="layer ops are small"):
        clf.fit(X[:200], y[:200])


def test_small_ops_do_not_warn_when_one_batch_trains_in_the_caller():
    X, y = load_digits(return_X_y=True)
    clf = AsyncLayerwiseMLPClassifier((8,), backend="threads", max_iter=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*layer ops are small")
        clf.fit(X[:150], y[:150])  # batch_size min(200, 150): one batch
    assert clf.mode == "pd-asgd" and clf.n_workers_ == 2


# --------------------------------------------------------------------- CUDA
@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cuda_modes_train_and_pickle_to_cpu(digits, mode):
    X_train, X_test, y_train, y_test = digits
    clf = AsyncLayerwiseMLPClassifier(
        hidden_layer_sizes=(64,),
        mode=mode,
        max_iter=10,
        batch_size=32,
        device="cuda",
        random_state=0,
    )
    clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.85
    restored = pickle.loads(pickle.dumps(clf))
    assert restored._model_device().type == "cpu"
    np.testing.assert_allclose(
        restored.predict_proba(X_test), clf.predict_proba(X_test), atol=1e-5
    )
    assert not skasync_threads()


def test_warm_start_rejects_new_hidden_layer_sizes(digits):
    X_train, _, y_train, _ = digits
    clf = small(mode="serial", warm_start=True).fit(X_train, y_train)
    with pytest.raises(ValueError, match="hidden_layer_sizes changed since"):
        clf.set_params(hidden_layer_sizes=(8,)).fit(X_train, y_train)
    clf.set_params(hidden_layer_sizes=[32]).fit(X_train, y_train)  # same shape
    assert clf.n_iter_ == 6
    clf.set_params(hidden_layer_sizes=32).fit(X_train, y_train)  # an int, too
    clf.set_params(hidden_layer_sizes=(np.int64(32),)).fit(X_train, y_train)
    assert clf.n_iter_ == 12


@pytest.mark.parametrize("mode", ["serial", "hogwild"])
def test_an_interrupted_fit_leaves_a_consistent_estimator(mode):
    """An error (or Ctrl-C) in the second epoch: the fitted attributes
    describe the network predict uses, as the loop left it; an error in the
    first epoch of a fresh fit leaves the estimator unfitted."""
    from sklearn.exceptions import NotFittedError

    X, y = load_digits(return_X_y=True)
    X = X / 16
    steps = []

    def hook(event, worker):
        if event == "step":
            steps.append(worker)
            if len(steps) == hook.fail_at:
                raise ValueError("injected")

    clf = AsyncLayerwiseMLPClassifier(
        (16,),
        mode=mode,
        batch_size=200,
        max_iter=5,
        random_state=0,
        backend="threads",  # the hook is a closure; processes need a pickle
    )
    clf._engine_hook = hook
    hook.fail_at = 12  # 9 batches an epoch: in the second epoch
    with pytest.raises(ValueError, match="injected"):
        clf.fit(X, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1
    assert clf.loss_ == clf.loss_curve_[0]
    weights = clf.module_[0].weight.detach().numpy().T
    np.testing.assert_array_equal(clf.coefs_[0], weights)
    assert clf.predict(X[:5]).shape == (5,)
    steps.clear()
    hook.fail_at = 3
    with pytest.raises(ValueError, match="injected"):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


@pytest.mark.parametrize("mode", ["hogwild", "sync"])
def test_a_single_worker_trains_in_the_calling_thread(digits, mode):
    # A thread of its own only added a start and a second OpenMP team per
    # epoch: on iris a one-worker Hogwild! fit took 1.7-3.7 s, serial 0.12 s.
    X_train, _, y_train, _ = digits
    threads = set()
    clf = small(mode=mode, n_workers=1, torch_num_threads=None)
    clf._engine_hook = lambda event, worker: threads.add(threading.current_thread())
    clf.fit(X_train, y_train)
    assert threads == {threading.main_thread()}
    assert clf.n_workers_ == 1
    if mode == "hogwild":
        # One Hogwild! worker is the serial loop, step for step.
        serial = small(mode="serial", torch_num_threads=None).fit(X_train, y_train)
        for ours, theirs in zip(clf.coefs_, serial.coefs_):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("mode", ["pd-asgd", "d-asgd"])
def test_one_batch_an_epoch_trains_in_the_calling_thread(digits, mode):
    # With one batch its backward can only follow its forward: the decoupled
    # modes run both in the caller (the same weights as their threads gave,
    # checked by hand; 2.5x faster at the defaults on iris).
    X_train, _, y_train, _ = digits
    X_small, y_small = X_train[:30], y_train[:30]
    threads = set()
    clf = small(mode=mode, batch_size=64, torch_num_threads=None)
    clf._engine_hook = lambda event, worker: threads.add(threading.current_thread())
    clf.fit(X_small, y_small)
    assert threads == {threading.main_thread()}
    assert (clf.n_forward_workers_, clf.n_backward_workers_) == (1, 1)
    assert clf.n_updates_ == [clf.n_iter_] * len(clf.coefs_)
