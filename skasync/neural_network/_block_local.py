"""Block-local learning (BLL) classifier, after Kappel et al., arXiv 2305.14974.

Structure
---------
:class:`BlockLocalClassifier`: parameters and their validation, then the
hooks of :class:`~skasync.neural_network._base.BaseTorchClassifier`:

* structure: ``_structure_params`` (what warm starts must keep) and the
  execution checks (``_check_execution``);
* ``_init_model``: the network cut into blocks, auxiliary heads and
  feedback networks (:mod:`~skasync.neural_network._block_network`,
  :mod:`~skasync.neural_network._block_local_losses`), one optimiser per
  block and per feedback network;
* optimizer state: ``_optimizer_state`` / ``_load_optimizer_state`` (torch
  state dicts, for early-stopping snapshots and pickles);
* engine: ``_engine_config`` (a
  :class:`~skasync.neural_network._block_local_engine.BlockLocalConfig`),
  ``_make_engine`` (one ``BlockWorker`` per block) and ``_fit_epoch``, which
  runs the engine and gathers ``timing_``.

``transform_blocks`` and ``block_scores`` come from
:class:`~skasync.neural_network._block_probes.BlockProbesMixin`.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import itertools
import warnings
from numbers import Integral, Real
from typing import ClassVar

import torch
from sklearn.utils._param_validation import Hidden, Interval, Options, StrOptions

from skasync.neural_network._base import BaseTorchClassifier
from skasync.neural_network._block_local_engine import (
    BlockLocalConfig,
    BlockLocalEngine,
    FitTiming,
)
from skasync.neural_network._block_local_losses import make_feedback
from skasync.neural_network._block_network import (
    block_bounds,
    build_blocks,
    feedback_width,
    input_shape_for,
    layer_units,
    make_aux_heads,
    min_training_rows,
)
from skasync.neural_network._block_probes import BlockProbesMixin
from skasync.neural_network._block_worker import BlockWorker
from skasync.neural_network._modes import BLOCK_LOCAL_MODES, mode_names
from skasync.neural_network._torch_utils import (
    ACTIVATIONS,
    check_layer_sizes,
    draw_seed,
    load_optimizer_state,
    make_optimizer,
    optimizer_state_copy,
)
from skasync.utils._activation_meter import ActivationMeter
from skasync.utils._threads import available_cpus


class BlockLocalClassifier(BlockProbesMixin, BaseTorchClassifier):
    """Classifier trained with block-local learning (BLL).

    The network (an MLP, or any user ``nn.Sequential``) is cut into
    ``n_blocks`` contiguous blocks.  The input of every block after the first
    is detached, so no gradient crosses a block boundary: the last block is
    trained with cross-entropy, every other block with a local loss that
    compares its (normalised) output with a target produced from the label by
    a separate feedback network, plus decorrelation and auxiliary
    cross-entropy terms (Kappel et al., *Block-local learning with
    probabilistic latent representations*, arXiv 2305.14974).  The feedback
    network is fitted to the detached class means of the block outputs
    ("posterior bootstrapping").  Because blocks never wait for another
    block's backward pass, they can run in parallel (``parallel``), pipelined
    over micro-batches (``n_microbatches``).

    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(256, 256, 256, 256)
        Widths of the hidden layers of the built-in MLP (Linear → activation).
        Ignored when ``module`` is given.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Hidden activation of the built-in MLP.
    batch_norm : bool, default=False
        Insert ``BatchNorm1d`` after each hidden Linear layer of the MLP.
    n_blocks : int, default=2
        Number of blocks; the layers are split into contiguous groups, the
        remainder going to the last blocks; the last block holds the output
        layer.  The default cuts the built-in MLP into two blocks of two and
        three layers (see Notes).  A network with fewer layer units (hidden layers + 1, or
        the children of ``module``) is cut into one block per unit, with a
        ``UserWarning`` in ``"bll"`` and ``"local_aux"`` and silently in
        ``"backprop"``, which trains no blocks; ``n_blocks_`` is the count
        used.  ``n_blocks=1`` is plain backpropagation.  Ignored when
        ``split_points`` is given.
    module : torch.nn.Sequential, nn.ModuleList or list of nn.Module, default=None
        A user network whose children are the layer units to split.  It is
        deep-copied in ``fit`` (never mutated) and keeps its own
        initialisation.  Its output must have one column per class.
    split_points : list of int, default=None
        Indices of the layer units where a new block starts (strictly
        increasing, between 1 and the number of units - 1).  Overrides
        ``n_blocks``.
    input_shape : tuple of int, default=None
        Shape of one sample for the first block, e.g. ``(1, 8, 8)``; flat
        rows of ``X`` are reshaped to it.
    mode : {"bll", "backprop", "local_aux"}, default="bll"
        ``"bll"``: local losses with feedback targets; ``"backprop"``: the
        same network trained end to end (baseline); ``"local_aux"``: every
        block but the last trained only by an auxiliary classifier
        (DGL-like baseline).
    local_loss : {"cosine", "gaussian", "bernoulli"}, default="cosine"
        Agreement term between a block's representation and its feedback
        target.  ``"cosine"``: ``agreement_sign * <b̂, x̂>`` on mean-centred,
        L2-normalised features (authors' code, ours averages over the batch
        where theirs divides by B²); ``"gaussian"``: the negative log overlap
        of two Gaussians with fixed variances, on ``sqrt(D)·x̂``;
        ``"bernoulli"``: ``-log(a·b + (1-a)(1-b))`` with ``a =
        sigmoid(sqrt(D)·x̂)``.  Gaussian and Bernoulli losses are averaged
        over units.
    feedback : {"direct", "mlp", "fixed_random"}, default="direct"
        Feedback network per block boundary: a bias-free linear map from the
        one-hot label (a table of class prototypes, authors' code), a small
        MLP (``feedback_hidden``), or a frozen random table (DRTP-like).
    feedback_hidden : tuple of int, default=(128,)
        Hidden widths of the ``"mlp"`` feedback network.
    feedback_learning_rate : float or "auto", default="auto"
        SGD learning rate of the feedback fit.  With the summed squared loss
        of the authors' code and ``feedback="direct"``, one step is an
        exponential moving average of the class means keeping ``1 - lr`` of
        the old value; "auto" is the authors' 0.9 there.  For
        ``feedback="mlp"`` "auto" is 0.05 (0.2 already diverges on digits:
        the summed loss has a larger curvature through the hidden layer).
    feedback_momentum : float, default=0.01
        SGD momentum of the feedback fit (authors' value).
    feedback_weight_decay : float, default=0.01
        Weight decay of the feedback fit (authors' value).
    output_weight : float, default=1.0
        Weight of the cross-entropy of the last block (α).
    agreement_weight : float, default=0.3
        Weight of the agreement term (γ).
    decorrelation_weight : float, default=0.3
        Weight of the decorrelation term (β); 0 switches it off.
    aux_weight : float, default=0.3
        Weight of the auxiliary cross-entropy heads (λ_pred); 0 removes the
        heads in ``"bll"`` mode.  ``"local_aux"`` always uses heads with
        weight 1 if this is 0.
    aux_hidden : tuple of int, default=()
        Hidden widths of the auxiliary heads (Linear → ReLU each, before the
        linear read-out); used by ``"bll"`` and ``"local_aux"`` alike.  ``()``
        is the authors' linear read-out.  Hidden layers make each head a
        small auxiliary network (DGL, Belilovsky et al. 2020): a linear head
        asks a block for linearly separable features at once, so early
        blocks of a deep MLP overfit greedily.  On MNIST-1D (an MLP
        (256,)x4 cut into four blocks, the last with the output layer)
        ``(256,)`` lifts bll from 81.6 to 84.0 % test accuracy
        (backprop 85.5 %); on digits it does not help (97.6 vs 98.4 %), so
        the default stays linear.  See ``benchmarks/results/block_local.md``.
    denoise_weight : float, default=0.0
        Weight of the denoising term (block rerun on noisy input, MSE to the
        detached clean output); off by default.
    denoise_std : float, default=0.01
        Noise standard deviation of the denoising term.
    agreement_sign : {-1, 1}, default=-1
        Cosine loss only: ``-1`` pulls features toward their class prototype;
        ``+1`` is the sign of the authors' code.
    sigma_forward, sigma_feedback : float, default=1.0
        Fixed standard deviations of the Gaussian loss.
    solver : {"sgd", "adam"}, default="adam"
        Optimiser of the blocks (one per block, same settings), named as in
        MLPClassifier and :class:`~skasync.AsyncLayerwiseMLPClassifier`.
    learning_rate_init : float, default=1e-3
        Learning rate of the blocks.
    momentum : float, default=0.9
        SGD momentum (``solver="sgd"``).
    alpha : float, default=1e-4
        L2 penalty, added to each block's loss as in MLPClassifier
        (``0.5 * alpha * ||W||² / batch_size``).  In ``"bll"`` mode the
        hidden blocks are not penalised (only their auxiliary heads): their
        local losses are scale-invariant, so the penalty would only shrink
        their outputs until the next block starves.
    label_smoothing : float, default=0.0
        Label smoothing of the output and auxiliary cross-entropies.
    batch_size : int or "auto", default="auto"
        ``min(200, n_samples)`` when "auto". With batch norm, a one-row last
        batch is merged into the previous one.
    max_iter : int, default=200
        Maximum number of epochs.
    shuffle : bool, default=True
        Shuffle the samples each epoch.
    tol : float, default=1e-4
        Improvement threshold for early stopping / convergence.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when the
        validation accuracy stalls. ``fit`` only: ``partial_fit`` trains on
        every row it is given.
    validation_fraction : float, default=0.1
        Held-out fraction for ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.
    target_score : float or None, default=None
        Accuracy at which training stops; the seconds until then are stored
        in ``time_to_target_``. With ``early_stopping`` it is the validation
        accuracy; without a validation split it is the accuracy on the
        training rows, measured after each epoch (one extra forward pass
        over them, recorded as ``history_[i]["train_score"]``). Both are
        weighted by ``sample_weight``.
    max_time : float, default=None
        Wall-clock budget of one ``fit`` in seconds. A ``ValueError`` is
        raised when it runs out before the first batch of a fit has trained.
    parallel : {"none", "threads", "streams"}, default="none"
        ``"none"``: sequential reference.  ``"threads"``: one thread per
        block with queues between them (CPU or GPU).  ``"streams"``: one CUDA
        stream per block; needs CUDA and raises a ValueError otherwise (no
        silent fallback, so timings never mislabel the back-end).  The
        result is the same for all three.  ``mode="backprop"`` has one global
        backward pass and supports only ``"none"``.
    n_microbatches : int, default=1
        Micro-batches per batch.  With more than one, blocks form a wave-front
        pipeline (block k works on micro-batch m while block k+1 works on
        m-1).  Gradients are accumulated over the micro-batches and each block
        steps once per batch, so only the batch-level statistics
        (decorrelation, batch norm) see the smaller micro-batches. A batch
        too small for them gets fewer micro-batches (each keeps at least two
        rows with batch norm).
    backward_schedule : {"per_block", "joint"}, default="per_block"
        ``"per_block"``: each block runs its backward pass right after its
        forward pass, freeing its activations early.  ``"joint"``: one summed
        backward pass (authors' code; same gradients, all activations alive;
        only with ``parallel="none"``).
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Torch device. The default is the CPU for both torch classifiers:
        the small tabular data of a typical Pipeline fits faster there than
        through a GPU's kernel launches, and a fit gives the same result on
        every machine; ``"auto"`` picks CUDA when it is available.
    torch_num_threads : int, default=None
        Intra-op threads during fit.  With ``parallel="threads"`` and None,
        each block thread gets ``max(1, cpu_count // n_blocks)``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, batching and noise (torch's global RNG is
        never touched by them). Dropout layers of a custom ``module`` draw
        from torch's global RNG: seed it with ``torch.manual_seed`` too for
        repeatable fits.
    verbose : int, default=0
        Print one line per epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights (blocks, auxiliary heads,
        feedback networks). The optimisers are rebuilt, as in MLPClassifier,
        so a changed ``learning_rate_init`` or ``solver`` applies and
        their state restarts. Parameters that shape the network
        (``hidden_layer_sizes``, ``activation``, ``batch_norm``,
        ``n_blocks``, ``module``, ``split_points``, ``input_shape``,
        ``mode``, ``local_loss``, ``feedback``, ``feedback_hidden``,
        ``aux_hidden`` and whether ``aux_weight > 0``) must not change in
        between; a ``ValueError`` says which one did.
    optimizer : {"sgd", "adam"}, default="deprecated"
        Former name of ``solver``.

        .. deprecated:: 0.1
           ``optimizer`` was renamed ``solver`` and will be removed in 0.2.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen in fit (only when X has string column names).
    blocks_ : torch.nn.ModuleList
        The trained blocks (CPU after unpickling).
    feedback_ : torch.nn.ModuleList
        One feedback network per block boundary (empty outside ``"bll"``).
    aux_heads_ : torch.nn.ModuleList
        Auxiliary heads of blocks 1..N-1 (empty when not used).
    n_blocks_ : int
        Number of blocks actually used.
    block_sizes_ : list of int
        Number of layer units in each block.
    n_iter_ : int
        Epochs run.
    loss_ : float
        Last epoch's total loss (sum of the per-block mean losses).
    loss_curve_ : list of float
        Total loss per epoch.
    history_ : History
        Per epoch: ``loss``, ``block_losses``, ``feedback_loss``,
        ``train_accuracy``, ``block_accuracies`` (auxiliary heads),
        ``seconds``, ``wall_time`` and ``validation_score``.
    timing_ : dict
        Medians over the fit's steps: ``forward_ms``, ``backward_ms``,
        ``update_ms`` (per block), ``step_ms``, ``samples_per_second``, and
        ``peak_activation_bytes`` (bytes autograd saved for backward, measured
        on the first steps with saved-tensor hooks, parameters excluded),
        ``peak_memory_bytes`` (``torch.cuda.max_memory_allocated`` on CUDA,
        else None); also ``parallel``, ``device`` and ``n_microbatches``,
        the most micro-batches a batch was cut into (fewer than asked when
        the batches are small).
    best_loss_ : float
        Lowest loss of the output block (the last one) over the epochs:
        without ``early_stopping`` training stops once it has not improved
        by more than ``tol`` for ``n_iter_no_change`` epochs, in every mode.
        The hidden blocks' local losses are left out of the rule: they keep
        creeping down after the classifier has stopped improving.
    time_to_target_ : float or None
        Seconds until ``target_score`` was first reached; None if it was not
        or ``target_score`` is None.
    validation_scores_, best_validation_score_, t_ :
        As in :class:`~sklearn.neural_network.MLPClassifier`.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : End-to-end backpropagation.

    Notes
    -----
    The defaults of the local weights (α=1, γ=0.3, β=0.3, λ_pred=0.3) and
    ``n_blocks=2`` are ours, chosen by 5-fold CV accuracy on
    scikit-learn's toy sets (iris, wine, breast_cancer, digits; 2-4 seeds)
    against MLPClassifier.  Four one-layer blocks with γ=0.1, β=1 (the
    earlier defaults, chosen on a digits split) scored 0.5 points below
    MLPClassifier on breast_cancer and took twice as long to fit; two
    blocks with γ=0.3 matched it on breast_cancer and beat it on digits,
    and β=0.3 kept wine within a point of it, where two blocks with β=1
    fell 2.8 points behind (see ``benchmarks/results/defaults.md``).  With
    one-layer blocks on a digits split, γ ≥ 0.3 cost about a point
    (pulling every sample onto its class prototype removes within-class
    variety) and β=0 several points.  The authors' ImageNet values (α 0.43,
    β 0.7, γ 0.25, λ_pred 0.55) refer to their loss scales (their agreement
    term is divided by B², ours by B).

    The local losses are invariant to the scale of a block's output, so
    nothing but the auxiliary head holds that scale: user modules without
    normalisation layers can let a block's output fade and starve the next
    block; batch norm in each block (as in the paper's ResNets) avoids it.

    Compute: the decorrelation term costs a (B, B) Gram matrix per block,
    about half a 512-wide layer at batch 256, so a sequential BLL step is
    slower than a backprop step.  No speed-up is claimed from the paper; see
    ``benchmarks/results/block_local.md`` for measurements.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skasync import BlockLocalClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = BlockLocalClassifier(hidden_layer_sizes=(64, 64), n_blocks=2,
    ...                            batch_size=64, learning_rate_init=3e-3,
    ...                            max_iter=5, random_state=0, device="cpu")
    >>> clf.fit(X / 16, y).score(X / 16, y) > 0.9
    True
    >>> len(clf.blocks_)
    2
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseTorchClassifier._parameter_constraints,
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "batch_norm": ["boolean"],
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "module": [torch.nn.Module, list, tuple, None],
        "split_points": ["array-like", None],
        "input_shape": ["array-like", None],
        "mode": [StrOptions(set(mode_names(BLOCK_LOCAL_MODES)))],
        "local_loss": [StrOptions({"cosine", "gaussian", "bernoulli"})],
        "feedback": [StrOptions({"direct", "mlp", "fixed_random"})],
        "feedback_hidden": ["array-like"],
        "feedback_learning_rate": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="left"),
        ],
        "feedback_momentum": [Interval(Real, 0, 1, closed="left")],
        "feedback_weight_decay": [Interval(Real, 0, None, closed="left")],
        "output_weight": [Interval(Real, 0, None, closed="neither")],
        "agreement_weight": [Interval(Real, 0, None, closed="left")],
        "decorrelation_weight": [Interval(Real, 0, None, closed="left")],
        "aux_weight": [Interval(Real, 0, None, closed="left")],
        "aux_hidden": ["array-like"],
        "denoise_weight": [Interval(Real, 0, None, closed="left")],
        "denoise_std": [Interval(Real, 0, None, closed="left")],
        "agreement_sign": [Options(Integral, {-1, 1})],
        "sigma_forward": [Interval(Real, 0, None, closed="neither")],
        "sigma_feedback": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions({"sgd", "adam"})],
        "optimizer": [StrOptions({"sgd", "adam"}), Hidden(StrOptions({"deprecated"}))],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "parallel": [StrOptions({"none", "threads", "streams"})],
        "n_microbatches": [Interval(Integral, 1, None, closed="left")],
        "backward_schedule": [StrOptions({"per_block", "joint"})],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256, 256, 256),
        *,
        activation="relu",
        batch_norm=False,
        n_blocks=2,
        module=None,
        split_points=None,
        input_shape=None,
        mode="bll",
        local_loss="cosine",
        feedback="direct",
        feedback_hidden=(128,),
        feedback_learning_rate="auto",
        feedback_momentum=0.01,
        feedback_weight_decay=0.01,
        output_weight=1.0,
        agreement_weight=0.3,
        decorrelation_weight=0.3,
        aux_weight=0.3,
        aux_hidden=(),
        denoise_weight=0.0,
        denoise_std=0.01,
        agreement_sign=-1,
        sigma_forward=1.0,
        sigma_feedback=1.0,
        solver="adam",
        learning_rate_init=1e-3,
        momentum=0.9,
        alpha=1e-4,
        label_smoothing=0.0,
        batch_size="auto",
        max_iter=200,
        shuffle=True,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        target_score=None,
        max_time=None,
        parallel="none",
        n_microbatches=1,
        backward_schedule="per_block",
        device="cpu",
        torch_num_threads=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        optimizer="deprecated",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.batch_norm = batch_norm
        self.n_blocks = n_blocks
        self.module = module
        self.split_points = split_points
        self.input_shape = input_shape
        self.mode = mode
        self.local_loss = local_loss
        self.feedback = feedback
        self.feedback_hidden = feedback_hidden
        self.feedback_learning_rate = feedback_learning_rate
        self.feedback_momentum = feedback_momentum
        self.feedback_weight_decay = feedback_weight_decay
        self.output_weight = output_weight
        self.agreement_weight = agreement_weight
        self.decorrelation_weight = decorrelation_weight
        self.aux_weight = aux_weight
        self.aux_hidden = aux_hidden
        self.denoise_weight = denoise_weight
        self.denoise_std = denoise_std
        self.agreement_sign = agreement_sign
        self.sigma_forward = sigma_forward
        self.sigma_feedback = sigma_feedback
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.target_score = target_score
        self.max_time = max_time
        self.parallel = parallel
        self.n_microbatches = n_microbatches
        self.backward_schedule = backward_schedule
        self.device = device
        self.torch_num_threads = torch_num_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.optimizer = optimizer

    # ------------------------------------------------------------ structure
    _structure_params = (
        "hidden_layer_sizes",
        "activation",
        "batch_norm",
        "n_blocks",
        "module",
        "split_points",
        "input_shape",
        "mode",
        "local_loss",
        "feedback",
        "feedback_hidden",
        "aux_hidden",
        "aux_weight",
    )
    _primary_structure_params = ("mode", "module")
    _live_optimizer_attrs = ("_optimizers", "_feedback_optimizers")

    def _structure_keys(self):
        keys = super()._structure_keys()
        # Only what the network is built from counts: whether auxiliary heads
        # exist (not their weight), the feedback networks in bll mode only,
        # the MLP parameters only without a user module.
        keys["aux_weight"] = self._uses_aux_heads()
        if self.mode != "bll":
            for name in ("local_loss", "feedback", "feedback_hidden"):
                keys[name] = None
        if self.module is not None:
            for name in ("hidden_layer_sizes", "activation", "batch_norm"):
                keys[name] = None
            if isinstance(self.module, (list, tuple)):
                keys["module"] = ("layers", tuple(repr(m) for m in self.module))
        return keys

    def _uses_aux_heads(self):
        return self.mode == "local_aux" or (self.mode == "bll" and self.aux_weight > 0)

    def _solver(self):
        """``solver``, or the deprecated ``optimizer`` when it is set."""
        return self.solver if self.optimizer == "deprecated" else self.optimizer

    def _check_execution(self):
        if self.parallel == "streams" and not str(self._device_).startswith("cuda"):
            raise ValueError(
                "parallel='streams' needs a CUDA device, but the model runs on "
                f"{self._device_} (device={self.device!r}); use parallel='threads' "
                "or parallel='none' on CPU."
            )
        if self.mode == "backprop" and self.parallel != "none":
            raise ValueError(
                f"parallel={self.parallel!r} is not available with mode='backprop': "
                "backprop has one global backward pass; use parallel='none'."
            )
        if self.backward_schedule == "joint" and self.parallel != "none":
            raise ValueError(
                "backward_schedule='joint' runs one summed backward pass and "
                f"needs parallel='none', got parallel={self.parallel!r}."
            )

    # ----------------------------------------------------------------- hooks
    def _init_model(self, n_features, n_classes, generator):
        shape = input_shape_for(self.input_shape, n_features)
        if self.module is None and shape is not None and len(shape) > 1:
            raise ValueError(
                f"input_shape={self.input_shape!r} is for a custom module (a "
                "CNN, say); the built-in MLP (hidden_layer_sizes) takes flat "
                "rows. Leave input_shape=None, or pass module=."
            )
        units = layer_units(
            self.module,
            self.hidden_layer_sizes,
            self.activation,
            self.batch_norm,
            n_features,
            n_classes,
            generator,
        )
        # Backprop has no blocks to train (they only split block_scores), so
        # it adapts to a short network silently.  The warning points where
        # it did before _init_model was called through _start_model.
        bounds = block_bounds(
            len(units),
            self.n_blocks,
            self.split_points,
            warn=self.mode != "backprop",
            stacklevel=5,
        )
        blocks, out_shapes = build_blocks(
            units,
            bounds,
            shape if shape is not None else (n_features,),
            n_classes,
            self.input_shape,
        )
        self.blocks_ = blocks
        self.n_blocks_ = len(blocks)
        self.block_sizes_ = [b - a for a, b in itertools.pairwise(bounds)]
        self._block_shapes = out_shapes
        self._input_shape_ = shape
        hidden_shapes = out_shapes[:-1]
        aux_hidden = check_layer_sizes(self.aux_hidden, "aux_hidden")
        self.aux_heads_ = (
            make_aux_heads(hidden_shapes, n_classes, generator, aux_hidden)
            if self._uses_aux_heads()
            else torch.nn.ModuleList()
        )
        if self.mode == "bll":
            self.feedback_ = torch.nn.ModuleList(
                make_feedback(
                    self.feedback,
                    n_classes,
                    feedback_width(shape),
                    self.local_loss,
                    generator,
                    tuple(check_layer_sizes(self.feedback_hidden, "feedback_hidden")),
                )
                for shape in hidden_shapes
            )
        else:
            self.feedback_ = torch.nn.ModuleList()
        self._noise_seed = draw_seed(generator)
        self._build_optimizers()

    def _torch_modules(self):
        if not hasattr(self, "blocks_"):
            return {}
        return {
            "blocks_": self.blocks_,
            "feedback_": self.feedback_,
            "aux_heads_": self.aux_heads_,
        }

    def _forward_logits(self, X):
        h = X
        if getattr(self, "_input_shape_", None) is not None:
            h = h.reshape((h.shape[0],) + self._input_shape_)
        for block in self.blocks_:
            h = block(h)
        return h

    def _min_batch_rows(self):
        return min_training_rows(self.blocks_)

    def _check_params_against_data(self, n_train_samples, batch_size, n_epochs):
        if self.optimizer != "deprecated":
            warnings.warn(
                "The parameter 'optimizer' was renamed 'solver' in 0.1 and will be "
                f"removed in 0.2; pass solver={self.optimizer!r} instead.",
                FutureWarning,
                stacklevel=4,
            )
        self._check_execution()

    def _stopping_loss(self, record):
        # The output block's loss, as for backprop: the local losses of the
        # hidden blocks (decorrelation above all) keep creeping down long
        # after the classifier has stopped improving, so their sum never
        # meets tol and bll ran all max_iter epochs.
        return record["block_losses"][-1]

    # ------------------------------------------------------------ optimizers
    def _build_optimizers(self):
        self._optimizers = []
        self._feedback_optimizers = []
        for k, block in enumerate(self.blocks_):
            params = list(block.parameters())
            if k < len(self.aux_heads_):
                params += list(self.aux_heads_[k].parameters())
            # A block without parameters (a lone ReLU, Flatten or pooling
            # layer from split_points) has nothing to step.
            self._optimizers.append(
                make_optimizer(
                    params,
                    self._solver(),
                    self.learning_rate_init,
                    momentum=self.momentum,
                )
                if params
                else None
            )
        for fb in self.feedback_:
            params = [p for p in fb.parameters() if p.requires_grad]
            lr = self.feedback_learning_rate
            if lr == "auto":
                lr = 0.05 if self.feedback == "mlp" else 0.9
            self._feedback_optimizers.append(
                torch.optim.SGD(
                    params,
                    lr=lr,
                    momentum=self.feedback_momentum,
                    weight_decay=self.feedback_weight_decay,
                )
                if params
                else None
            )

    def _refresh_optimizers(self):
        self._build_optimizers()

    def _optimizer_state(self):
        # The torch optimizers' state dicts (moments, step counts), copied
        # to the CPU; the optimizers themselves hold live parameters.
        if not hasattr(self, "_optimizers"):
            return None
        return {
            "blocks": optimizer_state_copy(self._optimizers),
            "feedback": optimizer_state_copy(self._feedback_optimizers),
        }

    def _load_optimizer_state(self, state):
        if not hasattr(self, "_optimizers"):  # unpickled: rebuild them first
            self._build_optimizers()
        load_optimizer_state(self._optimizers, state["blocks"])
        load_optimizer_state(self._feedback_optimizers, state["feedback"])

    # ---------------------------------------------------------------- engine
    def _threads_per_block(self):
        if self.parallel != "threads":
            return None
        total = self.torch_num_threads or available_cpus()
        return max(1, total // self.n_blocks_)

    def _engine_config(self):
        return BlockLocalConfig(
            mode=self.mode,
            n_classes=len(self.classes_),
            local_loss=self.local_loss,
            agreement_weight=self.agreement_weight,
            decorrelation_weight=self.decorrelation_weight,
            aux_weight=self.aux_weight if self.aux_weight > 0 else 1.0,
            output_weight=self.output_weight,
            denoise_weight=self.denoise_weight if self.mode == "bll" else 0.0,
            denoise_std=self.denoise_std,
            agreement_sign=float(self.agreement_sign),
            variance=self.sigma_forward**2 + self.sigma_feedback**2,
            label_smoothing=self.label_smoothing,
            alpha=self.alpha,
            parallel=self.parallel,
            n_microbatches=self.n_microbatches,
            backward_schedule=self.backward_schedule,
            input_shape=self._input_shape_,
            threads_per_block=self._threads_per_block(),
            noise_seed=self._noise_seed,
            sync=self._device_.type == "cuda" and self.parallel == "none",
            hook=self._engine_hook,
        )

    def _make_engine(self, context):
        config = self._engine_config()
        workers = []
        for k, block in enumerate(self.blocks_):
            workers.append(
                BlockWorker(
                    k,
                    block,
                    _entry(self.aux_heads_, k),
                    _entry(self.feedback_, k),
                    self._optimizers[k],
                    _entry(self._feedback_optimizers, k),
                    config,
                    is_last=k == self.n_blocks_ - 1,
                )
            )
        meter = None
        if context.extras.get("batches_seen", 0) < 8:
            params = [p for m in self._torch_modules().values() for p in m.parameters()]
            meter = context.extras.setdefault("meter", ActivationMeter(params))
        return BlockLocalEngine(workers, config, meter=meter)

    def _fit_epoch(self, X, y, *, batches, context):
        if "timing" not in context.extras:
            context.extras["timing"] = FitTiming(len(self.blocks_), X.device)
            self._timing_acc = context.extras["timing"]
        engine = self._make_engine(context)
        result = engine.run_epoch(X, y, batches, context)
        context.extras["timing"].add_epoch(engine, result)
        return result

    def _fit_finished(self):
        timing = getattr(self, "_timing_acc", None)
        if timing is None:
            return
        self.timing_ = timing.summary(self._engine_config())
        del self._timing_acc

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_timing_acc", None)
        return state

    def _expected_failed_checks(self):
        """Common checks expected to fail, with the reason.

        Used by the tests as ``parametrize_with_checks(...,
        expected_failed_checks=lambda est: est._expected_failed_checks())``.
        """
        return {
            **super()._expected_failed_checks(),
            "check_methods_subset_invariance": (
                "float32 matrix products depend on the number of rows at the "
                "1e-7 level (CPU GEMM blocking), above the check's 1e-7 "
                "tolerance; it passes or fails with the weights."
            ),
        }


def _entry(items, k):
    """``items[k]``, or None past the end (the last block has no head)."""
    return items[k] if k < len(items) else None
