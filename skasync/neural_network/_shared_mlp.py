"""The shared MLP of :class:`~skasync.AsyncLayerwiseMLPClassifier`.

The master weights that every worker thread reads and updates in place, with
the forward pass, a hand-written backward pass and per-layer optimizer steps
(PD-ASGD, arXiv 2410.05985).

Structure
---------
* :class:`TrainingLog`: counters kept across epochs (update versions, Adam
  steps, staleness samples, throughput).
* :class:`SharedMLP`: ``forward`` (returns a ``_Batch`` of what the backward
  needs), ``gradients`` (the backward pass, output layer first), ``step`` /
  ``step_all`` / ``train_on`` (lock-free per-layer SGD or Adam steps, with
  torch's fused SGD kernel where it exists).
* ``_Batch``: one forward's saved state.

Design points:

* the backward pass is written out by hand: the forward keeps each layer's
  input, the backward computes ``delta^T h``, ``sum(delta)`` and
  ``delta W`` with the kernels autograd would call.  No autograd graph,
  hence no per-batch leaf aliases, hook registrations or version-counter
  checks ("modified by an inplace operation" cannot occur); the backward
  reads the live (possibly newer) weights, the paper's misalignment, or the
  forward's copies with ``backward_weights="snapshot"``.  The per-batch
  overhead this removed is profiled in ``benchmarks/results/async_mlp.md``;
* gradients are fresh tensors of the backward that computed them (batches
  never mix gradients);
* per-layer versions count updates; staleness of an update = updates the
  layer received between the forward's read and this update.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import functools
import itertools
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
        # Layer increments gossiped across torch.distributed ranks (LayUp).
        self.increments_sent = 0
        self.increments_received = 0

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


@functools.cache
def _probe_fused_sgd(device_type, dtype):
    if getattr(torch, "_fused_sgd_", None) is None:
        return False
    p, g, m = (torch.zeros(1, dtype=dtype, device=device_type) for _ in range(3))
    try:
        _fused_sgd_step(p, g, m, decay=0.0, momentum=0.9, lr=0.1, nesterov=True)
    except (NotImplementedError, RuntimeError, TypeError):
        return False
    return True


class ThreadVersionBook:
    """Update versions and Adam step counts of the threads of one process.

    Parameters
    ----------
    log : TrainingLog
        Holds the published versions and the Adam step counts.
    """

    def __init__(self, log):
        self.log = log
        # next() on itertools.count is atomic under the GIL: two threads
        # never get the same version number even without a lock.
        self.counters = [itertools.count(v) for v in log.versions]
        self._adam_lock = threading.Lock()

    def read(self):
        """Per-layer versions, read by a forward before the weights."""
        return list(self.log.versions)

    def claim(self, layer):
        """The version number of an update of ``layer`` about to happen."""
        return next(self.counters[layer])

    def publish(self, layer, version):
        # Published for the staleness bookkeeping of new forwards; a racing
        # older step must not move it back (so no max(), which would also
        # write when the value is not larger).
        if version + 1 > self.log.versions[layer]:
            self.log.versions[layer] = version + 1

    def adam_step(self, layer):
        """Count one Adam step of ``layer``; return the step number.

        Under a lock: with ``update_lock="none"`` two threads may step a
        layer at once, and ``+=`` on a list item is a read and a write.
        """
        with self._adam_lock:
            self.log.adam_steps[layer] += 1
            return self.log.adam_steps[layer]

    def totals(self):
        """The exact update counts (the published versions may lag under races)."""
        return [next(counter) for counter in self.counters]


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
    config : AsyncLayerwiseConfig
    book : ThreadVersionBook or ProcessVersionBook, default=None
        Where update versions and Adam step counts are kept; None keeps them
        in ``log`` for the threads of one process.
    locks : list of context managers, default=None
        One per layer, for ``update_lock="layer"``; None makes thread locks.
    """

    def __init__(self, linears, buffers, log, config, book=None, locks=None):
        # ``.data`` tensors: same storage, no autograd tracking, so neither
        # the forward nor the in-place updates build a graph, whatever the
        # (thread-local) grad mode of the worker thread. ``linears`` may
        # also be ``(weight, bias)`` tensor pairs (the process workers').
        pairs = [
            (lin.weight.data, lin.bias.data) if hasattr(lin, "weight") else lin
            for lin in linears
        ]
        self.weights = [W for W, _ in pairs]
        self.biases = [b for _, b in pairs]
        self.buffers = buffers
        self.log = log
        self.config = config
        self.n_layers = len(linears)
        self.activation = _ACTIVATION_FUNCTIONS[config.activation]
        self.activation_backward = _ACTIVATION_BACKWARDS[config.activation]
        self.fused_sgd = config.solver == "sgd" and _has_fused_sgd(self.weights[0])
        self.book = ThreadVersionBook(log) if book is None else book
        if locks is None:
            locks = [
                threading.Lock()
                if config.update_lock == "layer"
                else contextlib.nullcontext()
                for _ in range(self.n_layers)
            ]
        self.locks = locks
        # Per-thread gradient buffers (see gradient_buffers).
        self._scratch = threading.local()

    # -- forward / backward ------------------------------------------------
    def snapshot_buffers(self):
        """One worker's reusable copies of the weights, for :meth:`forward`.

        Only a worker that runs the backward of its own forward before the
        next one (serial, Hogwild!) may reuse them batch after batch. None
        unless ``backward_weights="snapshot"``.
        """
        if self.config.backward_weights != "snapshot":
            return None
        return [torch.empty_like(W) for W in self.weights]

    def forward(self, X, y, coef=None, penalty_n=None, out=None, snapshot=None):
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
        out : list of torch.Tensor or None
            Buffers of shape ``(n_samples, width)`` for the inputs of layers
            ``1 .. n_layers - 1``: the hidden activations are written there
            (the process back-end's ring slots) instead of new tensors.
        snapshot : list of torch.Tensor or None
            With ``backward_weights="snapshot"``: buffers from
            :meth:`snapshot_buffers` that the weights are copied into,
            instead of new copies; the batch's backward must run before the
            buffers are used again.

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
        versions = self.book.read()
        if self.config.backward_weights == "snapshot":
            # The backward must see the weights this forward used; biases
            # are read once, by the forward only, so they need no copy.
            if snapshot is None:
                weights = [W.clone() for W in self.weights]
            else:
                weights = [buf.copy_(W) for buf, W in zip(snapshot, self.weights)]
        else:
            weights = self.weights
        inputs = []
        h = X
        last = self.n_layers - 1
        for layer, (W, b) in enumerate(zip(weights, self.biases)):
            inputs.append(h)
            if out is not None and layer < last:
                # F.linear's own CPU kernel (addmm), into the slot.
                h = torch.addmm(b, h, W.t(), out=out[layer + 1])
            else:
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

    def gradient_buffers(self):
        """The calling thread's reusable weight-gradient buffers, or None.

        A fresh 4 MB gradient per layer and batch (width 1024) made the
        allocator return memory to the system and fault it in again: the
        one-thread loop spent up to 2 s of a 30 s fit in page faults and
        ran 14-19k samples/s depending on the heap's history. Only on the
        CPU: a CUDA worker's consecutive batches may run on different
        streams, and a buffer reused across streams would race.
        """
        if self.weights[0].device.type != "cpu":
            return None
        buffers = getattr(self._scratch, "grad_W", None)
        if buffers is None:
            buffers = self._scratch.grad_W = [torch.empty_like(W) for W in self.weights]
        return buffers

    def gradients(self, batch, out=None):
        """Backpropagate ``batch``; yield ``(layer, grad_W, grad_b)``.

        Output layer first. Each layer's ``delta W`` for the layer below is
        computed *before* its gradient is yielded, so a caller that steps
        the layer right away (PD-ASGD) does not change what this batch
        propagates, as with autograd's per-layer hooks. The gradients are
        fresh tensors that the step may modify in place, or the buffers
        ``out`` (one per layer, from :meth:`gradient_buffers`) for a caller
        that consumes them before its next batch.
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
            if out is None:
                grad_W = delta.t().mm(h)
            else:
                grad_W = torch.mm(delta.t(), h, out=out[layer])
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
        cfg.notify("update", layer)
        W, b = self.weights[layer], self.biases[layer]
        buffers = self.buffers[layer]
        # MLPClassifier's penalty 0.5 * alpha * ||W||^2 / n_samples, as
        # weight decay on the live weights (not on the intercepts).
        decay = cfg.alpha / n_samples
        with self.locks[layer]:
            version = self.book.claim(layer)
            if cfg.solver == "sgd":
                self._sgd(W, grad_W, buffers["W_m"], decay)
                self._sgd(b, grad_b, buffers["b_m"], 0.0)
            else:
                if decay:
                    grad_W.add_(W, alpha=decay)
                t = self.book.adam_step(layer)
                self._adam(W, grad_W, buffers["W_m"], buffers["W_v"], t)
                self._adam(b, grad_b, buffers["b_m"], buffers["b_v"], t)
            self.book.publish(layer, version)
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
        grads = self.gradients(batch, out=self.gradient_buffers())
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
            # ones, same results (timed in benchmarks/results/async_mlp.md).
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
