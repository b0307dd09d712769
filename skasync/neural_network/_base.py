"""The shared torch-estimator base of skasync's neural-network classifiers.

:class:`BaseTorchClassifier` is written once for
:class:`~skasync.AsyncLayerwiseMLPClassifier` and
:class:`~skasync.BlockLocalClassifier`.  It owns everything that is not the
training algorithm itself:

* input validation (``validate_data``), label encoding and the
  one-class / NaN / wrong-width errors;
* ``device="auto" | "cpu" | "cuda"`` and one float32 conversion per fit;
* seeded mini-batching from a local :class:`torch.Generator` (torch's
  global RNG is never touched);
* the stratified validation split, early stopping, ``tol`` and
  ``n_iter_no_change`` bookkeeping, ``target_score`` and ``max_time``;
* ``history_``, ``loss_curve_``, ``validation_scores_``, ``n_iter_``;
* ``partial_fit`` and ``warm_start``;
* ``predict`` / ``predict_proba`` / ``score``;
* verbose progress lines;
* pickling that works without the device the model was fitted on;
* torch's intra-op thread setting, set for the fit and restored afterwards.

A subclass implements four hooks:

``_init_model(n_features, n_classes, generator)``
    Build the modules (and optimizer state) and store them on ``self``.
``_fit_epoch(X, y, *, batches, context)``
    Train one pass over ``batches`` (a list of index tensors) and return a
    dict with at least ``"loss"``.  ``context`` is a :class:`FitContext`.
``_forward_logits(X)``
    Logits for a float32 tensor on the model's device, in eval mode.
``_torch_modules()``
    Dict ``name -> nn.Module`` of everything learned (moved between devices
    and to CPU when pickling).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import copy
import math
import time
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from skasync.utils._threads import torch_threads
from skasync.utils._validation import check_int, check_no_bool_counts

# Parsed once: "2.13.0+cpu" -> (2, 13).
_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split(".")[:2])

_PREDICT_CHUNK = 8192


class History(list):
    """Per-epoch training records: a list of dicts with column access.

    ``history[:, "loss"]`` returns the ``"loss"`` column as a list (skorch
    style); ``history[-1]`` is the last epoch's dict.
    """

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, column = key
            selected = list.__getitem__(self, rows)
            if isinstance(selected, dict):
                return selected.get(column)
            return [row.get(column) for row in selected]
        return list.__getitem__(self, key)

    def column(self, name):
        """Return one column as a list (None where an epoch lacks it)."""
        return [row.get(name) for row in self]


@dataclass
class FitContext:
    """What the base hands to ``_fit_epoch``.

    Attributes
    ----------
    epoch : int
        Zero-based epoch number (counted over ``warm_start`` and
        ``partial_fit`` calls).
    generator : torch.Generator
        The fit's seeded CPU generator (for dropout-like noise, tie breaks).
    device : torch.device
        Where the data tensors live.
    deadline : float or None
        :func:`time.monotonic` time at which ``max_time`` runs out; engines
        should stop between batches once it passes and set
        ``stopped_by_time``.
    stopped_by_time : bool
        Set by the engine when it stopped because of ``deadline``.
    extras : dict
        Free space for engines (kept across epochs of one fit).
    sample_weight : torch.Tensor or None
        float32 weights of the training rows (all positive: rows of weight 0
        are left out before batching), or None for an unweighted fit. An
        engine makes each batch's loss the weighted mean of its rows, and
        divides the L2 penalty by the batch's weight sum, as MLPClassifier.
    """

    epoch: int
    generator: torch.Generator
    device: torch.device
    deadline: float | None = None
    stopped_by_time: bool = False
    extras: dict = field(default_factory=dict)
    sample_weight: torch.Tensor | None = None

    def time_is_up(self):
        """True once ``deadline`` has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline


def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`.

    Raises
    ------
    ValueError
        If ``device="cuda"`` but CUDA is not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    return torch.device(device)


def seed_from(random_state):
    """Draw an int seed from a ``check_random_state`` RandomState."""
    return int(random_state.randint(np.iinfo(np.int32).max))


class BaseTorchClassifier(ClassifierMixin, BaseEstimator):
    """Base class of the torch classifiers (not an estimator on its own).

    Subclasses add their own parameters to ``_parameter_constraints`` and
    implement the hooks listed in the module docstring.
    """

    _parameter_constraints = {
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "target_score": [Interval(Real, 0, 1, closed="both"), None],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "device": [StrOptions({"auto", "cpu", "cuda"}), str],
        "torch_num_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    # ------------------------------------------------------------------ hooks
    def _init_model(self, n_features, n_classes, generator):  # pragma: no cover
        raise NotImplementedError

    def _fit_epoch(self, X, y, *, batches, context):  # pragma: no cover
        raise NotImplementedError

    def _forward_logits(self, X):  # pragma: no cover
        raise NotImplementedError

    def _torch_modules(self):  # pragma: no cover
        raise NotImplementedError

    def _fit_num_threads(self):
        """Intra-op threads used during fit (None leaves torch's setting)."""
        return self.torch_num_threads

    def _check_params_against_data(self, n_train_samples, batch_size):
        """Subclass hook for checks that need the data size (thread counts)."""

    def _fit_finished(self):
        """Subclass hook called once after the epoch loop (set attributes)."""

    def _stopping_loss(self, record):
        """The training loss that ``tol`` / ``n_iter_no_change`` watch.

        MLPClassifier's rule: stop after ``n_iter_no_change`` epochs without
        an improvement of more than ``tol`` of this loss (``best_loss_``).
        """
        return record["loss"]

    # ------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels (any hashable, sortable type).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, as in MLPClassifier: each batch's loss is
            the weighted mean of its rows' losses, the L2 penalty is divided
            by the batch's weight sum, and with ``early_stopping`` the
            weights follow the rows into the validation split, whose
            accuracy they weight. Rows of weight 0 take no part in training;
            their classes stay in ``classes_``. None gives every row weight 1.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on ``(X, y)``, keeping the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Labels.
        classes : array-like of shape (n_classes,), default=None
            All classes that can appear. Required on the first call; later
            calls must not change it.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows of this call (see ``fit``).

        Returns
        -------
        self : object
            The updated estimator.
        """
        first_call = not self._is_initialised()
        if first_call:
            self._validate_params()
            if classes is None:
                raise ValueError(
                    "classes must be passed on the first call to partial_fit, "
                    "e.g. partial_fit(X, y, classes=np.unique(y_all))."
                )
        elif classes is not None and not np.array_equal(
            np.unique(classes), self.classes_
        ):
            raise ValueError(
                f"classes={classes!r} differs from the classes of the first "
                f"partial_fit call {self.classes_!r}."
            )
        return self._fit(
            X, y, incremental=True, classes=classes, sample_weight=sample_weight
        )

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            float64 probabilities, columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        logits = self._logits_numpy(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self._logits_numpy(X), axis=1)]

    # ------------------------------------------------------------ internals
    def _validate_X_predict(self, X):
        return validate_data(self, X, reset=False, dtype=[np.float32, np.float64])

    def _logits_numpy(self, X):
        X = self._validate_X_predict(X)
        device = self._model_device()
        outputs = []
        self._set_train_mode(False)
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                chunk = _to_tensor(X[start : start + _PREDICT_CHUNK], device)
                outputs.append(self._forward_logits(chunk).double().cpu().numpy())
        if not outputs:
            return np.empty((0, len(self.classes_)))
        return np.concatenate(outputs, axis=0)

    def _model_device(self):
        for module in self._torch_modules().values():
            for parameter in module.parameters():
                return parameter.device
        return torch.device("cpu")

    def _set_train_mode(self, mode):
        for module in self._torch_modules().values():
            module.train(mode)

    def _effective_batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        return min(self.batch_size, n_samples)

    def _make_batches(self, n_samples, batch_size, generator, device):
        """Index tensors of one epoch: a seeded permutation cut into batches."""
        if self.shuffle:
            order = torch.randperm(n_samples, generator=generator)
        else:
            order = torch.arange(n_samples)
        order = order.to(device)
        batches = list(torch.split(order, batch_size))
        if len(batches) > 1 and batches[-1].shape[0] < self._min_batch_rows():
            # e.g. batch norm cannot train on one row: merge the remainder.
            batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def _min_batch_rows(self):
        """Fewest rows a training batch may have (1 unless a layer needs more)."""
        return 1

    def _validate_training_data(self, X, y, reset):
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float32, np.float64],
            y_numeric=False,
            multi_output=False,
        )
        check_classification_targets(y)
        return X, y

    # Parameters that fix the network's shape: warm_start and partial_fit
    # continue the network built by the first fit, so they must not change.
    _structure_params = ()

    def _structure_keys(self):
        keys = {}
        for name in self._structure_params:
            value = getattr(self, name)
            if isinstance(value, torch.nn.Module):
                # Its architecture (a pickled copy is the same network).
                keys[name] = ("module", repr(value))
            elif value is None or isinstance(value, (str, Integral, Real)):
                keys[name] = value
            else:
                keys[name] = tuple(np.ravel(np.asarray(value, dtype=object)).tolist())
        return keys

    def _check_structure_unchanged(self):
        built = getattr(self, "_built_structure", None)
        if built is None:  # fitted by an older version
            return
        now = self._structure_keys()
        changed = [name for name in self._structure_params if now[name] != built[name]]
        # A change of mode or module changes which other keys count: name
        # only the parameter the user changed.
        primary = [name for name in ("mode", "module") if name in changed]
        changed = primary or changed
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed since the network was built; "
                "warm_start and partial_fit continue that network. Refit with "
                "warm_start=False (and fit instead of partial_fit)."
            )

    def _refresh_optimizers(self):
        """Rebuild the optimisers for a warm-started fit (default: nothing)."""

    def _is_initialised(self):
        # n_iter_ is set once the model and its state exist; classes_ is set
        # earlier, so a first fit that failed its checks left only classes_
        # and a later warm_start fit or partial_fit must start afresh.
        return hasattr(self, "n_iter_")

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        first_fit = not self._is_initialised()
        reuse_model = (incremental or self.warm_start) and not first_fit
        check_no_bool_counts(self)
        X, y = self._validate_training_data(X, y, reset=not reuse_model)
        sample_weight = _checked_sample_weight(sample_weight, X)

        if reuse_model:
            self._check_structure_unchanged()
            unseen = np.setdiff1d(unique_labels(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y contains labels {unseen!r} not seen in the first fit "
                    f"(classes_={self.classes_!r}); refit with warm_start=False."
                )
        else:
            labels = unique_labels(y) if classes is None else np.asarray(classes)
            if classes is not None:
                labels = np.unique(labels)
                unseen = np.setdiff1d(unique_labels(y), labels)
                if unseen.size:
                    raise ValueError(
                        f"y contains labels {unseen!r} that are not in "
                        f"classes={classes!r}."
                    )
            if labels.size < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes "
                    f"in the data, but the data contain only 1 class: "
                    f"{labels[0]!r}. Pass data with two or more classes."
                )
            self.classes_ = labels
        y_index = np.searchsorted(self.classes_, y)

        random_state = check_random_state(self.random_state)
        device = resolve_device(self.device)
        self._device_ = device

        # Validation split (stratified, as MLPClassifier) before anything else
        # draws from random_state, so the split does not depend on the model.
        X_val = y_val = w_val = None
        if self.early_stopping and not incremental:
            split_seed = seed_from(random_state)
            arrays = [X, y_index] + ([] if sample_weight is None else [sample_weight])
            try:
                parts = train_test_split(
                    *arrays,
                    test_size=self.validation_fraction,
                    random_state=split_seed,
                    stratify=y_index,
                )
            except ValueError:
                # Too few samples per class for a stratified split: fall
                # back to a plain random split rather than failing.
                parts = train_test_split(
                    *arrays,
                    test_size=self.validation_fraction,
                    random_state=split_seed,
                )
            X, X_val, y_index, y_val = parts[:4]
            if sample_weight is not None:
                sample_weight, w_val = parts[4:]
            if X.shape[0] < 1 or X_val.shape[0] < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no "
                    "training or no validation samples; lower it or pass more "
                    "data."
                )
        if sample_weight is not None:
            # Weight 0 is the same as leaving the row out (sklearn's
            # sample-weight semantics), so those rows are not batched.
            keep = sample_weight > 0
            if not keep.any():
                raise ValueError(
                    "sample_weight is 0 for every training row (the rows held "
                    "out for early_stopping aside); give some rows a positive "
                    "weight."
                )
            if not keep.all():
                X, y_index, sample_weight = X[keep], y_index[keep], sample_weight[keep]
        generator = torch.Generator().manual_seed(seed_from(random_state))
        batch_size = self._effective_batch_size(X.shape[0])
        self._check_params_against_data(X.shape[0], batch_size)

        if not reuse_model:
            self._init_model(X.shape[1], len(self.classes_), generator)
            self._built_structure = self._structure_keys()
            self._move_modules(device)
            self.history_ = History()
            self.loss_curve_ = []
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_loss_ = math.inf
            self.best_validation_score_ = -math.inf if self.early_stopping else None
            self.n_iter_ = 0
            self.t_ = 0
            self.time_to_target_ = None
            self._elapsed_offset = 0.0
        else:
            self._move_modules(device)
            if not incremental:
                # MLPClassifier builds a new optimiser on every fit that is
                # not partial_fit, so changed learning rates etc. apply.
                self._refresh_optimizers()

        X_train = _to_tensor(X, device)
        y_train = torch.as_tensor(y_index, dtype=torch.long, device=device)
        w_train = None if sample_weight is None else _to_tensor(sample_weight, device)
        if X_val is not None:
            X_val_t = _to_tensor(X_val, device)
            y_val_t = torch.as_tensor(y_val, dtype=torch.long, device=device)

        max_epochs = 1 if incremental else self.max_iter
        start = time.monotonic()
        deadline = None if self.max_time is None else start + self.max_time
        no_improvement = 0
        best_state = None
        engine_extras = {}
        with torch_threads(self._fit_num_threads()):
            for _ in range(max_epochs):
                context = FitContext(
                    epoch=self.n_iter_,
                    generator=generator,
                    device=device,
                    deadline=deadline,
                    extras=engine_extras,
                    sample_weight=w_train,
                )
                batches = self._make_batches(X.shape[0], batch_size, generator, device)
                self._set_train_mode(True)
                stats = self._fit_epoch(
                    X_train, y_train, batches=batches, context=context
                )
                self._set_train_mode(False)
                if stats.pop("trained_samples", None) == 0:
                    # max_time ran out before this epoch's first batch: there
                    # is no loss to record (it is not a NaN).
                    if not self.loss_curve_:
                        raise ValueError(
                            f"max_time={self.max_time} s ran out before the first "
                            "batch was trained; raise max_time or leave it None."
                        )
                    break
                loss = float(stats["loss"])
                if not math.isfinite(loss):
                    raise ValueError(
                        f"The training loss became {loss} at epoch {self.n_iter_ + 1}; "
                        "lower learning_rate_init or scale the inputs "
                        "(e.g. StandardScaler in a Pipeline)."
                    )
                self.n_iter_ += 1
                self.t_ += X.shape[0]
                self.loss_curve_.append(loss)
                record = {
                    "epoch": self.n_iter_,
                    "wall_time": self._elapsed_offset + time.monotonic() - start,
                    "loss": loss,
                }
                record.update({k: v for k, v in stats.items() if k != "loss"})
                val_score = None
                if X_val is not None:
                    val_score = self._accuracy_tensor(X_val_t, y_val_t, w_val)
                    self.validation_scores_.append(val_score)
                    record["validation_score"] = val_score
                    if (
                        self.target_score is not None
                        and self.time_to_target_ is None
                        and val_score >= self.target_score
                    ):
                        self.time_to_target_ = record["wall_time"]
                elif self.target_score is not None:
                    # No validation split: target_score is reached by the
                    # (weighted) accuracy on the rows just trained on.
                    train_score = self._accuracy_tensor(
                        X_train, y_train, sample_weight
                    )
                    record["train_score"] = train_score
                    if self.time_to_target_ is None and train_score >= self.target_score:
                        self.time_to_target_ = record["wall_time"]
                self.history_.append(record)
                self._report_epoch(record)

                # MLPClassifier's stopping rule: n_iter_no_change epochs
                # without an improvement of more than tol.
                if X_val is not None:
                    improved = val_score > self.best_validation_score_ + self.tol
                    if val_score > self.best_validation_score_:
                        self.best_validation_score_ = val_score
                        best_state = self._state_copy()
                stopping_loss = self._stopping_loss(record)
                if X_val is None:
                    improved = stopping_loss < self.best_loss_ - self.tol
                if stopping_loss < self.best_loss_:
                    self.best_loss_ = stopping_loss
                no_improvement = 0 if improved else no_improvement + 1
                if incremental:
                    break
                if self.time_to_target_ is not None:
                    break
                if context.stopped_by_time or context.time_is_up():
                    break
                if no_improvement >= self.n_iter_no_change:
                    if self.verbose:
                        print(
                            f"Training stopped: no improvement of more than "
                            f"tol={self.tol} for {self.n_iter_no_change} epochs."
                        )
                    break
        self._elapsed_offset += time.monotonic() - start
        if best_state is not None:
            self._load_state(best_state)
        self.loss_ = self.loss_curve_[-1]
        self._fit_finished()
        return self

    def _report_epoch(self, record):
        if not self.verbose:
            return
        line = f"Iteration {record['epoch']}, loss = {record['loss']:.8f}"
        if "validation_score" in record:
            line += f", validation score = {record['validation_score']:.4f}"
        print(line, flush=True)

    def _accuracy_tensor(self, X, y, sample_weight=None):
        """Accuracy on tensors, weighted by the numpy ``sample_weight``."""
        self._set_train_mode(False)
        hits = []
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                logits = self._forward_logits(X[start : start + _PREDICT_CHUNK])
                right = logits.argmax(dim=1) == y[start : start + _PREDICT_CHUNK]
                hits.append(right.cpu().numpy())
        hits = np.concatenate(hits) if hits else np.zeros(0, dtype=bool)
        if sample_weight is None:
            return float(hits.mean()) if hits.size else 0.0
        total = float(np.sum(sample_weight))
        return float(np.dot(hits, sample_weight) / total) if total > 0 else 0.0

    def _state_copy(self):
        return {
            name: {k: v.detach().clone() for k, v in module.state_dict().items()}
            for name, module in self._torch_modules().items()
        }

    def _load_state(self, state):
        modules = self._torch_modules()
        with torch.no_grad():
            for name, module_state in state.items():
                modules[name].load_state_dict(module_state)

    def _move_modules(self, device):
        for name, module in self._torch_modules().items():
            setattr(self, name, module.to(device))

    # Pickles hold CPU state only: a model fitted on CUDA unpickles on a
    # machine without a GPU, and no stream, thread or lock is carried along.
    def __getstate__(self):
        state = self.__dict__.copy()
        for key, value in state.items():
            if isinstance(value, torch.nn.Module):
                state[key] = copy.deepcopy(value).to("cpu")
            elif isinstance(value, torch.Tensor):
                state[key] = value.detach().to("cpu")
        state.pop("_device_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "classes_" in state:
            self._device_ = torch.device("cpu")

    def _expected_failed_checks(self):
        """Common checks expected to fail at any setting, with the reason.

        Subclasses add the checks their modes fail. Pass it to
        ``parametrize_with_checks(..., expected_failed_checks=lambda est:
        est._expected_failed_checks())``.
        """
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "float32 mini-batch training: integer weights and repeated rows "
                "give the same full-batch gradient up to float32 rounding (a test "
                "checks this for mode='serial'), but the check compares "
                "predictions at rtol=1e-7, below float32 rounding, and shuffled "
                "mini-batches put a row's copies into other batches than the "
                "weighted row"
            ),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


def _checked_sample_weight(sample_weight, X):
    """float64 weights of the rows of ``X``, or None for an unweighted fit.

    NaN/inf, negative values, a wrong length and an all-zero vector are
    ``ValueError`` s that name ``sample_weight``. Equal weights are the
    unweighted fit (the weighted mean is the plain mean), except that the
    L2 penalty scales with their sum as in MLPClassifier, so only all-ones
    collapse to None.
    """
    if sample_weight is None:
        return None
    try:
        raw = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raw = None  # _check_sample_weight names the problem
    if raw is not None and raw.size and not np.any(raw):
        raise ValueError(
            "sample_weight is zero everywhere: no row would take part in "
            "training; give some rows a positive weight or pass "
            "sample_weight=None."
        )
    sample_weight = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if not sample_weight.sum() > 0:
        raise ValueError(
            "sample_weight sums to 0: no row would take part in training; give "
            "some rows a positive weight or pass sample_weight=None."
        )
    if np.all(sample_weight == 1.0):
        return None
    return sample_weight


def _to_tensor(array, device):
    """float32 tensor on ``device``; copies read-only / non-contiguous input."""
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "logistic": torch.nn.Sigmoid,
    "identity": torch.nn.Identity,
}


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
        optimizer, kwargs = torch.optim.SGD, {
            "momentum": momentum,
            "nesterov": bool(nesterov and momentum > 0),
        }
    elif solver == "adam":
        optimizer, kwargs = torch.optim.Adam, {
            "betas": (beta_1, beta_2),
            "eps": epsilon,
        }
    else:
        raise ValueError(f"solver={solver!r} is not one of 'sgd', 'adam'.")
    return optimizer(
        parameters, lr=learning_rate, fused=_fused_supported(parameters), **kwargs
    )


def _fused_supported(parameters):
    """Whether torch's fused optimizer kernels accept ``parameters``.

    torch < 2.4 has no fused CPU kernels, and none take integer tensors.
    """
    if not parameters or not all(p.is_floating_point() for p in parameters):
        return None
    device_type = parameters[0].device.type
    if device_type == "cpu":
        return _TORCH_VERSION >= (2, 4)
    return device_type == "cuda"
