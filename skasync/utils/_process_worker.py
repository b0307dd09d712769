"""Entry point of a skasync worker process (``python -m skasync.utils._process_worker``).

Started by :class:`skasync.utils._processes.WorkerPool`; see that module for
the lifecycle rules. The loop receives ``(kind, module, name, args)``
messages and answers each job with ``("ok", result)`` or ``("error",
traceback text)``; between jobs it checks that its parent is alive and ends
after the idle timeout.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import importlib
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback


def main(argv):
    fds, parent_pid, index, idle_timeout = argv
    conn_fd, *pipe_fds = (int(fd) for fd in fds.split(","))
    parent_pid, index, idle_timeout = int(parent_pid), int(index), float(idle_timeout)

    # Import the helpers here, after the arguments: a broken install fails
    # with a traceback the parent can show (it reads our exit code).
    from skasync.utils._processes import (
        TokenPipe,
        parent_alive,
        set_parent_death_signal,
    )

    set_parent_death_signal()
    # Ctrl-C is the parent's: it kills the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not parent_alive(parent_pid):  # the parent died before the prctl
        return 1

    conn = multiprocessing.connection.Connection(conn_fd)
    state = {
        "index": index,
        "connection": conn,
        "ring_free": TokenPipe(*pipe_fds[:2]),
        "ring_ready": TokenPipe(*pipe_fds[2:4]),
    }
    # Importing torch here, before the "started" answer, makes the pool's
    # start-up time include it (the parent reports it separately).
    import torch  # noqa: F401

    conn.send(("ok", os.getpid()))
    idle_since = time.monotonic()
    while True:
        if not conn.poll(1.0):
            if not parent_alive(parent_pid):
                return 0
            if time.monotonic() - idle_since > idle_timeout:
                return 0
            continue
        try:
            kind, module, name, args = conn.recv()
        except (EOFError, OSError):
            return 0
        if kind == "exit":
            return 0
        try:
            function = getattr(importlib.import_module(module), name)
            result = function(state, *args)
        except BaseException:  # noqa: BLE001 - the parent re-raises it
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", result))
        idle_since = time.monotonic()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
