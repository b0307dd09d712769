"""Training engines of :class:`~skasync.AsyncLayerwiseMLPClassifier`.

Five ways to train the :class:`~skasync.neural_network._shared_mlp.SharedMLP`
(the estimator's ``nn.Linear`` weights, updated in place) for one epoch,
after PD-ASGD (Teguemne Fokam et al., arXiv 2410.05985):

``pd-asgd``
    Forward threads put their batches' saved activations into a bounded
    FIFO; backward threads take them, backpropagate layer by layer and step
    each layer the moment its gradient is complete (output layer first),
    lock-free, on the shared weights.
``d-asgd``
    The same decoupled threads, but one whole-model step after the backward
    pass (the paper's ablation).
``hogwild``
    ``n_workers`` threads, each forward + backward + whole-model step,
    lock-free.
``sync``
    Synchronous data parallel over ``n_workers`` threads: each batch is split
    into shards, shard gradients are averaged (weighted by shard size, so
    the step equals the full-batch step) and one step is taken.
``serial``
    One loop in the calling thread: deterministic for a fixed seed.

Structure
---------
* :class:`AsyncLayerwiseConfig`: the fit's resolved settings (frozen), built
  by the estimator's ``_engine_config()``.
* :func:`run_epoch`: one epoch in the configured mode (``_run_serial``,
  ``_run_decoupled``, ``_run_hogwild``, ``_run_sync`` with ``_sync_step``).
* :func:`epoch_stats`: the statistics every engine returns (threads,
  processes and torch.distributed).
* ``_Epoch``: what one epoch's workers share: the data permuted once (a
  batch is a contiguous slice, a view, not a per-batch index gather), the
  next batch, per-batch losses and sample counts.  The test hook and the
  straggler delays are methods of the config (``notify``, ``straggle``),
  shared with the process engines.
* ``_Streams``: on CUDA, a stream per in-flight batch from a pool; nothing
  in the hot loop reads a value back to the host.

Threads start only through :class:`~skasync.utils._threads.WorkerGroup` and
queue operations go through ``queue_put`` / ``queue_get`` (no deadlock, stop
on the first error, deadline or Ctrl-C).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import itertools
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from skasync.neural_network._modes import ASYNC_MODES, mode_names, modes_where
from skasync.utils._threads import WorkerGroup, queue_get, queue_put

MODES = mode_names(ASYNC_MODES)
THREADED_MODES = modes_where(ASYNC_MODES, parallel=True)
DECOUPLED_MODES = modes_where(ASYNC_MODES, decoupled=True)


@dataclass(frozen=True)
class AsyncLayerwiseConfig:
    """Resolved settings of one fit (plain values, no torch objects)."""

    mode: str
    n_forward: int = 1
    n_backward: int = 2
    n_workers: int = 3
    queue_size: int = 2
    solver: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    alpha: float = 0.0
    activation: str = "relu"
    backward_weights: str = "current"
    update_lock: str = "none"
    straggler_delay: float = 0.0
    straggler_ids: frozenset = field(default_factory=frozenset)
    # Private test hook: called as hook(event, worker_id) in the hot loop
    # ("forward", "backward", "step", "update"); used to inject delays,
    # failures and interrupts.
    hook: object = None

    def notify(self, event, worker):
        """Call the test hook, if any (every engine, threads or processes)."""
        if self.hook is not None:
            self.hook(event, worker)

    def straggle(self, worker):
        """Sleep ``straggler_delay`` if ``worker`` is a straggler."""
        if self.straggler_delay > 0 and worker in self.straggler_ids:
            time.sleep(self.straggler_delay)


class _Streams:
    """A CUDA stream per in-flight batch; no-op contexts on the CPU."""

    def __init__(self, device, size):
        self.cuda = device.type == "cuda"
        self.pool = (
            [torch.cuda.Stream(device=device) for _ in range(size)] if self.cuda else []
        )
        # The epoch's data was gathered on the current stream just before.
        current = torch.cuda.current_stream(device) if self.cuda else None
        for stream in self.pool:
            stream.wait_stream(current)

    def get(self, index):
        return self.pool[index % len(self.pool)] if self.cuda else None

    def use(self, stream):
        if stream is None:
            return contextlib.nullcontext()
        return torch.cuda.stream(stream)

    def event(self, stream):
        """A CUDA event recorded on ``stream`` (None on the CPU)."""
        if stream is None:
            return None
        event = torch.cuda.Event()
        event.record(stream)
        return event


class _Epoch:
    """What one epoch's workers share: data, batches, counters, results."""

    def __init__(self, shared, X, y, batches, context, config, sample_weight=None):
        self.shared = shared
        # One gather for the whole epoch instead of one per batch: the
        # batches become consecutive slices (views) of the reordered data.
        order = torch.cat(batches)
        self.X = X[order]
        self.y = y[order]
        ends = list(itertools.accumulate(len(idx) for idx in batches))
        self.batches = [slice(end - len(idx), end) for idx, end in zip(batches, ends)]
        # Weighted fit: each batch's loss is the weighted mean of its rows
        # (MLPClassifier's semantics), so row i's coefficient is w_i over
        # its batch's weight sum; the sums are read back once per epoch.
        self.coef = self.batch_weight = None
        if sample_weight is not None:
            w = sample_weight[order]
            sums = torch.stack([w[rows].sum() for rows in self.batches])
            self.batch_weight = sums.double().cpu().tolist()
            self.coef = w / torch.repeat_interleave(
                sums, torch.tensor([len(idx) for idx in batches], device=w.device)
            )
        self.context = context
        self.config = config
        self.next_batch = itertools.count()
        # list.append is atomic under the GIL: no lock needed.
        self.losses = []  # per-batch mean loss, 0-d tensors (no host sync)
        self.loss_counts = []  # n of each entry of losses
        self._loss_lock = threading.Lock()
        self.samples = []  # n of each batch whose update was applied

    def take_batch(self):
        """Index of the next batch for any worker, or None when done / time up."""
        if self.context.time_is_up():
            self.context.stopped_by_time = True
            return None
        t = next(self.next_batch)
        return t if t < len(self.batches) else None

    def batch_mass(self, index):
        """Rows of batch ``index``, or their weight sum in a weighted fit."""
        if self.batch_weight is None:
            rows = self.batches[index]
            return rows.stop - rows.start
        return self.batch_weight[index]

    def forward(self, index, snapshot=None):
        """Forward of batch ``index``; records its loss, returns a ``_Batch``.

        ``snapshot``: the worker's reusable weight copies (see
        ``SharedMLP.snapshot_buffers``), for workers that run their own
        backward next.
        """
        rows = self.batches[index]
        coef = None if self.coef is None else self.coef[rows]
        penalty_n = None if coef is None else self.batch_mass(index)
        batch, loss = self.shared.forward(
            self.X[rows], self.y[rows], coef, penalty_n, snapshot=snapshot
        )
        mass = self.batch_mass(index)
        # Two forward threads must not interleave the two appends: each
        # loss is weighted by its own batch's mass.
        with self._loss_lock:
            self.losses.append(loss)
            self.loss_counts.append(mass)
        return batch


# ------------------------------------------------------------------ engines
def run_epoch(shared, X, y, batches, context, config, device, sample_weight=None):
    """Train one epoch in ``config.mode``; return the epoch's statistics.

    ``sample_weight`` is a float tensor aligned with ``X`` (positive
    entries) or None.
    """
    epoch = _Epoch(shared, X, y, batches, context, config, sample_weight)
    start = time.perf_counter()
    if config.mode == "serial":
        _run_serial(epoch)
    elif config.mode in DECOUPLED_MODES:
        _run_decoupled(epoch, device, layerwise=config.mode == "pd-asgd")
    elif config.mode == "hogwild":
        _run_hogwild(epoch, device)
    elif config.mode == "sync":
        _run_sync(epoch, device)
    else:  # pragma: no cover - validated by the estimator
        raise ValueError(f"mode={config.mode!r} is not one of {MODES}.")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    # The exact update counts (the published versions may lag under races).
    shared.log.versions = shared.book.totals()
    seconds = time.perf_counter() - start
    n_seen = sum(epoch.samples)
    # One read-back per epoch (a host sync on CUDA, outside the hot loop).
    # Weighted by batch size here, once, rather than one op per batch.
    total = (
        float(
            torch.stack(epoch.losses).double().cpu()
            @ torch.tensor(epoch.loss_counts, dtype=torch.float64)
        )
        if epoch.losses
        else math.nan
    )
    return epoch_stats(shared.log, total, sum(epoch.loss_counts), n_seen, seconds)


def epoch_stats(log, loss_sum, loss_mass, samples, seconds):
    """One epoch's statistics, as every engine returns them.

    Adds the epoch's samples and seconds to ``log``'s totals (the
    estimator's ``throughput_``). ``loss_sum`` is the batch losses weighted
    by their mass (rows or weight sum), ``loss_mass`` that mass.
    """
    log.samples += samples
    log.busy_seconds += seconds
    return {
        "loss_sum": loss_sum if loss_mass else math.nan,
        "loss_samples": loss_mass or 1,
        "samples": samples,
        "seconds": seconds,
    }


def _run_serial(epoch):
    shared = epoch.shared
    snapshot = shared.snapshot_buffers()
    while (t := epoch.take_batch()) is not None:
        epoch.config.notify("step", 0)
        epoch.config.straggle(0)
        batch = epoch.forward(t, snapshot)
        shared.train_on(batch)
        epoch.samples.append(batch.n)


def _run_decoupled(epoch, device, layerwise):
    cfg = epoch.config
    shared = epoch.shared
    if len(epoch.batches) == 1:
        # One batch an epoch: its backward can only follow its forward, so
        # worker threads would add their starts and nothing else (on iris
        # at the defaults, 0.28 s a fit against 0.12 s in the caller).
        if (t := epoch.take_batch()) is not None:
            cfg.notify("forward", 0)
            batch = epoch.forward(t)
            cfg.notify("backward", 0)
            cfg.straggle(0)
            shared.train_on(batch, layerwise=layerwise)
            epoch.samples.append(batch.n)
        return
    work = queue.Queue(maxsize=cfg.queue_size)
    streams = _Streams(device, cfg.queue_size + cfg.n_backward + cfg.n_forward)
    forwards_done = itertools.count(1)

    with WorkerGroup(epoch.config.mode) as group:
        stop = group.stop_event

        def forward_worker(worker):
            while not group.stopping and (t := epoch.take_batch()) is not None:
                epoch.config.notify("forward", worker)
                stream = streams.get(t)
                with streams.use(stream):
                    batch = epoch.forward(t)
                # Blocks while queue_size batches wait: this bounds staleness.
                queue_put(work, (batch, stream), stop)
            # The last forward thread to finish tells every backward thread.
            if next(forwards_done) == cfg.n_forward:
                for _ in range(cfg.n_backward):
                    queue_put(work, None, stop)

        def backward_worker(worker):
            while (item := queue_get(work, stop)) is not None:
                if group.stopping:
                    return
                batch, stream = item
                epoch.config.notify("backward", worker)
                epoch.config.straggle(worker)
                with streams.use(stream):
                    shared.train_on(batch, layerwise=layerwise)
                epoch.samples.append(batch.n)

        for i in range(cfg.n_forward):
            group.start(forward_worker, i, name=f"forward-{i}")
        for j in range(cfg.n_backward):
            group.start(backward_worker, j, name=f"backward-{j}")
        if group.wait(deadline=epoch.context.deadline):
            epoch.context.stopped_by_time = True


def _run_hogwild(epoch, device):
    cfg = epoch.config
    shared = epoch.shared
    streams = _Streams(device, cfg.n_workers)

    def worker_loop(worker, stop_event):
        stream = streams.get(worker)
        with streams.use(stream):
            snapshot = shared.snapshot_buffers()
        while not stop_event.is_set() and (t := epoch.take_batch()) is not None:
            epoch.config.notify("step", worker)
            epoch.config.straggle(worker)
            with streams.use(stream):
                batch = epoch.forward(t, snapshot)
                shared.train_on(batch)
            epoch.samples.append(batch.n)

    if cfg.n_workers == 1:
        _run_inline(worker_loop)
        return
    with WorkerGroup("hogwild") as group:
        for i in range(cfg.n_workers):
            group.start(worker_loop, i, group.stop_event, name=f"worker-{i}")
        if group.wait(deadline=epoch.context.deadline):
            epoch.context.stopped_by_time = True


def _run_inline(worker_loop):
    """Run the only worker of an epoch in the calling thread.

    A thread of its own would add its start-up and a second OpenMP team,
    whose idle threads spin on the cores the first one needs. The deadline
    still holds: the loop asks ``take_batch`` before every batch. As in
    serial mode, Ctrl-C may land inside a batch's update.
    """
    worker_loop(0, threading.Event())


def _run_sync(epoch, device):
    cfg = epoch.config
    shared = epoch.shared
    k = cfg.n_workers
    streams = _Streams(device, k)
    results = queue.Queue()
    go = [queue.Queue() for _ in range(k)]

    def shard_gradients(X, y, coef):
        batch, loss = shared.forward(X, y, coef)
        # The share of the batch loss: n_j / n for the plain mean; a weighted
        # shard's coefficients already carry it.
        share = batch.n if coef is None else None
        return list(shared.gradients(batch)), loss, share

    def worker_loop(worker, stop):
        stream = streams.get(worker)
        for index, rows in enumerate(epoch.batches):
            # Worker 0 leads: it decides whether the step happens
            # (deadline) and releases the others only after the
            # previous update, so every shard reads the same weights.
            if worker == 0:
                go_on = not epoch.context.time_is_up() and not stop.is_set()
                if not go_on:
                    epoch.context.stopped_by_time = True
                # On CUDA the others' streams wait (on the device,
                # not the host) for the previous update.
                updated = streams.event(
                    torch.cuda.current_stream(device) if streams.cuda else None
                )
                if updated is not None:
                    stream.wait_event(updated)
                for j in range(1, k):
                    queue_put(go[j], (go_on, updated), stop)
            else:
                go_on, updated = queue_get(go[worker], stop)
                if updated is not None:
                    stream.wait_event(updated)
            if not go_on:
                return
            epoch.config.notify("step", worker)
            epoch.config.straggle(worker)
            # Views of the batch's slice, as torch.tensor_split of its rows.
            X_shard = torch.tensor_split(epoch.X[rows], k)[worker]
            y_shard = torch.tensor_split(epoch.y[rows], k)[worker]
            coef = (
                None
                if epoch.coef is None
                else torch.tensor_split(epoch.coef[rows], k)[worker]
            )
            with streams.use(stream):
                result = (
                    shard_gradients(X_shard, y_shard, coef) if len(y_shard) else None
                )
                if result is not None and stream is not None:
                    result = (*result, streams.event(stream))
            if worker != 0:
                queue_put(results, (worker, result), stop)
                continue
            gathered = {0: result}
            while len(gathered) < k:
                j, r = queue_get(results, stop)
                gathered[j] = r
            # The step runs on the current (default) stream after
            # waiting for every shard's event.
            _sync_step(shared, gathered, index, epoch, stream)

    if k == 1:
        _run_inline(worker_loop)
        return
    with WorkerGroup("sync") as group:
        for i in range(k):
            group.start(worker_loop, i, group.stop_event, name=f"worker-{i}")
        if group.wait(deadline=epoch.context.deadline):
            epoch.context.stopped_by_time = True


def _sync_step(shared, gathered, index, epoch, stream):
    """Average shard gradients (weighted by shard size) and take one step."""
    rows = epoch.batches[index]
    n = rows.stop - rows.start
    total = None
    loss_mean = None
    # Fixed summation order (worker 0, 1, ...): sync mode is deterministic.
    for j in sorted(gathered):
        result = gathered[j]
        if result is None:
            continue
        grads, shard_loss, n_j = result[:3]
        # A weighted shard's gradient is already its share of the batch's.
        weight = 1.0 if n_j is None else n_j / n
        if len(result) == 4 and stream is not None:
            # The step runs on the model's device's current stream; without
            # the device, a worker thread would get device 0's.
            step_stream = torch.cuda.current_stream(stream.device)
            step_stream.wait_event(result[3])
            for _, grad_W, grad_b in grads:
                grad_W.record_stream(step_stream)
                grad_b.record_stream(step_stream)
        if total is None:
            total = [
                (layer, grad_W * weight, grad_b * weight)
                for layer, grad_W, grad_b in grads
            ]
            loss_mean = shard_loss * weight
        else:
            for (_, acc_W, acc_b), (_, grad_W, grad_b) in zip(total, grads):
                acc_W.add_(grad_W, alpha=weight)
                acc_b.add_(grad_b, alpha=weight)
            loss_mean = loss_mean + shard_loss * weight
    shared.step_all(total, shared.book.read(), epoch.batch_mass(index))
    epoch.losses.append(loss_mean)
    epoch.loss_counts.append(epoch.batch_mass(index))
    epoch.samples.append(n)
