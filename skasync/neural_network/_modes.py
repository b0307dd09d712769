"""The training modes of the torch classifiers: one table per family.

Every place that needs a list of modes (parameter validation, tags, the
expected common-check failures, the engines, the CLI demo and the
benchmarks) reads it from here, so a new mode is added in one row.

Structure
---------
* :class:`Mode`: one row (name, who does the work, determinism, summary).
* :data:`ASYNC_MODES`: :class:`~skasync.AsyncLayerwiseMLPClassifier`'s
  ``mode`` values, the first one its default.
* :data:`BLOCK_LOCAL_MODES`: :class:`~skasync.BlockLocalClassifier`'s
  ``mode`` values, the first one its default.
* :func:`mode_names` and :func:`modes_where`: names, optionally filtered by
  a column; :func:`modes_across_ranks`: those that use a ``torchrun`` group.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """One training mode.

    Parameters
    ----------
    name : str
        The value of the estimator's ``mode`` parameter.
    workers : str
        Who runs the training loop, in words (the thread counts are the
        estimator's parameters named here).
    deterministic : bool
        Whether two fits with the same ``random_state`` give the same weights.
        Lock-free modes are not: the thread interleaving changes the updates.
    decoupled : bool
        Whether no worker waits for another worker's backward pass: PD-ASGD's
        separate forward and backward workers, BLL's block-local losses.
    parallel : bool
        Whether more than one worker trains at once.
    summary : str
        One line for tables and docs.
    torchrun : str, default=""
        What the mode does across the ranks of an initialised
        ``torch.distributed`` group (under ``torchrun``), in words; empty
        when it ignores the group (each rank then trains its own model).
    """

    name: str
    workers: str
    deterministic: bool
    decoupled: bool
    parallel: bool
    summary: str
    torchrun: str = ""


ASYNC_MODES = (
    Mode(
        "pd-asgd",
        "n_forward_workers forward + n_backward_workers backward threads",
        deterministic=False,
        decoupled=True,
        parallel=True,
        summary="partial decoupled ASGD: lock-free layer-wise updates",
        torchrun="each layer's increment gossiped to a random peer (LayUp)",
    ),
    Mode(
        "d-asgd",
        "n_forward_workers forward + n_backward_workers backward threads",
        deterministic=False,
        decoupled=True,
        parallel=True,
        summary="decoupled ASGD: lock-free whole-model updates (ablation)",
    ),
    Mode(
        "hogwild",
        "n_workers threads, each forward + backward + update",
        deterministic=False,
        decoupled=False,
        parallel=True,
        summary="Hogwild!: lock-free whole-model updates",
    ),
    Mode(
        "sync",
        "n_workers threads, one shard of every batch each",
        deterministic=True,
        decoupled=False,
        parallel=True,
        summary="synchronous data parallel: summed shard gradients, one step",
        torchrun="gradients all-reduced every step (as DDP)",
    ),
    Mode(
        "serial",
        "the calling thread",
        deterministic=True,
        decoupled=False,
        parallel=False,
        summary="plain mini-batch SGD, the one-thread reference",
    ),
)

BLOCK_LOCAL_MODES = (
    Mode(
        "bll",
        "one worker per block (parallel='threads' or 'streams'), else the caller",
        deterministic=True,
        decoupled=True,
        parallel=True,
        summary="block-local losses against feedback-network targets",
    ),
    Mode(
        "backprop",
        "the calling thread",
        deterministic=True,
        decoupled=False,
        parallel=False,
        summary="the same network trained end to end (baseline)",
    ),
    Mode(
        "local_aux",
        "one worker per block (parallel='threads' or 'streams'), else the caller",
        deterministic=True,
        decoupled=True,
        parallel=True,
        summary="each block trained by its own auxiliary classifier (DGL-like)",
    ),
)


def modes_across_ranks(table):
    """Names of the modes of ``table`` that train one model over a group.

    Examples
    --------
    >>> from skasync.neural_network._modes import ASYNC_MODES, modes_across_ranks
    >>> modes_across_ranks(ASYNC_MODES)
    ('pd-asgd', 'sync')
    """
    return tuple(mode.name for mode in table if mode.torchrun)


def mode_names(table):
    """The mode names of ``table``, in table order (the default first)."""
    return tuple(mode.name for mode in table)


def modes_where(table, **columns):
    """Names of the modes of ``table`` whose columns equal ``columns``.

    Examples
    --------
    >>> from skasync.neural_network._modes import ASYNC_MODES, modes_where
    >>> modes_where(ASYNC_MODES, deterministic=False)
    ('pd-asgd', 'd-asgd', 'hogwild')
    """
    return tuple(
        mode.name
        for mode in table
        if all(getattr(mode, key) == value for key, value in columns.items())
    )
