"""WorkerGroup: joins on every exit path, re-raises worker errors, no deadlock."""

import _thread
import os
import queue
import sys
import threading
import time
import traceback

import pytest
import torch
from _helpers import skasync_threads

from skasync.utils._threads import (
    WorkerGroup,
    WorkerStopped,
    available_cpus,
    queue_get,
    queue_put,
    torch_threads,
)


def test_worker_exception_reaches_caller_with_its_traceback():
    def failing_worker():
        raise KeyError("boom in worker")

    with pytest.raises(KeyError, match="boom in worker") as info:
        with WorkerGroup("test") as group:
            group.start(failing_worker)
            group.wait()
    frames = "".join(traceback.format_tb(info.value.__traceback__))
    assert "failing_worker" in frames
    assert not skasync_threads()


def test_other_workers_are_stopped_when_one_fails():
    def blocked_consumer(work_queue, stop_event):
        queue_get(work_queue, stop_event)  # nothing ever arrives

    def failing_worker():
        time.sleep(0.05)
        raise RuntimeError("injected")

    work_queue = queue.Queue()
    with pytest.raises(RuntimeError, match="injected"):
        with WorkerGroup("test") as group:
            group.start(blocked_consumer, work_queue, group.stop_event)
            group.start(failing_worker)
            group.wait()
    assert not skasync_threads()


def test_full_queue_never_deadlocks():
    work_queue = queue.Queue(maxsize=1)

    def producer(stop_event):
        for item in range(100):
            queue_put(work_queue, item, stop_event)  # blocks after the first

    with WorkerGroup("test") as group:
        group.start(producer, group.stop_event)
        timed_out = group.wait(deadline=time.monotonic() + 0.2)
    assert timed_out
    assert not skasync_threads()


def test_caller_exception_joins_workers():
    started = threading.Event()

    def loop(stop_event):
        started.set()
        while not stop_event.is_set():
            time.sleep(0.01)

    with pytest.raises(ValueError, match="caller"):
        with WorkerGroup("test") as group:
            group.start(loop, group.stop_event)
            started.wait()
            raise ValueError("caller failed")
    assert not skasync_threads()


@pytest.mark.usefixtures("sigint_raises_keyboard_interrupt")
def test_keyboard_interrupt_in_caller_joins_workers():
    def loop(stop_event):
        while not stop_event.is_set():
            time.sleep(0.01)

    def interrupt_main_soon():
        time.sleep(0.1)
        _thread.interrupt_main()

    interrupter = threading.Thread(target=interrupt_main_soon)
    with pytest.raises(KeyboardInterrupt):
        with WorkerGroup("test") as group:
            group.start(loop, group.stop_event)
            interrupter.start()
            group.wait()
    interrupter.join()
    assert not skasync_threads()


@pytest.mark.usefixtures("sigint_raises_keyboard_interrupt")
def test_keyboard_interrupt_while_joining_after_a_normal_exit_is_re_raised():
    # Ctrl-C that lands while __exit__ joins the workers of a block that
    # ended normally used to be swallowed, so fit went on training.
    finished = []

    def interrupt_main_when_stopping(stop_event):
        stop_event.wait()
        _thread.interrupt_main()
        time.sleep(0.3)  # the caller is still joining when it handles it
        finished.append(True)

    with pytest.raises(KeyboardInterrupt):
        with WorkerGroup("test") as group:
            group.start(interrupt_main_when_stopping, group.stop_event)
    # The worker's code really ended before the block was left (is_alive()
    # alone cannot tell after an interrupted join on CPython <= 3.11).
    assert finished == [True]
    assert not skasync_threads()


@pytest.mark.usefixtures("sigint_raises_keyboard_interrupt")
def test_keyboard_interrupt_while_waiting_leaves_no_worker_running():
    finished = []

    def busy_for_a_while(stop_event):
        _thread.interrupt_main()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # ignores stop_event on purpose
            pass
        finished.append(True)

    with pytest.raises(KeyboardInterrupt):
        with WorkerGroup("test") as group:
            group.start(busy_for_a_while, group.stop_event)
            group.wait()
    assert finished == [True]
    assert not skasync_threads()


def test_a_thread_that_cannot_start_raises_its_own_error(monkeypatch):
    """The start's error reaches the caller (the join of the thread that
    never started used to replace it with "cannot join thread before it is
    started"), and the thread that did start is joined."""
    original = threading.Thread.start
    starts = []

    def start_once(thread):
        starts.append(thread)
        if len(starts) == 2:
            raise RuntimeError("can't start new thread (injected)")
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once)
    release = threading.Event()
    with pytest.raises(RuntimeError, match="injected"):
        with WorkerGroup("test") as group:
            group.start(lambda: group.stop_event.wait(5))
            group.start(release.wait)
    assert not starts[0].is_alive()
    assert skasync_threads() == []


def test_queue_get_gives_up_when_stopping():
    stop_event = threading.Event()
    stop_event.set()
    with pytest.raises(WorkerStopped):
        queue_get(queue.Queue(), stop_event)


@pytest.mark.usefixtures("torch_threads_sentinel")
def test_torch_threads_restores_setting():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError
    assert torch.get_num_threads() == before


def test_available_cpus_follows_the_affinity_mask_and_joblib_limits(monkeypatch):
    # A container's CPU quota reaches joblib's count, which LOKY_MAX_CPU_COUNT
    # also caps; os.cpu_count() sees neither.
    import os

    from skasync.utils._threads import available_cpus

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    assert available_cpus() == 1


def _os_thread_ids():
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or available_cpus() < 2,
    reason="lists the process's threads in /proc/self/task; with one CPU "
    "OpenMP starts no team to find",
)
def test_worker_threads_use_the_callers_intra_op_thread_count():
    # OpenMP keeps the intra-op count per thread: a worker that ignored the
    # caller's count of 1 started a team of its own (more OS threads),
    # whose spinning idle threads made a default fit on iris 5-10x slower.
    a = torch.randn(256, 256)
    seen = []

    def worker():
        for _ in range(3):
            torch.relu(a @ a)
        started = _os_thread_ids() - before - {str(threading.get_native_id())}
        seen.append((torch.get_num_threads(), started))

    with torch_threads(1):
        a @ a
        before = _os_thread_ids()
        with WorkerGroup("intra-op") as group:
            group.start(worker)
            group.wait()
    [(n_threads, started)] = seen
    assert n_threads == 1
    assert not started  # no OpenMP helpers beside the worker itself


def test_a_worker_keeps_its_count_when_another_thread_changes_torchs():
    # torch's first call in a thread applies the count last set anywhere in
    # the process; a concurrent fit's set_num_threads must not reach a
    # worker that has not run a torch op yet.
    other_set = threading.Event()
    seen = []

    def worker():
        other_set.wait(5)
        seen.append(torch.get_num_threads())

    with torch_threads(1):
        with WorkerGroup("intra-op") as group:
            group.start(worker)
            other = threading.Thread(
                target=lambda: (torch.set_num_threads(2), other_set.set())
            )
            other.start()
            other.join()
            group.wait()
    assert seen == [1]
