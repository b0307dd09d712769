# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""The process back-end of AsyncLayerwiseMLPClassifier: learning, exactness of
``sync``, and the lifecycle rules of the worker pool (no orphan, no segment
left, errors with the worker's traceback)."""

import contextlib
import dataclasses
import os
import pickle
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync import AsyncLayerwiseMLPClassifier
from skasync.neural_network._process_engines import FaultInjection
from skasync.utils import _processes
from skasync.utils._threads import available_cpus

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the process back-end's pool uses Linux memfd and pidfd",
)

PARALLEL_MODES = ["pd-asgd", "d-asgd", "hogwild", "sync"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _clf(mode, **params):
    params = {
        "hidden_layer_sizes": (32,),
        "batch_size": 64,
        "max_iter": 15,
        "random_state": 0,
        **params,
    }
    return AsyncLayerwiseMLPClassifier(mode=mode, backend="processes", **params)


def _mnist1d_rule(**changes):
    """choose_backend's inputs for MNIST-1D at width 256 on 2 CPUs."""
    rule = {
        "parallel": True,
        "synchronous": False,
        "device_type": "cpu",
        "cpus": 2,
        "layer_sizes": [40, 256, 256, 10],
        "n_samples": 54_000,
        "batch_size": 128,
        "max_iter": 30,
        "max_time": None,
        "pool_warm": False,
    }
    return {**rule, **changes}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:  # reaped between the two calls
        return False


def _wait_gone(pids, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


# The name SharedArena gives its memfd: /proc/PID/fd links read
# "/memfd:skasync-arena (deleted)", and so do its lines in /proc/PID/maps.
ARENA_MEMFD = "/memfd:skasync-arena"


def _arena_mapped(pid):
    with open(f"/proc/{pid}/maps") as maps:
        return ARENA_MEMFD in maps.read()


def _arena_fds(pid):
    """The descriptors of ``pid`` open on an arena's memfd."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile (listdir's own fd)
            continue
        if target.startswith(ARENA_MEMFD):
            found.append(int(fd))
    return found


@dataclasses.dataclass(frozen=True)
class ThreadsProbe:
    """An engine hook that appends "pid worker intra-op-threads" to ``path``
    at each event. It runs in the worker processes: they unpickle it by
    importing this module, whose folder pytest puts on sys.path (the pool
    passes sys.path on to its workers)."""

    path: str

    def __call__(self, event, worker):
        with open(self.path, "a") as out:
            out.write(f"{os.getpid()} {worker} {torch.get_num_threads()}\n")


# ------------------------------------------------------------------- learning
@pytest.mark.skipif(
    available_cpus() < 2,
    reason="one CPU gives hogwild and sync one worker, which trains in the "
    "calling thread (no process), and pd-asgd two workers, not one per CPU",
)
@pytest.mark.parametrize("mode", PARALLEL_MODES)
def test_every_mode_learns_digits_in_processes(digits, mode, monkeypatch):
    from skasync.neural_network._process_engines import ProcessTrainer

    epochs_in_workers = []
    run_epoch = ProcessTrainer.run_epoch

    def counted(trainer, batches, context):
        epochs_in_workers.append(trainer.pool.pids)
        return run_epoch(trainer, batches, context)

    monkeypatch.setattr(ProcessTrainer, "run_epoch", counted)
    X, y = digits
    clf = _clf(mode).fit(X, y)
    assert clf.backend_ == "processes"
    assert clf.backward_weights_ == ("snapshot" if mode == "hogwild" else "current")
    n_batches = -(-X.shape[0] // 64)
    # One worker process per CPU (pd-asgd: 1 forward, the rest backward).
    assert clf.n_workers_ == min(available_cpus(), n_batches)
    # Every epoch ran in n_workers_ worker processes (not in this thread).
    assert len(epochs_in_workers) == clf.n_iter_
    assert all(len(pids) == clf.n_workers_ >= 2 for pids in epochs_in_workers)
    assert clf.score(X, y) > 0.9
    # Every batch of every epoch updated every layer exactly once.
    assert clf.n_updates_ == [n_batches * clf.n_iter_] * 2
    assert clf.throughput_["samples_per_second"] > 0
    assert clf.throughput_["startup_seconds"] >= 0


def test_hogwild_processes_with_the_live_weights_learns(digits):
    # The default on processes copies the weights per batch; the paper's
    # live-weights backward must still work there.
    X, y = digits
    # n_workers=2: processes on any CPU count (the default is one per CPU).
    clf = _clf("hogwild", backward_weights="current", n_workers=2).fit(X, y)
    assert clf.backward_weights_ == "current"
    assert clf.score(X, y) > 0.9


def test_sync_processes_equals_the_serial_reference(digits):
    """Sharded gradients summed over the gloo group give serial's steps."""
    X, y = digits
    params = {"max_iter": 3, "tol": 0.0, "n_iter_no_change": 100}
    sync = _clf("sync", n_workers=2, **params).fit(X, y)
    assert sync.backend_ == "processes" and sync.n_workers_ == 2
    serial = AsyncLayerwiseMLPClassifier(
        mode="serial", hidden_layer_sizes=(32,), batch_size=64, random_state=0, **params
    ).fit(X, y)
    for a, b in zip(sync.coefs_ + sync.intercepts_, serial.coefs_ + serial.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sync.loss_curve_, serial.loss_curve_, rtol=1e-5)
    again = _clf("sync", n_workers=2, **params).fit(X, y)
    for a, b in zip(sync.coefs_, again.coefs_):
        np.testing.assert_array_equal(a, b)


def test_weighted_fit_in_processes_matches_serial(digits):
    X, y = digits
    weights = np.random.RandomState(0).uniform(0.5, 2.0, size=len(y))
    params = {"max_iter": 2, "tol": 0.0, "n_iter_no_change": 100}
    sync = _clf("sync", n_workers=2, **params).fit(X, y, sample_weight=weights)
    serial = AsyncLayerwiseMLPClassifier(
        mode="serial", hidden_layer_sizes=(32,), batch_size=64, random_state=0, **params
    ).fit(X, y, sample_weight=weights)
    for a, b in zip(sync.coefs_, serial.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_pd_asgd_processes_options(digits, solver):
    X, y = digits
    clf = _clf(
        "pd-asgd",
        solver=solver,
        learning_rate_init=0.01 if solver == "sgd" else 0.003,
        backward_weights="snapshot",
        update_lock="layer",
        early_stopping=True,
    ).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert clf.validation_scores_ and clf.best_validation_score_ > 0.85
    assert clf.queue_size_ == clf.n_backward_workers_ + 3


@pytest.fixture
def pool_starts(monkeypatch):
    """The pool start each process-back-end fit paid (0.0: it reused one)."""
    from skasync.neural_network._process_engines import ProcessTrainer

    starts = []
    startup = ProcessTrainer.startup_seconds

    def recorded(trainer):
        starts.append(trainer.pool_start_seconds)
        return startup.fget(trainer)

    monkeypatch.setattr(ProcessTrainer, "startup_seconds", property(recorded))
    return starts


@pytest.mark.skipif(available_cpus() < 2, reason="hogwild needs 2 CPUs for 2 workers")
def test_partial_fit_and_warm_start_reuse_the_pool(digits, pool_starts):
    X, y = digits
    clf = _clf("hogwild", max_iter=1)
    clf.partial_fit(X, y, classes=np.unique(y))
    pool = _processes._POOL
    for _ in range(3):
        clf.partial_fit(X, y)
    assert _processes._POOL is pool  # one start-up for every call
    # The later calls report only their hand-over: no pool start in them.
    assert pool_starts[1:] == [0.0] * 3
    assert clf.n_iter_ == 4
    clf.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert _processes._POOL is pool and pool_starts[4:] == [0.0]
    assert clf.n_iter_ == 6  # counts on, as MLPClassifier's warm_start does


@pytest.mark.skipif(available_cpus() < 2, reason="hogwild needs 2 CPUs for 2 workers")
def test_grid_search_pays_the_pool_start_once(digits, pool_starts):
    from sklearn.model_selection import GridSearchCV

    X, y = digits
    _processes.shutdown_pool()  # the search's first fit starts it
    grid = GridSearchCV(
        _clf("hogwild", max_iter=2, n_workers=2),
        {"learning_rate_init": [0.001, 0.01]},
        cv=2,
    ).fit(X, y)
    assert len(pool_starts) == 2 * 2 + 1  # the candidates' folds, the refit
    assert pool_starts[0] > 0 and pool_starts[1:] == [0.0] * 4
    assert grid.best_estimator_.throughput_["startup_seconds"] < pool_starts[0]


@pytest.mark.skipif(available_cpus() < 2, reason="2 workers need 2 CPUs")
@pytest.mark.parametrize("mode", ["hogwild", "pd-asgd"])
def test_the_fit_records_mean_the_same_on_both_back_ends(digits, mode):
    X, y = digits
    records = {}
    for backend in ("threads", "processes"):
        _processes.shutdown_pool()  # the processes' fit pays a cold start
        clf = _clf(
            mode,
            max_iter=6,
            early_stopping=True,
            target_score=0.99,  # not reached: every epoch runs
            n_iter_no_change=100,
        )
        clf.set_params(backend=backend).fit(X, y)
        records[backend] = clf
        n_train = clf.t_ // clf.n_iter_
        n_batches = -(-n_train // clf.batch_size)
        n_layers = clf.n_layers_ - 1
        # updates: per layer, cumulative, one per batch of each epoch
        for epoch, record in enumerate(clf.history_, start=1):
            assert record["epoch"] == epoch
            assert record["updates"] == [epoch * n_batches] * n_layers
            assert record["samples_per_second"] > 0
        assert list(clf.n_updates_) == clf.history_[-1]["updates"]
        # wall_time counts from fit's start, start-up included
        walls = [record["wall_time"] for record in clf.history_]
        assert all(b > a for a, b in zip(walls, walls[1:]))
        startup = clf.throughput_["startup_seconds"]
        assert (startup > 0) == (backend == "processes")
        assert walls[0] > startup
        # time_to_target_: the wall time of the first epoch at the target
        reached = [r["wall_time"] for r in clf.history_ if r["validation_score"] >= 0.5]
        clf.set_params(target_score=0.5, warm_start=False, max_iter=6).fit(X, y)
        first = next(
            r["wall_time"] for r in clf.history_ if r["validation_score"] >= 0.5
        )
        assert reached and clf.time_to_target_ == first
        assert clf.history_[-1]["validation_score"] >= 0.5  # it stopped there
        assert len(clf.staleness_) == n_layers
        for stats in clf.staleness_:
            assert set(stats) == {"mean", "p95", "max"}
            assert 0 <= stats["mean"] <= stats["max"]
    threads, processes = records["threads"], records["processes"]
    assert set(threads.history_[0]) == set(processes.history_[0])
    assert set(threads.throughput_) == set(processes.throughput_)
    assert threads.backend_ == "threads" and processes.backend_ == "processes"


def test_fits_in_two_threads_never_share_workers(digits):
    """A second concurrent fit gets a private pool, shut down when it ends."""
    import threading

    X, y = digits
    _clf("hogwild", max_iter=1).fit(X, y)  # a warm shared pool
    shared = _processes._POOL
    results = {}

    def fit(name, mode):
        results[name] = _clf(mode).fit(X, y)

    threads = [
        threading.Thread(target=fit, args=(name, mode))
        for name, mode in (("a", "pd-asgd"), ("b", "sync"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {name: clf.score(X, y) > 0.9 for name, clf in results.items()} == {
        "a": True,
        "b": True,
    }
    n_batches = -(-X.shape[0] // 64)
    for clf in results.values():
        assert clf.n_updates_ == [clf.n_iter_ * n_batches] * 2
    assert _processes._POOL is shared and not shared.in_use
    # Only the shared pool's workers are left (other children, such as
    # joblib's, are not ours).
    children = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "skasync.utils._process_worker"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(int(pid) for pid in children) == sorted(shared.pids)


# ------------------------------------------------------------------ lifecycle
def test_no_worker_touches_the_model_after_fit(digits):
    X, y = digits
    clf = _clf("pd-asgd", max_iter=3).fit(X, y)
    before = [W.detach().clone() for W in clf.module_.parameters()]
    time.sleep(0.3)
    for W, old in zip(clf.module_.parameters(), before):
        torch.testing.assert_close(W.detach(), old, rtol=0, atol=0)
    pool = _processes._POOL
    # The arena is unmapped everywhere: the model's tensors are private again.
    assert not _arena_mapped(os.getpid())
    assert not any(_arena_mapped(pid) for pid in pool.pids)


def test_fitted_model_pickles_and_predicts_without_the_pool(digits):
    X, y = digits
    clf = _clf("hogwild", max_iter=3).fit(X, y)
    expected = clf.predict_proba(X)
    _processes.shutdown_pool()
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), expected)
    assert _processes._POOL is None


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_workers_use_no_cpu(digits):
    X, y = digits
    _clf("hogwild", max_iter=2, n_workers=2).fit(X, y)
    pids = _processes._POOL.pids
    before = [_cpu_seconds(pid) for pid in pids]
    time.sleep(1.5)
    after = [_cpu_seconds(pid) for pid in pids]
    assert all(b - a < 0.05 for a, b in zip(before, after))


def test_idle_workers_end_after_the_timeout(monkeypatch):
    monkeypatch.setenv("SKASYNC_POOL_IDLE_TIMEOUT", "0.5")
    pool = _processes.WorkerPool(2)
    try:
        assert _wait_gone(pool.pids, seconds=15)
    finally:
        pool.terminate()


@pytest.mark.parametrize("mode", ["hogwild", "sync"])
def test_worker_exception_reaches_the_caller_with_its_traceback(digits, mode):
    """Whichever worker raises: with sync, worker 0 then waits in the
    all-reduce for worker 1, so the caller must not wait for worker 0 first
    (it did, until gloo's 30-minute timeout)."""
    X, y = digits
    # The fit takes the warm shared pool of two workers: note their pids.
    pool, _ = _processes.get_pool(2)
    pids = pool.pids
    clf = _clf(mode, n_workers=2)
    clf._engine_hook = FaultInjection("step", worker=1, after=3, action="raise")
    with pytest.raises(_processes.WorkerError, match="injected failure") as info:
        clf.fit(X, y)
    assert "_process_engines.py" in str(info.value)  # the worker's frames
    assert _processes._POOL is pool and not pool.alive
    # ``alive`` is False once the pool is marked closed: the processes
    # themselves must be gone too (killed, not left running their epoch).
    assert _wait_gone(pids, seconds=2), "the workers outlived the error"


def test_a_worker_that_dies_mid_fit_is_reported_and_the_rest_stopped(digits):
    X, y = digits
    clf = _clf("pd-asgd")
    clf._engine_hook = FaultInjection("backward", worker=0, after=5, action="exit")
    with pytest.raises(_processes.WorkerDied, match="backend='processes'"):
        clf.fit(X, y)
    pool = _processes._POOL
    assert _wait_gone(pool.pids)
    # The next fit starts a new pool and works.
    assert _clf("hogwild", max_iter=2).fit(X, y).score(X, y) > 0.5


def test_hook_that_does_not_pickle_is_a_clear_error(digits):
    X, y = digits
    clf = _clf("hogwild")
    clf._engine_hook = lambda event, worker: None
    with pytest.raises(TypeError, match="does not pickle"):
        clf.fit(X, y)


def _run_script(code, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


SCRIPT_HEAD = """
    import os, sys, time, signal, threading
    import numpy as np
    from sklearn.datasets import load_digits
    from skasync import AsyncLayerwiseMLPClassifier
    from skasync.neural_network._process_engines import FaultInjection
    from skasync.utils import _processes
    X, y = load_digits(return_X_y=True)
    X = X / 16

    def when_training(action):
        # Wait until a fit is running on the pool (its start may take long
        # on a loaded machine), then act.
        def wait():
            while _processes._POOL is None or not _processes._POOL.in_use:
                time.sleep(0.05)
            time.sleep(0.5)
            action()
        threading.Thread(target=wait, daemon=True).start()
"""


SIGKILL_SCRIPT = """
    mode = sys.argv[1]
    params = dict(backend="processes", max_iter=10_000, tol=0, random_state=0)
    if mode == "hogwild":
        # Both workers take a batch, then sleep 60 s before its step.
        clf = AsyncLayerwiseMLPClassifier(
            mode="hogwild", n_workers=2, straggler_delay=60.0,
            straggler_workers="all", **params)
        taken = 2
    else:
        # The forward process sleeps 60 s in its first forward; the backward
        # process waits for that batch's token meanwhile.
        clf = AsyncLayerwiseMLPClassifier(
            mode="pd-asgd", n_forward_workers=1, n_backward_workers=1, **params)
        clf._engine_hook = FaultInjection("forward", worker=0, action="sleep",
                                          seconds=60.0)
        taken = 1

    def report():
        # Print the pids once the workers are inside the epoch's job (the
        # batch counter in the arena says they took their batches).
        while True:
            trainer = getattr(clf, "_process_trainer", None)
            if trainer is not None and trainer.arena["control"][0] >= taken:
                print(*trainer.pool.pids, flush=True)
                return
            time.sleep(0.05)

    threading.Thread(target=report, daemon=True).start()
    clf.fit(X, y)
"""


@pytest.mark.parametrize("mode", ["hogwild", "pd-asgd"])
def test_parent_sigkill_leaves_no_orphan(mode):
    """A parent killed mid-fit takes its workers with it: Linux's parent-death
    signal. The workers are in a 60 s sleep (or wait for a token that only
    the sleeper would send), inside the epoch's job: neither the end of
    the epoch (a broken pipe) nor the check of the parent between jobs can
    end them within seconds, only the parent-death signal."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT_HEAD + SIGKILL_SCRIPT), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    pids = []
    try:
        # The pool's start may take long on a loaded machine.
        ready, _, _ = select.select([parent.stdout], [], [], 300)
        line = parent.stdout.readline() if ready else ""
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids), line
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    gone = _wait_gone(pids, seconds=10)
    if not gone:  # do not leave them behind for the next tests
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert gone, "worker processes outlived their SIGKILLed parent"


def test_ctrl_c_stops_the_workers_at_once():
    result = _run_script(
        SCRIPT_HEAD
        + """
    # A shell that starts the tests in the background makes them ignore
    # SIGINT (POSIX), and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    clf = AsyncLayerwiseMLPClassifier(mode="pd-asgd", backend="processes",
                                      n_forward_workers=1, n_backward_workers=1,
                                      max_iter=10_000, tol=0, random_state=0)
    clf._engine_hook = FaultInjection("backward", worker=0, action="sleep", seconds=0.01)
    pids = []
    def interrupt():
        pids.extend(_processes._POOL.pids)
        os.kill(os.getpid(), signal.SIGINT)
    when_training(interrupt)
    try:
        clf.fit(X, y)
    except KeyboardInterrupt:
        start = time.monotonic()
        def alive(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True
        while any(alive(p) for p in pids) and time.monotonic() - start < 5:
            time.sleep(0.05)
        print("interrupted", [alive(p) for p in pids], _processes._POOL.alive)
    """
    )
    assert "interrupted [False, False] False" in result.stdout, result.stderr[-3000:]


def test_no_shared_memory_name_is_left_behind(digits, monkeypatch):
    """The arena is a memfd, never a /dev/shm name: what could leak is a
    descriptor or a mapping of it, here or in a worker. During an epoch both
    hold it (which shows the probes see it); after the fits neither does,
    while the pool lives, and after shutdown_pool() the workers are gone."""
    from skasync.neural_network._process_engines import ProcessTrainer

    during = []
    run_epoch = ProcessTrainer.run_epoch

    def probed(trainer, batches, context):
        here = os.getpid()
        during.append(
            [bool(_arena_fds(here)) and _arena_mapped(here)]
            + [
                bool(_arena_fds(pid)) and _arena_mapped(pid)
                for pid in trainer.pool.pids
            ]
        )
        return run_epoch(trainer, batches, context)

    monkeypatch.setattr(ProcessTrainer, "run_epoch", probed)
    X, y = digits
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert _arena_fds(os.getpid()) == [] and not _arena_mapped(os.getpid())
    _clf("pd-asgd", max_iter=2, n_forward_workers=1, n_backward_workers=1).fit(X, y)
    _clf("sync", max_iter=2, n_workers=2).fit(X, y)
    assert len(during) == 4 and all(all(seen) for seen in during), during
    pool = _processes._POOL
    assert pool.alive
    workers = pool.pids
    assert _arena_fds(os.getpid()) == [] and not _arena_mapped(os.getpid())
    for pid in workers:
        assert _arena_fds(pid) == [], f"worker {pid} holds the arena's memfd"
        assert not _arena_mapped(pid), f"worker {pid} maps the arena"
    _processes.shutdown_pool()
    assert _arena_fds(os.getpid()) == [] and not _arena_mapped(os.getpid())
    assert _wait_gone(workers, seconds=5)
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert after <= before


def test_workers_end_at_normal_interpreter_exit():
    """The exit hook (atexit) stops the pool: the workers are gone, and
    reaped, before the interpreter has finished exiting (the parent-death
    signal and the end of file on their connections would end them only
    after it)."""
    result = _run_script(
        """
    import atexit, os
    pids = []

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    # Registered before skasync is imported, so it runs after skasync's
    # exit hook (atexit runs the last registered first).
    atexit.register(lambda: print("at exit, gone:", [gone(p) for p in pids]))
    """
        + SCRIPT_HEAD
        + """
    clf = AsyncLayerwiseMLPClassifier(mode="hogwild", backend="processes",
                                      n_workers=2, max_iter=2, random_state=0)
    clf.fit(X, y)
    pids.extend(_processes._POOL.pids)
    assert _processes._POOL.alive
    print("workers", *pids, flush=True)
    """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    pids = [int(p) for p in lines[-2].split()[1:]]
    assert len(pids) == 2
    assert lines[-1] == "at exit, gone: [True, True]", result.stdout
    assert _wait_gone(pids, seconds=10)


@pytest.mark.parametrize("mode", ["hogwild", "pd-asgd"])
def test_each_worker_gets_its_share_of_the_cores(digits, mode, tmp_path):
    """Intra-op threads of each worker process: cores // processes, read
    by torch.get_num_threads() inside the workers during the fit."""
    X, y = digits
    counts = {"n_workers": 2} if mode == "hogwild" else {"n_backward_workers": 1}
    clf = _clf(mode, max_iter=1, **counts)
    clf._engine_hook = ThreadsProbe(str(tmp_path / "threads.txt"))
    clf.fit(X, y)
    assert clf.n_workers_ == 2
    seen = {}
    for line in (tmp_path / "threads.txt").read_text().splitlines():
        pid, _, threads = (int(field) for field in line.split())
        seen.setdefault(pid, set()).add(threads)
    # Every worker ran the hook (hogwild: each takes batches; pd-asgd: the
    # forward and the backward process).
    assert sorted(seen) == sorted(_processes._POOL.pids)
    expected = max(1, available_cpus() // clf.n_workers_)
    assert seen == {pid: {expected} for pid in seen}


def test_pd_asgd_pickles_nothing_per_batch(digits, monkeypatch):
    """Batches travel through the arena and token pipes: the messages the
    parent pickles to the workers are per fit and per epoch, as many for 3
    batches an epoch as for 113."""
    from multiprocessing.connection import Connection

    X, y = digits
    _processes.get_pool(2)  # warm: no message of a pool's start or stop
    sent = []
    send = Connection.send

    def counted(conn, message):
        kind, _, name, _ = message
        sent.append((kind, name))
        return send(conn, message)

    monkeypatch.setattr(Connection, "send", counted)

    def messages(batch_size):
        sent.clear()
        params = {"max_iter": 2, "tol": 0.0, "n_iter_no_change": 100}
        clf = _clf("pd-asgd", batch_size=batch_size, n_backward_workers=1, **params)
        clf.fit(X, y)
        n_batches = -(-X.shape[0] // batch_size)
        assert clf.n_workers_ == 2 and clf.n_iter_ == 2
        assert clf.n_updates_ == [2 * n_batches] * 2
        return list(sent)

    few, many = messages(600), messages(16)  # 3 and 113 batches an epoch
    assert few == many
    # Per worker: the hand-over, one job per epoch, the hand-back.
    assert sorted(few) == sorted(
        [("job", "attach")] * 2 + [("job", "train_epoch")] * 4 + [("job", "detach")] * 2
    )


# ------------------------------------------------------------------ bad input
def test_torchrun_launch_without_a_group_warns(digits, monkeypatch):
    """A torchrun worker that forgot init_process_group trains alone: the fit
    says so and names the call; outside torchrun nothing is said."""
    X, y = digits
    clf = AsyncLayerwiseMLPClassifier((8,), mode="serial", max_iter=1)

    def rank_warnings():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf.fit(X, y)
        return [str(w.message) for w in caught if "rank" in str(w.message)]

    assert rank_warnings() == []
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setenv("WORLD_SIZE", "2")
    (message,) = rank_warnings()
    assert "one of WORLD_SIZE=2 ranks" in message
    assert "init_process_group" in message
    monkeypatch.setenv("WORLD_SIZE", "1")  # one rank: nothing to span
    assert rank_warnings() == []


@pytest.mark.parametrize(
    "device_type, group_backend, match",
    [
        ("cuda", "gloo", "device='cuda'.*Use device='cpu'"),
        ("cpu", "nccl", "backend is 'nccl'.*init_process_group\\('gloo'\\)"),
    ],
)
def test_training_across_ranks_needs_the_cpu_and_gloo(
    device_type, group_backend, match
):
    """The all-reduce and the gossip send CPU tensors over gloo: another
    device, or an NCCL-only group, is refused with the fix named."""
    from skasync.neural_network._backends import check_group_for_cpu_training

    with pytest.raises(ValueError, match=match):
        check_group_for_cpu_training(device_type, group_backend)
    for ok in ("gloo", "cpu:gloo,cuda:nccl"):
        check_group_for_cpu_training("cpu", ok)


def test_sync_under_auto_ignores_what_earlier_fits_left_warm(digits, monkeypatch):
    """sync is deterministic for a random_state; its result depends on the
    back-end (shards, reduction order), so "auto" must not pick another one
    because an earlier fit left a pool warm."""
    from skasync.neural_network import _async_layerwise

    X, y = digits
    params = dict(hidden_layer_sizes=(100,), mode="sync", max_iter=2, random_state=0)
    cold = AsyncLayerwiseMLPClassifier(**params).fit(X, y)
    monkeypatch.setattr(_async_layerwise, "pool_is_warm", lambda n_workers: True)
    warm = AsyncLayerwiseMLPClassifier(**params).fit(X, y)
    assert warm.backend_ == cold.backend_
    np.testing.assert_array_equal(warm.coefs_[0], cold.coefs_[0])
    # A lock-free mode may use the warm pool: there it only saves time.
    hogwild = AsyncLayerwiseMLPClassifier(**{**params, "mode": "hogwild"})
    assert hogwild.fit(X, y).backend_ == "processes"


def test_processes_elsewhere_than_linux(digits, monkeypatch):
    """The back-end needs memfd and pidfds: "processes" is refused with the
    fix named, and "auto" never picks it."""
    from skasync.neural_network._backends import choose_backend

    monkeypatch.setattr(_processes, "PROCESSES_SUPPORTED", False)
    X, y = digits
    with pytest.raises(ValueError, match="backend='processes' needs Linux"):
        _clf("hogwild").fit(X, y)
    rule = _mnist1d_rule(
        cpus=16, layer_sizes=[40, 1024, 1024, 10], n_samples=60_000, pool_warm=True
    )
    assert choose_backend(**rule) == (
        "threads",
        "worker processes need Linux (memfd, pidfd)",
    )
    monkeypatch.setattr(_processes, "PROCESSES_SUPPORTED", True)
    assert choose_backend(**rule)[0] == "processes"


def test_unknown_backend_names_the_parameter(digits):
    X, y = digits
    with pytest.raises(InvalidParameterError, match="backend"):
        AsyncLayerwiseMLPClassifier(backend="gpu").fit(X, y)


def test_processes_on_cuda_is_a_clear_error(digits, monkeypatch):
    X, y = digits
    # Without a GPU, make resolve_device accept "cuda": the back-end check
    # must refuse before any CUDA call.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    clf = AsyncLayerwiseMLPClassifier(
        mode="hogwild", backend="processes", device="cuda"
    )
    with pytest.raises(ValueError, match="backend='processes' trains on the CPU"):
        clf.fit(X, y)


def test_auto_picks_threads_for_small_data_and_processes_for_large():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 5)
    y = rng.randint(0, 2, 60)
    small = AsyncLayerwiseMLPClassifier(mode="hogwild", max_iter=2).fit(X, y)
    assert small.backend_ == "threads"
    from skasync.neural_network._backends import choose_backend

    mnist1d = _mnist1d_rule()
    backend, reason = choose_backend(**mnist1d)
    assert backend == "processes", reason
    # A 0.1 s budget leaves nothing to save from a cold start.
    assert choose_backend(**{**mnist1d, "max_time": 0.1})[0] == "threads"
    assert choose_backend(**{**mnist1d, "device_type": "cuda"})[0] == "threads"
    assert choose_backend(**{**mnist1d, "cpus": 1})[0] == "threads"
    assert choose_backend(**{**mnist1d, "parallel": False})[0] == "threads"
    # digits-sized: the threads wait for the GIL, so a warm pool pays (the
    # demo measured 0.08 s in processes against 0.15 s in threads), a cold
    # start does not; a few rows never pay.
    digits = {**mnist1d, "layer_sizes": [64, 128, 10], "n_samples": 1347}
    digits["batch_size"] = 200
    assert choose_backend(**digits)[0] == "threads"
    assert choose_backend(**{**digits, "pool_warm": True})[0] == "processes"
    tiny = {**digits, "n_samples": 30, "batch_size": 30, "pool_warm": True}
    assert choose_backend(**tiny)[0] == "threads"


def test_auto_weighs_the_threads_speed_on_large_layer_ops():
    """Large layer ops release the GIL long enough for the threads to use
    every core (width 1024: 1.5-2.0x one thread on 2 cores): a short first
    fit then trains on threads, where the pool's start-up would not pay back
    (auto_backend.md: 5.1-5.9 s on threads against 6.8-7.5 s on a cold pool,
    2 epochs); a long fit still pays it back."""
    from skasync.neural_network._backends import (
        LARGE_OP_MACS,
        SMALL_OP_MACS,
        THREAD_SLOWDOWN,
        choose_backend,
        threads_speedup,
    )

    wide = _mnist1d_rule(layer_sizes=[40, 1024, 1024, 10], n_samples=48_000)
    backend, reason = choose_backend(**{**wide, "max_iter": 2})
    assert backend == "threads", reason
    assert choose_backend(**{**wide, "max_iter": 200})[0] == "processes"
    # The same on 16 CPUs: threads and processes both scale with the cores.
    assert choose_backend(**{**wide, "max_iter": 2, "cpus": 16})[0] == "threads"
    # The interpolation is continuous and rises with the op size.
    ops = np.geomspace(SMALL_OP_MACS / 10, LARGE_OP_MACS * 10, 50)
    speeds = [threads_speedup(op, 2) for op in ops]
    assert speeds[0] == pytest.approx(1 / THREAD_SLOWDOWN)
    assert np.all(np.diff(speeds) >= 0)
    assert np.max(np.abs(np.diff(speeds))) < 0.1


@pytest.mark.skipif(
    available_cpus() < 2, reason="the hogwild control needs 2 CPUs for processes"
)
def test_auto_keeps_sync_on_threads_on_one_machine(digits, monkeypatch):
    """sync in processes all-reduces over gloo at every step, slower than
    sync on threads on every benchmark set: "auto" must not pick it, warm
    pool or not, however large the model."""
    from skasync.neural_network import _backends
    from skasync.neural_network._backends import choose_backend

    rule = _mnist1d_rule(
        synchronous=True, cpus=16, layer_sizes=[40, 2048, 2048, 10], pool_warm=True
    )
    backend, reason = choose_backend(**rule)
    assert backend == "threads"
    assert "sync" in reason
    # With a free start-up any saving picks processes: hogwild takes them
    # (the control), sync does not.
    monkeypatch.setattr(_backends, "COLD_START", 0.0)
    X, y = digits
    params = {"hidden_layer_sizes": (8,), "max_iter": 2, "batch_size": 64}
    hogwild = AsyncLayerwiseMLPClassifier(mode="hogwild", **params).fit(X, y)
    assert hogwild.backend_ == "processes"
    sync = AsyncLayerwiseMLPClassifier(mode="sync", **params).fit(X, y)
    assert sync.backend_ == "threads"


# ------------------------------------------------------------ sklearn checks
def _expected(estimator):
    return estimator._expected_failed_checks()


# batch_size=8 and two workers: the checks' data (30 rows and more in most
# fits) give several batches, so their fits train in the worker processes.
# At batch_size="auto" (min(200, n)) most gave one batch, and hogwild then
# trained in the calling thread.
CHECKED_BATCH_SIZE = 8


@parametrize_with_checks(
    [
        AsyncLayerwiseMLPClassifier(
            backend="processes",
            mode="hogwild",
            max_iter=20,
            batch_size=CHECKED_BATCH_SIZE,
            n_workers=2,
        )
    ],
    expected_failed_checks=_expected,
)
def test_sklearn_checks_on_a_processes_instance(estimator, check, monkeypatch):
    """Every fit of a check with two batches or more trains in the pool's
    worker processes: every fit but one of 5 rows (one batch, which trains
    in the calling thread), 54 of the 55 fits of the checks that pass."""
    fits = []  # (training rows, ran in the pool) per fit or partial_fit
    session = AsyncLayerwiseMLPClassifier._training_session

    @contextlib.contextmanager
    def recorded(self, X, y, sample_weight, batch_size):
        with session(self, X, y, sample_weight, batch_size):
            fits.append((X.shape[0], self._process_trainer is not None))
            yield

    monkeypatch.setattr(AsyncLayerwiseMLPClassifier, "_training_session", recorded)
    check(estimator)
    assert all(in_pool for rows, in_pool in fits if rows > CHECKED_BATCH_SIZE), fits


def test_an_interrupted_fit_counts_the_steps_its_weights_hold(digits):
    """A worker fails in the second epoch: the weights the model keeps hold
    the steps of that part-epoch, so n_updates_ and Adam's step counts must
    count them too (they stayed at the first epoch's, and a warm start then
    ran Adam with too small a step count)."""
    X, y = digits
    n_batches = -(-X.shape[0] // 64)
    # Worker 0 sleeps 20 ms before each step, so worker 1 takes nearly every
    # batch. Worker 1 fails at its step n_batches + 2: not in the first
    # epoch (it has at most n_batches steps there), and in the second as
    # long as worker 0 takes fewer than n_batches - 2 batches of the two
    # epochs; at least one of worker 1's steps lands in the second epoch.
    # (With an even split, a fixed step count fell in the first, second or
    # third epoch, or on an epoch's first step, on a loaded machine.)
    clf = _clf("hogwild", solver="adam", n_workers=2, straggler_delay=0.02)
    clf._engine_hook = FaultInjection(
        "step", worker=1, after=n_batches + 1, action="raise"
    )
    with pytest.raises(_processes.WorkerError, match="injected failure"):
        clf.fit(X, y)
    assert clf.n_iter_ == 1
    assert all(n > n_batches for n in clf.n_updates_), (clf.n_updates_, n_batches)
    assert clf._log.adam_steps == clf.n_updates_


def test_auto_counts_the_start_up_against_a_binding_max_time():
    """The 2 s cold start spends part of a short max_time: a budget that the
    start-up would eat picks threads; one long enough picks processes."""
    from skasync.neural_network._backends import COLD_START, choose_backend

    wide = _mnist1d_rule(
        layer_sizes=[784, 2048, 2048, 10],
        n_samples=20_000,
        batch_size=200,
        max_iter=200,
    )
    assert choose_backend(**wide)[0] == "processes"
    backend, reason = choose_backend(**{**wide, "max_time": COLD_START / 2})
    assert backend == "threads", reason
    assert choose_backend(**{**wide, "max_time": 60.0})[0] == "processes"
    # A warm pool costs nothing, so any budget favours processes here.
    warm = {**wide, "max_time": COLD_START / 2, "pool_warm": True}
    assert choose_backend(**warm)[0] == "processes"


def test_auto_weighs_one_epoch_for_partial_fit(monkeypatch):
    """partial_fit trains one epoch a call: the rule must not count
    max_iter epochs of savings against the cold start."""
    from skasync.neural_network import _async_layerwise

    seen = []

    def spy(**rule):
        seen.append(rule["max_iter"])
        return "threads", "spy"

    monkeypatch.setattr(_async_layerwise, "choose_backend", spy)
    X, y = load_digits(return_X_y=True)
    clf = AsyncLayerwiseMLPClassifier((8,), mode="hogwild", max_iter=7)
    clf.fit(X[:200], y[:200])
    clf.partial_fit(X[:200], y[:200])
    assert seen == [7, 1]


@pytest.fixture
def rule_that_favours_processes(monkeypatch):
    """Replace the auto rule with one that picks processes whenever it is
    asked about a parallel fit; return the list of ``parallel`` it was asked."""
    from skasync.neural_network import _async_layerwise

    asked = []

    def rule(**arguments):
        asked.append(arguments["parallel"])
        return ("processes" if arguments["parallel"] else "threads"), "spy"

    monkeypatch.setattr(_async_layerwise, "choose_backend", rule)
    return asked


def test_auto_does_not_pick_processes_for_a_single_worker(
    digits, rule_that_favours_processes
):
    """One hogwild worker (asked for, or all the batches allow) trains in the
    calling thread: the rule must not be asked about processes, or backend_
    says "processes" for a fit that ran in one thread."""
    asked = rule_that_favours_processes
    X, y = digits
    one = AsyncLayerwiseMLPClassifier((8,), mode="hogwild", n_workers=1, max_iter=1)
    assert one.fit(X, y).backend_ == "threads"
    one_batch = AsyncLayerwiseMLPClassifier(
        (8,), mode="hogwild", batch_size=4000, max_iter=1
    )
    assert one_batch.fit(X, y).backend_ == "threads"
    assert one_batch.n_workers_ == 1
    two = AsyncLayerwiseMLPClassifier((8,), mode="hogwild", n_workers=2, max_iter=1)
    assert two.fit(X, y).backend_ == "processes"
    assert asked == [False, False, True]


@pytest.mark.parametrize("mode", ["pd-asgd", "d-asgd"])
def test_auto_keeps_a_decoupled_fit_of_one_batch_in_the_calling_thread(
    digits, mode, rule_that_favours_processes
):
    """With one batch an epoch a backward can only follow its forward: there
    is nothing for processes to overlap, and on threads the loop runs in the
    caller with every core as its intra-op budget."""
    asked = rule_that_favours_processes
    X, y = digits
    one_batch = AsyncLayerwiseMLPClassifier(
        (8,), mode=mode, batch_size=4000, max_iter=1
    )
    assert one_batch.fit(X, y).backend_ == "threads"
    two = AsyncLayerwiseMLPClassifier((8,), mode=mode, max_iter=1)
    assert two.fit(X, y).backend_ == "processes"
    assert asked == [False, True]
    intra_op = []
    on_threads = AsyncLayerwiseMLPClassifier(
        (8,), mode=mode, batch_size=4000, max_iter=1, backend="threads"
    )
    on_threads._engine_hook = lambda event, worker: intra_op.append(
        torch.get_num_threads()
    )
    on_threads.fit(X, y)
    assert set(intra_op) == {available_cpus()}
