"""Activation memory of a training step, measured on any device.

Structure
---------
* :class:`ActivationMeter`: peak bytes of the tensors autograd saves for the
  backward pass, counted with :func:`torch.autograd.graph.saved_tensors_hooks`
  (parameters excluded).  It works on CPU, where :mod:`tracemalloc` does not
  see torch's allocations, and is what per-block backward passes save
  compared with one joint backward pass.
* ``_Saved``: the packed form of one saved tensor; releasing it releases its
  storage in the meter.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import threading

import torch


class _Saved:
    __slots__ = ("key", "meter", "tensor")

    def __del__(self):
        self.meter._release(self.key)


class ActivationMeter:
    """Peak bytes of tensors saved for backward (parameters excluded).

    Installed with :meth:`hooks`; counts each storage once and releases it
    when autograd frees the graph.  Several threads may pack and release at
    once (one thread per block).

    Parameters
    ----------
    parameters : iterable of torch.Tensor
        Tensors not to count (the model's parameters, which autograd also
        saves).

    Attributes
    ----------
    current : int
        Bytes saved now.
    peak : int
        Most bytes saved at once so far.
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
        # Detached: a saved output kept with its grad_fn forms a cycle
        # through autograd's C++ graph that Python's collector cannot free,
        # so a graph never back-propagated (a fit stopped between forward
        # and backward) stayed in memory. The values, and so the gradients,
        # are the same.
        saved.tensor, saved.key, saved.meter = tensor.detach(), key, self
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
        """Context manager that counts what autograd saves inside it."""
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)
