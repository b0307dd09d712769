"""Asynchronous MLP classifier with decoupled backpropagation and layer-wise
updates (PD-ASGD, arXiv:2410.05985)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import functools
import itertools
import math
import sys
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from skasync.neural_network._async_engines import (
    DECOUPLED_MODES,
    MODES,
    THREADED_MODES,
    AsyncLayerwiseConfig,
    epoch_stats,
    run_epoch,
)
from skasync.neural_network._backends import (
    BACKENDS,
    check_group_for_cpu_training,
    choose_backend,
    choose_backward_weights,
    distributed_world,
    mean_layer_op_macs,
    ranks_training_alone,
)
from skasync.neural_network._base import BaseTorchClassifier
from skasync.neural_network._fit_records import EpochResult
from skasync.neural_network._gossip import gossip_epoch
from skasync.neural_network._modes import (
    ASYNC_MODES,
    modes_across_ranks,
    modes_where,
)
from skasync.neural_network._process_engines import (
    PROCESS_SPARE_SLOTS,
    ProcessTrainer,
    sync_epoch,
)
from skasync.neural_network._shared_mlp import SharedMLP, TrainingLog
from skasync.neural_network._torch_utils import (
    ACTIVATIONS,
    check_layer_sizes,
    make_linear,
)
from skasync.utils._processes import pool_is_warm, processes_supported
from skasync.utils._threads import available_cpus
from skasync.utils._validation import fit_count_to_data

# Two fits with the same seed differ: thread interleaving changes the updates.
_LOCK_FREE_MODES = modes_where(ASYNC_MODES, deterministic=False)
# The modes that train one model over an initialised torch.distributed group.
_ACROSS_RANKS = modes_across_ranks(ASYNC_MODES)

# Below about this many multiply-adds per layer op, a thread costs more than
# the op it runs: every torch call needs the GIL (an estimate, see
# docs/benchmarks.rst; the user guide's "When threads pay off").
_SMALL_OP_MACS = 5e5
# What n_forward_workers=None / n_backward_workers=None stand for: backward
# costs about twice the forward, so two backward threads keep up with one.
_DEFAULT_FORWARD = 1
_DEFAULT_BACKWARD = 2


class _OptimizerState(torch.nn.Module):
    """Per-layer optimizer buffers as registered buffers.

    Being a module, they travel with the weights between devices, into
    early-stopping snapshots and into CPU-only pickles.
    """

    def __init__(self, linears):
        super().__init__()
        for layer, linear in enumerate(linears):
            for name, tensor in (("W", linear.weight), ("b", linear.bias)):
                self.register_buffer(f"{name}{layer}_m", torch.zeros_like(tensor.data))
                self.register_buffer(f"{name}{layer}_v", torch.zeros_like(tensor.data))

    def layer_buffers(self, n_layers):
        return [
            {
                key: getattr(self, f"{key[0]}{layer}_{key[2]}")
                for key in ("W_m", "b_m", "W_v", "b_v")
            }
            for layer in range(n_layers)
        ]


class AsyncLayerwiseMLPClassifier(BaseTorchClassifier):
    """Multi-layer perceptron trained with asynchronous layer-wise SGD.

    The default ``mode="pd-asgd"`` implements *Partial Decoupled ASGD*
    (Teguemne Fokam et al., arXiv:2410.05985): forward threads compute
    losses and hand them through a bounded queue to backward threads, which
    update each layer of the shared, lock-free model the moment its gradient
    is ready, output layer first. The other modes train the same network
    with the same thread budget for comparison: ``"d-asgd"`` (decoupled,
    whole-model update), ``"hogwild"``, ``"sync"`` (synchronous data
    parallel) and ``"serial"`` (deterministic).

    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(100,)
        Width of each hidden layer; an int is one hidden layer.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Hidden-layer activation.
    mode : {"pd-asgd", "d-asgd", "hogwild", "sync", "serial"}, default="pd-asgd"
        Training scheme (see the class description). Only ``"serial"`` and
        ``"sync"`` are deterministic for a fixed ``random_state``.
    backend : {"auto", "threads", "processes"}, default="auto"
        What the workers of a parallel mode are. ``"threads"``: threads of
        this process; they share the GIL, so on the CPU they train slower
        than one core with small layer ops and use every core only with
        large ones, but they start at once and are the right tool on a
        GPU. ``"processes"``: worker processes of a pool that is started once
        per Python process and reused by later fits; the model, the
        optimizer state and the data live in shared memory, updated in place
        lock-free, so the workers use every core. CPU only. ``"auto"`` picks
        processes when they are expected to save more time than their
        start-up costs, and keeps ``mode="sync"`` on threads on one machine
        (the rule is in the user guide, "Threads or processes"); the choice
        is ``backend_``. ``"serial"`` always runs in
        the calling thread. Under ``torchrun`` (an initialised
        ``torch.distributed`` group of several ranks), ``backend="auto"``
        makes ``mode="sync"`` (gradients all-reduced every step, as DDP)
        and ``mode="pd-asgd"`` (each rank steps its share of the batches and
        sends every layer's increment to a random peer, as LayUp; the ranks
        average their replicas at the end of each epoch) train one model
        over the group, on the CPU over gloo; ``straggler_workers`` then
        names ranks. The other modes, and a named ``backend``, ignore the
        group: each rank trains its own model, and the fit warns that it
        does (as it does under ``torchrun`` when no group was initialised).
    solver : {"sgd", "adam"}, default="sgd"
        Per-layer optimizer (torch's SGD or Adam formula, applied layer by
        layer).
    alpha : float, default=1e-4
        L2 penalty, scaled as in MLPClassifier (``0.5 * alpha * ||W||^2 /
        batch size``); on weights only, not on intercepts.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(200, n_samples)``.
    learning_rate_init : float, default=0.01
        Constant step size. Ours, not MLPClassifier's 0.001: the default
        solver here is SGD with momentum, for which 0.001 is very slow.
    momentum : float, default=0.9
        SGD momentum (``solver="sgd"``), kept per layer.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (``solver="sgd"``, ``momentum > 0``).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam parameters (``solver="adam"``).
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float, default=1e-4
        Minimum improvement of the loss (or validation score with
        ``early_stopping``) that resets the ``n_iter_no_change`` counter.
    shuffle : bool, default=True
        Shuffle the samples each epoch (seeded by ``random_state``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), score it
        after every epoch, stop after ``n_iter_no_change`` epochs without
        improvement and keep the best weights. ``fit`` only: ``partial_fit``
        trains on every row it is given.
    validation_fraction : float, default=0.1
        Held-out fraction for ``early_stopping``.
    n_iter_no_change : int, default=10
        Patience in epochs.
    n_forward_workers : int or None, default=None
        Forward workers (``"pd-asgd"``, ``"d-asgd"``); None uses 1.
    n_backward_workers : int or None, default=None
        Backward workers (``"pd-asgd"``, ``"d-asgd"``). None uses 2 threads,
        because backward costs about twice the forward; with processes None
        uses one per remaining CPU (at least 1), and a forward process whose
        queue is full runs a waiting backward itself, so the processes fit
        the cores.
    n_workers : int or None, default=None
        Workers of ``"hogwild"`` and ``"sync"``. None uses, with threads, the
        thread budget of PD-ASGD (``n_forward_workers + n_backward_workers``,
        3 at their defaults) and, with processes, one process per CPU.
    queue_size : int or None, default=None
        Forward results that may wait for a backward worker; None uses the
        number of backward workers, plus 3 with processes (a forward process
        runs a waiting backward itself when the queue is full and 2 batches
        wait, that is when the backward processes lag). Together with the
        backward workers it bounds the staleness.

        Small data is not bad input: a fit never runs more forward,
        backward or hogwild threads than there are batches per epoch, nor
        more sync shards than rows per batch. Counts left at None are capped
        silently; an explicit count that is too large is capped with a
        ``UserWarning``. The counts used are ``n_forward_workers_``,
        ``n_backward_workers_``, ``n_workers_`` and ``queue_size_``.
    backward_weights : {"auto", "current", "snapshot"}, default="auto"
        ``"current"``: the backward pass uses the live weights (as in the
        paper, so gradients are slightly misaligned with their forward);
        ``"snapshot"``: each forward copies the weights it used (a worker
        that runs its own backward reuses one buffer). ``"auto"`` is
        ``"snapshot"`` for ``mode="hogwild"`` on the process back-end, where
        the copy also keeps each process's matrix products off the weights
        the other is writing, and ``"current"`` otherwise; the choice is
        ``backward_weights_``.
    update_lock : {"none", "layer"}, default="none"
        ``"layer"`` serialises the steps of each layer with a lock (exact
        momentum); ``"none"`` is lock-free, Hogwild style. With ``"none"`` on
        ``backend="processes"``, Adam's step count is lock-free too: two
        processes stepping a layer at once may use the same count, which
        only shifts the bias correction of the first steps.
    straggler_delay : float, default=0.0
        Seconds of sleep injected before each step of the straggler workers
        (to reproduce the paper's delay experiments). With
        ``backend="processes"``, a forward process runs a waiting batch's
        backward pass itself when the backward side lags by two batches;
        those steps are not delayed (the forward process is not a
        straggler), so a delayed backward worker slows PD-ASGD less there
        than on threads.
    straggler_workers : {"one", "all"} or list of int, default="one"
        Which update workers are delayed: the backward threads for
        ``"pd-asgd"``/``"d-asgd"``, the workers for ``"hogwild"``/``"sync"``,
        the single loop for ``"serial"``; ``"one"`` is worker 0.
    target_score : float or None, default=None
        Accuracy at which training stops; the seconds until then are stored
        in ``time_to_target_``. With ``early_stopping`` it is the validation
        accuracy; without a validation split it is the accuracy on the
        training rows, measured after each epoch (one extra forward pass
        over them, recorded as ``history_[i]["train_score"]``). Both are
        weighted by ``sample_weight``.
    max_time : float or None, default=None
        Wall-clock budget in seconds; workers stop between batches. A
        ``ValueError`` is raised when it runs out before the first batch of a
        fit has trained.
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Torch device. On CUDA every in-flight batch gets its own stream.
    torch_num_threads : int or None, default=None
        Intra-op threads during fit, of each worker process with
        ``backend="processes"``; None uses ``max(1, cpus // workers)`` so
        that workers x intra-op threads do not oversubscribe the CPU (every
        CPU when the fit's only loop trains in the calling thread: one
        worker, or PD-ASGD / D-ASGD with one batch an epoch).
        Restored after fit.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, shuffling and validation split (torch's
        global RNG is never used).
    verbose : int, default=0
        1 prints one line per epoch; 2 adds updates, throughput and
        staleness.
    warm_start : bool, default=False
        Continue from the previous fit's weights and optimizer state.
        ``hidden_layer_sizes`` must not change in between (a ``ValueError``
        says so); ``partial_fit`` follows the same rule.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coefs_ : list of ndarray
        ``coefs_[i]`` has shape (n_inputs of layer i, n_outputs of layer i),
        as in MLPClassifier. The output layer has one unit per class with a
        softmax, also for two classes (where MLPClassifier has one logistic
        unit): ``coefs_[-1]`` then has 2 columns.
    intercepts_ : list of ndarray
        Bias vector of each layer.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen, summed over the epochs (as MLPClassifier).
    best_loss_ : float
        Lowest training loss so far, which ``tol`` and ``n_iter_no_change``
        watch.
    n_updates_ : list of int
        Updates each layer received (over a ``torch.distributed`` group with
        ``"pd-asgd"``: the steps of this rank; the increments its peers sent
        come on top).
    loss_ : float
        Last epoch's training loss.
    loss_curve_ : list of float
        Training loss per epoch (cross-entropy plus L2 term).
    validation_scores_ : list of float or None
        Validation accuracy per epoch (``early_stopping`` only).
    best_validation_score_ : float or None
        Best validation accuracy.
    history_ : History
        One dict per epoch: ``epoch``, ``wall_time`` (s), ``loss``,
        ``updates`` (per layer, cumulative), ``samples_per_second`` and
        ``validation_score`` (with ``early_stopping``).
    time_to_target_ : float or None
        Seconds until the validation accuracy (the training accuracy without
        ``early_stopping``) first reached ``target_score``; None if it did
        not or ``target_score`` is None.
    staleness_ : list of dict
        Per layer ``{"mean", "p95", "max"}``: how many updates the layer had
        received between a batch's forward read and that batch's update.
    throughput_ : dict
        ``samples_per_second`` (training samples whose update was applied per
        second of training, validation excluded), ``updates_per_second`` and
        ``startup_seconds``: what the last fit spent before its first epoch
        on starting worker processes (0 when a warm pool was reused, and
        with threads) and handing them the model and data. Samples per
        second exclude it.
    backend_ : str
        The back-end of the last fit: ``"threads"``, ``"processes"`` or
        ``"torch.distributed"`` (a ``torchrun`` group).
    backward_weights_ : {"current", "snapshot"}
        The weights the backward passes of the last fit used (what
        ``backward_weights="auto"`` stood for).
    n_forward_workers_, n_backward_workers_ : int
        Forward and backward threads of the last fit (0 outside
        ``"pd-asgd"`` and ``"d-asgd"``).
    n_workers_ : int
        Worker threads the last fit ran: 1 for ``"serial"``, the forward plus
        backward threads for ``"pd-asgd"`` and ``"d-asgd"``, the workers (or
        shards) of ``"hogwild"`` and ``"sync"``; 1 per rank for
        ``"pd-asgd"`` over a ``torch.distributed`` group (one loop runs both
        passes).
    queue_size_ : int
        Length of the forward-to-backward queue of the last fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units: the number of classes (2 for a binary
        problem).
    out_activation_ : str
        ``"softmax"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when X has string column names.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : The synchronous numpy MLP whose
        parameter names this class follows.
    skasync.BlockLocalClassifier : Block-local learning on the same base.

    Notes
    -----
    The paper's hyper-parameters could not be read; the defaults (1 forward
    : 2 backward threads, queue of ``n_backward_workers``, lock-free, SGD
    with momentum, no staleness compensation) are ours. Python threads help
    only when each layer's matrix product is large enough (tens of
    microseconds): for small networks ``"serial"`` is faster, and a
    ``UserWarning`` says so.

    References
    ----------
    C. Teguemne Fokam, K. Khan Nazeer, L. König, D. Kappel, A. Subramoney,
    "Asynchronous Stochastic Gradient Descent with Decoupled Backpropagation
    and Layer-Wise Updates", arXiv:2410.05985.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skasync import AsyncLayerwiseMLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = AsyncLayerwiseMLPClassifier(hidden_layer_sizes=(64,), mode="serial",
    ...                                   max_iter=20, random_state=0)
    >>> clf.fit(X / 16, y).score(X / 16, y) > 0.9
    True
    """

    _structure_params = ("hidden_layer_sizes",)

    _parameter_constraints: ClassVar[dict] = {
        **BaseTorchClassifier._parameter_constraints,
        "backend": [StrOptions(set(BACKENDS))],
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "mode": [StrOptions(set(MODES))],
        "solver": [StrOptions({"sgd", "adam"})],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_forward_workers": [Interval(Integral, 1, None, closed="left"), None],
        "n_backward_workers": [Interval(Integral, 1, None, closed="left"), None],
        "n_workers": [Interval(Integral, 1, None, closed="left"), None],
        "queue_size": [Interval(Integral, 1, None, closed="left"), None],
        "backward_weights": [StrOptions({"auto", "current", "snapshot"})],
        "update_lock": [StrOptions({"none", "layer"})],
        "straggler_delay": [Interval(Real, 0, None, closed="left")],
        "straggler_workers": [StrOptions({"one", "all"}), "array-like"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        mode="pd-asgd",
        backend="auto",
        solver="sgd",
        alpha=1e-4,
        batch_size="auto",
        learning_rate_init=0.01,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        max_iter=200,
        tol=1e-4,
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        n_forward_workers=None,
        n_backward_workers=None,
        n_workers=None,
        queue_size=None,
        backward_weights="auto",
        update_lock="none",
        straggler_delay=0.0,
        straggler_workers="one",
        target_score=None,
        max_time=None,
        device="cpu",
        torch_num_threads=None,
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.mode = mode
        self.backend = backend
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.n_forward_workers = n_forward_workers
        self.n_backward_workers = n_backward_workers
        self.n_workers = n_workers
        self.queue_size = queue_size
        self.backward_weights = backward_weights
        self.update_lock = update_lock
        self.straggler_delay = straggler_delay
        self.straggler_workers = straggler_workers
        self.target_score = target_score
        self.max_time = max_time
        self.device = device
        self.torch_num_threads = torch_num_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------ resolved settings
    def _hidden_sizes(self):
        return check_layer_sizes(self.hidden_layer_sizes, "hidden_layer_sizes")

    def _uses_processes(self, backend=None):
        """Whether ``backend`` (default: this fit's ``backend_``) is processes."""
        if backend is None:
            backend = getattr(self, "backend_", self.backend)
        return backend == "processes"

    def _default_backward(self, backend=None):
        """What ``n_backward_workers=None`` stands for on ``backend``."""
        if self._uses_processes(backend):
            n_forward = self.n_forward_workers or _DEFAULT_FORWARD
            return max(1, available_cpus() - n_forward)
        return _DEFAULT_BACKWARD

    def _requested_threads(self, backend=None):
        """Workers the parameters ask for on ``backend``, before the data cap them."""
        n_forward = self.n_forward_workers or _DEFAULT_FORWARD
        n_backward = self.n_backward_workers or self._default_backward(backend)
        if self.mode == "serial":
            return 1
        if self.mode in ("hogwild", "sync"):
            if self.n_workers:
                return self.n_workers
            return (
                available_cpus()
                if self._uses_processes(backend)
                else n_forward + n_backward
            )
        return n_forward + n_backward

    def _data_worker_limit(self, n_train_samples, batch_size):
        """Most workers the data give ``"hogwild"`` and ``"sync"`` work.

        Hogwild! workers share the batches; sync splits each batch into one
        shard per worker.
        """
        if self.mode == "hogwild":
            return math.ceil(n_train_samples / batch_size)
        return batch_size

    def _resolve_workers(self, n_train_samples, batch_size):
        """Set ``n_forward_workers_``, ``n_backward_workers_``, ``n_workers_``.

        Small data is not bad input: with fewer batches (or, for ``"sync"``,
        fewer rows per batch) than workers, fewer workers take part.  A
        count left at None is capped silently, an explicit one with a
        warning.
        """
        n_batches = math.ceil(n_train_samples / batch_size)
        batches_text = (
            f"the {n_batches} batch{'' if n_batches == 1 else 'es'} per epoch "
            f"({n_train_samples} training samples, batch_size={batch_size})"
        )
        fit = functools.partial(fit_count_to_data, stacklevel=4)
        self.n_forward_workers_ = self.n_backward_workers_ = 0
        if self.mode == "serial":
            self.n_workers_ = 1
        elif self.mode == "pd-asgd" and self.backend_ == "torch.distributed":
            # LayUp: one loop per rank runs both passes; the ranks are the
            # parallel workers.
            self.n_forward_workers_ = self.n_backward_workers_ = 1
            self.n_workers_ = 1
        elif self.mode in DECOUPLED_MODES:
            self.n_forward_workers_ = fit(
                self.n_forward_workers,
                _DEFAULT_FORWARD,
                n_batches,
                name="n_forward_workers",
                limit_text=batches_text,
            )
            self.n_backward_workers_ = fit(
                self.n_backward_workers,
                self._default_backward(),
                n_batches,
                name="n_backward_workers",
                limit_text=batches_text,
            )
            self.n_workers_ = self.n_forward_workers_ + self.n_backward_workers_
        else:
            default = self._requested_threads()
            limit = self._data_worker_limit(n_train_samples, batch_size)
            if self.mode == "hogwild":
                limit_text = batches_text
            else:
                limit_text = (
                    f"the batch_size={batch_size} rows each batch is split into"
                )
            self.n_workers_ = fit(
                self.n_workers, default, limit, name="n_workers", limit_text=limit_text
            )
        # The backward threads each hold one item; a longer queue only
        # raises the staleness bound. A forward process runs a waiting
        # backward itself when the queue is full and a backlog waits, which
        # balances the cores only if the queue has room for that backlog
        # (measured, see _process_engines._STEAL_BACKLOG).
        spare = PROCESS_SPARE_SLOTS if self.backend_ == "processes" else 0
        self.queue_size_ = self.queue_size or max(1, self.n_backward_workers_) + spare

    def _n_update_workers(self):
        """Workers that apply updates (the ids ``straggler_workers`` names)."""
        if self.backend_ == "torch.distributed":
            return distributed_world()[1]  # the ranks
        if self.mode in DECOUPLED_MODES:
            return self.n_backward_workers_
        return self.n_workers_

    def _straggler_ids(self):
        workers = self.straggler_workers
        n = self._n_update_workers()
        if isinstance(workers, str):
            return frozenset({0}) if workers == "one" else frozenset(range(n))
        ids = np.ravel(workers)
        requested = self._requested_update_workers()
        bad = [w for w in ids.tolist() if not (isinstance(w, Integral) and 0 <= w)]
        bad += [w for w in ids.tolist() if isinstance(w, Integral) and w >= requested]
        if bad:
            raise ValueError(
                f"straggler_workers={workers!r} names workers {bad}, but "
                f"mode={self.mode!r} has update workers 0..{requested - 1}."
            )
        # Workers the data left out of this fit do not run, so nothing delays.
        return frozenset(int(w) for w in ids if w < n)

    def _requested_update_workers(self):
        if self.backend_ == "torch.distributed":
            return distributed_world()[1]
        if self.mode in DECOUPLED_MODES:
            return self.n_backward_workers or self._default_backward()
        return self._requested_threads()

    def _engine_config(self):
        return AsyncLayerwiseConfig(
            mode=self.mode,
            n_forward=self.n_forward_workers_,
            n_backward=self.n_backward_workers_,
            n_workers=self.n_workers_,
            queue_size=self.queue_size_,
            solver=self.solver,
            learning_rate=float(self.learning_rate_init),
            momentum=float(self.momentum),
            nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
            alpha=float(self.alpha),
            activation=self.activation,
            backward_weights=self.backward_weights_,
            update_lock=self.update_lock,
            straggler_delay=float(self.straggler_delay),
            straggler_ids=self._straggler_ids(),
            hook=self._engine_hook,
        )

    # ------------------------------------------------------------ base hooks
    def _fit_num_threads(self):
        if self.torch_num_threads is not None:
            return self.torch_num_threads
        backend = getattr(self, "backend_", "threads")
        if backend != "threads":
            # Processes: the workers are other processes, this one only
            # scores between epochs. A rank keeps torch's setting (torchrun
            # sets OMP_NUM_THREADS to the cores per rank).
            return available_cpus() if backend == "processes" else None
        if getattr(self, "_loop_in_caller", False):
            return available_cpus()
        n_threads = getattr(self, "n_workers_", None) or self._requested_threads()
        return max(1, available_cpus() // n_threads)

    def _worker_num_threads(self):
        """Intra-op threads of each worker process."""
        if self.torch_num_threads is not None:
            return self.torch_num_threads
        return max(1, available_cpus() // self.n_workers_)

    def _group_world(self):
        """``(rank, world_size)`` when this fit trains over a torchrun group.

        Only ``backend="auto"`` joins the group, and only with a mode that
        has a ``torchrun`` column in the mode table; None otherwise.
        """
        if self.backend != "auto" or self.mode not in _ACROSS_RANKS:
            return None
        return distributed_world()

    def _one_decoupled_batch(self, n_train_samples, batch_size):
        """Whether PD-ASGD or D-ASGD gets one batch an epoch.

        Its backward can only follow its forward then: nothing overlaps, so
        on threads the fit's loop runs both in the calling thread.
        """
        return self.mode in DECOUPLED_MODES and n_train_samples <= batch_size

    def _layer_sizes(self):
        """Widths from the input to the output layer (fitted data known)."""
        return [self.n_features_in_, *self._hidden_sizes(), len(self.classes_)]

    def _resolve_backend(self, n_train_samples, batch_size, n_epochs):
        """Set ``backend_`` (and the reason ``"auto"`` chose it)."""
        self._backend_reason = f"backend={self.backend!r}"
        if self._group_world() is not None:
            import torch.distributed as dist

            check_group_for_cpu_training(self._device_.type, dist.get_backend())
            self.backend_ = "torch.distributed"
            self._backend_reason = "an initialised torch.distributed group"
            return
        device_type = self._device_.type
        if self.backend == "processes" and not processes_supported():
            raise ValueError(
                f"backend='processes' needs Linux (its workers share memory "
                f"through memfd and are watched through pidfds); this is "
                f"{sys.platform!r}. Use backend='threads' or backend='auto'."
            )
        if self.backend == "processes" and device_type != "cpu":
            raise ValueError(
                f"backend='processes' trains on the CPU (its workers share the "
                f"model through CPU shared memory), but device={self.device!r}. "
                "Use backend='threads' (one process drives the GPU through CUDA "
                "streams) or backend='auto'."
            )
        if self.backend != "auto":
            self.backend_ = self.backend
            return
        # Hogwild! and sync workers as the data cap them (as
        # _resolve_workers does): one worker trains in the calling thread.
        # PD-ASGD and D-ASGD have a forward and a backward worker, the
        # count requested, unless one batch leaves nothing to overlap.
        n_processes = self._requested_threads("processes")
        if self.mode in ("hogwild", "sync"):
            n_processes = min(
                n_processes, self._data_worker_limit(n_train_samples, batch_size)
            )
        if self._one_decoupled_batch(n_train_samples, batch_size):
            n_processes = 1
        self.backend_, self._backend_reason = choose_backend(
            parallel=self.mode in THREADED_MODES and n_processes >= 2,
            synchronous=self.mode == "sync",
            device_type=device_type,
            cpus=available_cpus(),
            layer_sizes=self._layer_sizes(),
            n_samples=n_train_samples,
            batch_size=batch_size,
            max_iter=n_epochs,
            max_time=self.max_time,
            pool_warm=pool_is_warm(n_processes),
        )

    def _check_params_against_data(self, n_train_samples, batch_size, n_epochs):
        self._hidden_sizes()
        self._resolve_backend(n_train_samples, batch_size, n_epochs)
        alone = ranks_training_alone(self.mode, self.backend, _ACROSS_RANKS)
        if alone is not None:
            warnings.warn(alone, UserWarning, stacklevel=4)
        self.backward_weights_ = choose_backward_weights(
            self.backward_weights, self.mode, self.backend_
        )
        self._resolve_workers(n_train_samples, batch_size)
        self._straggler_ids()
        if self.backend_ == "processes" and self.n_workers_ > 1:
            # The hook runs in the workers: it must pickle.
            self._check_hook_pickles()
        # No threads run when the fit's one loop trains in the caller.
        self._loop_in_caller = self.backend_ == "threads" and (
            self.n_workers_ == 1
            or self._one_decoupled_batch(n_train_samples, batch_size)
        )
        if (
            self.backend_ == "threads"
            and self.mode in THREADED_MODES
            and not self._loop_in_caller
        ):
            op_macs = mean_layer_op_macs(self._layer_sizes(), batch_size)
            if op_macs < _SMALL_OP_MACS:
                warnings.warn(
                    f"mode={self.mode!r}: the layer ops are small (about "
                    f"{op_macs:.0f} multiply-adds each, batch_size={batch_size}); "
                    "threads then cost more than they save. mode='serial', a larger "
                    "batch_size or wider layers will be faster.",
                    UserWarning,
                    stacklevel=4,
                )

    def _init_model(self, n_features, n_classes, generator):
        sizes = [n_features, *self._hidden_sizes(), n_classes]
        linears = [
            make_linear(n_in, n_out, generator, self.activation)
            for n_in, n_out in itertools.pairwise(sizes)
        ]
        modules = []
        for layer, linear in enumerate(linears):
            modules.append(linear)
            if layer < len(linears) - 1:
                modules.append(ACTIVATIONS[self.activation]())
        self.module_ = torch.nn.Sequential(*modules)
        self.optim_state_ = _OptimizerState(linears)
        self._log = TrainingLog(len(linears))

    def _linears(self):
        return [m for m in self.module_ if isinstance(m, torch.nn.Linear)]

    def _check_hook_pickles(self):
        import pickle

        try:
            pickle.dumps(self._engine_hook)
        except Exception as error:
            raise TypeError(
                "backend='processes' runs the engine hook in the worker "
                f"processes, but it does not pickle ({error}); use a module-level "
                "callable or backend='threads'."
            ) from error

    @contextlib.contextmanager
    def _training_session(self, X, y, sample_weight, batch_size):
        self._startup_seconds = 0.0
        self._process_trainer = None
        if self.backend_ != "processes" or self.n_workers_ < 2:
            yield
            return
        linears = self._linears()
        trainer = ProcessTrainer(
            linears,
            self.optim_state_.layer_buffers(len(linears)),
            self._log,
            self._engine_config(),
            X,
            y,
            sample_weight,
            batch_size=batch_size,
            n_processes=self.n_workers_,
            threads_per_process=self._worker_num_threads(),
        )
        try:
            self._startup_seconds = trainer.startup_seconds
            self._process_trainer = trainer
            yield
        finally:
            self._process_trainer = None
            trainer.close()

    def _agreed_random_state(self, random_state):
        world = self._group_world()
        if world is None:
            return random_state
        # Every rank must draw the same split, batches and initial weights:
        # rank 0's seed is the group's.
        import torch.distributed as dist

        seed = torch.tensor([random_state.randint(np.iinfo(np.int32).max)])
        dist.broadcast(seed, src=0)
        return np.random.RandomState(int(seed))

    def _fit_epoch(self, X, y, *, batches, context):
        linears = self._linears()
        weights = context.sample_weight
        if self._process_trainer is not None:
            stats = self._process_trainer.run_epoch(batches, context)
            self._worker_samples = self._process_trainer.worker_samples
        else:
            config = self._engine_config()
            shared = SharedMLP(
                linears,
                self.optim_state_.layer_buffers(len(linears)),
                self._log,
                config,
            )
            if self.backend_ == "torch.distributed" and self.mode == "pd-asgd":
                rank, world_size = distributed_world()
                stats = gossip_epoch(
                    shared,
                    X,
                    y,
                    batches,
                    context,
                    config,
                    weights,
                    rank=rank,
                    world_size=world_size,
                    rng=self._gossip_rng(),
                )
            elif self.backend_ == "torch.distributed":
                stats = self._distributed_epoch(shared, X, y, batches, context, config)
            else:
                stats = run_epoch(
                    shared, X, y, batches, context, config, X.device, weights
                )
        loss = stats["loss_sum"] / stats["loss_samples"]
        if self.alpha:
            # MLPClassifier adds 0.5 * alpha * ||W||^2 / batch size (weight
            # sum) per batch; averaged over the epoch with the end-of-epoch
            # weights.
            squared = sum(float((lin.weight.detach() ** 2).sum()) for lin in linears)
            mass = X.shape[0] if weights is None else float(weights.sum())
            loss += 0.5 * self.alpha * squared * len(batches) / mass
        seconds = max(stats["seconds"], 1e-12)
        result = EpochResult(
            loss=loss,
            trained_samples=stats["samples"],
            columns={
                "updates": list(self._log.versions),
                "samples_per_second": stats["samples"] / seconds,
            },
        )
        if self.verbose >= 2:
            staleness = ", ".join(
                f"{s['mean']:.2f}/{s['max']}" for s in self._log.staleness_summary()
            )
            print(
                f"  mode={self.mode} threads={self.n_workers_} "
                f"intra-op={torch.get_num_threads()} updates={self._log.versions} "
                f"samples/s={result.columns['samples_per_second']:.0f} "
                f"staleness mean/max per layer: {staleness}",
                flush=True,
            )
        return result

    def _gossip_rng(self):
        """This rank's stream of peers, kept across epochs and partial_fit.

        Fresh entropy: the mode is not deterministic anyway, and a seed
        shared by the ranks would send their increments in lockstep.
        """
        rng = self.__dict__.get("_gossip_generator")
        if rng is None:
            rng = self._gossip_generator = np.random.default_rng()
        return rng

    def _distributed_epoch(self, shared, X, y, batches, context, config):
        """One ``sync`` epoch as a rank of the ``torch.distributed`` group."""
        import time

        rank, world_size = distributed_world()
        order = torch.cat(batches)
        ends = [0, *itertools.accumulate(len(b) for b in batches)]
        start = time.perf_counter()
        stats = sync_epoch(
            shared,
            X,
            y,
            context.sample_weight,
            order,
            ends,
            rank=rank,
            world_size=world_size,
            deadline=context.deadline,
            config=config,
        )
        seconds = time.perf_counter() - start
        context.stopped_by_time = stats["stopped_by_time"]
        if not context.stopped_by_time:
            # The ranks agreed at every step that time was not up; a
            # deadline passing since then is seen at the next epoch's first
            # step, by all of them, so that none starts an epoch alone.
            context.deadline = None
        self._log.versions = shared.book.totals()
        return epoch_stats(
            self._log, stats["loss_sum"], stats["loss_mass"], stats["samples"], seconds
        )

    def _forward_logits(self, X):
        return self.module_(X)

    def _torch_modules(self):
        if not hasattr(self, "module_"):
            return {}
        return {"module_": self.module_, "optim_state_": self.optim_state_}

    def _refresh_optimizers(self):
        # MLPClassifier builds a new optimizer on every fit but partial_fit:
        # the momentum, Adam's moments and its step counts start again (so a
        # changed solver does not read the other's buffers as its own).
        for buffer in self.optim_state_.buffers():
            buffer.zero_()
        self._log.adam_steps = [0] * len(self._log.adam_steps)

    def _optimizer_state(self):
        # The moment buffers are the module optim_state_, which travels with
        # the weights; what is left is Adam's step count of each layer.
        if not hasattr(self, "_log"):
            return None
        return {"adam_steps": list(self._log.adam_steps)}

    def _load_optimizer_state(self, state):
        self._log.adam_steps = list(state["adam_steps"])

    def _fit_finished(self):
        linears = self._linears()
        self.coefs_ = [
            lin.weight.detach().cpu().numpy().T.astype(np.float64) for lin in linears
        ]
        self.intercepts_ = [
            lin.bias.detach().cpu().numpy().astype(np.float64) for lin in linears
        ]
        self.n_layers_ = len(linears) + 1
        self.n_outputs_ = len(self.classes_)
        self.out_activation_ = "softmax"
        self.n_updates_ = list(self._log.versions)
        self.staleness_ = self._log.staleness_summary()
        busy = max(self._log.busy_seconds, 1e-12)
        self.throughput_ = {
            "samples_per_second": self._log.samples / busy,
            "updates_per_second": sum(self._log.versions) / len(linears) / busy,
            "startup_seconds": self._startup_seconds,
        }

    # --------------------------------------------------------------- sklearn
    def _expected_failed_checks(self):
        """Common checks this configuration is known to fail, with reasons.

        Pass it to ``parametrize_with_checks(..., expected_failed_checks=
        lambda est: est._expected_failed_checks())``.
        """
        failures = super()._expected_failed_checks()
        if self.mode in _LOCK_FREE_MODES:
            reason = (
                "lock-free asynchronous updates: thread interleaving, hence the "
                "fitted weights, differ between two fits with the same seed "
                "(use mode='serial' or 'sync' for reproducibility)"
            )
            # These checks compare the predictions of two separate fits.
            for check in (
                "check_fit_idempotent",
                "check_supervised_y_2d",
                "check_sample_weights_invariance",
            ):
                failures[check] = reason
        return failures

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.mode in _LOCK_FREE_MODES
        return tags
