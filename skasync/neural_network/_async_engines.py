"""Training engines of :class:`~skasync.AsyncLayerwiseMLPClassifier`.

One shared MLP (the estimator's ``nn.Linear`` weights, updated in place) and
five ways to train it for one epoch:

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

Design points (see the PD-ASGD design note, section 6.1):

* the backward pass is written out by hand (design note 6.1: "a
  hand-written backward loop ... without autograd overhead"): the forward
  keeps each layer's input, the backward computes ``delta^T h``,
  ``sum(delta)`` and ``delta W`` with the kernels autograd would call.
  No autograd graph, hence no per-batch leaf aliases, hook registrations or
  version-counter checks ("modified by an inplace operation" cannot
  occur); the backward reads the live (possibly newer) weights, the
  paper's misalignment, or the forward's copies with
  ``backward_weights="snapshot"``;
* gradients are fresh tensors of the backward that computed them
  (batches never mix gradients);
* each epoch's data is permuted once; a batch is a contiguous slice (a
  view), not a per-batch index gather;
* per-layer versions count updates; staleness of an update = updates the
  layer received between the forward's read and this update;
* threads only through :class:`~skasync.utils._threads.WorkerGroup`, queue
  operations only through ``queue_put`` / ``queue_get`` (no deadlock, stop
  on the first error, deadline or Ctrl-C);
* on CUDA each in-flight batch gets a stream from a pool and nothing in
  the hot loop reads a value back to the host.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import functools
import itertools
import math
import queue
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from skasync.neural_network._modes import ASYNC_MODES, mode_names, modes_where
from skasync.utils._threads import WorkerGroup, queue_get, queue_put

MODES = mode_names(ASYNC_MODES)
THREADED_MODES = modes_where(ASYNC_MODES, parallel=True)
DECOUPLED_MODES = modes_where(ASYNC_MODES, decoupled=True)

# In place: the pre-activation is a fresh tensor of this forward.
_ACTIVATION_FUNCTIONS = {
    "relu": torch.Tensor.relu_,
    "tanh": torch.Tensor.tanh_,
    "logistic": torch.Tensor.sigmoid_,
    "identity": lambda h: h,
}
# grad_output -> grad_input of the activation, from its *output* (which the
# forward keeps as the next layer's input): the kernels autograd itself
# runs for relu, tanh and sigmoid, so serial matches torch's loop.
_ACTIVATION_BACKWARDS = {
    "relu": lambda grad, out: torch.ops.aten.threshold_backward(grad, out, 0),
    "tanh": torch.ops.aten.tanh_backward,
    "logistic": torch.ops.aten.sigmoid_backward,
    "identity": lambda grad, out: grad,
}


@dataclass
class EngineConfig:
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
    debug_hook: object = None


class TrainingLog:
    """Counters kept on the estimator across epochs and ``partial_fit`` calls.

    Plain Python data only, so the estimator pickles.
    """

    def __init__(self, n_layers):
        self.versions = [0] * n_layers
        self.adam_steps = [0] * n_layers
        self.staleness = [[] for _ in range(n_layers)]
        self.samples = 0
        self.busy_seconds = 0.0

    def staleness_summary(self):
        """Per layer ``{"mean", "p95", "max"}`` of staleness in updates."""
        summary = []
        for values in self.staleness:
            if not values:
                summary.append({"mean": 0.0, "p95": 0.0, "max": 0})
                continue
            t = torch.tensor(values, dtype=torch.float64)
            summary.append(
                {
                    "mean": float(t.mean()),
                    "p95": float(torch.quantile(t, 0.95)),
                    "max": int(t.max()),
                }
            )
        return summary


def _fused_sgd_step(p, g, m, *, decay, momentum, lr, nesterov):
    """torch.optim.SGD's step (dampening 0) on one tensor, in torch's fused kernel.

    ``m`` is the momentum buffer (unused when ``momentum`` is 0).
    """
    torch._fused_sgd_(
        [p],
        [g],
        [m] if momentum > 0 else [],
        weight_decay=decay,
        momentum=momentum,
        lr=lr,
        dampening=0.0,
        nesterov=nesterov,
        maximize=False,
        is_first_step=False,
    )


def _has_fused_sgd(tensor):
    """Whether torch has a fused SGD kernel for ``tensor``'s device and dtype.

    CUDA has one since torch 2.0, the CPU since torch 2.4; the package
    supports torch 2.3, so probe once per device type and dtype (an epoch
    builds a new SharedMLP).
    """
    return _probe_fused_sgd(tensor.device.type, tensor.dtype)


@functools.lru_cache(maxsize=None)
def _probe_fused_sgd(device_type, dtype):
    if getattr(torch, "_fused_sgd_", None) is None:
        return False
    p, g, m = (torch.zeros(1, dtype=dtype, device=device_type) for _ in range(3))
    try:
        _fused_sgd_step(p, g, m, decay=0.0, momentum=0.9, lr=0.1, nesterov=True)
    except (NotImplementedError, RuntimeError, TypeError):
        return False
    return True


class SharedMLP:
    """Master weights of an MLP that any thread may update in place.

    Parameters
    ----------
    linears : list of torch.nn.Linear
        The estimator's layers; their storage is updated in place.
    buffers : list of dict
        Per layer ``{"W_m", "b_m", "W_v", "b_v"}`` optimizer buffers
        (registered buffers of the estimator's ``optim_state_`` module).
    log : TrainingLog
        Versions, Adam step counts and staleness samples.
    config : EngineConfig
    """

    def __init__(self, linears, buffers, log, config):
        # ``.data`` tensors: same storage, no autograd tracking, so neither
        # the forward nor the in-place updates build a graph, whatever the
        # (thread-local) grad mode of the worker thread.
        self.weights = [lin.weight.data for lin in linears]
        self.biases = [lin.bias.data for lin in linears]
        self.buffers = buffers
        self.log = log
        self.config = config
        self.n_layers = len(linears)
        self.activation = _ACTIVATION_FUNCTIONS[config.activation]
        self.activation_backward = _ACTIVATION_BACKWARDS[config.activation]
        self.fused_sgd = config.solver == "sgd" and _has_fused_sgd(self.weights[0])
        # next() on itertools.count is atomic under the GIL: two threads
        # never get the same version number even without a lock.
        self.counters = [itertools.count(v) for v in log.versions]
        self.locks = [
            threading.Lock()
            if config.update_lock == "layer"
            else contextlib.nullcontext()
            for _ in range(self.n_layers)
        ]

    # -- forward / backward ------------------------------------------------
    def forward(self, X, y, coef=None, penalty_n=None):
        """Forward pass of one batch through the live weights.

        Parameters
        ----------
        X : torch.Tensor of shape (n_samples, n_features)
        y : torch.Tensor of shape (n_samples,)
            Class indices.
        coef : torch.Tensor of shape (n_samples,) or None
            Per-row loss coefficients (``sample_weight`` divided by the
            weight sum of the whole batch); None is the plain mean.
        penalty_n : float or None
            What the L2 penalty is divided by: the batch's weight sum
            (MLPClassifier's ``sw_sum``); None uses ``n_samples``.

        Returns
        -------
        batch : _Batch
            What the backward pass needs (layer inputs, log-probabilities,
            weights to backpropagate through, versions read).
        loss : torch.Tensor
            Mean cross-entropy (0-d; the L2 term is added in the step).
        """
        # Read before the weights: staleness counts every update the layer
        # may have received after this forward started reading it.
        versions = list(self.log.versions)
        if self.config.backward_weights == "snapshot":
            # The backward must see the weights this forward used; biases
            # are read once, by the forward only, so they need no copy.
            weights = [W.clone() for W in self.weights]
        else:
            weights = self.weights
        inputs = []
        h = X
        last = self.n_layers - 1
        for layer, (W, b) in enumerate(zip(weights, self.biases)):
            inputs.append(h)
            h = F.linear(h, W, b)
            if layer < last:
                h = self.activation(h)
        log_proba = torch.log_softmax(h, dim=1)
        if coef is None:
            loss = F.nll_loss(log_proba, y)
        else:
            loss = -(log_proba.gather(1, y[:, None]).squeeze(1) * coef).sum()
        batch = _Batch(inputs, log_proba, y, weights, versions, coef, penalty_n)
        return batch, loss

    def gradients(self, batch):
        """Backpropagate ``batch``; yield ``(layer, grad_W, grad_b)``.

        Output layer first. Each layer's ``delta W`` for the layer below is
        computed *before* its gradient is yielded, so a caller that steps
        the layer right away (PD-ASGD) does not change what this batch
        propagates, as with autograd's per-layer hooks. The gradients are
        fresh tensors that the step may modify in place.
        """
        n = batch.y.shape[0]
        # d(mean cross-entropy) / d(logits) = (softmax - one_hot(y)) / n, or
        # times each row's coefficient for the weighted mean.
        delta = batch.log_proba.exp()
        delta.scatter_add_(1, batch.y.unsqueeze(1), delta.new_full((n, 1), -1.0))
        if batch.coef is None:
            delta.div_(n)
        else:
            delta.mul_(batch.coef[:, None])
        for layer in reversed(range(self.n_layers)):
            h = batch.inputs[layer]
            grad_W = delta.t().mm(h)
            grad_b = delta.sum(0)
            if layer > 0:
                # h is the activation output of the layer below.
                delta = self.activation_backward(delta.mm(batch.weights[layer]), h)
            yield layer, grad_W, grad_b

    # -- updates -----------------------------------------------------------
    def step(self, layer, grad_W, grad_b, version_at_forward, n_samples):
        """Apply one optimizer step to ``layer`` (lock-free unless asked).

        The gradients are consumed: the step may modify them in place.
        """
        cfg = self.config
        if cfg.debug_hook is not None:
            cfg.debug_hook("update", layer)
        W, b = self.weights[layer], self.biases[layer]
        buffers = self.buffers[layer]
        # MLPClassifier's penalty 0.5 * alpha * ||W||^2 / n_samples, as
        # weight decay on the live weights (not on the intercepts).
        decay = cfg.alpha / n_samples
        with self.locks[layer]:
            version = next(self.counters[layer])
            if cfg.solver == "sgd":
                self._sgd(W, grad_W, buffers["W_m"], decay)
                self._sgd(b, grad_b, buffers["b_m"], 0.0)
            else:
                if decay:
                    grad_W.add_(W, alpha=decay)
                self.log.adam_steps[layer] += 1
                t = self.log.adam_steps[layer]
                self._adam(W, grad_W, buffers["W_m"], buffers["W_v"], t)
                self._adam(b, grad_b, buffers["b_m"], buffers["b_v"], t)
            # Published for the staleness bookkeeping of new forwards; a
            # racing older step must not move it back.
            if version + 1 > self.log.versions[layer]:
                self.log.versions[layer] = version + 1
        self.log.staleness[layer].append(version - version_at_forward[layer])

    def step_all(self, grads, version_at_forward, n_samples):
        """Whole-model step in the order of ``grads``, ``(layer, dW, db)`` tuples."""
        for layer, grad_W, grad_b in grads:
            self.step(layer, grad_W, grad_b, version_at_forward, n_samples)

    def train_on(self, batch, layerwise=False):
        """Backpropagate ``batch`` and step every layer, output layer first.

        With ``layerwise`` (PD-ASGD) layer ``l`` is stepped as soon as its
        gradient exists, while the layers below are still to come; otherwise
        (serial, Hogwild!, D-ASGD) the whole backward pass runs first.
        """
        grads = self.gradients(batch)
        if not layerwise:
            grads = list(grads)
        self.step_all(grads, batch.versions, batch.penalty_n)

    def _sgd(self, p, g, m, decay):
        # torch.optim.SGD(dampening=0): g += decay * p, buf = mu * buf + g
        # (buf starts at 0, so the first step equals torch's buf = g),
        # p -= lr * (g + mu * buf) with Nesterov, p -= lr * buf without.
        cfg = self.config
        if self.fused_sgd:
            # torch's fused kernel: one pass instead of five element-wise
            # ones (3x faster per layer step on the CPU), same results.
            _fused_sgd_step(
                p,
                g,
                m,
                decay=decay,
                momentum=cfg.momentum,
                lr=cfg.learning_rate,
                nesterov=cfg.nesterov,
            )
            return
        if decay:
            g = g.add(p, alpha=decay)
        if cfg.momentum > 0:
            m.mul_(cfg.momentum).add_(g)
            g = g.add(m, alpha=cfg.momentum) if cfg.nesterov else m
        p.add_(g, alpha=-cfg.learning_rate)

    def _adam(self, p, g, m, v, t):
        # torch.optim.Adam's single-tensor formula.
        cfg = self.config
        m.mul_(cfg.beta_1).add_(g, alpha=1 - cfg.beta_1)
        v.mul_(cfg.beta_2).addcmul_(g, g, value=1 - cfg.beta_2)
        bias_1 = 1 - cfg.beta_1**t
        bias_2 = 1 - cfg.beta_2**t
        denom = (v.sqrt() / math.sqrt(bias_2)).add_(cfg.epsilon)
        p.addcdiv_(m, denom, value=-cfg.learning_rate / bias_1)


@dataclass
class _Batch:
    """One forward's saved state, handed to the backward pass."""

    inputs: list  # the input of every layer (X, then activation outputs)
    log_proba: torch.Tensor
    y: torch.Tensor
    weights: list  # what the backward multiplies by: live W or snapshots
    versions: list  # per-layer versions read at the forward
    coef: torch.Tensor | None = None  # per-row loss coefficients (weighted fit)
    penalty_mass: float | None = None  # the L2 penalty's divisor, if not n

    @property
    def n(self):
        return self.y.shape[0]

    @property
    def penalty_n(self):
        return self.n if self.penalty_mass is None else self.penalty_mass


# ---------------------------------------------------------------- helpers
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
        self.samples = []  # n of each batch whose update was applied

    def take_batch(self):
        """Index of the next batch for any worker, or None when done / time up."""
        if self.context.time_is_up():
            self.context.stopped_by_time = True
            return None
        t = next(self.next_batch)
        return t if t < len(self.batches) else None

    def hook(self, event, worker):
        if self.config.debug_hook is not None:
            self.config.debug_hook(event, worker)

    def delay(self, worker):
        cfg = self.config
        if cfg.straggler_delay > 0 and worker in cfg.straggler_ids:
            time.sleep(cfg.straggler_delay)

    def batch_mass(self, index):
        """Rows of batch ``index``, or their weight sum in a weighted fit."""
        if self.batch_weight is None:
            rows = self.batches[index]
            return rows.stop - rows.start
        return self.batch_weight[index]

    def forward(self, index):
        """Forward of batch ``index``; records its loss, returns a ``_Batch``."""
        rows = self.batches[index]
        coef = None if self.coef is None else self.coef[rows]
        penalty_n = None if coef is None else self.batch_mass(index)
        batch, loss = self.shared.forward(self.X[rows], self.y[rows], coef, penalty_n)
        self.losses.append(loss)
        self.loss_counts.append(self.batch_mass(index))
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
    shared.log.versions = [next(counter) for counter in shared.counters]
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
    n_loss = sum(epoch.loss_counts) or 1
    shared.log.samples += n_seen
    shared.log.busy_seconds += seconds
    return {
        "loss_sum": total,
        "loss_samples": n_loss,
        "samples": n_seen,
        "seconds": seconds,
    }


def _run_serial(epoch):
    shared = epoch.shared
    while (t := epoch.take_batch()) is not None:
        epoch.hook("step", 0)
        epoch.delay(0)
        batch = epoch.forward(t)
        shared.train_on(batch)
        epoch.samples.append(batch.n)


def _run_decoupled(epoch, device, layerwise):
    cfg = epoch.config
    shared = epoch.shared
    work = queue.Queue(maxsize=cfg.queue_size)
    streams = _Streams(device, cfg.queue_size + cfg.n_backward + cfg.n_forward)
    forwards_done = itertools.count(1)

    with WorkerGroup(epoch.config.mode) as group:
        stop = group.stop_event

        def forward_worker(worker):
            while not group.stopping and (t := epoch.take_batch()) is not None:
                epoch.hook("forward", worker)
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
                epoch.hook("backward", worker)
                epoch.delay(worker)
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

    with WorkerGroup("hogwild") as group:

        def worker_loop(worker):
            stream = streams.get(worker)
            while not group.stopping and (t := epoch.take_batch()) is not None:
                epoch.hook("step", worker)
                epoch.delay(worker)
                with streams.use(stream):
                    batch = epoch.forward(t)
                    shared.train_on(batch)
                epoch.samples.append(batch.n)

        for i in range(cfg.n_workers):
            group.start(worker_loop, i, name=f"worker-{i}")
        if group.wait(deadline=epoch.context.deadline):
            epoch.context.stopped_by_time = True


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

    with WorkerGroup("sync") as group:
        stop = group.stop_event

        def worker_loop(worker):
            stream = streams.get(worker)
            for index, rows in enumerate(epoch.batches):
                # Worker 0 leads: it decides whether the step happens
                # (deadline) and releases the others only after the
                # previous update, so every shard reads the same weights.
                if worker == 0:
                    go_on = not epoch.context.time_is_up() and not group.stopping
                    if not go_on:
                        epoch.context.stopped_by_time = True
                    # On CUDA the others' streams wait (on the device,
                    # not the host) for the previous update.
                    updated = streams.event(
                        torch.cuda.current_stream() if streams.cuda else None
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
                epoch.hook("step", worker)
                epoch.delay(worker)
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

        for i in range(k):
            group.start(worker_loop, i, name=f"worker-{i}")
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
            torch.cuda.current_stream().wait_event(result[3])
            for _, grad_W, grad_b in grads:
                grad_W.record_stream(torch.cuda.current_stream())
                grad_b.record_stream(torch.cuda.current_stream())
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
    versions = list(shared.log.versions)
    shared.step_all(total, versions, epoch.batch_mass(index))
    epoch.losses.append(loss_mean)
    epoch.loss_counts.append(epoch.batch_mass(index))
    epoch.samples.append(n)
