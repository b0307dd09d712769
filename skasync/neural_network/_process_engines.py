"""The process back-end of :class:`~skasync.AsyncLayerwiseMLPClassifier`.

The same modes as :mod:`~skasync.neural_network._async_engines`, with every
worker a process of the reusable pool of :mod:`skasync.utils._processes`
instead of a thread, so that the workers run Python in parallel. The model
lives in one :class:`~skasync.utils._processes.SharedArena` that every
worker maps: parameters and optimizer buffers are updated in place there,
lock-free (PD-ASGD, arXiv 2410.05985).

``pd-asgd`` / ``d-asgd``
    Forward processes write each batch's saved activations into one of
    ``queue_size`` preallocated slots of the arena and pass the slot number
    through a token pipe; backward processes take it, backpropagate and step
    the layers (one by one for pd-asgd, all at the end for d-asgd), then hand
    the slot back. A forward process whose ring is full runs a waiting
    backward itself, so one forward and one backward process keep two cores
    busy although a backward costs about twice a forward.
``hogwild``
    Each process takes the next batch (a counter under a record lock) and
    runs forward, backward and a whole-model step.
``sync``
    Each process is a rank of a gloo process group: it computes its shard's
    gradient of every batch, the ranks all-reduce the flat gradient and each
    steps its own replica, as DDP does (rank 0's replica is the arena's).

Structure
---------
* :class:`ProcessTrainer`: the parent's side of one fit (arena, hand-over,
  one job per epoch, hand-back of the weights).
* Jobs run in the workers: :func:`attach`, :func:`train_epoch`,
  :func:`detach`, :func:`join_group`.
* :class:`ProcessVersionBook`: update versions and Adam step counts kept
  per worker in the arena (each row written by one process only, so the
  totals are exact without atomics).
* :func:`sync_epoch`: one epoch of synchronous data parallel over a
  ``torch.distributed`` group, shared with the ``torchrun`` path.
* :class:`FaultInjection`: a picklable test hook (raise, exit or sleep in a
  worker).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import dataclasses
import math
import os
import socket
import time

import numpy as np
import torch

from skasync.neural_network._async_engines import epoch_stats
from skasync.neural_network._shared_mlp import SharedMLP, TrainingLog, _Batch
from skasync.utils._processes import SharedArena, pool_for_fit, receive_fds

# Indices of the arena's "control" array.
_NEXT_BATCH, _FORWARDS_DONE, _STOP = 0, 1, 2
# Record-lock bytes of the arena file: the batch counter, then one per layer.
_BATCH_LOCK = 0
_END_OF_EPOCH = -1
# A forward process runs a waiting backward itself only when this many wait:
# the backward processes then stay busy during its backward (about two
# forwards long) and the next forward. The ring has PROCESS_SPARE_SLOTS slots
# more than backward processes, room for that backlog plus the next forward.
# The queue depth is also the staleness, so the backlog is the smallest that
# keeps the cores busy. Measured on MNIST-1D (one forward and one backward
# process, 2 seeds; samples/s, then mean staleness of the first layer):
#
#   backlog, slots   width 256             width 1024
#   3, 6             315k, 4.1 updates     31.8k, 4.4 updates
#   2, 4             321k, 2.2             33.6k, 2.4
#   1, 3             273k, 1.3             29.7k, 1.3
_STEAL_BACKLOG = 2
PROCESS_SPARE_SLOTS = _STEAL_BACKLOG + 1


@dataclasses.dataclass(frozen=True)
class FaultInjection:
    """A test hook that misbehaves in a worker process.

    Parameters
    ----------
    event : str
        The hook event that triggers it ("forward", "backward", "step").
    worker : int
        The worker id (per role) that misbehaves.
    after : int
        Number of matching events to let pass first.
    action : {"raise", "exit", "sleep"}
        Raise a ``RuntimeError``, end the process with ``os._exit(3)`` or
        sleep ``seconds`` at each matching event.
    seconds : float
        Sleep length for ``action="sleep"``.
    """

    event: str
    worker: int = 0
    after: int = 0
    action: str = "raise"
    seconds: float = 0.0

    def __call__(self, event, worker):
        if event != self.event or worker != self.worker:
            return
        count = _FAULT_COUNTS.get(self, 0)
        _FAULT_COUNTS[self] = count + 1
        if count < self.after:
            return
        if self.action == "raise":
            raise RuntimeError(f"injected failure at {event} of worker {worker}")
        if self.action == "exit":
            os._exit(3)
        time.sleep(self.seconds)


_FAULT_COUNTS = {}


class ProcessVersionBook:
    """Update versions and Adam step counts of the processes of one fit.

    ``counts[p, layer]`` is the number of updates of ``layer`` made by
    process ``p`` (row 0 also holds the updates before this fit), written by
    that process only. A version is the sum over processes; under races it
    may miss an update made at the same instant, which only blurs the
    staleness samples, never the totals.
    """

    def __init__(self, counts, adam, worker):
        self.counts, self.adam = counts, adam
        self.row, self.adam_row = counts[worker], adam[worker]

    def read(self):
        return self.counts.sum(axis=0).tolist()

    def claim(self, layer):
        version = int(self.counts[:, layer].sum())
        self.row[layer] += 1
        return version

    def publish(self, layer, version):
        """Nothing to publish: :meth:`read` sums the live counts."""

    def adam_step(self, layer):
        self.adam_row[layer] += 1
        return int(self.adam[:, layer].sum())

    def totals(self):
        return self.read()


def _tensor(array):
    return torch.from_numpy(array)


# ----------------------------------------------------------------- the parent
class ProcessTrainer:
    """The parent's side of one fit on the process back-end.

    Parameters
    ----------
    linears : list of torch.nn.Linear
        The estimator's layers (CPU). During the fit their ``.data`` are
        views of the arena, so validation between epochs reads the live
        weights; :meth:`close` gives them private copies again.
    buffers : list of dict
        The optimizer buffers of each layer (``W_m``, ``b_m``, ``W_v``,
        ``b_v``), treated like the weights.
    log : TrainingLog
        The estimator's counters (versions, Adam steps, staleness).
    config : AsyncLayerwiseConfig
        The fit's settings; ``config.hook`` must pickle (or be None).
    X, y, sample_weight : torch.Tensor
        Training rows (CPU float32, int64, float32 or None).
    batch_size : int
        The largest batch (sizes the ring slots).
    n_processes : int
        Worker processes; ``config`` says what each one does.
    threads_per_process : int
        Intra-op threads of each worker.
    """

    def __init__(
        self,
        linears,
        buffers,
        log,
        config,
        X,
        y,
        sample_weight,
        *,
        batch_size,
        n_processes,
        threads_per_process,
    ):
        start = time.perf_counter()
        self.linears, self.buffers, self.log, self.config = (
            linears,
            buffers,
            log,
            config,
        )
        self.n_processes = n_processes
        self.arena = None
        self._lease = contextlib.ExitStack()
        self.pool, started = self._lease.enter_context(pool_for_fit(n_processes))
        self.pool_start_seconds = self.pool.startup_seconds if started else 0.0
        try:
            self.arena = SharedArena(
                _arena_specs(linears, X, sample_weight, config, batch_size, n_processes)
            )
            self._fill_arena(X, y, sample_weight)
            self._point_model_at_arena()
            if config.mode == "sync":
                self._ensure_group()
            for index in range(n_processes):
                self.pool.submit(
                    index,
                    attach,
                    self.arena.layout,
                    self.arena.size,
                    config,
                    n_processes,
                    threads_per_process,
                )
                self.pool.send_fds(index, [self.arena.fd])
            self.pool.collect(what="hand-over of the model and data")
        except BaseException:
            self.close()
            raise
        # Pool start (when this fit started it) plus the hand-over.
        self.handover_seconds = time.perf_counter() - start - self.pool_start_seconds

    def _fill_arena(self, X, y, sample_weight):
        arena = self.arena
        for layer, (linear, buffers) in enumerate(zip(self.linears, self.buffers)):
            arena[f"W{layer}"][...] = linear.weight.detach().numpy()
            arena[f"b{layer}"][...] = linear.bias.detach().numpy()
            for key, tensor in buffers.items():
                arena[_buffer_name(key, layer)][...] = tensor.numpy()
        arena["X"][...] = X.numpy()
        arena["y"][...] = y.numpy()
        if sample_weight is not None:
            arena["w"][...] = sample_weight.numpy()
        arena["counts"][0] = self.log.versions
        arena["adam"][0] = self.log.adam_steps

    def _point_model_at_arena(self):
        for layer, (linear, buffers) in enumerate(zip(self.linears, self.buffers)):
            linear.weight.data = _tensor(self.arena[f"W{layer}"])
            linear.bias.data = _tensor(self.arena[f"b{layer}"])
            for key, tensor in buffers.items():
                tensor.data = _tensor(self.arena[_buffer_name(key, layer)])

    def _ensure_group(self):
        pool = self.pool
        if pool.group_size == self.n_processes:
            return
        port = _free_port()
        pool.run(
            join_group,
            [(rank, self.n_processes, port) for rank in range(self.n_processes)],
        )
        pool.group_size = self.n_processes

    @property
    def startup_seconds(self):
        """Pool start (0 when reused) plus the hand-over of model and data."""
        return self.pool_start_seconds + self.handover_seconds

    def run_epoch(self, batches, context):
        """Train one epoch over ``batches``; the statistics of ``run_epoch``."""
        arena = self.arena
        order = torch.cat(batches)
        arena["order"][: order.shape[0]] = order.numpy()
        ends = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in batches], out=ends[1:])
        arena["control"][...] = 0
        if self.config.mode in ("pd-asgd", "d-asgd"):
            self.pool.ring_free.drain()
            self.pool.ring_ready.drain()
            for slot in range(self.config.queue_size):
                self.pool.ring_free.put(slot)
        start = time.perf_counter()
        try:
            results = self.pool.run(
                train_epoch,
                [(ends, context.deadline)] * self.n_processes,
            )
        finally:
            # Also when a worker failed or the fit was interrupted: the
            # weights the model keeps hold this epoch's steps, so the update
            # and Adam step counts must too.
            self.log.versions = arena["counts"].sum(axis=0).tolist()
            self.log.adam_steps = arena["adam"].sum(axis=0).tolist()
        seconds = time.perf_counter() - start
        # Every sync rank steps its own replica with the same reduced
        # gradient: rank 0's record stands for the group's steps.
        for result in results[:1] if self.config.mode == "sync" else results:
            for layer, values in enumerate(result["staleness"]):
                self.log.staleness[layer].extend(values)
        context.stopped_by_time = any(r["stopped_by_time"] for r in results)
        # Rows each worker stepped (the forward processes' share shows how
        # much backward work they took over).
        self.worker_samples = [r["samples"] for r in results]
        return epoch_stats(
            self.log,
            sum(r["loss_sum"] for r in results),
            sum(r["loss_mass"] for r in results),
            sum(r["samples"] for r in results),
            seconds,
        )

    def close(self):
        """Give the model private copies of its tensors; workers drop the arena."""
        try:
            self._release_arena()
        finally:
            self._lease.close()  # the pool serves the next fit

    def _release_arena(self):
        if self.arena is None:
            return
        if self.arena.arrays:
            for linear, buffers in zip(self.linears, self.buffers):
                linear.weight.data = linear.weight.data.clone()
                linear.bias.data = linear.bias.data.clone()
                for tensor in buffers.values():
                    tensor.data = tensor.data.clone()
        if self.pool.alive and not self.pool.idle:
            # The fit was interrupted between submitting a job and reading
            # its answers (Ctrl-C, an error here): the jobs may still write
            # to the arena, and their answers would be read as detach's.
            self.pool.terminate()
        elif self.pool.alive:
            with contextlib.suppress(Exception):
                self.pool.run(detach, [()] * self.n_processes, timeout=30)
        self.arena.close()
        self.arena = None


# The optimizer buffers of a layer, as SharedMLP's ``buffers`` dicts name them.
_BUFFER_KEYS = ("W_m", "b_m", "W_v", "b_v")


def _buffer_name(key, layer):
    """Arena name of buffer ``key`` ("W_m", ...) of ``layer``: "W0_m"."""
    return f"{key[0]}{layer}{key[1:]}"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _arena_specs(linears, X, sample_weight, config, batch_size, n_processes):
    n_layers = len(linears)
    specs = {}
    for layer, linear in enumerate(linears):
        shapes = {"W": tuple(linear.weight.shape), "b": tuple(linear.bias.shape)}
        for name, shape in shapes.items():
            specs[f"{name}{layer}"] = (shape, np.float32)
        for key in _BUFFER_KEYS:
            specs[_buffer_name(key, layer)] = (shapes[key[0]], np.float32)
    n, d = X.shape
    specs["X"] = ((n, d), np.float32)
    specs["y"] = ((n,), np.int64)
    if sample_weight is not None:
        specs["w"] = ((n,), np.float32)
    specs["order"] = ((n,), np.int64)
    specs["counts"] = ((n_processes, n_layers), np.int64)
    specs["adam"] = ((n_processes, n_layers), np.int64)
    specs["control"] = ((4,), np.int64)
    if config.mode in ("pd-asgd", "d-asgd"):
        widths = [lin.weight.shape[1] for lin in linears]
        n_classes = linears[-1].weight.shape[0]
        for slot in range(config.queue_size):
            for layer, width in enumerate(widths):
                specs[f"in{layer}_{slot}"] = ((batch_size, width), np.float32)
                if layer > 0 and config.backward_weights == "snapshot":
                    specs[f"snapW{layer}_{slot}"] = (
                        tuple(linears[layer].weight.shape),
                        np.float32,
                    )
            specs[f"lp_{slot}"] = ((batch_size, n_classes), np.float32)
            specs[f"y_{slot}"] = ((batch_size,), np.int64)
            specs[f"coef_{slot}"] = ((batch_size,), np.float32)
            # rows, penalty mass (NaN: unweighted), versions read
            specs[f"meta_{slot}"] = ((2 + n_layers,), np.float64)
    return specs


# ------------------------------------------------------------ worker: jobs
@dataclasses.dataclass
class _Slot:
    """torch views of one ring slot of the arena (made once per fit)."""

    inputs: list
    snapshots: list
    log_proba: torch.Tensor
    y: torch.Tensor
    coef: torch.Tensor
    meta: np.ndarray


def _ring_slots(arena, n_layers):
    slots = []
    slot = 0
    while f"lp_{slot}" in arena.arrays:
        slots.append(
            _Slot(
                inputs=[
                    _tensor(arena[f"in{layer}_{slot}"]) for layer in range(n_layers)
                ],
                snapshots=[None]
                + [
                    _tensor(arena[f"snapW{layer}_{slot}"])
                    if f"snapW{layer}_{slot}" in arena.arrays
                    else None
                    for layer in range(1, n_layers)
                ],
                log_proba=_tensor(arena[f"lp_{slot}"]),
                y=_tensor(arena[f"y_{slot}"]),
                coef=_tensor(arena[f"coef_{slot}"]),
                meta=arena[f"meta_{slot}"],
            )
        )
        slot += 1
    return slots


@dataclasses.dataclass
class _WorkerFit:
    arena: SharedArena
    slots: list
    config: object
    shared: SharedMLP
    X: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor | None
    order: torch.Tensor
    control: np.ndarray
    n_processes: int
    index: int


def attach(state, layout, size, config, n_processes, threads):
    """Map the fit's arena; build this worker's view of the shared model."""
    (fd,) = receive_fds(state["connection"], 1)
    arena = SharedArena.attach(fd, layout, size)
    torch.set_num_threads(threads)
    index = state["index"]
    n_layers = arena["counts"].shape[1]
    params = [
        (_tensor(arena[f"W{layer}"]), _tensor(arena[f"b{layer}"]))
        for layer in range(n_layers)
    ]
    buffers = [
        {key: _tensor(arena[_buffer_name(key, layer)]) for key in _BUFFER_KEYS}
        for layer in range(n_layers)
    ]
    counts, adam = arena["counts"], arena["adam"]
    if config.mode == "sync" and index > 0:
        # DDP: every rank steps its own replica with the same all-reduced
        # gradient; rank 0's replica is the arena's.
        params = [(W.clone(), b.clone()) for W, b in params]
        buffers = [{k: t.clone() for k, t in b.items()} for b in buffers]
        counts, adam = counts.copy(), adam.copy()
    book = ProcessVersionBook(counts, adam, index)
    locks = [
        arena.lock(1 + layer)
        if config.update_lock == "layer"
        else contextlib.nullcontext()
        for layer in range(n_layers)
    ]
    log = TrainingLog(n_layers)
    shared = SharedMLP(params, buffers, log, config, book=book, locks=locks)
    state["fit"] = _WorkerFit(
        arena=arena,
        slots=_ring_slots(arena, n_layers),
        config=config,
        shared=shared,
        X=_tensor(arena["X"]),
        y=_tensor(arena["y"]),
        w=_tensor(arena["w"]) if "w" in arena.arrays else None,
        order=_tensor(arena["order"]),
        control=arena["control"],
        n_processes=n_processes,
        index=index,
    )
    return os.getpid()


def detach(state):
    """Drop every reference to the fit's arena (the parent frees it)."""
    fit = state.pop("fit", None)
    if fit is not None:
        arena = fit.arena
        del fit
        arena.close()


def join_group(state, rank, world_size, port):
    """Join a gloo process group of the pool's workers (for ``sync``)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
    )
    return rank


def train_epoch(state, ends, deadline):
    """One epoch of this worker's role; returns its statistics."""
    fit = state["fit"]
    mode = fit.config.mode
    fit.shared.log = TrainingLog(fit.shared.n_layers)  # this epoch's staleness
    start = time.perf_counter()
    if mode == "sync":
        import torch.distributed as dist

        summary = sync_epoch(
            fit.shared,
            fit.X,
            fit.y,
            fit.w,
            fit.order,
            ends,
            rank=fit.index,
            world_size=dist.get_world_size(),
            deadline=deadline,
            config=fit.config,
        )
        if fit.index != 0:
            # The loss and samples are the group's: rank 0 reports them.
            summary.update(loss_sum=0.0, loss_mass=0.0, samples=0)
    else:
        run = _EpochRun(fit, ends, deadline)
        if mode == "hogwild":
            run.hogwild()
        elif fit.index < fit.config.n_forward:
            run.forward_role(fit.index, state)
        else:
            run.backward_role(fit.index - fit.config.n_forward, state)
        summary = run.summary()
    return {
        **summary,
        "staleness": fit.shared.log.staleness,
        "busy_seconds": time.perf_counter() - start,
    }


class _EpochRun:
    """One worker's epoch: batches taken, losses and samples counted."""

    def __init__(self, fit, ends, deadline):
        self.fit, self.ends, self.deadline = fit, ends, deadline
        self.n_batches = len(ends) - 1
        self.losses, self.loss_masses = [], []
        self.samples = 0
        self.stopped_by_time = False
        self.batch_lock = fit.arena.lock(_BATCH_LOCK)

    # -- batches -------------------------------------------------------------
    def time_is_up(self):
        return self.deadline is not None and time.monotonic() >= self.deadline

    def take_batch(self):
        if self.time_is_up():
            self.stopped_by_time = True
            return None
        control = self.fit.control
        with self.batch_lock:
            t = int(control[_NEXT_BATCH])
            if t >= self.n_batches:
                return None
            control[_NEXT_BATCH] = t + 1
        return t

    def rows(self, t):
        return self.fit.order[self.ends[t] : self.ends[t + 1]]

    def coef(self, rows):
        """Per-row loss coefficients and the batch's weight sum (weighted fit)."""
        if self.fit.w is None:
            return None, None
        w = self.fit.w.index_select(0, rows)
        mass = float(w.sum())
        return w / mass, mass

    def forward(self, t, slot=None, snapshot=None):
        """Forward of batch ``t``; into ``slot``'s buffers when given."""
        fit = self.fit
        rows = self.rows(t)
        coef, mass = self.coef(rows)
        if slot is None:
            X, out = fit.X.index_select(0, rows), None
        else:
            n = rows.shape[0]
            X = torch.index_select(fit.X, 0, rows, out=slot.inputs[0][:n])
            out = [h[:n] for h in slot.inputs]
        batch, loss = fit.shared.forward(
            X, fit.y.index_select(0, rows), coef, mass, out, snapshot
        )
        self.losses.append(loss)
        self.loss_masses.append(rows.shape[0] if mass is None else mass)
        return batch

    def summary(self):
        loss_sum = 0.0
        if self.losses:
            masses = torch.tensor(self.loss_masses, dtype=torch.float64)
            loss_sum = float(torch.stack(self.losses).double() @ masses)
        return {
            "loss_sum": loss_sum,
            "loss_mass": float(sum(self.loss_masses)),
            "samples": self.samples,
            "stopped_by_time": self.stopped_by_time,
        }

    # -- hogwild -------------------------------------------------------------
    def hogwild(self):
        worker = self.fit.index
        snapshot = self.fit.shared.snapshot_buffers()
        while (t := self.take_batch()) is not None:
            self.fit.config.notify("step", worker)
            self.fit.config.straggle(worker)
            batch = self.forward(t, snapshot=snapshot)
            self.fit.shared.train_on(batch)
            self.samples += batch.n

    # -- pd-asgd / d-asgd ----------------------------------------------------
    def forward_role(self, worker, state):
        free, ready = state["ring_free"], state["ring_ready"]
        cfg = self.fit.config
        while (t := self.take_batch()) is not None:
            self.fit.config.notify("forward", worker)
            slot = free.try_get()
            while slot is None:
                # The ring is full. When _STEAL_BACKLOG batches wait, the
                # backward side lags for good: run one of them here.
                # Otherwise wait for a slot.
                waiting = ready.try_get() if ready.count() >= _STEAL_BACKLOG else None
                if waiting is not None:
                    self.backward(waiting, free)
                else:
                    free.wait()
                slot = free.try_get()
            self.store(slot, self.forward(t, self.fit.slots[slot]))
            ready.put(slot)
        control = self.fit.control
        with self.batch_lock:
            control[_FORWARDS_DONE] += 1
            last = control[_FORWARDS_DONE] == cfg.n_forward
        if last:
            for _ in range(cfg.n_backward):
                ready.put(_END_OF_EPOCH)

    def backward_role(self, worker, state):
        free, ready = state["ring_free"], state["ring_ready"]
        while True:
            slot = ready.get(lambda: False)
            if slot == _END_OF_EPOCH:
                return
            self.fit.config.notify("backward", worker)
            self.fit.config.straggle(worker)
            self.backward(slot, free)

    def backward(self, slot, free):
        batch = self.load(slot)
        self.fit.shared.train_on(batch, layerwise=self.fit.config.mode == "pd-asgd")
        self.samples += batch.n
        free.put(slot)

    def store(self, index, batch):
        slot = self.fit.slots[index]
        n = batch.n
        for layer, h in enumerate(batch.inputs):
            if h.data_ptr() != slot.inputs[layer].data_ptr():
                slot.inputs[layer][:n].copy_(h)
            if slot.snapshots[layer] is not None:
                slot.snapshots[layer].copy_(batch.weights[layer])
        slot.log_proba[:n].copy_(batch.log_proba)
        slot.y[:n].copy_(batch.y)
        meta = slot.meta
        meta[0] = n
        meta[1] = math.nan if batch.penalty_mass is None else batch.penalty_mass
        meta[2:] = batch.versions
        if batch.coef is not None:
            slot.coef[:n].copy_(batch.coef)

    def load(self, index):
        slot = self.fit.slots[index]
        shared = self.fit.shared
        n = int(slot.meta[0])
        penalty = float(slot.meta[1])
        weighted = not math.isnan(penalty)
        snapshot = self.fit.config.backward_weights == "snapshot"
        return _Batch(
            [h[:n] for h in slot.inputs],
            slot.log_proba[:n],
            slot.y[:n],
            slot.snapshots if snapshot else shared.weights,
            slot.meta[2:].astype(np.int64).tolist(),
            slot.coef[:n] if weighted else None,
            penalty if weighted else None,
        )


# ---------------------------------------------------------------- sync (DDP)
def sync_epoch(
    shared, X, y, w, order, ends, *, rank, world_size, deadline, config, group=None
):
    """One epoch of synchronous data parallel over a ``torch.distributed`` group.

    Every rank holds the same batches; rank ``r`` computes the gradient of
    its shard (``torch.tensor_split`` of the batch's rows) scaled by its
    share of the batch, the ranks all-reduce (sum) one flat buffer, which
    then holds the full batch's gradient, and every rank takes the same step
    on its replica. The buffer also carries the loss and a stop flag, so
    the ranks agree to stop at the deadline without another message.

    Returns
    -------
    stats : dict
        ``loss_sum`` (weighted by batch mass, this rank's share summed over
        the group), ``loss_mass``, ``samples`` (rows of the batches stepped,
        counted once per group on rank 0, 0 elsewhere) and
        ``stopped_by_time``.
    """
    import torch.distributed as dist

    shapes = [(W.shape, b.shape) for W, b in zip(shared.weights, shared.biases)]
    sizes = [W.numel() + b.numel() for W, b in zip(shared.weights, shared.biases)]
    flat = torch.zeros(sum(sizes) + 2, dtype=torch.float32)
    views = []
    offset = 0
    for (w_shape, b_shape), size in zip(shapes, sizes):
        n_w = math.prod(w_shape)
        views.append(
            (
                flat[offset : offset + n_w].view(w_shape),
                flat[offset + n_w : offset + size].view(b_shape),
            )
        )
        offset += size
    loss_at, stop_at = -2, -1
    loss_sum = loss_mass = 0.0
    samples = 0
    stopped = False
    for t in range(len(ends) - 1):
        config.notify("step", rank)
        config.straggle(rank)
        rows = order[ends[t] : ends[t + 1]]
        n = rows.shape[0]
        if w is None:
            mass = float(n)
            coef_all = None
        else:
            w_rows = w.index_select(0, rows)
            mass = float(w_rows.sum())
            coef_all = w_rows / mass
        shard = torch.tensor_split(torch.arange(n), world_size)[rank]
        flat.zero_()
        if shard.numel():
            mine = rows.index_select(0, shard)
            coef = (
                torch.full((shard.numel(),), 1.0 / n)
                if coef_all is None
                else coef_all.index_select(0, shard)
            )
            batch, loss = shared.forward(
                X.index_select(0, mine), y.index_select(0, mine), coef, mass
            )
            for layer, grad_W, grad_b in shared.gradients(batch):
                views[layer][0].copy_(grad_W)
                views[layer][1].copy_(grad_b)
            flat[loss_at] = loss
        flat[stop_at] = float(deadline is not None and time.monotonic() >= deadline)
        dist.all_reduce(flat, group=group)
        if flat[stop_at] > 0:
            stopped = True
            break
        step = [(layer, gW, gb) for layer, (gW, gb) in enumerate(views)]
        shared.step_all(step, shared.book.read(), mass)
        loss_sum += float(flat[loss_at]) * mass
        loss_mass += mass
        samples += n
    return {
        "loss_sum": loss_sum,
        "loss_mass": loss_mass,
        "samples": samples,
        "stopped_by_time": stopped,
    }
