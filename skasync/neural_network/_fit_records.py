"""What the torch classifiers' base and their engines exchange per epoch.

Structure
---------
* :class:`FitContext`: what the base hands to ``_fit_epoch`` (epoch number,
  generator, device, deadline, sample weights, engine scratch space).
* :class:`EpochResult`: what ``_fit_epoch`` returns (loss, rows trained,
  further history columns).
* :class:`History`: the per-epoch records of ``history_``, a list of dicts
  with column access.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import time
from dataclasses import dataclass, field

import torch


@dataclass
class FitContext:
    """What the base hands to ``_fit_epoch``.

    Attributes
    ----------
    epoch : int
        Zero-based epoch number (counted over ``warm_start`` and
        ``partial_fit`` calls).
    generator : torch.Generator
        The fit's seeded CPU generator (for dropout-like noise, tie breaks).
    device : torch.device
        Where the data tensors live.
    deadline : float or None
        :func:`time.monotonic` time at which ``max_time`` runs out; engines
        should stop between batches once it passes and set
        ``stopped_by_time``.
    stopped_by_time : bool
        Set by the engine when it stopped because of ``deadline``.
    extras : dict
        Free space for engines (kept across epochs of one fit).
    sample_weight : torch.Tensor or None
        float32 weights of the training rows (all positive: rows of weight 0
        are left out before batching), or None for an unweighted fit. An
        engine makes each batch's loss the weighted mean of its rows, and
        divides the L2 penalty by the batch's weight sum, as MLPClassifier.
    """

    epoch: int
    generator: torch.Generator
    device: torch.device
    deadline: float | None = None
    stopped_by_time: bool = False
    extras: dict = field(default_factory=dict)
    sample_weight: torch.Tensor | None = None

    def time_is_up(self):
        """True once ``deadline`` has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass
class EpochResult:
    """What ``_fit_epoch`` returns.

    Attributes
    ----------
    loss : float
        The epoch's training loss (``loss_curve_``, ``history_[i]["loss"]``).
    trained_samples : int or None
        Rows trained on.  0 means ``max_time`` ran out before the epoch's
        first batch: there is no loss to record and the fit stops.  None
        when the engine does not count them.
    columns : dict
        Further ``history_`` columns of the epoch, in their order.
    """

    loss: float
    trained_samples: int | None = None
    columns: dict = field(default_factory=dict)


class History(list):
    """Per-epoch training records: a list of dicts with column access.

    ``history[:, "loss"]`` returns the ``"loss"`` column as a list (skorch
    style); ``history[-1]`` is the last epoch's dict.
    """

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, column = key
            selected = list.__getitem__(self, rows)
            if isinstance(selected, dict):
                return selected.get(column)
            return [row.get(column) for row in selected]
        return list.__getitem__(self, key)

    def column(self, name):
        """Return one column as a list (None where an epoch lacks it)."""
        return [row.get(name) for row in self]
