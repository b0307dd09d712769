"""One block of block-local learning and everything it does in a step.

Structure
---------
:class:`BlockWorker` owns one block (with its auxiliary head, feedback
network and optimisers) and is touched by one thread at a time:

* :meth:`~BlockWorker.start_batch`: the batch's agreement targets, from
  the feedback network before its update;
* :meth:`~BlockWorker.run_microbatch`: forward, local loss and backward of
  one micro-batch; returns the detached hand-off to the next block;
* :meth:`~BlockWorker.finish_batch`: the optimiser step, then the feedback
  fit on the batch's class means (posterior bootstrapping, arXiv
  2305.14974);
* ``_local_loss``: output cross-entropy (last block) or the weighted sum of
  agreement, decorrelation, denoising and auxiliary terms, plus the L2
  penalty; ``_collect_class_means`` and ``_fit_feedback`` feed the feedback
  fit.

Per-batch statistics (losses, accuracy, timings) stay on the worker until
the engine reads them at the end of the epoch.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time

import torch
import torch.nn.functional as F

from skasync.neural_network._block_local_losses import (
    agreement_loss,
    decorrelation_loss,
    feedback_table,
    is_prototype_table,
    l2_penalty,
    representation,
    transform_target,
)


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
    config : BlockLocalConfig
        The fit's settings (the loss fields are read here).
    is_last : bool
        Whether this is the output block (trained with cross-entropy).
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
        self.forward_ms = []
        self.backward_ms = []
        self.update_ms = []
        self._batch_forward = 0.0
        self._batch_backward = 0.0
        self.reset_epoch_stats()

    # ----------------------------------------------------------- per epoch
    def reset_epoch_stats(self):
        """Zero the epoch's loss, accuracy and feedback-loss sums."""
        self.loss_sum = None
        self.loss_mass = 0.0
        self.correct = None
        self.seen = 0
        self.feedback_loss_sum = 0.0

    def epoch_loss(self):
        """Mean loss of the epoch's rows (weighted by ``sample_weight``)."""
        if self.loss_sum is None:
            return 0.0
        return float(self.loss_sum) / max(float(self.loss_mass), 1e-300)

    def epoch_accuracy(self):
        """Accuracy of the output (or auxiliary head) this epoch, or None."""
        if self.correct is None:
            return None
        return float(self.correct) / max(1, self.seen)

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
                table = feedback_table(self.feedback, cfg.n_classes, y.device)
                self._targets = transform_target(table, cfg.local_loss).detach()

    def run_microbatch(self, h, y, weight, batch_size, noise_generator=None, coef=None):
        """Forward, local loss, backward for one micro-batch.

        ``weight`` is the micro-batch's share of the batch's rows,
        ``batch_size`` the batch's rows (its weight sum in a weighted fit:
        the divisor of the L2 penalty), ``coef`` the rows' sample weights
        over the batch's weight sum (None: unweighted).

        Returns the detached block output (the hand-off to the next block).
        The back-ends pass it on once this call returns, i.e. after this
        block's own backward pass on the micro-batch (one "tick" per block
        of the wave-front): a block never waits for the backward pass of the
        blocks after it, which is what end-to-end backprop must do.
        """
        cfg = self.config
        sync = cfg.sync
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

    def forward_loss(self, h, y, weight, batch_size, noise_generator=None, coef=None):
        """Forward and local loss of one micro-batch, without backward.

        For ``backward_schedule="joint"`` and backprop, whose engine sums the
        blocks' losses into one backward pass; the arguments are those of
        :meth:`run_microbatch`.  Returns the block output (not detached) and
        the loss as a batch mean (not yet scaled by ``weight``).
        """
        t0 = time.perf_counter()
        out = self.block(h)
        loss = self._local_loss(h, out, y, batch_size, noise_generator, coef, weight)
        self._batch_forward += time.perf_counter() - t0
        return out, loss

    def add_backward_seconds(self, seconds):
        """Book a backward pass run outside :meth:`run_microbatch` (joint)."""
        self._batch_backward += seconds

    def finish_batch(self):
        """Optimiser step, then the feedback fit (posterior bootstrapping)."""
        t0 = time.perf_counter()
        if self.optimizer is not None:
            self.optimizer.step()
        if self.feedback_optimizer is not None and self._class_sum is not None:
            self._fit_feedback()
        if self.config.sync:
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
                return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)

        else:

            def reduce(values):
                return (values * coef).sum() / share

            def cross_entropy(logits):
                return reduce(
                    F.cross_entropy(
                        logits,
                        y,
                        label_smoothing=cfg.label_smoothing,
                        reduction="none",
                    )
                )

            # A tensor: no host synchronisation per micro-batch.
            mass = (share * batch_size, coef.sum() * batch_size)
        if self.is_last:
            logits = out.flatten(1) if out.dim() > 2 else out
            loss = cfg.output_weight * cross_entropy(logits)
            self._accumulate(loss, n, logits, y, mass)
        else:
            loss = out.new_zeros(())
            logits = None
            mode = cfg.mode
            if mode == "bll":
                xhat, r = representation(out, cfg.local_loss)
                if cfg.agreement_weight:
                    loss = loss + cfg.agreement_weight * agreement_loss(
                        r,
                        self._targets,
                        y,
                        cfg.local_loss,
                        cfg.agreement_sign,
                        cfg.variance,
                        reduce=None if coef is None else reduce,
                    )
                if cfg.decorrelation_weight:
                    loss = loss + cfg.decorrelation_weight * decorrelation_loss(xhat)
                if self.feedback_optimizer is not None:
                    self._collect_class_means(r.detach(), y, coef)
                if cfg.denoise_weight:
                    noise = torch.randn(h.shape, generator=noise_generator)
                    noisy = self.block(h + cfg.denoise_std * noise.to(h.device))
                    if coef is None:
                        denoise = F.mse_loss(noisy, out.detach())
                    else:
                        squared = (noisy - out.detach()).pow(2).flatten(1)
                        denoise = reduce(squared.mean(dim=1))
                    loss = loss + cfg.denoise_weight * denoise
            if self.head is not None:
                logits = self.head(out)
                loss = loss + cfg.aux_weight * cross_entropy(logits)
            self._accumulate(loss, n, logits, y, mass)
        if cfg.mode == "bll" and not self.is_last:
            # The BLL terms (agreement, decorrelation) are scale-invariant in
            # the block output: a coupled L2 term then only shrinks the
            # weights, and Adam turns that into full-size steps; the block
            # output fades and starves the next block (digits CNN: 69 % with,
            # 98.5 % without).  Only the auxiliary head is penalised.
            modules = [self.head]
        penalty = l2_penalty(modules, cfg.alpha, batch_size)
        if penalty is not None:
            # The caller weights each micro-batch by n / batch_size, so the
            # micro-batches of a batch add up to one penalty.
            loss = loss + penalty
        return loss

    def _collect_class_means(self, r, y, coef=None):
        # Weighted class means in a weighted fit (coef is proportional to
        # the rows' weights).
        k = self.config.n_classes
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
        if is_prototype_table(self.feedback):
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
            table = feedback_table(self.feedback, self.config.n_classes, target.device)
            loss = 0.5 * (table[present] - target).pow(2).sum()
            loss.backward()
        self.feedback_optimizer.step()
        # Kept as a tensor: no device synchronisation inside the step.
        self.feedback_loss_sum = self.feedback_loss_sum + loss.detach()
