# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""The sending side of the LayUp gossip, without a group: ``torch.distributed
.isend`` is replaced by a recorder, so each way an epoch can end is checked
for the markers the peers' receiving threads wait for."""

import threading

import numpy as np
import pytest
import torch
import torch.distributed as dist

from skasync.neural_network._gossip import _END, _FAILED, _Outbox


class _Sent:
    def wait(self):
        return True


class _Wire:
    """Records ``(peer, tensor)`` per isend; can fail chosen sends."""

    def __init__(self, fail=lambda peer, tensor: False):
        self.sent = []
        self.fail = fail

    def isend(self, tensor, dst, tag=0):
        if self.fail(dst, tensor):
            raise ConnectionError(f"injected: send to rank {dst}")
        self.sent.append((dst, tensor.clone()))
        return _Sent()

    def markers(self):
        return {peer: float(t[0]) for peer, t in self.sent if t.numel() == 1}


def _run(outbox, stop_event):
    """The sending thread; its exception (if any) is returned."""
    error = []

    def target():
        try:
            outbox.run(stop_event)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            error.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, error


def _outbox(peers=(1, 2)):
    return _Outbox(2, list(peers), np.random.default_rng(0), torch.float32)


def _increment(layer, value):
    return torch.tensor([float(layer), value, value])


def test_close_sends_the_increments_then_an_end_marker_to_every_peer(monkeypatch):
    wire = _Wire()
    monkeypatch.setattr(dist, "isend", wire.isend)
    outbox = _outbox()
    outbox.add(0, _increment(0, 1.0))
    outbox.add(1, _increment(1, 2.0))
    thread, error = _run(outbox, threading.Event())
    outbox.close()
    thread.join(10)
    assert not thread.is_alive() and error == []
    increments = sorted(float(t[1]) for _, t in wire.sent if t.numel() > 1)
    # Summed per layer while unsent, or sent one by one: nothing lost.
    assert sum(increments) == 3.0
    assert wire.markers() == {1: _END, 2: _END}
    assert [t.numel() for _, t in wire.sent][-2:] == [1, 1]  # markers last


def test_a_failed_send_tells_every_peer_the_epoch_failed(monkeypatch):
    """The sending thread's own error: FAILED markers (the peers stop at
    their next batch) to every peer, and the error is raised."""
    wire = _Wire(fail=lambda peer, t: t.numel() > 1)
    monkeypatch.setattr(dist, "isend", wire.isend)
    outbox = _outbox()
    outbox.add(0, _increment(0, 1.0))
    thread, error = _run(outbox, threading.Event())
    thread.join(10)
    assert not thread.is_alive()
    assert len(error) == 1 and "injected" in str(error[0])
    assert wire.markers() == {1: _FAILED, 2: _FAILED}


def test_markers_reach_the_peers_past_one_whose_send_fails(monkeypatch):
    """A crashed peer (its send raises) does not cost the others their
    marker; the error is raised after the loop."""
    wire = _Wire(fail=lambda peer, t: peer == 1 and t.numel() == 1)
    monkeypatch.setattr(dist, "isend", wire.isend)
    outbox = _outbox(peers=(1, 2, 3))
    thread, error = _run(outbox, threading.Event())
    outbox.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(error) == 1 and "rank 1" in str(error[0])
    assert wire.markers() == {2: _END, 3: _END}


@pytest.mark.parametrize("pending", [False, True])
def test_the_group_stopping_without_close_fails_the_epoch(monkeypatch, pending):
    """Left without close (Ctrl-C before it, or another thread's error sets
    the group's stop_event): the thread ends, unsent increments are dropped
    and every peer gets a FAILED marker, instead of waiting forever."""
    wire = _Wire()
    monkeypatch.setattr(dist, "isend", wire.isend)
    outbox = _outbox()
    stop = threading.Event()
    stop.set()
    if pending:
        outbox.add(0, _increment(0, 1.0))
    thread, error = _run(outbox, stop)
    thread.join(10)
    assert not thread.is_alive() and error == []
    assert [t.numel() for _, t in wire.sent] == [1, 1]
    assert wire.markers() == {1: _FAILED, 2: _FAILED}
