"""Decentralised PD-ASGD across ``torch.distributed`` ranks (LayUp).

Under ``torchrun``, ``mode="pd-asgd"`` trains one replica per rank, after
the layer-wise gossip of LayUp (arXiv 2410.05985 v4): each rank steps its
own share of the batches (batch ``t`` on rank ``t mod world_size``) and, the
moment it has stepped a layer, sends that layer's increment (weights and
bias after the step minus before) to one peer drawn at random, with
``isend`` and no barrier. A receiving thread takes the increments of the
peers as they come; the rank adds them to its replica before its next
batch (the paper applies them on arrival; between two batches keeps the
increment a rank sends free of what it received meanwhile).

At the end of an epoch each rank sends an end marker to every peer. A pair's
messages arrive in the order they were sent, so a rank that holds the
markers of all its peers has every increment of the epoch. The ranks then
average their replicas (one all-reduce per epoch, the only collective), so
the validation score, early stopping and the fitted model agree across the
group. With two ranks every increment reaches the other replica, so the
replicas differ only by the order of their additions before the average.

Messages: one float32 tensor per increment, ``[layer, weights..., bias...]``,
received from any source into a buffer the size of the largest layer (gloo
takes a shorter message into a longer buffer); an end marker is ``[-1]``.
One message, not a header and a payload: each gloo message costs a send
call and a wake-up of the receiving thread.

Structure
---------
* :func:`gossip_epoch`: one epoch of one rank.
* :class:`_Inbox`: the receiving thread's side: increments waiting to be
  added, and the end markers seen.
* :class:`_Outbox`: the increments in flight (kept alive until sent).

A receive waiting in gloo cannot be cancelled from Python. So when a rank's
epoch fails (an exception, Ctrl-C), it still sends its end markers before
its receiving thread is joined: that thread then ends once the peers' own
markers arrive, or at once with an error when a peer's connection closes
(``torchrun`` stops the other ranks when one fails).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import collections
import contextlib
import time

import torch

from skasync.neural_network._async_engines import _Epoch, epoch_stats
from skasync.utils._threads import WorkerGroup

_TAG = 0
_END = -1.0
# Sends waited for once this many are in flight: a bound on the memory held
# by increments the peers have not yet taken.
_MAX_IN_FLIGHT = 16


def _flat_layer(shared, layer):
    W, b = shared.weights[layer], shared.biases[layer]
    return W, b, W.numel()


class _Inbox:
    """Increments received from the peers, added between batches."""

    def __init__(self, shared, n_peers):
        self.shared = shared
        self.n_peers = n_peers
        self.pending = collections.deque()  # messages [layer, increment...]
        self.received = 0
        self.size = 1 + max(
            W.numel() + b.numel() for W, b in zip(shared.weights, shared.biases)
        )

    def receive(self, group):
        """The receiving thread: until every peer's end marker has arrived."""
        import torch.distributed as dist

        ends = 0
        while ends < self.n_peers:
            message = torch.empty(self.size, dtype=self.shared.weights[0].dtype)
            dist.irecv(message, None, group, _TAG).wait()
            if message[0] == _END:
                ends += 1
            else:
                self.pending.append(message)  # deque.append is thread-safe

    def add_pending(self):
        """Add the increments received so far to the replica (caller's thread)."""
        while self.pending:
            message = self.pending.popleft()
            W, b, n_w = _flat_layer(self.shared, int(message[0]))
            W.add_(message[1 : 1 + n_w].view_as(W))
            b.add_(message[1 + n_w : 1 + n_w + b.numel()])
            self.received += 1



class _Outbox:
    """Sends in flight, with the tensors they read."""

    def __init__(self, group):
        self.group = group
        self.in_flight = collections.deque()
        self.sent = 0

    def send(self, peer, message):
        import torch.distributed as dist

        self.in_flight.append((dist.isend(message, peer, self.group, _TAG), message))
        while len(self.in_flight) > _MAX_IN_FLIGHT:
            self.in_flight.popleft()[0].wait()

    def send_increment(self, peer, message):
        self.send(peer, message)
        self.sent += 1

    def send_end(self, peers):
        for peer in peers:
            self.send(peer, torch.tensor([_END]))

    def wait_all(self):
        while self.in_flight:
            self.in_flight.popleft()[0].wait()


def gossip_epoch(
    shared,
    X,
    y,
    batches,
    context,
    config,
    sample_weight,
    *,
    rank,
    world_size,
    rng,
    group=None,
):
    """One epoch of layer-wise gossip, as rank ``rank`` of the group.

    Parameters
    ----------
    shared : SharedMLP
        This rank's replica.
    X, y : torch.Tensor
        The whole training set (every rank holds the same, in the same order).
    batches : list of torch.Tensor
        Row indices of every batch of the epoch (the same on every rank).
    context : object
        The epoch context (deadline, ``stopped_by_time``).
    config : AsyncLayerwiseConfig
    sample_weight : torch.Tensor or None
    rank, world_size : int
    rng : numpy.random.Generator
        Draws the peer of each increment (this rank's own stream).
    group : ProcessGroup or None
        None is the default group.

    Returns
    -------
    stats : dict
        As :func:`~skasync.neural_network._async_engines.epoch_stats`, with
        the loss and samples summed over the group.
    """
    import torch.distributed as dist

    epoch = _Epoch(shared, X, y, batches, context, config, sample_weight)
    peers = [p for p in range(world_size) if p != rank]
    inbox = _Inbox(shared, len(peers))
    outbox = _Outbox(group)
    grad_buffers = shared.gradient_buffers()
    start = time.perf_counter()
    with WorkerGroup("gossip") as threads:
        threads.start(inbox.receive, group, name="receive")
        ended = False
        try:
            for t in range(rank, len(epoch.batches), world_size):
                if context.time_is_up():
                    context.stopped_by_time = True
                    break
                inbox.add_pending()
                config.notify("step", rank)
                config.straggle(rank)
                batch = epoch.forward(t)
                for layer, grad_W, grad_b in shared.gradients(batch, out=grad_buffers):
                    W, b, n_w = _flat_layer(shared, layer)
                    # [layer, the layer before the step], then after - before.
                    message = torch.cat([W.new_full((1,), layer), W.reshape(-1), b])
                    shared.step(layer, grad_W, grad_b, batch.versions, batch.penalty_n)
                    message[1 : 1 + n_w].neg_().add_(W.reshape(-1))
                    message[1 + n_w :].neg_().add_(b)
                    peer = peers[int(rng.integers(len(peers)))]
                    outbox.send_increment(peer, message)
                epoch.samples.append(batch.n)
            outbox.send_end(peers)
            ended = True
            threads.wait()
            outbox.wait_all()
        except BaseException:
            if not ended:
                # Let the peers' receiving threads (and so this one) end.
                with contextlib.suppress(Exception):
                    outbox.send_end(peers)
            raise
    inbox.add_pending()
    shared.log.versions = shared.book.totals()
    seconds = time.perf_counter() - start
    # One all-reduce: the replicas (averaged), the loss, the samples and
    # whether any rank ran out of time.
    params = [p for pair in zip(shared.weights, shared.biases) for p in pair]
    losses = (
        torch.stack(epoch.losses).double()
        @ torch.tensor(epoch.loss_counts, dtype=torch.float64)
        if epoch.losses
        else torch.tensor(0.0, dtype=torch.float64)
    )
    totals = torch.tensor(
        [
            float(losses),
            float(sum(epoch.loss_counts)),
            float(sum(epoch.samples)),
            float(context.stopped_by_time),
        ],
        dtype=torch.float64,
    )
    flat = torch.cat([p.reshape(-1) for p in params])
    dist.all_reduce(flat, group=group)
    dist.all_reduce(totals, group=group)
    flat.div_(world_size)
    offset = 0
    for p in params:
        p.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    context.stopped_by_time = bool(totals[3] > 0)
    # getattr: a log unpickled from before these counters existed.
    log = shared.log
    log.increments_sent = getattr(log, "increments_sent", 0) + outbox.sent
    log.increments_received = getattr(log, "increments_received", 0) + inbox.received
    return epoch_stats(
        shared.log, float(totals[0]), float(totals[1]), int(totals[2]), seconds
    )
