"""Small torch helpers shared by the torch classifiers.

Structure
---------
* Layers: :data:`ACTIVATIONS`, :func:`make_linear` (seeded Glorot init) and
  :func:`check_layer_sizes` (``hidden_layer_sizes``-like parameters).
* Data and devices: :func:`resolve_device` (the ``device`` parameter) and
  :func:`to_tensor` (one float32 conversion).
* Seeds: :func:`seed_from` (an int seed from a ``RandomState``) and
  :func:`draw_seed` (an int seed from a :class:`torch.Generator`).
* Optimizers: :func:`make_optimizer` (``solver`` -> torch optimizer, fused
  where torch has a kernel), :func:`optimizer_state_copy` and
  :func:`load_optimizer_state` (device-free copies for snapshots and
  pickles).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import copy
import math

import numpy as np
import torch

from skasync.utils._validation import check_int

# Parsed once: "2.13.0+cpu" -> (2, 13).
_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split(".")[:2])

ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "logistic": torch.nn.Sigmoid,
    "identity": torch.nn.Identity,
}


# ----------------------------------------------------------------- layers
def make_linear(n_in, n_out, generator, activation="relu"):
    """A :class:`torch.nn.Linear` initialised from ``generator``.

    Uses Glorot-uniform bounds as :class:`~sklearn.neural_network.MLPClassifier`
    does (factor 2 for the logistic activation), drawn from the fit's own
    generator so the global torch RNG stays untouched.
    """
    # skip_init: nn.Linear's own initialisation would draw from torch's
    # global RNG, which a fit must leave alone.
    layer = torch.nn.utils.skip_init(torch.nn.Linear, n_in, n_out)
    factor = 2.0 if activation == "logistic" else 6.0
    bound = math.sqrt(factor / (n_in + n_out))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def check_layer_sizes(sizes, name):
    """Layer widths as a list of ints, or a ``ValueError`` naming ``name``.

    One home for ``hidden_layer_sizes``-like parameters: an int or a
    sequence of positive integers (numpy integers included); floats are
    rejected rather than truncated. An empty sequence gives no layers.

    Parameters
    ----------
    sizes : int or array-like of int
        The parameter value as the user set it.
    name : str
        Parameter name used in the error message.

    Returns
    -------
    sizes : list of int
    """
    values = [sizes] if np.isscalar(sizes) else list(sizes)
    try:
        return [check_int(size, name, 1) for size in values]
    except ValueError:
        # Name the whole parameter, not the one bad entry.
        raise ValueError(f"{name} must contain positive ints, got {sizes!r}.") from None


# ---------------------------------------------------------- data, devices
def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`.

    Raises
    ------
    ValueError
        If ``device`` is not a device torch knows, is ``"meta"`` (which
        holds no data to train), or is ``"cuda"`` without CUDA.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(
            f"device={device!r} is not a torch device ({error}); use 'auto', "
            "'cpu', 'cuda' or 'cuda:<index>'."
        ) from None
    if resolved.type == "meta":
        raise ValueError(
            "device='meta' holds no data, so nothing can train on it; use "
            "'auto', 'cpu' or 'cuda'."
        )
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    return resolved


def to_tensor(array, device):
    """float32 tensor on ``device``; copies read-only / non-contiguous input."""
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


# ------------------------------------------------------------------ seeds
def seed_from(random_state):
    """Draw an int seed from a ``check_random_state`` RandomState."""
    return int(random_state.randint(np.iinfo(np.int32).max))


def draw_seed(generator):
    """Draw an int seed in ``[0, 2**31 - 1)`` from a :class:`torch.Generator`."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


# ------------------------------------------------------------- optimizers
def make_optimizer(
    parameters,
    solver,
    learning_rate,
    momentum=0.9,
    nesterov=False,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
):
    """The torch optimizer for ``solver`` in {"sgd", "adam"}.

    L2 regularisation (``alpha``) is added to the loss by the engines, as in
    MLPClassifier, so no weight decay is set here.  The fused kernel is used
    where torch has one for the parameters' device: small blocks spend more
    time in the per-parameter loop of the plain implementation (about ten
    dispatched ops per tensor) than in the arithmetic.
    """
    parameters = list(parameters)
    if solver == "sgd":
        optimizer, kwargs = (
            torch.optim.SGD,
            {
                "momentum": momentum,
                "nesterov": bool(nesterov and momentum > 0),
            },
        )
    elif solver == "adam":
        optimizer, kwargs = (
            torch.optim.Adam,
            {
                "betas": (beta_1, beta_2),
                "eps": epsilon,
            },
        )
    else:
        raise ValueError(f"solver={solver!r} is not one of 'sgd', 'adam'.")
    return optimizer(
        parameters, lr=learning_rate, fused=fused_supported(parameters), **kwargs
    )


def fused_supported(parameters):
    """Whether torch's fused optimizer kernels accept ``parameters``.

    torch < 2.4 has no fused CPU kernels, and none take integer tensors.
    Returns None (torch's default choice) when the question does not arise.
    """
    if not parameters or not all(p.is_floating_point() for p in parameters):
        return None
    device_type = parameters[0].device.type
    if device_type == "cpu":
        return _TORCH_VERSION >= (2, 4)
    return device_type == "cuda"


def optimizer_state_copy(optimizers):
    """Device-free copies of the state of ``optimizers`` (None entries kept).

    The copies hold CPU tensors and no reference to the live parameters, so
    they serve both as early-stopping snapshots and in pickles.

    Parameters
    ----------
    optimizers : list of torch.optim.Optimizer or None

    Returns
    -------
    states : list of dict or None
    """
    return [None if opt is None else _cpu_state(opt.state_dict()) for opt in optimizers]


def load_optimizer_state(optimizers, states):
    """Load the copies of :func:`optimizer_state_copy` into ``optimizers``.

    torch's ``load_state_dict`` keeps the tensors it is given when they are
    on the right device already; each load gets its own copy, so the
    snapshot stays as it was when training goes on.
    """
    for optimizer, state in zip(optimizers, states):
        if optimizer is not None and state is not None:
            optimizer.load_state_dict(copy.deepcopy(state))


def _cpu_state(state_dict):
    """A deep copy of an optimizer's ``state_dict`` with CPU tensors."""
    return {
        "state": {
            param: {
                key: (
                    value.detach().to("cpu", copy=True)
                    if isinstance(value, torch.Tensor)
                    else copy.deepcopy(value)
                )
                for key, value in entry.items()
            }
            for param, entry in state_dict["state"].items()
        },
        "param_groups": copy.deepcopy(state_dict["param_groups"]),
    }
