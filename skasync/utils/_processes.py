"""The one home for worker processes in skasync.

Training in processes sidesteps the GIL: each worker is a separate Python
interpreter with its own intra-op threads, and the workers share the model
through shared memory. This module holds everything about those processes
that is not specific to a training algorithm:

* :class:`SharedArena`: one anonymous shared-memory file (``memfd``) holding
  named arrays (parameters, optimizer buffers, data, ring slots, counters).
  It has no name in ``/dev/shm``: the kernel frees it once the last process
  that maps it is gone, so no segment can outlive the pool, even after
  ``SIGKILL``.
* :class:`TokenPipe`: a bounded FIFO of small integers between processes (a
  pipe of 4-byte tokens). A hand-off costs one ``write`` and one ``read``
  system call; nothing is pickled.
* :class:`WorkerPool`: a reusable pool of worker processes, started once per
  Python process (:func:`get_pool`) and reused across fits, as loky's
  reusable executor is. It runs *jobs*: functions of skasync modules, called
  in every worker with per-worker arguments; a job's exception reaches the
  caller with the worker's traceback text.

How workers start, and why
--------------------------
Workers are fresh interpreters started with :mod:`subprocess`
(``python -m skasync.utils._process_worker``), not by :mod:`multiprocessing`:

* ``fork`` copies the parent after OpenMP (or CUDA) may have started its
  thread pools, which can hang the child;
* ``spawn`` and ``forkserver`` re-import the user's ``__main__`` in every
  worker, so a script without an ``if __name__ == "__main__":`` guard would
  run its fit again in each worker;
* a fresh interpreter imports only skasync's worker module (torch included).
  That costs about a second or two per worker, paid once per Python process
  because the pool is reused.

Lifecycle guarantees
--------------------
* Idle workers block in a ``poll`` on their connection: no CPU. They exit
  after ``idle_timeout`` seconds without a job (the parent retires the pool
  a margin before, so a fit never hands work to a worker that is ending),
  at interpreter exit (``atexit``) and when the parent dies: Linux's
  ``PR_SET_PDEATHSIG`` kills them with the parent (they are started from a
  thread that lasts as long as the process, since the signal follows the
  starting *thread*), and a check of the parent's pid between jobs backs it
  up.
* A job's answers are awaited from every worker at once: the first error or
  death is seen whichever worker it is. After a worker error, a dead worker
  or a ``KeyboardInterrupt`` while a job runs the whole pool is killed at
  once (a half-finished job may hold a token another worker waits for, and
  its answer would be read as the next job's); the next fit starts a new
  pool.
* Workers ignore ``SIGINT``: Ctrl-C is the parent's to handle.
* A child forked from the parent forgets the pool: it neither uses nor
  stops the parent's workers.
* Linux only (memfd, pidfd, ``pipe2``): elsewhere ``backend="auto"`` never
  picks processes and ``backend="processes"`` is refused.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import atexit
import concurrent.futures
import contextlib
import errno
import math
import mmap
import multiprocessing.connection
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np

# memfd_create, pidfd_open, pipe2 and PR_SET_PDEATHSIG are Linux's: the
# back-end exists there only (backend="auto" never picks it elsewhere).
PROCESSES_SUPPORTED = sys.platform.startswith("linux")
if PROCESSES_SUPPORTED:
    import fcntl
    import termios

_POLL_SECONDS = 0.05
# Workers end after this long without a job (loky's default is 300 s too).
DEFAULT_IDLE_TIMEOUT = 300.0
_IDLE_TIMEOUT_ENV = "SKASYNC_POOL_IDLE_TIMEOUT"
_START_TIMEOUT = 120.0
_TOKEN = struct.Struct("=i")


class WorkerError(RuntimeError):
    """A job raised in a worker process; the message holds its traceback."""


class WorkerDied(RuntimeError):
    """A worker process ended without answering (killed, out of memory)."""


# --------------------------------------------------------------- shared memory
class SharedArena:
    """Named numpy arrays in one anonymous shared-memory file.

    Parameters
    ----------
    specs : dict
        ``name -> (shape, dtype)``.

    Notes
    -----
    The parent creates the arena and sends its file descriptor and
    :attr:`layout` to the workers, which :meth:`attach` to it. torch views of
    the arrays (``torch.from_numpy``) share the memory.
    """

    _ALIGN = 64  # cache-line alignment: two arrays never share a line

    def __init__(self, specs):
        layout = {}
        offset = 0
        for name, (shape, dtype) in specs.items():
            dtype = np.dtype(dtype)
            shape = tuple(int(s) for s in shape)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            layout[name] = (offset, shape, dtype.str)
            offset += -(-max(nbytes, 1) // self._ALIGN) * self._ALIGN
        self.layout = layout
        self.size = max(offset, self._ALIGN)
        self.fd = os.memfd_create("skasync-arena", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, self.size)
        self._map()

    @classmethod
    def attach(cls, fd, layout, size):
        """Map an arena created in another process (``fd`` is ours to own)."""
        arena = cls.__new__(cls)
        arena.fd, arena.layout, arena.size = fd, layout, size
        arena._map()
        return arena

    def _map(self):
        self._mmap = mmap.mmap(self.fd, self.size)
        # np.frombuffer keeps an export of the mapping alive in every view
        # (np.ndarray(buffer=...) does not): while a numpy or torch view
        # exists, close() cannot unmap what it reads.
        self.arrays = {
            name: np.frombuffer(
                self._mmap,
                dtype=np.dtype(dtype),
                count=math.prod(shape),
                offset=off,
            ).reshape(shape)
            for name, (off, shape, dtype) in self.layout.items()
        }

    def __getitem__(self, name):
        return self.arrays[name]

    def lock(self, byte):
        """An inter-process lock: a POSIX record lock on one byte of the file.

        Held by a process, not a thread; released by the kernel if the
        holder dies.
        """
        return _RecordLock(self.fd, byte)

    def close(self):
        """Drop this process's views and mapping (other processes keep theirs)."""
        self.arrays = {}
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A torch or numpy view still exists: the mapping stays until
                # the last one is gone (the views hold it, see _map).
                pass
            self._mmap = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _RecordLock:
    def __init__(self, fd, byte):
        self.fd, self.byte = fd, byte

    def __enter__(self):
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, self.byte)
        return self

    def __exit__(self, *exc):
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.byte)
        return False


class TokenPipe:
    """A FIFO of int32 tokens between processes, on a non-blocking pipe.

    Writes of 4 bytes are atomic, so any number of processes may put and get
    at once.  :meth:`get` waits in short ``select`` slices and gives up when
    ``should_stop()`` becomes true.
    """

    def __init__(self, read_fd=None, write_fd=None):
        if read_fd is None:
            read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.read_fd, self.write_fd = read_fd, write_fd

    @property
    def fds(self):
        return (self.read_fd, self.write_fd)

    def put(self, token):
        while True:
            try:
                os.write(self.write_fd, _TOKEN.pack(token))
                return
            except BlockingIOError:  # pragma: no cover - the pipe holds 16k tokens
                select.select([], [self.write_fd], [], _POLL_SECONDS)

    def count(self):
        """Tokens in the pipe now (a snapshot: others may take them)."""
        buffer = bytearray(4)
        fcntl.ioctl(self.read_fd, termios.FIONREAD, buffer)
        return int.from_bytes(buffer, sys.byteorder) // _TOKEN.size

    def try_get(self):
        """A token, or None when the pipe is empty."""
        try:
            data = os.read(self.read_fd, _TOKEN.size)
        except BlockingIOError:
            return None
        return _TOKEN.unpack(data)[0]

    def get(self, should_stop):
        """Wait for a token; None once ``should_stop()`` is true."""
        while True:
            token = self.try_get()
            if token is not None:
                return token
            if should_stop():
                return None
            self.wait()

    def wait(self):
        """Block until a token may be there, for a short slice at most."""
        select.select([self.read_fd], [], [], _POLL_SECONDS)

    def drain(self):
        """Remove every token (between fits)."""
        while self.try_get() is not None:
            pass


# ----------------------------------------------------------------- the pool
_LAUNCHER = None
_LAUNCHER_LOCK = threading.Lock()
# Not a fit's worker: it starts pools for fits in other threads and lives
# with the process, blocked on a queue (no CPU), like an idle pool.
LAUNCHER_THREAD = "skasync-pool-launcher"


def _start_from_a_lasting_thread(function, *args, **kwargs):
    """``function(*args, **kwargs)`` (a process start) on a thread that lives
    as long as this process.

    Linux's ``PR_SET_PDEATHSIG`` fires when the *thread* that started the
    child ends, not the process: a pool started by a fit in a short-lived
    thread (a ``ThreadPoolExecutor`` of a grid search) would be killed with
    that thread. The main thread lasts; other threads hand the start to one
    daemon thread that waits for work for the rest of the process.
    """
    global _LAUNCHER
    if threading.current_thread() is threading.main_thread():
        return function(*args, **kwargs)
    with _LAUNCHER_LOCK:
        if _LAUNCHER is None:
            _LAUNCHER = _Launcher()
    return _LAUNCHER.call(function, *args, **kwargs)


class _Launcher:
    """One daemon thread that runs calls for others and never ends."""

    def __init__(self):
        import queue

        self._calls = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=LAUNCHER_THREAD, daemon=True).start()

    def call(self, function, *args, **kwargs):
        future = concurrent.futures.Future()
        self._calls.put((future, function, args, kwargs))
        return future.result()

    def _serve(self):
        while True:
            future, function, args, kwargs = self._calls.get()
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - the caller's to raise
                future.set_exception(error)


def _idle_timeout():
    value = os.environ.get(_IDLE_TIMEOUT_ENV)
    if value is None:
        return DEFAULT_IDLE_TIMEOUT
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{_IDLE_TIMEOUT_ENV}={value!r} is not a number of seconds."
        ) from None


class WorkerPool:
    """Worker processes that run jobs and stay for the next fit.

    Parameters
    ----------
    n_workers : int
        Number of worker processes.
    idle_timeout : float or None
        Seconds a worker waits for a job before it exits; None reads
        ``SKASYNC_POOL_IDLE_TIMEOUT`` (default 300).

    Attributes
    ----------
    startup_seconds : float
        Wall time it took to start the workers (interpreter and imports).
    ring_free, ring_ready : TokenPipe
        Two token pipes every worker holds, reused by the jobs of each fit.
    """

    def __init__(self, n_workers, idle_timeout=None):
        self.n_workers = int(n_workers)
        self.idle_timeout = _idle_timeout() if idle_timeout is None else idle_timeout
        self.processes = []
        self.connections = []
        self.sentinels = []
        self.closed = False
        self.in_use = False
        # A forked child inherits this object: only the creator may stop it.
        self._owner_pid = os.getpid()
        # Workers with a job submitted and not yet answered.
        self._running = set()
        self.last_answer = time.monotonic()
        # Size of the torch.distributed group the workers have joined (sync).
        self.group_size = None
        self.ring_free = TokenPipe()
        self.ring_ready = TokenPipe()
        start = time.perf_counter()
        try:
            for index in range(self.n_workers):
                self._launch(index)
            self._running.update(range(self.n_workers))
            self.collect(timeout=_START_TIMEOUT, what="start")
        except BaseException:
            self.terminate()
            raise
        self.startup_seconds = time.perf_counter() - start

    def _launch(self, index):
        parent_end, child_end = socket.socketpair()
        # pass_fds makes these inheritable in the child only: they stay
        # close-on-exec here, so no other child of the parent gets them.
        passed = [child_end.fileno(), *self.ring_free.fds, *self.ring_ready.fds]
        # A new process group: Ctrl-C in a terminal signals the parent only.
        process = _start_from_a_lasting_thread(
            subprocess.Popen,
            [
                sys.executable,
                "-m",
                "skasync.utils._process_worker",
                ",".join(str(fd) for fd in passed),
                str(os.getpid()),
                str(index),
                repr(self.idle_timeout),
            ],
            pass_fds=passed,
            close_fds=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        child_end.close()
        self.processes.append(process)
        # A descriptor that becomes readable when the worker ends (Linux).
        self.sentinels.append(os.pidfd_open(process.pid))
        self.connections.append(
            multiprocessing.connection.Connection(parent_end.detach())
        )

    # -- jobs --------------------------------------------------------------
    def send_fds(self, index, fds):
        """Send file descriptors to worker ``index`` (it receives them with
        ``receive_fds`` inside a job)."""
        with socket.socket(fileno=os.dup(self.connections[index].fileno())) as sock:
            socket.send_fds(sock, [b"f"], list(fds))

    def submit(self, index, function, *args):
        """Start ``function(state, *args)`` in worker ``index``.

        ``function`` must be a module-level function of an importable module;
        ``state`` is the worker's dict that persists between jobs.
        """
        self._check_open()
        if index in self._running:
            # Its answer to the earlier job would be read as this one's.
            raise RuntimeError(f"worker {index} is still running a job")
        self._running.add(index)
        self.connections[index].send(
            ("job", function.__module__, function.__qualname__, args)
        )

    @property
    def idle(self):
        """No job submitted and unanswered (so the next answer is the next
        job's)."""
        return not self._running

    def collect(self, indices=None, timeout=None, what="job"):
        """Wait for the answers of ``indices`` (all workers by default).

        Waits on every worker at once, so the first error or death is seen
        at once, whichever worker it is (one worker's error may leave the
        others waiting for it, in a collective or for a token). Raises
        :class:`WorkerError` with the worker's traceback if a job raised
        and :class:`WorkerDied` if a worker ended; in both cases, and on
        ``KeyboardInterrupt``, every worker is killed first.
        """
        indices = list(range(self.n_workers) if indices is None else indices)
        results = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while len(results) < len(indices):
                waiting = [i for i in indices if i not in results]
                handles = {self.connections[i]: i for i in waiting}
                handles.update({self.sentinels[i]: i for i in waiting})
                ready = multiprocessing.connection.wait(list(handles), 0.5)
                for index in sorted({handles[h] for h in ready}):
                    results[index] = self._answer(index, what)
                    self._running.discard(index)
                if deadline is not None and time.monotonic() > deadline:
                    index = next(i for i in indices if i not in results)
                    raise WorkerDied(
                        f"worker {index} (pid {self.processes[index].pid}) did "
                        f"not answer the {what} within {timeout:.0f} s; every "
                        "worker was stopped."
                    )
        except BaseException:
            self.terminate()
            raise
        self.last_answer = time.monotonic()
        return [results[i] for i in indices]

    def run(self, function, per_worker_args, timeout=None):
        """Run ``function(state, *args)`` in every worker; return the results."""
        for index, args in enumerate(per_worker_args):
            self.submit(index, function, *args)
        return self.collect(range(len(per_worker_args)), timeout)

    def _answer(self, index, what):
        """Worker ``index``'s answer, once its connection or its process
        sentinel is ready: the result, or the error it stands for."""
        conn, process = self.connections[index], self.processes[index]
        # A worker may answer and then end (its idle timeout): read first.
        if conn.poll(0):
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                kind = None
            if kind == "ok":
                return payload
            if kind == "error":
                raise WorkerError(
                    f"A worker process (pid {process.pid}) raised during "
                    f"the {what}; its traceback:\n{payload}"
                )
        # The connection closed or the process ended: it is dying.
        try:
            code = process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        cause = (
            f"killed by signal {-code} ({_signal_name(-code)})"
            if code < 0
            else f"exit code {code}"
        )
        raise WorkerDied(
            f"backend='processes': worker {index} (pid {process.pid}) "
            f"died during the {what}, {cause}; a SIGKILL often means the "
            "out-of-memory killer. Every worker was stopped. Use "
            "backend='threads', or fewer or smaller batches."
        )

    # -- lifecycle ---------------------------------------------------------
    @property
    def alive(self):
        return not self.closed and all(p.poll() is None for p in self.processes)

    @property
    def near_idle_timeout(self):
        """Whether the workers may be ending for want of a job: the parent's
        clock starts after theirs, and an exiting interpreter still looks
        alive for a moment, so the pool is retired a margin early."""
        margin = min(10.0, 0.5 * self.idle_timeout)
        return time.monotonic() - self.last_answer > self.idle_timeout - margin

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def _check_open(self):
        if not self.alive:
            raise WorkerDied("the worker pool was shut down; start a new one.")

    def _forked_copy(self):
        """Whether this is a forked child's copy of the pool: the workers are
        the parent's, so the copy is only marked closed."""
        if os.getpid() == self._owner_pid:
            return False
        self.closed = True
        return True

    def shutdown(self, timeout=5.0):
        """Ask the workers to exit, then kill any that did not."""
        if self.closed:
            return
        if self._forked_copy():
            return
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.send(("exit", None, None, None))
        deadline = time.monotonic() + timeout
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
        self.terminate()

    def terminate(self):
        """Kill every worker at once and release the pipes."""
        if self._forked_copy():
            return
        self._running.clear()
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for process in self.processes:
            process.wait()
        for conn in self.connections:
            conn.close()
        if not self.closed:
            for fd in self.sentinels:
                os.close(fd)
            for fd in (*self.ring_free.fds, *self.ring_ready.fds):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.closed = True


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


_POOL = None
_POOL_LOCK = threading.RLock()


def get_pool(n_workers):
    """The process's reusable pool of ``n_workers`` workers.

    Returns ``(pool, started)``: ``started`` is True when this call had to
    start the workers (a first fit, another size, after an idle timeout or
    an error).
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and (
            _POOL.n_workers != n_workers
            or not _POOL.alive
            or (not _POOL.in_use and _POOL.near_idle_timeout)
        ):
            if _POOL.in_use:
                raise RuntimeError("the shared pool is serving a fit")
            _POOL.shutdown()
            _POOL = None
        if _POOL is None:
            _POOL = WorkerPool(n_workers)
            return _POOL, True
        return _POOL, False


@contextlib.contextmanager
def pool_for_fit(n_workers):
    """Lend a pool to one fit: ``with pool_for_fit(n) as (pool, started):``.

    The shared, reusable pool when it is free; while it serves another fit
    (fits in several threads of one process), a private pool that is shut
    down when the block ends, so that two fits never share workers.
    """
    with _POOL_LOCK:
        busy = _POOL is not None and _POOL.in_use
    if busy:
        pool = WorkerPool(n_workers)
        try:
            yield pool, True
        finally:
            pool.shutdown()
        return
    with _POOL_LOCK:
        # Another thread may have taken the shared pool meanwhile.
        if _POOL is not None and _POOL.in_use:
            pool = None
        else:
            pool, started = get_pool(n_workers)
            pool.in_use = True
    if pool is None:
        with pool_for_fit(n_workers) as lease:
            yield lease
        return
    try:
        yield pool, started
    finally:
        pool.in_use = False


def shutdown_pool():
    """Stop the reusable pool, if any (also run at interpreter exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown()
            _POOL = None


def processes_supported():
    """Whether worker processes can run here (Linux)."""
    return PROCESSES_SUPPORTED


def pool_is_warm(n_workers):
    """Whether :func:`get_pool` would reuse running workers."""
    return _POOL is not None and _POOL.n_workers == n_workers and _POOL.alive


def _forget_pool_in_child():
    # A child forked from a process with a pool (a joblib fork backend, a
    # plain os.fork) must neither use nor stop the parent's workers; the
    # lock may have been held by a thread that does not exist here.
    global _POOL, _POOL_LOCK, _LAUNCHER, _LAUNCHER_LOCK
    _POOL, _POOL_LOCK = None, threading.RLock()
    _LAUNCHER, _LAUNCHER_LOCK = None, threading.Lock()


atexit.register(shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


# --------------------------------------------------------- worker-side helpers
def receive_fds(conn, count):
    """Receive ``count`` file descriptors sent by :meth:`WorkerPool.send_fds`."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, count)
    return fds


def set_parent_death_signal():
    """Have Linux kill this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:  # pragma: no cover
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def parent_alive(parent_pid):
    """Whether ``parent_pid`` still exists and is still our parent."""
    if os.getppid() != parent_pid:
        return False
    try:
        os.kill(parent_pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


__all__ = [
    "SharedArena",
    "TokenPipe",
    "WorkerDied",
    "WorkerError",
    "WorkerPool",
    "get_pool",
    "pool_for_fit",
    "pool_is_warm",
    "processes_supported",
    "receive_fds",
    "shutdown_pool",
]
