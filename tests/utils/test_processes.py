# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""The worker pool's lifecycle at its edges: a pool started from a thread
that ends, a forked child, the idle timeout, an unanswered job, and views
that outlive the shared-memory arena. Jobs are module-level functions
called as ``function(state, *args)``; ``len`` (the state's size) is the
simplest."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from skasync.utils import _processes

pytestmark = pytest.mark.skipif(
    not _processes.processes_supported(), reason="worker processes need Linux"
)


@pytest.fixture
def fresh_pool():
    """No shared pool before or after the test."""
    _processes.shutdown_pool()
    yield
    _processes.shutdown_pool()


def test_a_pool_started_in_a_thread_outlives_the_thread(fresh_pool):
    """PR_SET_PDEATHSIG follows the thread that started a child: workers
    started from a thread that then ends must not die with it."""
    started = []
    thread = threading.Thread(target=lambda: started.append(_processes.get_pool(2)))
    thread.start()
    thread.join()
    pool, is_new = started[0]
    assert is_new
    time.sleep(0.5)  # a worker killed by the thread's end is gone by now
    assert pool.alive
    assert pool.run(len, [(), ()]) == [4, 4]
    assert _processes.get_pool(2) == (pool, False)


def test_a_forked_child_neither_uses_nor_stops_the_parents_pool(fresh_pool):
    pool, _ = _processes.get_pool(2)
    pid = os.fork()
    if pid == 0:  # the child: what its exit (atexit) would do, then leave
        forgot = _processes._POOL is None
        _processes.shutdown_pool()
        pool.shutdown()  # even the inherited object cannot stop them
        os._exit(0 if forgot else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.alive
    assert pool.run(len, [(), ()]) == [4, 4]


def test_the_pool_is_retired_before_its_workers_time_out(fresh_pool, monkeypatch):
    """A fit must not hand work to a worker that is ending for want of a
    job: past idle_timeout minus a margin the pool is replaced."""
    monkeypatch.setenv("SKASYNC_POOL_IDLE_TIMEOUT", "2")  # margin 1 s
    pool, _ = _processes.get_pool(2)
    assert _processes.get_pool(2) == (pool, False)
    time.sleep(1.2)
    new, is_new = _processes.get_pool(2)
    assert is_new and new is not pool and not pool.alive
    assert new.run(len, [(), ()]) == [4, 4]


def test_a_worker_with_an_unanswered_job_takes_no_other(fresh_pool):
    """Its answer would be read as the next job's."""
    pool, _ = _processes.get_pool(2)
    pool.submit(0, len)
    assert not pool.idle
    with pytest.raises(RuntimeError, match="worker 0 is still running a job"):
        pool.submit(0, len)
    assert pool.collect([0]) == [4]
    assert pool.idle


def test_a_view_outlives_the_arena_close():
    """close() with a torch view alive keeps the mapping for the view (it
    used to unmap it: the next read crashed). Run apart: a crash here would
    end the test run."""
    code = textwrap.dedent(
        """
        import torch
        from skasync.utils._processes import SharedArena

        arena = SharedArena({"a": ((4,), "float32")})
        view = torch.from_numpy(arena["a"])
        arena.close()
        view += 1
        print(view.tolist())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[1.0, 1.0, 1.0, 1.0]"
