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

At the end of an epoch each rank sends an end marker to every peer; a
pair's messages arrive in the order they were sent, so a rank that holds
the markers of all its peers has every increment sent to it. The ranks then
average their replicas (one all-reduce, the epoch's only collective besides
its statistics), so the validation score, early stopping and the fitted
model agree across the group. With two ranks the gossip brings every
increment to both replicas, so the average changes them only by the order
of float additions and every step counts once. With more ranks an
increment reaches its own replica and one peer's, so after the average a
step counts ``2 / world_size``. Summing each rank's own increments
instead (every step once) reached 30 % training accuracy in the 3-rank test
where the average reaches over 90 %: there the sending threads of 3 ranks
on 2 cores sent few messages, the replicas trained apart, and the sum of
their increments overshoots, as it would in local SGD.

Messages: one tensor per increment, ``[layer, weights..., bias...]``,
received from any source into a buffer the size of the largest layer (gloo
takes a shorter message into a longer buffer); an end marker is ``[-1]``,
or ``[-2]`` from a rank whose epoch failed. One message, not a header and a
payload: each gloo message costs a send call and a wake-up of the
receiving thread.

Failures: a receive waiting in gloo cannot be cancelled from Python, so a
rank whose epoch fails (an exception, Ctrl-C) still ends it in order: its
sending thread sends ``[-2]`` markers, the peers stop at their next batch
and end theirs, every rank joins its threads, and the statistics'
all-reduce carries a failure flag. The failed rank then raises its error and
every other rank a ``RuntimeError`` naming it, instead of hanging in a
collective. A failed send (the sending thread's own error) counts as a
failed epoch too, and the markers go to every peer past one whose send
fails. A crashed peer process is another matter: gloo tells a receive from
any source about a closed connection only at the group's timeout
(``init_process_group(timeout=...)``, 30 minutes by default), so the other
ranks wait until then, unless torchrun ends them first (it stops every
worker of a launch when one fails, by default).

The stop for ``max_time`` is agreed the same way: a rank whose deadline has
passed says so in the statistics, and when none has, the epoch's deadline
is cleared, so that no rank starts another epoch alone.

Structure
---------
* :func:`gossip_epoch`: one epoch of one rank.
* :class:`_Inbox`: the receiving thread's side: increments waiting to be
  added, the end markers seen.
* :class:`_Outbox`: the sending thread's side: each layer's increments not
  yet sent, summed.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import collections
import itertools
import threading
import time

import torch

from skasync.neural_network._async_engines import _Epoch, epoch_stats
from skasync.utils._threads import _POLL_SECONDS, WorkerGroup

_TAG = 0
_END, _FAILED = -1.0, -2.0


class _Layout:
    """Where each layer's weights and bias sit in one flat vector."""

    def __init__(self, shared):
        self.weights, self.biases = shared.weights, shared.biases
        self.offsets = [0]
        for W, b in zip(self.weights, self.biases):
            self.offsets.append(self.offsets[-1] + W.numel() + b.numel())

    def flat(self):
        """A copy of every parameter, layer by layer."""
        return torch.cat(
            [t.reshape(-1) for W, b in zip(self.weights, self.biases) for t in (W, b)]
        )

    def load(self, flat):
        """Copy ``flat`` back into the parameters."""
        for layer, (W, b) in enumerate(zip(self.weights, self.biases)):
            start, n_w = self.offsets[layer], W.numel()
            W.copy_(flat[start : start + n_w].view_as(W))
            b.copy_(flat[start + n_w : self.offsets[layer + 1]])


class _Inbox:
    """Increments received from the peers, added between batches."""

    def __init__(self, layout, n_peers):
        self.layout = layout
        self.n_peers = n_peers
        self.pending = collections.deque()  # messages [layer, increment...]
        self.received = 0
        self.peer_failed = False
        self.size = 1 + max(b - a for a, b in itertools.pairwise(layout.offsets))

    def receive(self):
        """The receiving thread: until every peer's end marker has arrived."""
        import torch.distributed as dist

        ends = 0
        while ends < self.n_peers:
            message = torch.empty(self.size, dtype=_dtype(self.layout))
            dist.irecv(message, None, tag=_TAG).wait()
            kind = float(message[0])
            if kind in (_END, _FAILED):
                ends += 1
                self.peer_failed |= kind == _FAILED
            else:
                self.pending.append(message)  # deque.append is thread-safe

    def add_pending(self):
        """Add the increments received so far to the replica (caller's thread)."""
        layout = self.layout
        while self.pending:
            message = self.pending.popleft()
            layer = int(message[0])
            W, b = layout.weights[layer], layout.biases[layer]
            n_w = W.numel()
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

    def __init__(self, n_layers, peers, rng, dtype):
        self.peers = peers
        self.rng = rng
        self.dtype = dtype
        self.sent = 0  # messages
        self._unsent = [None] * n_layers  # [layer, summed increment...]
        self._closed = False
        self._failed = False
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

    def close(self, failed=False):
        """No more increments this epoch: send what is left, then the markers.

        ``failed``: the epoch failed; the unsent increments are dropped and
        the markers tell the peers to stop.
        """
        with self._ready:
            self._closed = True
            self._failed = failed
            self._ready.notify()

    def run(self, stop_event):
        """The sending thread, until :meth:`close` or ``stop_event``.

        ``stop_event`` (the thread group's) is set when another thread of
        the epoch failed, or the group is being left without a ``close``
        (Ctrl-C at the wrong moment): the epoch has failed either way.
        """
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
                    self._failed |= stop_event.is_set()
                    if self._failed:
                        return
                    messages = [m for m in self._unsent if m is not None]
                    self._unsent = [None] * len(self._unsent)
                    if not messages and self._closed:
                        return
                for message in messages:
                    peer = self.peers[int(self.rng.integers(len(self.peers)))]
                    dist.isend(message, peer, tag=_TAG).wait()
                    self.sent += 1
        except BaseException:
            self._failed = True  # a send failed: the peers must stop too
            raise
        finally:
            self._send_markers()

    def _send_markers(self):
        """Each peer's receiving thread ends only with this rank's marker:
        send it to every peer, even past a peer whose send fails (a crashed
        process), then raise the first such error."""
        import torch.distributed as dist

        marker = torch.full((1,), _FAILED if self._failed else _END, dtype=self.dtype)
        first_error = None
        for peer in self.peers:
            try:
                dist.isend(marker, peer, tag=_TAG).wait()
            except Exception as error:  # noqa: BLE001 - raised after the loop
                first_error = first_error or error
        if first_error is not None:
            raise first_error


def _dtype(layout):
    return layout.weights[0].dtype


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
):
    """One epoch of layer-wise gossip, as rank ``rank`` of the default group.

    Parameters
    ----------
    shared : SharedMLP
        This rank's replica.
    X, y : torch.Tensor
        The whole training set (every rank holds the same, in the same order).
    batches : list of torch.Tensor
        Row indices of every batch of the epoch (the same on every rank).
    context : FitContext
        The epoch's deadline; ``stopped_by_time`` is set to the group's
        agreed stop, and the deadline cleared when the group goes on.
    config : AsyncLayerwiseConfig
    sample_weight : torch.Tensor or None
    rank, world_size : int
    rng : numpy.random.Generator
        Draws the peer of each increment (this rank's own stream).

    Returns
    -------
    stats : dict
        As :func:`~skasync.neural_network._async_engines.epoch_stats`, with
        the loss and samples summed over the group.

    Raises
    ------
    RuntimeError
        On every rank but the failed one, when another rank's epoch failed
        (the failed rank raises its own error).
    """
    layout = _Layout(shared)
    peers = [p for p in range(world_size) if p != rank]
    inbox = _Inbox(layout, len(peers))
    outbox = _Outbox(shared.n_layers, peers, rng, _dtype(layout))
    epoch = None
    failure = None
    start = time.perf_counter()
    try:
        with WorkerGroup("gossip") as threads:
            # The sender first: once it runs, every way out of this block
            # sends this rank's markers (close, or the group's stop_event
            # when the block is left without one), which end the peers'
            # receiving threads.
            threads.start(outbox.run, threads.stop_event, name="send")
            threads.start(inbox.receive, name="receive")
            try:
                epoch = _Epoch(shared, X, y, batches, context, config, sample_weight)
                grad_buffers = shared.gradient_buffers()
                _train(epoch, shared, inbox, outbox, threads, grad_buffers, rank)
            except BaseException as error:  # noqa: BLE001 - re-raised below
                failure = error
            finally:
                outbox.close(failed=failure is not None)
            threads.wait()
    except BaseException as error:  # noqa: BLE001 - a thread's, or Ctrl-C
        failure = failure or error
    inbox.add_pending()
    shared.log.versions = shared.book.totals()
    seconds = time.perf_counter() - start
    try:
        totals = _merge(epoch, context, layout, failure is not None)
    except Exception:
        if failure is not None:
            raise failure from None  # the cause, not the collective it broke
        raise
    if failure is not None:
        raise failure
    if totals[4] > 0:
        raise RuntimeError(
            f"mode='pd-asgd' over torch.distributed: the epoch failed on "
            f"{int(totals[4])} other rank(s); their errors are in their output."
        )
    if totals[3] > 0:
        context.stopped_by_time = True
    else:
        context.deadline = None  # the group goes on together
    log = shared.log
    # getattr: a log unpickled from before these counters existed.
    log.increments_sent = getattr(log, "increments_sent", 0) + outbox.sent
    log.increments_received = getattr(log, "increments_received", 0) + inbox.received
    return epoch_stats(log, float(totals[0]), float(totals[1]), int(totals[2]), seconds)


def _train(epoch, shared, inbox, outbox, threads, grad_buffers, rank):
    """This rank's batches: step each layer, hand its increment to the outbox."""
    config, context = epoch.config, epoch.context
    world_size = len(outbox.peers) + 1
    for t in range(rank, len(epoch.batches), world_size):
        if context.time_is_up():
            context.stopped_by_time = True
            return
        if inbox.peer_failed:
            return  # the merge's failure flag raises on every rank
        threads.raise_if_failed()
        inbox.add_pending()
        config.notify("step", rank)
        config.straggle(rank)
        batch = epoch.forward(t)
        for layer, grad_W, grad_b in shared.gradients(batch, out=grad_buffers):
            W, b = shared.weights[layer], shared.biases[layer]
            n_w = W.numel()
            # [layer, the layer before the step], then after - before.
            message = torch.cat([W.new_full((1,), layer), W.reshape(-1), b])
            shared.step(layer, grad_W, grad_b, batch.versions, batch.penalty_n)
            message[1 : 1 + n_w].neg_().add_(W.reshape(-1))
            message[1 + n_w :].neg_().add_(b)
            outbox.add(layer, message)
        epoch.samples.append(batch.n)


def _merge(epoch, context, layout, failed):
    """Average the replicas and sum the epoch's statistics over the group.

    ``epoch`` is None when the rank failed before its epoch began. Returns
    the summed ``[loss, loss mass, samples, ranks out of time, ranks
    failed]``. The replicas are averaged only when no rank failed (a failed
    epoch raises on every rank, and the replicas may then differ).
    """
    import torch.distributed as dist

    losses = (
        float(
            torch.stack(epoch.losses).double()
            @ torch.tensor(epoch.loss_counts, dtype=torch.float64)
        )
        if epoch is not None and epoch.losses
        else 0.0
    )
    stopped = context.stopped_by_time or context.time_is_up()
    totals = torch.tensor(
        [
            losses,
            float(sum(epoch.loss_counts)) if epoch is not None else 0.0,
            float(sum(epoch.samples)) if epoch is not None else 0.0,
            float(stopped),
            float(failed),
        ],
        dtype=torch.float64,
    )
    dist.all_reduce(totals)
    if totals[4] == 0:
        replicas = layout.flat()
        dist.all_reduce(replicas)
        layout.load(replicas.div_(dist.get_world_size()))
    return totals
