"""The one home for worker threads in skasync.

Every threaded ``fit`` in the package (the asynchronous MLP engines and the
parallel block-local engine) starts its threads through :class:`WorkerGroup`,
which guarantees the rules of the package:

* every thread is joined before the ``with`` block is left, also when the
  caller raises, a worker raises, a deadline passes or the user presses Ctrl-C;
* the first exception raised in a worker is re-raised in the caller, with the
  worker's traceback attached (``exc.__traceback__`` keeps the worker frames);
* blocking queue operations never deadlock: :func:`queue_put` and
  :func:`queue_get` wake up regularly and give up once the group is stopping.

:func:`torch_threads` sets torch's intra-op thread count for a fit and
restores it afterwards, and :func:`available_cpus` is the CPU budget the
torch classifiers divide among their threads.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import queue
import sys
import threading
import time

import joblib

_POLL_SECONDS = 0.05


class WorkerStopped(Exception):
    """Raised inside a worker's queue operation when the group is stopping."""


class WorkerGroup:
    """Run worker threads that are always joined and whose errors propagate.

    Use it as a context manager::

        with WorkerGroup("pd-asgd") as group:
            group.start(forward_worker, batches)
            group.start(backward_worker)
            group.wait(deadline=time.monotonic() + max_time)

    A worker's error is raised by ``wait`` and, when the block then ends
    normally, again by the exit: a caller that handles it inside the block
    still leaves through it, so no worker failure goes unreported.

    Parameters
    ----------
    name : str
        Prefix of the thread names (shown by debuggers and py-spy).
    """

    def __init__(self, name):
        self.name = name
        self.stop_event = threading.Event()
        self._threads = []
        self._done = []
        self._errors = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # Whatever happened in the caller (including KeyboardInterrupt), stop
        # the workers and join them before leaving.
        interrupt = self._join_all()
        if exc_type is None:
            if interrupt is not None:
                # Ctrl-C arrived while the workers of a finished block were
                # being joined: it is the caller's, not ours to swallow.
                raise interrupt
            self.raise_if_failed()
        return False

    def start(self, target, *args, name=None, **kwargs):
        """Start ``target(*args, **kwargs)`` in a new daemon thread."""
        index = len(self._threads)
        thread_name = f"skasync-{self.name}-{name or index}"

        # Set when the target has returned. Thread.is_alive() cannot be
        # trusted for this: on CPython <= 3.11 a Thread.join() interrupted by
        # Ctrl-C marks a still-running thread as stopped (bpo-45274's fix
        # releases the lock the running thread holds).
        done = threading.Event()
        # torch keeps OpenMP's intra-op count per thread: a new thread gets
        # the process default (all cores), not the count the fit set in the
        # caller. Each worker would then start its own OpenMP team, whose
        # idle threads spin on the cores the other workers need (a default
        # fit on iris ran 5-10x slower than with the caller's count).
        intra_op_threads = _torch_num_threads()

        def run():
            try:
                if intra_op_threads is not None:
                    _set_torch_num_threads(intra_op_threads)
                target(*args, **kwargs)
            except WorkerStopped:
                pass
            except BaseException as error:  # noqa: BLE001 - re-raised in caller
                with self._lock:
                    self._errors.append(error)
                self.stop_event.set()
            finally:
                done.set()

        thread = threading.Thread(target=run, name=thread_name, daemon=True)
        self._threads.append(thread)
        self._done.append(done)
        try:
            thread.start()
        except BaseException:
            if thread.ident is None:  # never started: nothing to wait for
                done.set()
            raise
        return thread

    def wait(self, deadline=None):
        """Block until every worker has finished or ``deadline`` passes.

        Parameters
        ----------
        deadline : float or None
            A :func:`time.monotonic` time.  When it passes, the group is
            stopped (workers see :attr:`stop_event`) and joined.

        Returns
        -------
        timed_out : bool
            True when the deadline stopped the workers.
        """
        timed_out = False
        for done in self._done:
            # Short waits keep the main thread responsive to Ctrl-C (and
            # never interrupt a Thread.join, see start()).
            while not done.wait(_POLL_SECONDS):
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    self.stop_event.set()
                    deadline = None
        self.raise_if_failed()
        return timed_out

    def raise_if_failed(self):
        """Re-raise the first worker exception in the calling thread."""
        with self._lock:
            error = self._errors[0] if self._errors else None
        if error is not None:
            raise error

    @property
    def stopping(self):
        """True once the group was asked to stop (error, deadline, exit)."""
        return self.stop_event.is_set()

    def _join_all(self):
        """Stop and join every worker; return the first KeyboardInterrupt received."""
        interrupt = None
        while True:
            # The whole loop sits in the try: Ctrl-C may land on any bytecode
            # (the is_alive() test too), and must not leave threads behind.
            # Finish joining, then let the caller re-raise it.
            try:
                self.stop_event.set()
                for done in self._done:
                    while not done.wait(_POLL_SECONDS):
                        pass
                # Every target has returned: these joins only wait for the
                # threads' own exit, microseconds. A thread whose start
                # failed has nothing to join (join would raise and hide
                # the start's error).
                for thread in self._threads:
                    if thread.ident is not None:
                        thread.join()
                return interrupt
            except KeyboardInterrupt as error:
                interrupt = interrupt or error


def queue_put(work_queue, item, stop_event):
    """Put ``item`` into a bounded queue, giving up if ``stop_event`` is set."""
    while True:
        if stop_event.is_set():
            raise WorkerStopped
        try:
            work_queue.put(item, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue


def queue_get(work_queue, stop_event):
    """Get an item from a queue, giving up if ``stop_event`` is set."""
    while True:
        try:
            return work_queue.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if stop_event.is_set():
                raise WorkerStopped from None


def _torch_num_threads():
    """torch's intra-op thread count in this thread; None if torch is not loaded."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.get_num_threads()


def _set_torch_num_threads(num_threads):
    import torch

    # torch's first call in a thread applies the count last set anywhere in
    # the process: made before ours, so that a concurrent fit's later
    # set_num_threads cannot replace this thread's count.
    torch.get_num_threads()
    torch.set_num_threads(num_threads)


@contextlib.contextmanager
def torch_threads(num_threads):
    """Set torch's intra-op thread count inside the block and restore it.

    The count is restored in the thread that set it. torch keeps it partly
    per thread (OpenMP) and partly process-wide, so fits that overlap in
    several threads (joblib's threading backend) each see their own count,
    but a thread started after out-of-order exits may inherit another fit's
    count: pass ``torch_num_threads`` explicitly in that setting.

    Parameters
    ----------
    num_threads : int or None
        None leaves the current setting alone.
    """
    import torch

    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def available_cpus():
    """CPUs this process may use, at least 1.

    ``os.cpu_count()`` counts the machine's CPUs, also those ``taskset`` or a
    container leaves out; thread and process budgets use this count
    instead: joblib's, which takes the affinity mask and a cgroup CPU quota
    (``docker --cpus``) into account.
    """
    return max(1, joblib.cpu_count())
