"""Decentralised PD-ASGD across ``torch.distributed`` ranks (LayUp).

Under ``torchrun``, ``mode="pd-asgd"`` trains one replica per rank, after
the layer-wise gossip of LayUp (arXiv 2410.05985 v4): each rank steps its
own share of the batches (batch ``t`` on rank ``t mod world_size``) and, the
moment it has stepped a layer, hands that layer's increment (weights and
bias after the step minus before) to a sending thread, which sends it to
one peer drawn at random with ``isend``; no barrier. While a message is on
the wire, the layer's next increments are summed and leave together as its
next message, so the training loop never waits for the network. A
receiving thread takes the peers' increments as they come; the rank adds
them to its replica before its next batch (the paper applies them on
arrival; between two batches keeps the increment a rank sends free of what
it received meanwhile).

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
* :class:`_Outbox`: the sending thread's side: each layer's increments not
  yet sent, summed.

A receive waiting in gloo cannot be cancelled from Python. So when a rank's
epoch fails (an exception, Ctrl-C), its sending thread still sends the end
markers before the threads are joined: the receiving thread then ends once
the peers' own markers arrive, or at once with an error when a peer's
connection closes (``torchrun`` stops the other ranks when one fails).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import collections
import threading
import time

import torch

from skasync.neural_network._async_engines import _Epoch, epoch_stats
from skasync.utils._threads import WorkerGroup

_TAG = 0
_END = -1.0
_POLL_SECONDS = 0.05


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
    """Increments waiting for the sending thread, summed per layer.

    The training loop only adds a step's increment to its layer's unsent
    sum; the sending thread takes every unsent sum, sends each to a random
    peer and waits for it to leave. Steps made while a message is on the
    wire therefore travel together in the layer's next message: the loop
    never waits for the network, and the messages follow what the link can
    carry (every step on a fast link, a sum of several on a slow one).
    """

    def __init__(self, n_layers, peers, rng, group):
        self.peers = peers
        self.rng = rng
        self.group = group
        self.sent = 0  # messages
        self._unsent = [None] * n_layers  # [layer, summed increment...]
        self._closed = False
        self._ready = threading.Condition()

    def add(self, layer, message):
        """Add one step's increment (training thread)."""
        with self._ready:
            unsent = self._unsent[layer]
            if unsent is None:
                self._unsent[layer] = message
            else:
                unsent[1:].add_(message[1:])
            self._ready.notify()

    def close(self):
        """No more increments this epoch: send what is left, then the ends."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def run(self, stop_event):
        """The sending thread."""
        import torch.distributed as dist

        try:
            while True:
                with self._ready:
                    while not (
                        self._closed
                        or stop_event.is_set()
                        or any(m is not None for m in self._unsent)
                    ):
                        self._ready.wait(_POLL_SECONDS)
                    if stop_event.is_set():
                        return  # the epoch failed: only the end markers go
                    messages = [m for m in self._unsent if m is not None]
                    self._unsent = [None] * len(self._unsent)
                    if not messages and self._closed:
                        return
                for message in messages:
                    peer = self.peers[int(self.rng.integers(len(self.peers)))]
                    dist.isend(message, peer, self.group, _TAG).wait()
                    self.sent += 1
        finally:
            # Always, also when the epoch failed: each peer's receiving
            # thread ends only with this rank's marker.
            for peer in self.peers:
                dist.isend(torch.tensor([_END]), peer, self.group, _TAG).wait()


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
    outbox = _Outbox(shared.n_layers, peers, rng, group)
    grad_buffers = shared.gradient_buffers()
    start = time.perf_counter()
    with WorkerGroup("gossip") as threads:
        threads.start(inbox.receive, group, name="receive")
        threads.start(outbox.run, threads.stop_event, name="send")
        for t in range(rank, len(epoch.batches), world_size):
            if context.time_is_up():
                context.stopped_by_time = True
                break
            threads.raise_if_failed()
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
                outbox.add(layer, message)
            epoch.samples.append(batch.n)
        outbox.close()
        threads.wait()
    inbox.add_pending()
    shared.log.versions = shared.book.totals()
    seconds = time.perf_counter() - start
    # The epoch's only collectives: the replicas (averaged), then the loss,
    # the samples and whether any rank ran out of time.
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
