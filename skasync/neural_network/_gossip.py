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

Messages: a header ``[layer, kind]`` (int64, tag 0, received from any
source), then for an increment the layer's weights and bias as one flat
float32 tensor (tag 1, received from the header's source).

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

_HEADER_TAG, _PAYLOAD_TAG = 0, 1
_INCREMENT, _END = 0, 1
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
        self.pending = collections.deque()  # (layer, flat increment)
        self.received = 0

    def receive(self, group):
        """The receiving thread: until every peer's end marker has arrived."""
        import torch.distributed as dist

        header = torch.empty(2, dtype=torch.int64)
        ends = 0
        while ends < self.n_peers:
            work = dist.irecv(header, None, group, _HEADER_TAG)
            work.wait()
            source = work._source_rank()
            layer, kind = (int(v) for v in header)
            if kind == _END:
                ends += 1
                continue
            W, b, n_w = _flat_layer(self.shared, layer)
            flat = torch.empty(n_w + b.numel(), dtype=W.dtype)
            dist.irecv(flat, source, group, _PAYLOAD_TAG).wait()
            self.pending.append((layer, flat))  # deque.append is thread-safe

    def add_pending(self):
        """Add the increments received so far to the replica (caller's thread)."""
        while self.pending:
            layer, flat = self.pending.popleft()
            W, b, n_w = _flat_layer(self.shared, layer)
            W.add_(flat[:n_w].view_as(W))
            b.add_(flat[n_w:])
            self.received += 1



class _Outbox:
    """Sends in flight, with the tensors they read."""

    def __init__(self, group):
        self.group = group
        self.in_flight = collections.deque()
        self.sent = 0

    def send(self, peer, layer, kind, payload=None):
        import torch.distributed as dist

        header = torch.tensor([layer, kind], dtype=torch.int64)
        works = [dist.isend(header, peer, self.group, _HEADER_TAG)]
        if payload is not None:
            works.append(dist.isend(payload, peer, self.group, _PAYLOAD_TAG))
            self.sent += 1
        self.in_flight.append((works, header, payload))
        while len(self.in_flight) > _MAX_IN_FLIGHT:
            self._wait_oldest()

    def send_end(self, peers):
        for peer in peers:
            self.send(peer, -1, _END)

    def wait_all(self):
        while self.in_flight:
            self._wait_oldest()

    def _wait_oldest(self):
        works, _, _ = self.in_flight.popleft()
        for work in works:
            work.wait()


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
                    increment = torch.cat([W.reshape(-1), b])  # the layer before
                    shared.step(layer, grad_W, grad_b, batch.versions, batch.penalty_n)
                    increment[:n_w].neg_().add_(W.reshape(-1))
                    increment[n_w:].neg_().add_(b)
                    peer = peers[int(rng.integers(len(peers)))]
                    outbox.send(peer, layer, _INCREMENT, increment)
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
