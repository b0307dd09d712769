"""Training engine of :class:`~skasync.BlockLocalClassifier`.

One home for the pieces of block-local learning (BLL, arXiv 2305.14974):

* local losses (:func:`normalise_features`, :func:`representation`,
  :func:`agreement_loss`, :func:`decorrelation_loss`);
* the feedback network (:func:`make_feedback`, :func:`feedback_targets`,
  posterior bootstrapping in :meth:`BlockWorker.finish_batch`);
* :class:`BlockWorker`, which owns one block: its forward pass, local loss,
  backward pass, optimiser step and feedback fit;
* the execution back-ends of :class:`BlockLocalEngine`: sequential
  (``parallel="none"``), one thread per block (``"threads"``) and one CUDA
  stream per block (``"streams"``), each with micro-batch pipelining;
* :class:`ActivationMeter`, which counts the bytes autograd keeps for the
  backward pass (a device-independent activation-memory measure).

The maths does not depend on the back-end: every block accumulates the
gradients of the micro-batches of a batch and steps once per batch, and a
block's input only depends on the weights of the blocks below it, which each
block steps on its own.  So ``"threads"`` reproduces ``"none"`` exactly.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math
import queue
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from skasync.utils._threads import WorkerGroup, queue_get, queue_put

_EPS = 1e-8
# Bernoulli targets are clamped away from 0 and 1 so the log stays finite.
_BERNOULLI_CLAMP = 0.01
# The activation meter runs for this many batches per fit: peak activation
# memory is the same every step, and the hooks cost Python time.
_METER_BATCHES = 4


# --------------------------------------------------------------- local losses
class _CentreNormalise(torch.autograd.Function):
    """Row-wise mean-centring and L2 normalisation that saves only its output.

    Autograd's own graph of ``c = a - mean(a); c / (eps + ||c||)`` keeps both
    ``c`` and the output alive for backward; this keeps the output and the
    (B, 1) norms, so a block's local loss costs one (B, D) tensor less.
    """

    @staticmethod
    def forward(ctx, a):
        c = a - a.mean(dim=1, keepdim=True)
        denom = _EPS + c.norm(dim=1, keepdim=True)
        out = c / denom
        ctx.save_for_backward(out, denom)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, denom = ctx.saved_tensors
        # d(c/|c|): (g - y (y.g)) / |c| (eps only in the denominator, as in
        # the forward); then centring's backward subtracts the row mean.
        # Rows with zero norm (a dead block output) have out = 0: the clamp
        # only avoids 0/0 there.
        ratio = denom / (denom - _EPS).clamp_min(_EPS)
        g = (grad - out * (out * grad).sum(dim=1, keepdim=True) * ratio) / denom
        return g - g.mean(dim=1, keepdim=True)


def normalise_features(a):
    """Flatten/pool a block output to (B, D), mean-centre and L2-normalise rows.

    4-D outputs (B, C, H, W) are max-pooled over space to (B, C), as in the
    authors' code; others are flattened.
    """
    if a.dim() == 4:
        a = a.amax(dim=(2, 3))
    elif a.dim() != 2:
        a = a.flatten(1)
    return _CentreNormalise.apply(a)


def representation(a, local_loss):
    """The representation a local loss compares with its feedback target.

    ``"cosine"``: unit rows ``x̂``.  ``"gaussian"``: ``z = sqrt(D)·x̂`` (unit
    mean square per unit, so a per-unit mean loss has the scale of the cosine
    one).  ``"bernoulli"``: ``sigmoid(z)``, per-unit probabilities.
    """
    xhat = normalise_features(a)
    if local_loss == "cosine":
        return xhat, xhat
    z = xhat * math.sqrt(xhat.shape[1])
    if local_loss == "gaussian":
        return xhat, z
    return xhat, torch.sigmoid(z)


def transform_target(table, local_loss):
    """Feedback-network output → agreement target (detached by the caller)."""
    if local_loss == "cosine":
        return table / (_EPS + table.norm(dim=1, keepdim=True))
    if local_loss == "bernoulli":
        return table.clamp(_BERNOULLI_CLAMP, 1.0 - _BERNOULLI_CLAMP)
    return table


def agreement_loss(r, table, y, local_loss, sign=-1.0, variance=2.0, reduce=None):
    """Per-batch mean agreement loss between representation ``r`` and targets.

    Parameters
    ----------
    r : Tensor of shape (B, D)
        Representation from :func:`representation` (carries the gradient).
    table : Tensor of shape (K, D)
        Detached feedback targets, one row per class
        (:func:`transform_target`).
    y : Tensor of shape (B,)
        Class indices; sample ``i``'s target is ``table[y[i]]``.
    local_loss : {"cosine", "gaussian", "bernoulli"}
    sign : float
        Cosine only: ``-1`` minimises ``-cos`` (features move toward their
        class prototype); ``+1`` is the authors' code (moves away).
    variance : float
        Gaussian only: ``sigma_forward**2 + sigma_feedback**2``.
    reduce : callable or None
        Maps the per-sample losses, shape (B,), to the batch loss (a
        weighted mean in a weighted fit); None is the plain mean.
    """
    if reduce is None:
        reduce = torch.mean
    if local_loss == "cosine":
        # r @ table.T saves only r and the small table for backward, not a
        # (B, D) gathered target: the local loss stays light in memory.
        return sign * reduce((r @ table.t()).gather(1, y[:, None]).squeeze(1))
    if local_loss == "gaussian":
        # ||r - t_y||² expanded, for the same reason.
        d = r.shape[1]
        cross = (r @ table.t()).gather(1, y[:, None]).squeeze(1)
        sq = r.pow(2).sum(dim=1) - 2.0 * cross + table.pow(2).sum(dim=1)[y]
        const = 0.5 * math.log(2 * math.pi * variance)
        return reduce(sq / (2.0 * variance * d)) + const
    # -log(a·b + (1-a)(1-b)) per unit: the overlap of two Bernoulli factors.
    b = table[y]
    overlap = r * b + (1.0 - r) * (1.0 - b)
    return reduce(-torch.log(overlap.clamp_min(_EPS)).mean(dim=1))


class _Decorrelation(torch.autograd.Function):
    """Mean over all B² entries of the squared off-diagonal Gram matrix.

    Autograd's graph of ``(x x^T)`` differentiates both operands of the
    product (two (B, B, D) products in backward); the Gram matrix is
    symmetric, so one product gives the gradient ``4/B² · G_off · x``.
    """

    @staticmethod
    def forward(ctx, xhat):
        gram = xhat @ xhat.t()
        gram.diagonal().zero_()
        ctx.save_for_backward(xhat, gram)
        return gram.pow(2).sum() / gram.shape[0] ** 2

    @staticmethod
    def backward(ctx, grad):
        xhat, gram = ctx.saved_tensors
        return (gram @ xhat) * (4.0 * grad / gram.shape[0] ** 2)


def decorrelation_loss(xhat):
    """Mean over all B² entries of the squared off-diagonal Gram matrix."""
    return _Decorrelation.apply(xhat)


def l2_penalty(modules, alpha, batch_size):
    """MLPClassifier's ``0.5 * alpha * sum(W**2) / batch_size`` over weights."""
    if alpha == 0:
        return None
    total = None
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            if p.dim() > 1 and p.requires_grad:
                term = p.pow(2).sum()
                total = term if total is None else total + term
    if total is None:
        return None
    return 0.5 * alpha * total / batch_size


# ----------------------------------------------------------- feedback network
def make_feedback(kind, n_classes, width, local_loss, generator, hidden=(128,)):
    """One boundary's feedback network: one-hot label → target of width ``width``.

    ``"direct"``: a bias-free linear map (a learnable table of one prototype per
    class, as in the authors' code); ``"mlp"``: a small ReLU network;
    ``"fixed_random"``: a frozen random table (DRTP-like).
    """
    from skasync.neural_network._base import make_linear

    if kind == "mlp":
        layers = []
        n_in = n_classes
        for n_out in hidden:
            layers += [make_linear(n_in, n_out, generator), torch.nn.ReLU()]
            n_in = n_out
        layers.append(make_linear(n_in, width, generator, activation="identity"))
        return torch.nn.Sequential(*layers)
    layer = torch.nn.utils.skip_init(torch.nn.Linear, n_classes, width, bias=False)
    with torch.no_grad():
        # Weight has shape (width, n_classes): column c is class c's prototype.
        if local_loss == "bernoulli":
            layer.weight.uniform_(0.0, 1.0, generator=generator)
        else:
            layer.weight.normal_(0.0, 1.0, generator=generator)
            if local_loss == "cosine":
                layer.weight /= math.sqrt(width)
    if kind == "fixed_random":
        layer.weight.requires_grad_(False)
    return layer


def feedback_table(module, n_classes, device):
    """Outputs of a feedback network for every class: shape (K, D)."""
    if _is_prototype_table(module):
        # The one-hot rows select the weight's columns: the same values
        # without an identity matrix and a product per batch.
        return module.weight.t()
    eye = torch.eye(n_classes, device=device)
    return module(eye)


def _is_prototype_table(module):
    """Whether ``module`` is a bias-free linear map: a table of prototypes."""
    return isinstance(module, torch.nn.Linear) and module.bias is None


def min_training_rows(blocks):
    """Fewest rows a training (micro-)batch may have: 2 with batch norm.

    Batch norm in training mode needs more than one value per channel.
    """
    for block in blocks:
        for layer in block.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                return 2
    return 1


# --------------------------------------------------------------- memory meter
class _Saved:
    __slots__ = ("tensor", "key", "meter")

    def __del__(self):
        self.meter._release(self.key)


class ActivationMeter:
    """Peak bytes of tensors saved for backward (parameters excluded).

    Installed with :func:`torch.autograd.graph.saved_tensors_hooks`; counts
    each storage once and releases it when autograd frees the graph.  This is
    what per-block backward saves compared with one joint backward pass, and it
    works on CPU, where :mod:`tracemalloc` does not see torch's allocations.
    """

    def __init__(self, parameters):
        self._param_keys = {p.untyped_storage().data_ptr() for p in parameters}
        self._live = {}
        # Re-entrant: _release runs in _Saved.__del__, which a garbage
        # collection triggered inside pack() (lock held) could call.
        self._lock = threading.RLock()
        self.current = 0
        self.peak = 0

    def pack(self, tensor):
        key = tensor.untyped_storage().data_ptr()
        if key in self._param_keys or key == 0:
            return tensor
        nbytes = tensor.untyped_storage().nbytes()
        with self._lock:
            entry = self._live.get(key)
            if entry is None:
                self._live[key] = [1, nbytes]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            else:
                entry[0] += 1
        saved = _Saved()
        saved.tensor, saved.key, saved.meter = tensor, key, self
        return saved

    @staticmethod
    def unpack(saved):
        return saved.tensor if isinstance(saved, _Saved) else saved

    def _release(self, key):
        with self._lock:
            entry = self._live.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                self.current -= entry[1]
                del self._live[key]

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------- block worker
class BlockWorker:
    """Everything one block does in a step; touched by one thread only.

    Parameters
    ----------
    index : int
        Block number (0-based).
    block : nn.Module
    head : nn.Module or None
        Auxiliary classifier on the block output (``aux_weight > 0``).
    feedback : nn.Module or None
        The boundary's feedback network (bll mode, not the last block).
    optimizer, feedback_optimizer : torch.optim.Optimizer or None
    config : dict
        Loss settings (see :class:`BlockLocalEngine`).
    """

    def __init__(
        self,
        index,
        block,
        head,
        feedback,
        optimizer,
        feedback_optimizer,
        config,
        is_last,
    ):
        self.index = index
        self.block = block
        self.head = head
        self.feedback = feedback
        self.optimizer = optimizer
        self.feedback_optimizer = feedback_optimizer
        self.config = config
        self.is_last = is_last
        self.loss_sum = None
        self.loss_mass = 0.0
        self.correct = None
        self.seen = 0
        self.feedback_loss_sum = 0.0
        self.forward_ms = []
        self.backward_ms = []
        self.update_ms = []
        self._batch_forward = 0.0
        self._batch_backward = 0.0

    # ----------------------------------------------------------- per batch
    def start_batch(self, y):
        """Agreement targets for the batch, from the feedback before its update."""
        cfg = self.config
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        self._batch_forward = self._batch_backward = 0.0
        self._class_sum = None
        if self.feedback is not None:
            with torch.no_grad():
                table = feedback_table(self.feedback, cfg["n_classes"], y.device)
                self._targets = transform_target(table, cfg["local_loss"]).detach()

    def run_microbatch(self, h, y, weight, batch_size, noise_generator=None, coef=None):
        """Forward, local loss, backward for one micro-batch.

        ``weight`` is the micro-batch's share of the batch's rows,
        ``batch_size`` the batch's rows (its weight sum in a weighted fit:
        the divisor of the L2 penalty), ``coef`` the rows' sample weights
        over the batch's weight sum (None: unweighted).

        Returns the detached block output (the hand-off to the next block).
        The back-ends pass it on once this call returns, i.e. after this
        block's own backward pass on the micro-batch (one "tick" per block,
        as in the design note): a block never waits for the backward pass of
        the blocks after it, which is what end-to-end backprop must do.
        """
        cfg = self.config
        sync = cfg["sync"]
        t0 = time.perf_counter()
        out = self.block(h)
        handoff = out.detach()
        loss = (
            self._local_loss(h, out, y, batch_size, noise_generator, coef, weight)
            * weight
        )
        if sync:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        # No local loss term (all their weights 0, an ablation that leaves
        # the block at its initial weights) or no parameters: no graph.
        if loss.requires_grad:
            loss.backward()
        if sync:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        self._batch_forward += t1 - t0
        self._batch_backward += t2 - t1
        return handoff

    def finish_batch(self):
        """Optimiser step, then the feedback fit (posterior bootstrapping)."""
        t0 = time.perf_counter()
        if self.optimizer is not None:
            self.optimizer.step()
        if self.feedback_optimizer is not None and self._class_sum is not None:
            self._fit_feedback()
        if self.config["sync"]:
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        self.forward_ms.append(1e3 * self._batch_forward)
        self.backward_ms.append(1e3 * self._batch_backward)
        self.update_ms.append(1e3 * (t1 - t0))

    # ------------------------------------------------------------ internals
    def _accumulate(self, value, n, logits=None, y=None, mass=None):
        # ``mass``: (weight of these rows in the loss, their weight sum); the
        # row count for both in an unweighted fit.
        scale, total = (n, n) if mass is None else mass
        value = value.detach() * scale
        self.loss_sum = value if self.loss_sum is None else self.loss_sum + value
        self.loss_mass += total
        self.seen += n
        if logits is not None:
            right = (logits.detach().argmax(dim=1) == y).sum()
            self.correct = right if self.correct is None else self.correct + right

    def _local_loss(self, h, out, y, batch_size, noise_generator, coef=None, share=1.0):
        """The micro-batch's loss as a batch mean (the caller scales by share).

        With ``coef`` (weighted fit), per-sample terms are the weighted sum
        ``sum(coef * l) / share``, so that times ``share`` they add up to the
        batch's weighted mean; the decorrelation term is a statistic of the
        whole micro-batch and stays unweighted.
        """
        cfg = self.config
        n = out.shape[0]
        modules = [self.block, self.head]
        mass = None
        if coef is None:
            reduce = torch.mean

            def cross_entropy(logits):
                return F.cross_entropy(
                    logits, y, label_smoothing=cfg["label_smoothing"]
                )

        else:

            def reduce(values):
                return (values * coef).sum() / share

            def cross_entropy(logits):
                return reduce(
                    F.cross_entropy(
                        logits,
                        y,
                        label_smoothing=cfg["label_smoothing"],
                        reduction="none",
                    )
                )

            # A tensor: no host synchronisation per micro-batch.
            mass = (share * batch_size, coef.sum() * batch_size)
        if self.is_last:
            logits = out.flatten(1) if out.dim() > 2 else out
            loss = cfg["output_weight"] * cross_entropy(logits)
            self._accumulate(loss, n, logits, y, mass)
        else:
            loss = out.new_zeros(())
            logits = None
            mode = cfg["mode"]
            if mode == "bll":
                xhat, r = representation(out, cfg["local_loss"])
                if cfg["agreement_weight"]:
                    loss = loss + cfg["agreement_weight"] * agreement_loss(
                        r,
                        self._targets,
                        y,
                        cfg["local_loss"],
                        cfg["agreement_sign"],
                        cfg["variance"],
                        reduce=None if coef is None else reduce,
                    )
                if cfg["decorrelation_weight"]:
                    loss = loss + cfg["decorrelation_weight"] * decorrelation_loss(xhat)
                if self.feedback_optimizer is not None:
                    self._collect_class_means(r.detach(), y, coef)
                if cfg["denoise_weight"]:
                    noise = torch.randn(h.shape, generator=noise_generator)
                    noisy = self.block(h + cfg["denoise_std"] * noise.to(h.device))
                    if coef is None:
                        denoise = F.mse_loss(noisy, out.detach())
                    else:
                        squared = (noisy - out.detach()).pow(2).flatten(1)
                        denoise = reduce(squared.mean(dim=1))
                    loss = loss + cfg["denoise_weight"] * denoise
            if self.head is not None:
                logits = self.head(out)
                loss = loss + cfg["aux_weight"] * cross_entropy(logits)
            self._accumulate(loss, n, logits, y, mass)
        if cfg["mode"] == "bll" and not self.is_last:
            # The BLL terms (agreement, decorrelation) are scale-invariant in
            # the block output: a coupled L2 term then only shrinks the
            # weights, and Adam turns that into full-size steps; the block
            # output fades and starves the next block (digits CNN: 69 % with,
            # 98.5 % without).  Only the auxiliary head is penalised.
            modules = [self.head]
        penalty = l2_penalty(modules, cfg["alpha"], batch_size)
        if penalty is not None:
            # The caller weights each micro-batch by n / batch_size, so the
            # micro-batches of a batch add up to one penalty.
            loss = loss + penalty
        return loss

    def _collect_class_means(self, r, y, coef=None):
        # Weighted class means in a weighted fit (coef is proportional to
        # the rows' weights).
        k = self.config["n_classes"]
        sums = torch.zeros(k, r.shape[1], device=r.device, dtype=r.dtype)
        if coef is None:
            sums.index_add_(0, y, r)
            counts = torch.bincount(y, minlength=k).to(r.dtype)
        else:
            sums.index_add_(0, y, r * coef[:, None])
            counts = torch.zeros(k, device=r.device, dtype=r.dtype)
            counts.index_add_(0, y, coef.to(r.dtype))
        if self._class_sum is None:
            self._class_sum, self._class_count = sums, counts
        else:
            self._class_sum += sums
            self._class_count += counts

    def _fit_feedback(self):
        # ½ Σ_{present c} ||g(e_c) − mean of class c||², summed as in the
        # authors' code: with plain SGD, lr 0.9 is an EMA of class means.
        # Classes absent from the batch are masked out of the loss, which
        # would pull their rows toward the zero target; the optimiser's
        # weight decay (feedback_weight_decay) still shrinks them a little,
        # as torch's SGD in the authors' code does.
        present = self._class_count > 0
        self.feedback_optimizer.zero_grad(set_to_none=True)
        if _is_prototype_table(self.feedback):
            # The table is the weight's transpose, so the loss's gradient is
            # the residual of the present classes itself: no autograd graph
            # and no boolean indexing per batch.
            with torch.no_grad():
                weight = self.feedback.weight
                # Weight sums in a weighted fit: only absent classes are 0.
                counts = torch.where(present, self._class_count, 1.0)
                means = self._class_sum / counts[:, None]
                residual = (weight - means.t()) * present
                weight.grad = residual
                loss = 0.5 * residual.pow(2).sum()
        else:
            target = self._class_sum[present] / self._class_count[present, None]
            table = feedback_table(
                self.feedback, self.config["n_classes"], target.device
            )
            loss = 0.5 * (table[present] - target).pow(2).sum()
            loss.backward()
        self.feedback_optimizer.step()
        # Kept as a tensor: no device synchronisation inside the step.
        self.feedback_loss_sum = self.feedback_loss_sum + loss.detach()


# ---------------------------------------------------------------- the engine
class BlockLocalEngine:
    """Runs epochs of block-local (or backprop) training over a list of blocks.

    Parameters
    ----------
    workers : list of BlockWorker
    mode : {"bll", "backprop", "local_aux"}
    parallel : {"none", "threads", "streams"}
    n_microbatches : int
    backward_schedule : {"per_block", "joint"}
    input_shape : tuple or None
        Reshape of the flat input rows for the first block.
    threads_per_block : int or None
        Intra-op threads of each worker thread (``parallel="threads"``).
    hook : callable or None
        ``hook(block_index, batch_number)`` called before each block's
        optimiser step; tests use it to inject failures.
    meter : ActivationMeter or None
    """

    def __init__(
        self,
        workers,
        *,
        mode,
        parallel,
        n_microbatches,
        backward_schedule,
        input_shape,
        threads_per_block=None,
        hook=None,
        meter=None,
        noise_seed=0,
    ):
        self.workers = workers
        self.mode = mode
        self.parallel = parallel
        self.n_microbatches = n_microbatches
        self.backward_schedule = backward_schedule
        self.input_shape = input_shape
        self.threads_per_block = threads_per_block
        self.hook = hook
        self.meter = meter
        self.noise_seed = noise_seed
        self.batch_done_times = []
        self.sample_weight = None
        self._min_rows = min_training_rows(w.block for w in workers)

    # ------------------------------------------------------------- helpers
    def _inputs(self, X, idx):
        x = X[idx]
        if self.input_shape is not None:
            x = x.reshape((x.shape[0],) + tuple(self.input_shape))
        return x

    def _microbatches(self, idx):
        n_mb = max(1, min(self.n_microbatches, idx.shape[0] // self._min_rows))
        return torch.tensor_split(idx, n_mb)

    def _batch_weights(self, batches):
        """Each batch's weight sum (one read-back per epoch), or None."""
        if self.sample_weight is None:
            return [None] * len(batches)
        w = self.sample_weight
        return torch.stack([w[idx].sum() for idx in batches]).double().cpu().tolist()

    def _loss_terms(self, idx, mb, batch_weight):
        """``(share, penalty_n, coef)`` of micro-batch ``mb`` of batch ``idx``.

        The arguments :meth:`BlockWorker.run_microbatch` takes after the
        labels: the micro-batch's share of the batch's rows, the divisor of
        the L2 penalty (rows, or weight sum) and the rows' coefficients in
        a weighted fit.
        """
        share = mb.shape[0] / idx.shape[0]
        if batch_weight is None:
            return share, idx.shape[0], None
        return share, batch_weight, self.sample_weight[mb] / batch_weight

    def _meter_ctx(self, batch_number):
        if self.meter is not None and batch_number < _METER_BATCHES:
            return self.meter.hooks()
        return _NullContext()

    def _noise_generators(self, epoch):
        """One denoising noise stream per block for ``epoch`` (None if unused).

        Every back-end draws block ``k``'s noise from the same stream, so they
        agree, and torch's global RNG is never touched.
        """
        if not self.workers[0].config["denoise_weight"]:
            return [None] * len(self.workers)
        return [
            torch.Generator().manual_seed(
                (self.noise_seed + 7919 * epoch + 104729 * block) % (2**31 - 1)
            )
            for block in range(len(self.workers))
        ]

    def _call_hook(self, block, batch_number):
        if self.hook is not None:
            self.hook(block, batch_number)

    # ---------------------------------------------------------------- epoch
    def run_epoch(self, X, y, batches, context):
        """Train one epoch; returns the stats dict of ``_fit_epoch``.

        ``context.sample_weight`` (a tensor aligned with ``X``, or None)
        weights the rows.
        """
        start = time.perf_counter()
        self.sample_weight = context.sample_weight
        for worker in self.workers:
            worker.loss_sum = worker.correct = None
            worker.loss_mass = 0.0
            worker.seen = 0
            worker.feedback_loss_sum = 0.0
        if self.mode == "backprop" or self.backward_schedule == "joint":
            n_done = self._run_joint(X, y, batches, context)
        elif self.parallel == "threads":
            n_done = self._run_threads(X, y, batches, context)
        elif self.parallel == "streams":
            n_done = self._run_streams(X, y, batches, context)
        else:
            n_done = self._run_sequential(X, y, batches, context)
        seconds = time.perf_counter() - start
        return self._stats(seconds, n_done)

    def _stats(self, seconds, n_done):
        block_losses, block_acc = [], []
        n_samples = max(1, self.workers[-1].seen)
        for worker in self.workers:
            seen = max(1, worker.seen)
            block_losses.append(
                0.0
                if worker.loss_sum is None
                else float(worker.loss_sum) / max(float(worker.loss_mass), 1e-300)
            )
            block_acc.append(
                None if worker.correct is None else float(worker.correct) / seen
            )
        feedback_loss = sum(float(w.feedback_loss_sum) for w in self.workers)
        return {
            "loss": float(sum(block_losses)),
            "block_losses": block_losses,
            "feedback_loss": feedback_loss / max(1, n_done),
            "train_accuracy": block_acc[-1],
            "block_accuracies": block_acc,
            "seconds": seconds,
            "n_samples": n_samples,
            "trained_samples": self.workers[-1].seen,
        }

    # ------------------------------------------------------------ back-ends
    def _run_sequential(self, X, y, batches, context):
        gens = self._noise_generators(context.epoch)
        batch_weights = self._batch_weights(batches)
        done = 0
        for number, idx in enumerate(batches):
            if context.time_is_up():
                context.stopped_by_time = True
                break
            yb = y[idx]
            mbs = self._microbatches(idx)
            terms = [self._loss_terms(idx, mb, batch_weights[number]) for mb in mbs]
            for worker in self.workers:
                worker.start_batch(yb)
            with self._meter_ctx(context.extras.get("batches_seen", 0)):
                # Wave-front order (micro-batch m of block k at tick m + k);
                # sequentially any order gives the same result.
                hs = [self._inputs(X, mb) for mb in mbs]
                for k, worker in enumerate(self.workers):
                    for m, mb in enumerate(mbs):
                        share, penalty_n, coef = terms[m]
                        hs[m] = worker.run_microbatch(
                            hs[m], y[mb], share, penalty_n, gens[k], coef
                        )
                    self._call_hook(k, number)
                    worker.finish_batch()
            context.extras["batches_seen"] = context.extras.get("batches_seen", 0) + 1
            self.batch_done_times.append(time.perf_counter())
            done += 1
        return done

    def _run_joint(self, X, y, batches, context):
        """Backprop, or BLL with one summed backward (authors' ``joint``)."""
        detach = self.mode != "backprop"
        gens = self._noise_generators(context.epoch)
        batch_weights = self._batch_weights(batches)
        done = 0
        for number, idx in enumerate(batches):
            if context.time_is_up():
                context.stopped_by_time = True
                break
            yb = y[idx]
            for worker in self.workers:
                worker.start_batch(yb)
            with self._meter_ctx(context.extras.get("batches_seen", 0)):
                for mb in self._microbatches(idx):
                    h = self._inputs(X, mb)
                    ym = y[mb]
                    share, penalty_n, coef = self._loss_terms(
                        idx, mb, batch_weights[number]
                    )
                    total = None
                    for worker, gen in zip(self.workers, gens):
                        tb = time.perf_counter()
                        out = worker.block(h)
                        loss = worker._local_loss(
                            h, out, ym, penalty_n, gen, coef, share
                        )
                        total = loss if total is None else total + loss
                        h = out.detach() if detach else out
                        worker._batch_forward += time.perf_counter() - tb
                    t1 = time.perf_counter()
                    if total.requires_grad:
                        (total * share).backward()
                    # One backward for all blocks: its time is the last block's.
                    self.workers[-1]._batch_backward += time.perf_counter() - t1
            for k, worker in enumerate(self.workers):
                self._call_hook(k, number)
                worker.finish_batch()
            context.extras["batches_seen"] = context.extras.get("batches_seen", 0) + 1
            self.batch_done_times.append(time.perf_counter())
            done += 1
        return done

    def _run_threads(self, X, y, batches, context):
        """One thread per block, bounded queues between neighbours.

        Block ``k`` hands its detached output to block ``k+1`` after its
        forward and local backward pass on that micro-batch, then takes the
        next one: no block waits for the backward pass of a later block.
        Items are ``(batch_number, microbatch, n_microbatches, h, y,
        loss_terms, batch_labels)``, ``loss_terms`` as
        :meth:`_loss_terms` returns them; ``None`` ends the epoch.
        """
        n_blocks = len(self.workers)
        depth = 2 * max(1, self.n_microbatches)
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
                mbs = self._microbatches(idx)
                for m, mb in enumerate(mbs):
                    item = (
                        number,
                        m,
                        len(mbs),
                        self._inputs(X, mb),
                        y[mb],
                        self._loss_terms(idx, mb, batch_weights[number]),
                        y[idx],
                    )
                    queue_put(queues[0], item, stop_event)
            queue_put(queues[0], None, stop_event)

        def block_worker(k, stop_event):
            if self.threads_per_block is not None:
                torch.set_num_threads(self.threads_per_block)
            worker = self.workers[k]
            gen = gens[k]
            out_queue = queues[k + 1] if k + 1 < n_blocks else None
            while True:
                item = queue_get(queues[k], stop_event)
                if item is None:
                    if out_queue is not None:
                        queue_put(out_queue, None, stop_event)
                    return
                number, m, n_mb, h, ym, terms, yb = item
                if m == 0:
                    worker.start_batch(yb)
                share, penalty_n, coef = terms
                with self._meter_ctx(batches_seen0 + number):
                    handoff = worker.run_microbatch(
                        h, ym, share, penalty_n, gen, coef
                    )
                if out_queue is not None:
                    queue_put(
                        out_queue,
                        (number, m, n_mb, handoff, ym, terms, yb),
                        stop_event,
                    )
                del h, handoff
                if m == n_mb - 1:
                    self._call_hook(k, number)
                    worker.finish_batch()
                    if k == n_blocks - 1:
                        n_done[0] += 1
                        self.batch_done_times.append(time.perf_counter())
                if stop_event.is_set():
                    return

        with WorkerGroup("bll") as group:
            group.start(feeder, group.stop_event, name="feeder")
            for k in range(n_blocks):
                group.start(block_worker, k, group.stop_event, name=f"block{k}")
            group.wait()
        if stop_time.is_set():
            context.stopped_by_time = True
        context.extras["batches_seen"] = batches_seen0 + n_done[0]
        return n_done[0]

    def _run_streams(self, X, y, batches, context):
        """One CUDA stream per block, wave-front over micro-batches.

        Block ``k`` runs micro-batch ``m`` at tick ``m + k`` on its own stream;
        hand-offs are ordered by events and kept alive for the consumer stream
        with ``record_stream``.  Backward and step run on the forward's stream.
        """
        n_blocks = len(self.workers)
        device = X.device
        streams = [torch.cuda.Stream(device=device) for _ in range(n_blocks)]
        main = torch.cuda.current_stream(device)
        gens = self._noise_generators(context.epoch)
        batch_weights = self._batch_weights(batches)
        done = 0
        for number, idx in enumerate(batches):
            if context.time_is_up():
                context.stopped_by_time = True
                break
            yb = y[idx]
            mbs = self._microbatches(idx)
            terms = [self._loss_terms(idx, mb, batch_weights[number]) for mb in mbs]
            inputs = [self._inputs(X, mb) for mb in mbs]
            labels = [y[mb] for mb in mbs]
            ready = main.record_event()
            for k, worker in enumerate(self.workers):
                streams[k].wait_event(ready)
                with torch.cuda.stream(streams[k]):
                    worker.start_batch(yb)
            events = [[None] * len(mbs) for _ in range(n_blocks)]
            hand = [list(inputs)] + [[None] * len(mbs) for _ in range(n_blocks)]
            with self._meter_ctx(context.extras.get("batches_seen", 0)):
                for tick in range(len(mbs) + n_blocks - 1):
                    for k, worker in enumerate(self.workers):
                        m = tick - k
                        if not 0 <= m < len(mbs):
                            continue
                        stream = streams[k]
                        with torch.cuda.stream(stream):
                            if k > 0:
                                stream.wait_event(events[k - 1][m])
                            h = hand[k][m]
                            h.record_stream(stream)
                            labels[m].record_stream(stream)
                            share, penalty_n, coef = terms[m]
                            out = worker.run_microbatch(
                                h, labels[m], share, penalty_n, gens[k], coef
                            )
                            events[k][m] = stream.record_event()
                            hand[k + 1][m] = out
                            hand[k][m] = None
            for k, worker in enumerate(self.workers):
                with torch.cuda.stream(streams[k]):
                    self._call_hook(k, number)
                    worker.finish_batch()
            for stream in streams:
                main.wait_stream(stream)
            context.extras["batches_seen"] = context.extras.get("batches_seen", 0) + 1
            self.batch_done_times.append(time.perf_counter())
            done += 1
        return done


def median_or_none(values):
    """Median of a list (None when empty)."""
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None
