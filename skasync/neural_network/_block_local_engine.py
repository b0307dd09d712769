"""Training engine of :class:`~skasync.BlockLocalClassifier`.

Runs epochs of block-local learning (BLL, arXiv 2305.14974) over a list of
:class:`~skasync.neural_network._block_worker.BlockWorker` s.

Structure
---------
* :class:`BlockLocalConfig`: the fit's resolved settings (frozen), built
  by the estimator's ``_engine_config()``.
* :class:`BlockLocalEngine`: one epoch.  Every batch is cut into
  micro-batches (``_MicroBatch``: rows, labels, loss weights) and goes
  through one per-batch routine: ``start_batch`` of every block, the
  micro-batches in wave-front order (block ``k`` runs micro-batch ``m`` at
  tick ``m + k``; forward, local loss and backward in ``_step``), then the
  test hook and ``finish_batch`` (step, feedback fit) of every block.
  The back-ends only decide where that work runs:

  - ``parallel="none"``: the calling thread (``_SameStream``);
  - ``parallel="streams"``: one CUDA stream per block (``_StreamPerBlock``,
    hand-offs ordered by events);
  - ``parallel="threads"``: one thread per block with bounded queues
    between neighbours; each thread runs ``_step`` on the items it
    receives;
  - ``backward_schedule="joint"`` and ``mode="backprop"``: the same batch
    routine with one summed backward pass per micro-batch.
* :class:`FitTiming`: per-step timings and activation memory over a fit
  (the estimator's ``timing_``).

The maths does not depend on the back-end: every block accumulates the
gradients of the micro-batches of a batch and steps once per batch, and a
block's input only depends on the weights of the blocks below it, which each
block steps on its own.  So ``"threads"`` reproduces ``"none"`` exactly.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import dataclasses
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from skasync.neural_network._block_network import min_training_rows
from skasync.neural_network._fit_records import EpochResult
from skasync.utils._threads import WorkerGroup, queue_get, queue_put

# The activation meter runs for this many batches per fit: peak activation
# memory is the same every step, and the hooks cost Python time.
_METER_BATCHES = 4


@dataclass(frozen=True)
class BlockLocalConfig:
    """Resolved settings of one fit (plain values, no torch objects).

    The estimator passes every field; the defaults switch the local terms
    off and run sequentially.
    """

    # What each block's loss is made of (read by BlockWorker).
    mode: str = "bll"
    n_classes: int = 2
    local_loss: str = "cosine"
    agreement_weight: float = 0.0
    decorrelation_weight: float = 0.0
    aux_weight: float = 1.0
    output_weight: float = 1.0
    denoise_weight: float = 0.0
    denoise_std: float = 0.0
    agreement_sign: float = -1.0
    variance: float = 2.0
    label_smoothing: float = 0.0
    alpha: float = 0.0
    # How the engine runs the blocks.
    parallel: str = "none"
    n_microbatches: int = 1
    backward_schedule: str = "per_block"
    input_shape: tuple | None = None
    threads_per_block: int | None = None
    noise_seed: int = 0
    # Synchronise CUDA around each timed phase (sequential CUDA runs only).
    sync: bool = False
    # Private test hook: hook(block_index, batch_number), called before each
    # block's optimiser step; tests use it to inject failures.
    hook: object = None

    @property
    def joint_backward(self):
        """Whether one summed backward pass trains all blocks."""
        return self.mode == "backprop" or self.backward_schedule == "joint"


@dataclass
class _MicroBatch:
    """One micro-batch on its way through the blocks."""

    batch: int  # number of its batch in the epoch
    index: int  # its number in the batch
    count: int  # micro-batches in the batch
    x: torch.Tensor  # input of the next block (the rows, then hand-offs)
    y: torch.Tensor  # its labels
    share: float  # its share of the batch's rows
    penalty_n: float  # the L2 penalty's divisor: rows, or weight sum
    coef: torch.Tensor | None  # rows' weights over the batch's weight sum
    batch_labels: torch.Tensor  # labels of the whole batch (start_batch)


class _SameStream:
    """Every block on the caller's stream: nothing to order."""

    def batch_start(self, n_items):
        pass

    def block(self, k):
        return contextlib.nullcontext()

    def receive(self, k, item):
        pass

    def sent(self, k, item):
        pass

    def batch_end(self):
        pass


class _StreamPerBlock:
    """One CUDA stream per block; hand-offs ordered by events.

    Block ``k``'s work (start, micro-batches, backward and step) is queued
    on its own stream; a hand-off is kept alive for the consumer stream with
    ``record_stream``.
    """

    def __init__(self, n_blocks, device):
        self.streams = [torch.cuda.Stream(device=device) for _ in range(n_blocks)]
        self.main = torch.cuda.current_stream(device)
        self.events = []

    def batch_start(self, n_items):
        ready = self.main.record_event()
        for stream in self.streams:
            stream.wait_event(ready)
        self.events = [[None] * n_items for _ in self.streams]

    def block(self, k):
        return torch.cuda.stream(self.streams[k])

    def receive(self, k, item):
        stream = self.streams[k]
        if k > 0:
            stream.wait_event(self.events[k - 1][item.index])
        item.x.record_stream(stream)
        item.y.record_stream(stream)

    def sent(self, k, item):
        self.events[k][item.index] = self.streams[k].record_event()

    def batch_end(self):
        for stream in self.streams:
            self.main.wait_stream(stream)


class BlockLocalEngine:
    """Runs epochs of block-local (or backprop) training over a list of blocks.

    Parameters
    ----------
    workers : list of BlockWorker
    config : BlockLocalConfig
    meter : ActivationMeter or None
        Counts activation memory during the first batches of the fit.
    """

    def __init__(self, workers, config, meter=None):
        self.workers = workers
        self.config = config
        self.meter = meter
        self.batch_done_times = []
        self.sample_weight = None
        self._min_rows = min_training_rows(w.block for w in workers)
        # Most micro-batches a batch was cut into: fewer than asked when a
        # batch has too few rows (timing_ records what was used).
        self.microbatches_used = 0

    # ---------------------------------------------------------------- epoch
    def run_epoch(self, X, y, batches, context):
        """Train one epoch; returns its :class:`EpochResult`.

        ``context.sample_weight`` (a tensor aligned with ``X``, or None)
        weights the rows.
        """
        cfg = self.config
        start = time.perf_counter()
        self.sample_weight = context.sample_weight
        for worker in self.workers:
            worker.reset_epoch_stats()
        if cfg.parallel == "threads" and not cfg.joint_backward:
            n_done = self._run_threads(X, y, batches, context)
        else:
            if cfg.parallel == "streams" and not cfg.joint_backward:
                lanes = _StreamPerBlock(len(self.workers), X.device)
            else:
                lanes = _SameStream()
            n_done = self._run_batches(X, y, batches, context, lanes)
        return self._result(time.perf_counter() - start, n_done)

    def _result(self, seconds, n_done):
        block_losses = [worker.epoch_loss() for worker in self.workers]
        block_acc = [worker.epoch_accuracy() for worker in self.workers]
        feedback_loss = sum(float(w.feedback_loss_sum) for w in self.workers)
        return EpochResult(
            loss=float(sum(block_losses)),
            trained_samples=self.workers[-1].seen,
            columns={
                "block_losses": block_losses,
                "feedback_loss": feedback_loss / max(1, n_done),
                "train_accuracy": block_acc[-1],
                "block_accuracies": block_acc,
                "seconds": seconds,
            },
        )

    # ------------------------------------------------------------- batches
    def _run_batches(self, X, y, batches, context, lanes):
        """Train the batches one after another in the calling thread."""
        gens = self._noise_generators(context.epoch)
        batch_weights = self._batch_weights(batches)
        done = 0
        for number, idx in enumerate(batches):
            if context.time_is_up():
                context.stopped_by_time = True
                break
            items = self._microbatch_items(X, y, number, idx, batch_weights[number])
            self._train_batch(items, gens, lanes, context.extras.get("batches_seen", 0))
            context.extras["batches_seen"] = context.extras.get("batches_seen", 0) + 1
            self.batch_done_times.append(time.perf_counter())
            done += 1
        return done

    def _train_batch(self, items, gens, lanes, batches_seen):
        """One batch: start every block, train the micro-batches, step."""
        lanes.batch_start(len(items))
        for k, worker in enumerate(self.workers):
            with lanes.block(k):
                worker.start_batch(items[0].batch_labels)
        with self._meter_ctx(batches_seen):
            if self.config.joint_backward:
                self._joint_pass(items, gens)
            else:
                self._wavefront(items, gens, lanes)
        for k in range(len(self.workers)):
            with lanes.block(k):
                self._finish(k, items[0].batch)
        lanes.batch_end()

    def _wavefront(self, items, gens, lanes):
        """Micro-batch ``m`` of block ``k`` at tick ``m + k``.

        In one thread any order gives the same result; on streams this one
        lets block ``k + 1`` start while block ``k`` works on the next
        micro-batch.
        """
        n_blocks = len(self.workers)
        for tick in range(len(items) + n_blocks - 1):
            for k in range(n_blocks):
                m = tick - k
                if not 0 <= m < len(items):
                    continue
                with lanes.block(k):
                    lanes.receive(k, items[m])
                    items[m] = self._step(k, items[m], gens[k])
                    lanes.sent(k, items[m])

    def _joint_pass(self, items, gens):
        """Backprop, or BLL with one summed backward (authors' ``joint``)."""
        detach = self.config.mode != "backprop"
        for item in items:
            h = item.x
            total = None
            for worker, gen in zip(self.workers, gens):
                out, loss = worker.forward_loss(
                    h, item.y, item.share, item.penalty_n, gen, item.coef
                )
                total = loss if total is None else total + loss
                h = out.detach() if detach else out
            t1 = time.perf_counter()
            if total.requires_grad:
                (total * item.share).backward()
            # One backward for all blocks: its time is the last block's.
            self.workers[-1].add_backward_seconds(time.perf_counter() - t1)

    def _step(self, k, item, gen):
        """Block ``k`` on one micro-batch; returns it with the block's hand-off."""
        handoff = self.workers[k].run_microbatch(
            item.x, item.y, item.share, item.penalty_n, gen, item.coef
        )
        return dataclasses.replace(item, x=handoff)

    def _finish(self, k, batch_number):
        """The test hook, then block ``k``'s step and feedback fit."""
        if self.config.hook is not None:
            self.config.hook(k, batch_number)
        self.workers[k].finish_batch()

    # ------------------------------------------------------------- threads
    def _run_threads(self, X, y, batches, context):
        """One thread per block, bounded queues between neighbours.

        Block ``k`` hands its detached output to block ``k+1`` after its
        forward and local backward pass on that micro-batch, then takes the
        next one: no block waits for the backward pass of a later block.
        Queue items are :class:`_MicroBatch` es; ``None`` ends the epoch.
        """
        n_blocks = len(self.workers)
        depth = 2 * max(1, self.config.n_microbatches)
        queues = [queue.Queue(maxsize=depth) for _ in range(n_blocks)]
        gens = self._noise_generators(context.epoch)
        batch_weights = self._batch_weights(batches)
        n_done = [0]
        stop_time = threading.Event()
        batches_seen0 = context.extras.get("batches_seen", 0)

        def feeder(stop_event):
            for number, idx in enumerate(batches):
                if context.time_is_up():
                    stop_time.set()
                    break
                items = self._microbatch_items(X, y, number, idx, batch_weights[number])
                for item in items:
                    queue_put(queues[0], item, stop_event)
                del items
            queue_put(queues[0], None, stop_event)

        def block_thread(k, stop_event):
            threads = self.config.threads_per_block
            if threads is not None:
                torch.set_num_threads(threads)
            out_queue = queues[k + 1] if k + 1 < n_blocks else None
            while True:
                item = queue_get(queues[k], stop_event)
                if item is None:
                    if out_queue is not None:
                        queue_put(out_queue, None, stop_event)
                    return
                number, last = item.batch, item.index == item.count - 1
                if item.index == 0:
                    self.workers[k].start_batch(item.batch_labels)
                with self._meter_ctx(batches_seen0 + number):
                    item = self._step(k, item, gens[k])
                if out_queue is not None:
                    queue_put(out_queue, item, stop_event)
                del item
                if last:
                    self._finish(k, number)
                    if k == n_blocks - 1:
                        n_done[0] += 1
                        self.batch_done_times.append(time.perf_counter())
                if stop_event.is_set():
                    return

        with WorkerGroup("bll") as group:
            group.start(feeder, group.stop_event, name="feeder")
            for k in range(n_blocks):
                group.start(block_thread, k, group.stop_event, name=f"block{k}")
            group.wait()
        if stop_time.is_set():
            context.stopped_by_time = True
        context.extras["batches_seen"] = batches_seen0 + n_done[0]
        return n_done[0]

    # ------------------------------------------------------------- helpers
    def _microbatch_items(self, X, y, number, idx, batch_weight):
        """The micro-batches of batch ``number`` (rows ``idx``)."""
        n_mb = max(1, min(self.config.n_microbatches, idx.shape[0] // self._min_rows))
        self.microbatches_used = max(self.microbatches_used, n_mb)
        mbs = torch.tensor_split(idx, n_mb)
        batch_labels = y[idx]
        items = []
        for m, mb in enumerate(mbs):
            share = mb.shape[0] / idx.shape[0]
            if batch_weight is None:
                penalty_n, coef = idx.shape[0], None
            else:
                penalty_n, coef = batch_weight, self.sample_weight[mb] / batch_weight
            items.append(
                _MicroBatch(
                    batch=number,
                    index=m,
                    count=len(mbs),
                    x=self._inputs(X, mb),
                    y=y[mb],
                    share=share,
                    penalty_n=penalty_n,
                    coef=coef,
                    batch_labels=batch_labels,
                )
            )
        return items

    def _inputs(self, X, idx):
        x = X[idx]
        if self.config.input_shape is not None:
            x = x.reshape((x.shape[0],) + tuple(self.config.input_shape))
        return x

    def _batch_weights(self, batches):
        """Each batch's weight sum (one read-back per epoch), or None."""
        if self.sample_weight is None:
            return [None] * len(batches)
        w = self.sample_weight
        return torch.stack([w[idx].sum() for idx in batches]).double().cpu().tolist()

    def _meter_ctx(self, batch_number):
        if self.meter is not None and batch_number < _METER_BATCHES:
            return self.meter.hooks()
        return contextlib.nullcontext()

    def _noise_generators(self, epoch):
        """One denoising noise stream per block for ``epoch`` (None if unused).

        Every back-end draws block ``k``'s noise from the same stream, so they
        agree, and torch's global RNG is never touched.
        """
        if not self.config.denoise_weight:
            return [None] * len(self.workers)
        return [
            torch.Generator().manual_seed(
                (self.config.noise_seed + 7919 * epoch + 104729 * block) % (2**31 - 1)
            )
            for block in range(len(self.workers))
        ]


class FitTiming:
    """Per-step timings of one fit, gathered over its epochs.

    Parameters
    ----------
    n_blocks : int
    device : torch.device
        CUDA devices have their peak-memory counter reset here.
    """

    def __init__(self, n_blocks, device):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device
        self.forward = [[] for _ in range(n_blocks)]
        self.backward = [[] for _ in range(n_blocks)]
        self.update = [[] for _ in range(n_blocks)]
        self.step = []
        self.samples = 0
        self.microbatches_used = 0
        self.seconds = 0.0
        self.peak_activation_bytes = None

    def add_epoch(self, engine, result):
        """Add the steps of ``engine``'s epoch, whose result is ``result``."""
        for k, worker in enumerate(engine.workers):
            self.forward[k] += worker.forward_ms
            self.backward[k] += worker.backward_ms
            self.update[k] += worker.update_ms
        self.step += list(1e3 * np.diff(engine.batch_done_times))
        self.samples += max(1, result.trained_samples)
        self.seconds += result.columns["seconds"]
        self.microbatches_used = max(self.microbatches_used, engine.microbatches_used)
        if engine.meter is not None:
            self.peak_activation_bytes = engine.meter.peak

    def summary(self, config):
        """The ``timing_`` dict of the fit run with ``config``."""
        peak = None
        if self.device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(self.device))
        timing = {
            "forward_ms": [_median_or_none(v) for v in self.forward],
            "backward_ms": [_median_or_none(v) for v in self.backward],
            "update_ms": [_median_or_none(v) for v in self.update],
            "step_ms": _median_or_none(self.step),
            "samples_per_second": (
                self.samples / self.seconds if self.seconds else None
            ),
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_memory_bytes": peak,
            "parallel": config.parallel,
            # What was used: fewer than asked when batches are small.
            "n_microbatches": self.microbatches_used or config.n_microbatches,
            "device": str(self.device),
        }
        if config.joint_backward:
            timing["backward_note"] = (
                "one joint backward pass: its time is listed under the last block"
            )
        return timing


def _median_or_none(values):
    """Median of a list (None when empty)."""
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None
