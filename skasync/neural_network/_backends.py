"""Which back-end trains :class:`~skasync.AsyncLayerwiseMLPClassifier`.

Structure
---------
* :data:`BACKENDS`: the values of the ``backend`` parameter.
* :func:`distributed_world`: the ``torch.distributed`` group a ``torchrun``
  launch provides, if any; :func:`check_group_for_cpu_training`: what a fit
  across its ranks needs; :func:`ranks_training_alone`: why a fit in such a
  launch trains one model per rank.
* :func:`choose_backend`: the rule behind ``backend="auto"``;
  :func:`mean_layer_op_macs` and :func:`threads_speedup`: its measure of
  a layer op and the threads' expected speed on it.
* :func:`choose_backward_weights`: the rule behind
  ``backward_weights="auto"``, which depends on the back-end.

The rule of ``"auto"``
----------------------
Worker threads share one GIL: while a layer op runs (the GIL released) the
other threads can work, but every torch call and the Python around it
takes turns. So threads gain little or lose on small layer ops and come
close to the processes on large ones. Worker processes run on every core
but pay a start-up (interpreters and the torch import, once per Python
process, then the pool is reused) and a hand-over per fit. ``"auto"`` picks
processes when all of these hold:

* the mode has parallel workers and is asynchronous (``sync`` in processes
  all-reduces over gloo at every step, which was slower than ``sync`` on
  threads on every benchmark set), and the device is the CPU (on a GPU the
  threads drive CUDA streams and the GIL is not the limit);
* more than one CPU is available;
* the time the processes are expected to save exceeds their start-up
  (zero when a warm pool of the right size is waiting):
  ``epochs * (threads_epoch - processes_epoch) > COLD_START``, where

  - ``serial_epoch`` is estimated from the batch count and the
    multiply-adds of a batch (forward and backward) at the rates below;
  - ``threads_epoch`` is ``serial_epoch / threads_speedup``: the threads'
    speed-up over one thread is ``1 / THREAD_SLOWDOWN`` when the mean layer
    op is at most ``SMALL_OP_MACS`` (the threads then take turns at the GIL
    more than they compute), ``THREAD_EFFICIENCY * cpus`` from
    ``LARGE_OP_MACS`` on (the ops, each on its thread's share of the
    intra-op threads, run in parallel nearly as the processes' do), and
    log-linear in between;
  - ``processes_epoch`` is ``serial_epoch / (PROCESS_EFFICIENCY * cpus)``
    plus ``EPOCH_OVERHEAD`` (the epoch's jobs and hand-offs);
  - ``epochs`` is ``min(max_iter, EXPECTED_EPOCHS)``; 1 for
    ``partial_fit``, which trains one epoch a call.

  When ``max_time`` ends the fit sooner than those epochs on threads, the
  start-up spends part of the budget instead: processes are chosen when
  ``(max_time - start-up) / processes_epoch`` exceeds
  ``max_time / threads_epoch``.

The constants were measured on the benchmark machine (2 cores, torch 2.13
CPU); ``benchmarks/bench_auto_backend.py`` measures the rule's choices
against both back-ends (``benchmarks/results/auto_backend.md``).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import os

import numpy as np

from skasync.utils import _processes

BACKENDS = ("auto", "threads", "processes")

# One-thread cost of a batch: a fixed part (about 30 torch calls and the
# Python around them) plus the multiply-adds at a core's rate (serial
# MNIST-1D at widths 256 and 1024: 5.1e10 and 5.8e10 per second).
BATCH_OVERHEAD = 2.5e-4  # seconds
MACS_PER_SECOND = 5e10
# Pool start-up when no warm pool is waiting (interpreter + torch import,
# the workers starting in parallel; 1.0-1.6 s measured), and the per-epoch
# cost of the jobs (digits: 30 epochs of Hogwild! in processes took 0.081 s
# against 0.083 s serial, which leaves about 1 ms per epoch).
COLD_START = 2.0  # seconds
EPOCH_OVERHEAD = 1e-3  # seconds
# Threads against one-thread serial (auto_backend.md, fixed epochs, fits
# of several batches): 0.31-0.65x with layer ops of 3e5-7e5 multiply-adds
# (breast_cancer, digits, MNIST-1D at the default width), 1.20-1.71x at
# MNIST-1D width 256 (3.3e6), 1.53-1.97x at width 1024 (4.7e7).
SMALL_OP_MACS = 1e6
LARGE_OP_MACS = 1e7
THREAD_SLOWDOWN = 1.8
# Share of the ideal speed-up the processes reach (measured 0.85-0.95),
# and the threads on large ops: at width 1024 they ran at 0.89-0.96 of the
# processes' samples/s (backends.md).
PROCESS_EFFICIENCY = 0.85
THREAD_EFFICIENCY = 0.8
EXPECTED_EPOCHS = 30


def distributed_world():
    """``(rank, world_size)`` of the default ``torch.distributed`` group.

    None unless a group with more than one rank is initialised (as after
    ``torch.distributed.init_process_group`` in a script that ``torchrun``
    launched).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    return (dist.get_rank(), world) if world > 1 else None


def launched_by_torchrun():
    """Whether the environment is that of a ``torchrun`` worker of several."""
    return (
        "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1
    )


def check_group_for_cpu_training(device_type, group_backend):
    """Raise unless a fit can train across the group's ranks.

    Training across ranks (``sync``'s all-reduce, ``pd-asgd``'s gossip)
    keeps the parameters and every message in CPU memory and sends them
    over gloo; NCCL carries only CUDA tensors and has no receive from any
    source, which the gossip needs.

    Parameters
    ----------
    device_type : str
        ``torch.device(...).type`` of the estimator's ``device``.
    group_backend : str
        ``torch.distributed.get_backend()``: ``"gloo"``, ``"nccl"``, or
        several, as ``"cpu:gloo,cuda:nccl"``.

    Raises
    ------
    ValueError
        Naming the parameter or the call to change.
    """
    if device_type != "cpu":
        raise ValueError(
            f"device={device_type!r}: training one model across torch.distributed "
            "ranks runs on the CPU (the parameters and the messages between the "
            "ranks live in CPU memory and travel over gloo). Use device='cpu', or "
            "backend='threads' to train a model of its own on each rank's device."
        )
    if "gloo" not in str(group_backend):
        raise ValueError(
            f"the torch.distributed group's backend is {group_backend!r}, but "
            "training across ranks sends CPU tensors, which need gloo. Call "
            "torch.distributed.init_process_group('gloo') (or with no backend, "
            "which sets up gloo for CPU tensors beside NCCL)."
        )


def ranks_training_alone(mode, backend, modes_across_ranks):
    """Why a fit in a launch of several ranks trains one model per rank.

    None when the fit joins the group, or when the process was not launched
    as one of several ranks. A launch of several ranks almost always means
    one model trained across them, so a fit that trains alone says why and
    what to change.

    Parameters
    ----------
    mode, backend : str
        The estimator's parameters.
    modes_across_ranks : tuple of str
        The modes that train one model across the group's ranks (with
        ``backend="auto"``).

    Returns
    -------
    message : str or None
    """
    across = " or ".join(repr(m) for m in modes_across_ranks)
    world = distributed_world()
    if world is not None:
        if backend == "auto" and mode in modes_across_ranks:
            return None
        why = (
            f"mode={mode!r} does not train across ranks"
            if backend == "auto"
            else f"backend={backend!r} keeps the fit in this rank"
        )
        return (
            f"rank {world[0]} of {world[1]}: {why}, so every rank trains its "
            f"own model on the data it was given. mode={across} with "
            "backend='auto' trains one model across the ranks."
        )
    if launched_by_torchrun():
        return (
            f"torchrun launched this process as one of WORLD_SIZE="
            f"{os.environ['WORLD_SIZE']} ranks, but no torch.distributed group "
            "is initialised, so every rank trains its own model. Call "
            "torch.distributed.init_process_group('gloo') before fit (with "
            f"mode={across} and backend='auto') to train one model across the "
            "ranks."
        )
    return None


def estimated_serial_epoch(layer_sizes, n_samples, batch_size):
    """Seconds of one one-thread epoch, from the model's multiply-adds."""
    n_batches = -(-n_samples // batch_size)
    macs = sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    # forward + backward (two products per layer) = 3x the forward's.
    return n_batches * BATCH_OVERHEAD + 3 * macs * n_samples / MACS_PER_SECOND


def mean_layer_op_macs(layer_sizes, batch_size):
    """Multiply-adds of one layer's product for a batch, averaged over layers.

    ``batch_size x fan_in x fan_out``: the size of the kernels between which
    a thread needs the GIL.
    """
    return batch_size * np.mean(
        [a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
    )


def threads_speedup(op_macs, cpus):
    """Expected speed of the worker threads over one thread (see the rule)."""
    small = 1.0 / THREAD_SLOWDOWN
    # Each worker thread runs its ops on its share of the intra-op threads,
    # so on large ops the threads together use every core, as processes do.
    large = THREAD_EFFICIENCY * cpus
    if op_macs <= SMALL_OP_MACS:
        return small
    if op_macs >= LARGE_OP_MACS:
        return large
    share = np.log(op_macs / SMALL_OP_MACS) / np.log(LARGE_OP_MACS / SMALL_OP_MACS)
    return small + share * (large - small)


def choose_backend(
    *,
    parallel,
    synchronous,
    device_type,
    cpus,
    layer_sizes,
    n_samples,
    batch_size,
    max_iter,
    max_time,
    pool_warm,
):
    """The back-end ``"auto"`` stands for, and the reason in words.

    Parameters
    ----------
    parallel : bool
        Whether the fit has parallel workers (processes would start more
        than one).
    synchronous : bool
        Whether the mode is ``sync``.

    Returns
    -------
    backend : {"threads", "processes"}
    reason : str
    """
    if not parallel:
        return "threads", "one worker: the fit runs one loop in the calling thread"
    if device_type != "cpu":
        return "threads", f"device type {device_type!r}: threads drive its streams"
    if synchronous:
        return "threads", (
            "mode='sync' on one machine: processes all-reduce over gloo at "
            "every step, slower than threads on every benchmark set"
        )
    if cpus < 2:
        return "threads", "one CPU available"
    if not _processes.processes_supported():
        return "threads", "worker processes need Linux (memfd, pidfd)"
    epoch = estimated_serial_epoch(layer_sizes, n_samples, batch_size)
    op_macs = mean_layer_op_macs(layer_sizes, batch_size)
    threads_epoch = epoch / threads_speedup(op_macs, cpus)
    processes_epoch = epoch / (PROCESS_EFFICIENCY * cpus) + EPOCH_OVERHEAD
    epochs = min(max_iter, EXPECTED_EPOCHS)
    cost = 0.0 if pool_warm else COLD_START
    if max_time is not None and epochs * threads_epoch > max_time:
        # The budget binds, and the start-up spends part of it: compare the
        # epochs each back-end trains within max_time.
        on_threads = max_time / max(threads_epoch, 1e-9)
        on_processes = max(0.0, max_time - cost) / processes_epoch
        words = (
            f"about {on_processes:.1f} epochs within max_time={max_time} s "
            f"after {cost:.2f} s of start-up, against {on_threads:.1f} on threads"
        )
        return ("processes" if on_processes > on_threads else "threads"), words
    saved = epochs * (threads_epoch - processes_epoch)
    if saved > cost:
        return "processes", (
            f"about {saved:.2f} s saved over {epochs:.0f} epochs against "
            f"{cost:.2f} s of start-up"
        )
    return "threads", (
        f"about {saved:.2f} s to save over {epochs:.0f} epochs, not more than "
        f"{cost:.2f} s of start-up"
    )


def choose_backward_weights(backward_weights, mode, backend):
    """The weights the backward pass multiplies by: ``"current"`` or ``"snapshot"``.

    ``"auto"`` stands for ``"snapshot"`` for Hogwild! on the process
    back-end and ``"current"`` everywhere else. Hogwild! (Niu et al., 2011)
    evaluates each gradient at the weights its step read, which a snapshot
    does exactly, and on processes the copy also pays: each worker reads the
    shared weights once per batch into its own buffer, so its forward and
    backward products no longer read cache lines that the other process is
    writing (measured at width 1024; see ``docs/benchmarks.rst``). PD-ASGD
    and D-ASGD keep the paper's live weights, and with threads the copy
    costs more than it saves.
    """
    if backward_weights != "auto":
        return backward_weights
    if mode == "hogwild" and backend == "processes":
        return "snapshot"
    return "current"
