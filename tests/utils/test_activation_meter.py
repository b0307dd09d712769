# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause
"""The saved-tensor meter behind BlockLocalClassifier's activation memory."""

import gc
import weakref

import torch

from skasync.utils._activation_meter import ActivationMeter


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(100, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10)
    )


def test_counts_each_saved_storage_once_and_frees_it_after_backward():
    model, x = _mlp(), torch.randn(64, 100)
    meter = ActivationMeter(model.parameters())
    with meter.hooks():
        loss = model(x).square().sum()
    # Saved for backward, parameters left out: the input of the first layer
    # (64 x 100), the ReLU output, which the second layer also saves (one
    # storage, 64 x 200), and the input of square (64 x 10); float32.
    expected = 4 * (64 * 100 + 64 * 200 + 64 * 10)
    assert meter.current == meter.peak == expected
    loss.backward()
    del loss
    gc.collect()
    assert meter.current == 0 and meter.peak == expected


def test_a_graph_never_back_propagated_is_freed():
    # A fit stopped between a forward and its backward drops the graph: the
    # saved activations must go with it (keeping them with their grad_fn
    # made a cycle through autograd's C++ graph that gc cannot free).
    model, x = _mlp(), torch.randn(64, 100)
    meter = ActivationMeter(model.parameters())
    alive = []
    for _ in range(3):
        with meter.hooks():
            hidden = model[1](model[0](x))
            alive.append(weakref.ref(hidden))
            out = model[2](hidden).sum()
        del hidden, out
        gc.collect()
    assert not any(ref() is not None for ref in alive)
    assert meter.current == 0


def test_gradients_are_those_of_a_plain_backward():
    model, x = _mlp(), torch.randn(64, 100)
    with ActivationMeter(model.parameters()).hooks():
        model(x).square().sum().backward()
    metered = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for a, p in zip(metered, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=0, atol=0)
