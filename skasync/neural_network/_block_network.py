"""The network of :class:`~skasync.BlockLocalClassifier`, cut into blocks.

Structure
---------
* :func:`layer_units`: the layer units to cut (the children of a user
  module, deep-copied, or a built-in MLP, one unit per Linear layer).
* :func:`block_bounds`: where the blocks start (``split_points``, or
  ``n_blocks`` groups with the remainder on the last blocks).
* :func:`input_shape_for`: the ``input_shape`` parameter, checked against
  the data.
* :func:`build_blocks`: the blocks and their output shapes (from a dry run).
* :class:`_AuxHead` and :func:`make_aux_heads`: the auxiliary read-outs of
  the hidden blocks.
* :func:`feedback_width`: the width of a block's feedback target.
* :func:`min_training_rows`: the fewest rows a training batch may have.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import copy
import itertools
import warnings

import numpy as np
import torch

from skasync.neural_network._torch_utils import (
    ACTIVATIONS,
    check_layer_sizes,
    make_linear,
)


def layer_units(
    module, hidden_layer_sizes, activation, batch_norm, n_features, n_classes, generator
):
    """The list of layer units to split into blocks.

    Parameters
    ----------
    module : torch.nn.Sequential, nn.ModuleList, list of nn.Module or None
        A user network (its children are the units, deep-copied: the
        parameter is never mutated and refits start from the user's
        initialisation); None builds an MLP from the next three parameters.
    hidden_layer_sizes, activation, batch_norm
        The built-in MLP: one unit (Linear, optional BatchNorm1d,
        activation) per hidden layer, then the output Linear layer.
    n_features, n_classes : int
    generator : torch.Generator
        Seeds the MLP's initialisation.

    Returns
    -------
    units : list of torch.nn.Module
    """
    if module is not None:
        if isinstance(module, (list, tuple)):
            units = list(module)
        elif isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)):
            units = list(module.children())
        else:
            raise ValueError(
                "module must be a torch.nn.Sequential, an nn.ModuleList or a "
                f"list of modules whose children are the layers to split; got "
                f"{type(module).__name__}."
            )
        if not units or not all(isinstance(u, torch.nn.Module) for u in units):
            raise ValueError("module must contain at least one torch.nn.Module layer.")
        return copy.deepcopy(units)
    sizes = check_layer_sizes(hidden_layer_sizes, "hidden_layer_sizes")
    units = []
    n_in = n_features
    act = ACTIVATIONS[activation]
    for width in sizes:
        layers = [make_linear(n_in, width, generator, activation)]
        if batch_norm:
            layers.append(torch.nn.BatchNorm1d(width))
        layers.append(act())
        units.append(torch.nn.Sequential(*layers))
        n_in = width
    units.append(
        torch.nn.Sequential(
            make_linear(n_in, n_classes, generator, activation="identity")
        )
    )
    return units


def block_bounds(n_units, n_blocks, split_points, *, warn, stacklevel):
    """Unit indices where the blocks start, followed by ``n_units``.

    Parameters
    ----------
    n_units : int
        Layer units of the network.
    n_blocks : int
        The ``n_blocks`` parameter (used when ``split_points`` is None).
    split_points : array-like of int or None
        The ``split_points`` parameter.
    warn : bool
        Warn when the network has fewer units than ``n_blocks``.
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Returns
    -------
    bounds : list of int
        Block ``k`` holds units ``bounds[k]:bounds[k + 1]``.
    """
    if split_points is not None:
        points = np.asarray(split_points)
        if points.ndim != 1 or not np.issubdtype(points.dtype, np.integer):
            raise ValueError(
                f"split_points must be a 1-D list of ints, got {split_points!r}."
            )
        points = [int(p) for p in points]
        if any(p < 1 or p >= n_units for p in points):
            raise ValueError(
                f"split_points={split_points!r} out of range: each must be "
                f"between 1 and {n_units - 1} (the network has {n_units} "
                "layer units)."
            )
        if any(b <= a for a, b in itertools.pairwise(points)):
            raise ValueError(
                f"split_points={split_points!r} must be strictly increasing."
            )
        return [0] + points + [n_units]
    requested = n_blocks
    if n_blocks > n_units:
        # Not bad input: a network of few layers holds fewer blocks.
        n_blocks = n_units
        if warn:
            warnings.warn(
                f"n_blocks={requested} is more than the {n_units} layer "
                "units of the network (hidden layers + output layer, or the "
                f"children of module): it is cut into {n_units} blocks "
                "(n_blocks_). Lower n_blocks or add layers to silence this "
                "warning.",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
    base, extra = divmod(n_units, n_blocks)
    # The remainder goes to the last blocks: early blocks stay small and the
    # output block gets some capacity.
    sizes = [base + (1 if k >= n_blocks - extra else 0) for k in range(n_blocks)]
    return [0] + list(np.cumsum(sizes))


def input_shape_for(input_shape, n_features):
    """The shape of one sample for the first block, or None for flat rows."""
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in np.atleast_1d(np.asarray(input_shape)))
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"input_shape={input_shape!r} holds {int(np.prod(shape))} values "
            f"but X has {n_features} features."
        )
    return shape


def build_blocks(units, bounds, sample_shape, n_classes, input_shape):
    """The blocks, and each block's output shape per sample.

    The shapes come from a dry run in eval mode (batch norm untouched); a
    network that cannot run on ``sample_shape`` or does not end in one
    output per class is a ``ValueError`` that names ``module`` /
    ``input_shape`` (the parameter ``input_shape`` is only quoted).

    Returns
    -------
    blocks : torch.nn.ModuleList
    out_shapes : list of tuple
    """
    blocks = torch.nn.ModuleList(
        torch.nn.Sequential(*units[a:b]) for a, b in itertools.pairwise(bounds)
    )
    dummy = torch.zeros((2,) + tuple(sample_shape))
    out_shapes = []
    blocks.eval()
    try:
        with torch.no_grad():
            h = dummy
            for block in blocks:
                h = block(h)
                out_shapes.append(tuple(h.shape[1:]))
    except Exception as error:
        raise ValueError(
            f"module could not run on inputs of shape {tuple(dummy.shape[1:])} "
            f"(input_shape={input_shape!r}): {error}"
        ) from error
    if out_shapes[-1] != (n_classes,):
        raise ValueError(
            f"module's output has shape {out_shapes[-1]} per sample but the data "
            f"have {n_classes} classes; the last layer of module must output "
            f"{n_classes} values."
        )
    return blocks, out_shapes


class _AuxHead(torch.nn.Module):
    """Auxiliary read-out of a block output: (pool) → flatten → MLP.

    ``hidden`` empty gives the authors' linear read-out; hidden layers make
    the head an auxiliary network as in DGL (Belilovsky et al., 2020).
    """

    def __init__(self, in_shape, n_classes, generator, hidden=()):
        super().__init__()
        if len(in_shape) == 3:
            # Half resolution at most, as in the authors' heads, but tiny maps
            # (8x8 digits) keep at least 2x2.
            side = max(1, min(2, in_shape[1]))
            self.pool = torch.nn.AdaptiveAvgPool2d(side)
            n_in = in_shape[0] * side * side
        else:
            self.pool = None
            n_in = int(np.prod(in_shape))
        layers = []
        for width in hidden:
            layers += [make_linear(n_in, width, generator), torch.nn.ReLU()]
            n_in = width
        layers.append(make_linear(n_in, n_classes, generator, activation="identity"))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, a):
        if self.pool is not None:
            a = self.pool(a)
        return self.net(a.flatten(1))


def make_aux_heads(in_shapes, n_classes, generator, hidden):
    """One :class:`_AuxHead` per shape in ``in_shapes`` (the hidden blocks)."""
    return torch.nn.ModuleList(
        _AuxHead(shape, n_classes, generator, hidden) for shape in in_shapes
    )


def feedback_width(shape):
    """Width of the feedback target of a block output of ``shape`` per sample.

    Channels for images (the local losses max-pool over space), all values
    otherwise.
    """
    return shape[0] if len(shape) == 3 else int(np.prod(shape))


def min_training_rows(blocks):
    """Fewest rows a training (micro-)batch may have: 2 with batch norm.

    Batch norm in training mode needs more than one value per channel.
    """
    for block in blocks:
        for layer in block.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                return 2
    return 1
