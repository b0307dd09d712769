"""Local losses and feedback networks of block-local learning.

The maths of BLL (Kappel et al., arXiv 2305.14974), independent of how the
blocks are run.

Structure
---------
* Features: :func:`normalise_features` (pool/flatten, centre, L2-normalise;
  a custom autograd function that saves only its output) and
  :func:`representation` (what each local loss compares).
* Agreement: :func:`transform_target` (feedback output -> target) and
  :func:`agreement_loss` (cosine, Gaussian or Bernoulli overlap).
* :func:`decorrelation_loss`: squared off-diagonal Gram entries, with a
  one-product backward.
* :func:`l2_penalty`: MLPClassifier's L2 term over a block's weights.
* Feedback networks: :func:`make_feedback` (label -> target network of one
  block boundary) and :func:`feedback_table` (its output for every class).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import math

import torch

from skasync.neural_network._torch_utils import make_linear

_EPS = 1e-8
# Bernoulli targets are clamped away from 0 and 1 so the log stays finite.
_BERNOULLI_CLAMP = 0.01


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
    if is_prototype_table(module):
        # The one-hot rows select the weight's columns: the same values
        # without an identity matrix and a product per batch.
        return module.weight.t()
    eye = torch.eye(n_classes, device=device)
    return module(eye)


def is_prototype_table(module):
    """Whether ``module`` is a bias-free linear map: a table of prototypes."""
    return isinstance(module, torch.nn.Linear) and module.bias is None
