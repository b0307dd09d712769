"""The shared torch-estimator base of skasync's neural-network classifiers.

:class:`BaseTorchClassifier` is written once for
:class:`~skasync.AsyncLayerwiseMLPClassifier` and
:class:`~skasync.BlockLocalClassifier`; it owns everything that is not the
training algorithm itself.

Structure
---------
* The hooks: four that every subclass implements (abstract methods:
  ``_init_model``, ``_fit_epoch``, which returns an
  :class:`~skasync.neural_network._fit_records.EpochResult`,
  ``_forward_logits`` and ``_torch_modules``), optional ones with defaults
  (``_check_params_against_data``, ``_fit_finished``, ``_stopping_loss``,
  ``_refresh_optimizers``, ``_min_batch_rows``, ``_fit_num_threads``,
  ``_training_session``, ``_agreed_random_state``,
  ``_optimizer_state`` / ``_load_optimizer_state``), and the private test
  hook ``_engine_hook``.
* Public API: ``fit``, ``partial_fit``, ``predict_proba``, ``predict``.
* One fit, in steps: ``_fit`` (validation, labels, seeds, device, the
  rows of :mod:`~skasync.neural_network._training_data`) ->
  ``_start_model`` (build or continue) -> ``_run_epochs`` (the epoch loop)
  with ``_record_epoch`` (``history_``, scores, ``target_score``) and
  MLPClassifier's stopping rule, ``_update_no_improvement_count``.
* Model state: warm-start structure checks (``_structure_params``),
  early-stopping snapshots (``_state_copy`` / ``_load_state``: modules and
  optimizer state) and CPU-only pickles.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import contextlib
import copy
import math
import time
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from skasync.neural_network._fit_records import FitContext, History
from skasync.neural_network._torch_utils import resolve_device, seed_from, to_tensor
from skasync.neural_network._training_data import (
    checked_sample_weight,
    split_training_data,
)
from skasync.utils._threads import torch_threads
from skasync.utils._validation import check_no_bool_counts

_PREDICT_CHUNK = 8192


class BaseTorchClassifier(ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the torch classifiers (not an estimator on its own).

    Subclasses add their own parameters to ``_parameter_constraints`` and
    implement the hooks listed in the module docstring.
    """

    _parameter_constraints: ClassVar[dict] = {
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

    # Private test hook (never a parameter): set on an instance, it is handed
    # to the engine in the fit's config and called in the training loop, so
    # tests can inject delays, failures and interrupts.  Each engine calls it
    # with its own arguments: hook(event, worker) in the asynchronous MLP's
    # workers, hook(block_index, batch_number) before a block's step in the
    # block-local engine.
    _engine_hook = None

    # Parameters that fix the network's shape: warm_start and partial_fit
    # continue the network built by the first fit, so they must not change.
    _structure_params = ()
    # Of those, the ones that decide which others count (a new mode or
    # module): when one of them changed, the error names only it.
    _primary_structure_params = ()
    # Attributes holding live torch optimizers: pickles hold their
    # _optimizer_state() instead.
    _live_optimizer_attrs = ()

    # ------------------------------------------------------- required hooks
    @abstractmethod
    def _init_model(self, n_features, n_classes, generator):
        """Build the modules and optimizer state and store them on ``self``."""

    @abstractmethod
    def _fit_epoch(self, X, y, *, batches, context):
        """Train one epoch over ``batches``; return an :class:`EpochResult`."""

    @abstractmethod
    def _forward_logits(self, X):
        """Logits of a float32 tensor on the model's device (eval mode)."""

    @abstractmethod
    def _torch_modules(self):
        """Dict ``name -> nn.Module`` of everything learned ({} before fit)."""

    # ------------------------------------------------------- optional hooks
    def _fit_num_threads(self):
        """Intra-op threads used during fit (None leaves torch's setting)."""
        return self.torch_num_threads

    def _check_params_against_data(self, n_train_samples, batch_size, n_epochs):
        """Subclass hook for checks that need the data size (thread counts).

        ``n_epochs`` is the most epochs this call runs: 1 for ``partial_fit``,
        ``max_iter`` for ``fit``.
        """

    def _fit_finished(self):
        """Subclass hook called once after the epoch loop (set attributes)."""

    def _stopping_loss(self, record):
        """The training loss that ``tol`` / ``n_iter_no_change`` watch.

        MLPClassifier's rule: stop after ``n_iter_no_change`` epochs without
        an improvement of more than ``tol`` of this loss (``best_loss_``).
        """
        return record["loss"]

    def _refresh_optimizers(self):
        """Rebuild the optimisers for a warm-started fit (default: nothing)."""

    def _training_session(self, X, y, sample_weight, batch_size):
        """Context manager around one fit's epoch loop (default: nothing).

        An engine that holds resources for the whole fit (worker processes,
        shared memory) acquires them on entry and releases them on exit,
        also when the fit raises or is interrupted. Early-stopping snapshots
        are taken inside it and loaded after it.
        """
        return contextlib.nullcontext()

    def _agreed_random_state(self, random_state):
        """The fit's RandomState (default: ``random_state`` itself).

        A fit spread over several processes overrides this so that every
        process draws the same batches and initial weights.
        """
        return random_state

    def _min_batch_rows(self):
        """Fewest rows a training batch may have (1 unless a layer needs more)."""
        return 1

    def _optimizer_state(self):
        """Copy of the optimizer state not held in ``_torch_modules()``.

        Early-stopping snapshots and pickles store it, and
        :meth:`_load_optimizer_state` puts it back, so a restored model goes
        on training where the saved one was.  CPU tensors and plain values
        only; None when there is nothing to save.
        """

    def _load_optimizer_state(self, state):
        """Restore a copy made by :meth:`_optimizer_state`."""

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

        Every row given trains: ``early_stopping`` applies to ``fit`` only,
        as in :class:`~sklearn.linear_model.SGDClassifier` (score held-out
        rows between calls to stop early).

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
        # Every call (stricter than sklearn, which checks only the first):
        # set_params may come between.
        self._validate_params()
        first_call = not self._is_initialised()
        if first_call:
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

    # ------------------------------------------------------------------ fit
    def _is_initialised(self):
        # n_iter_ is set once the model and its state exist; classes_ is set
        # earlier, so a first fit that failed its checks left only classes_
        # and a later warm_start fit or partial_fit must start afresh.
        return hasattr(self, "n_iter_")

    def __sklearn_is_fitted__(self):
        # Fitted once a model was built and trained: not merely after a fit
        # that set classes_ and then failed its checks.
        return self._is_initialised()

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        first_fit = not self._is_initialised()
        reuse_model = (incremental or self.warm_start) and not first_fit
        if not reuse_model:
            # A fresh fit replaces the model: until it has built the new one,
            # the estimator is not fitted, so a fit that fails its checks
            # (after setting the new classes_ and n_features_in_) leaves no
            # old network to be used with them.
            self.__dict__.pop("n_iter_", None)
        check_no_bool_counts(self)
        X, y = self._validate_training_data(X, y, reset=not reuse_model)
        sample_weight = checked_sample_weight(sample_weight, X)
        if reuse_model:
            self._check_structure_unchanged()
        y_index = self._encode_labels(y, classes, reuse_model)

        random_state = self._agreed_random_state(check_random_state(self.random_state))
        device = resolve_device(self.device)
        self._device_ = device
        data = split_training_data(
            X,
            y_index,
            sample_weight,
            random_state,
            validation_fraction=(
                self.validation_fraction
                if self.early_stopping and not incremental
                else None
            ),
        )
        generator = torch.Generator().manual_seed(seed_from(random_state))
        batch_size = self._effective_batch_size(data.X.shape[0])
        self._check_params_against_data(
            data.X.shape[0], batch_size, 1 if incremental else self.max_iter
        )
        self._start_model(data.X.shape[1], generator, device, reuse_model, incremental)
        try:
            self._run_epochs(data, generator, batch_size, device, incremental)
        except BaseException:
            self._after_an_interrupted_fit(reuse_model)
            raise
        self.loss_ = self.loss_curve_[-1]
        self._fit_finished()
        return self

    def _after_an_interrupted_fit(self, reuse_model):
        """Leave a consistent estimator when the epoch loop raised (an error,
        Ctrl-C): the fitted attributes then describe the model ``predict``
        uses, at its weights when the loop stopped (not the best snapshot,
        not the previous fit's). A fresh fit that finished no epoch leaves
        an unfitted estimator."""
        if not self.loss_curve_:
            if not reuse_model:
                self.__dict__.pop("n_iter_", None)
            return
        # The loop's own error is the one to see, not one from here.
        with contextlib.suppress(Exception):
            self.loss_ = self.loss_curve_[-1]
            self._fit_finished()

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

    def _encode_labels(self, y, classes, reuse_model):
        """Set ``classes_`` on a first fit; return ``y`` as class indices."""
        if reuse_model:
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
        return np.searchsorted(self.classes_, y)

    def _effective_batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        # int(): a NumPy integer (a grid from np.arange) passes the parameter
        # check, but torch.split accepts only Python ints.
        return int(min(self.batch_size, n_samples))

    def _start_model(self, n_features, generator, device, reuse_model, incremental):
        """Build the model and reset the fit's records, or continue the model."""
        if not reuse_model:
            self._init_model(n_features, len(self.classes_), generator)
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
            if self.early_stopping and self.validation_scores_ is None:
                # A warm start that turns early_stopping on.
                self.validation_scores_ = []
                self.best_validation_score_ = -math.inf
            if not incremental:
                # MLPClassifier builds a new optimiser on every fit that is
                # not partial_fit, so changed learning rates etc. apply.
                self._refresh_optimizers()

    def _run_epochs(self, data, generator, batch_size, device, incremental):
        """The epoch loop; the best early-stopping snapshot is loaded at the end."""
        n_train = data.X.shape[0]
        X_train = to_tensor(data.X, device)
        y_train = torch.as_tensor(data.y, dtype=torch.long, device=device)
        w_train = (
            None
            if data.sample_weight is None
            else to_tensor(data.sample_weight, device)
        )
        validation = None
        if data.X_val is not None:
            validation = (
                to_tensor(data.X_val, device),
                torch.as_tensor(data.y_val, dtype=torch.long, device=device),
                data.w_val,
            )
        training = (X_train, y_train, data.sample_weight)

        max_epochs = 1 if incremental else self.max_iter
        # target_score stops the fit that reaches it; a warm-start fit after
        # one that reached it trains its max_iter epochs.
        reached_before = self.time_to_target_ is not None
        start = time.monotonic()
        deadline = None if self.max_time is None else start + self.max_time
        self._no_improvement_count = 0
        best_state = None
        ran_out_of_epochs = False
        engine_extras = {}
        with (
            torch_threads(self._fit_num_threads()),
            self._training_session(X_train, y_train, w_train, batch_size),
        ):
            for _ in range(max_epochs):
                context = FitContext(
                    epoch=self.n_iter_,
                    generator=generator,
                    device=device,
                    deadline=deadline,
                    extras=engine_extras,
                    sample_weight=w_train,
                )
                batches = self._make_batches(n_train, batch_size, generator, device)
                self._set_train_mode(True)
                result = self._fit_epoch(
                    X_train, y_train, batches=batches, context=context
                )
                self._set_train_mode(False)
                if result.trained_samples == 0:
                    # max_time ran out before this epoch's first batch: there
                    # is no loss to record (it is not a NaN).
                    if not self.loss_curve_:
                        raise ValueError(
                            f"max_time={self.max_time} s ran out before the first "
                            "batch was trained (the fit's set-up, such as starting "
                            "worker processes, counts against it); raise max_time "
                            "or leave it None."
                        )
                    break
                record = self._record_epoch(
                    result, n_train, start, training, validation
                )
                if self._update_no_improvement_count(record):
                    best_state = self._state_copy()
                if incremental or (
                    not reached_before and self.time_to_target_ is not None
                ):
                    break
                if context.stopped_by_time or context.time_is_up():
                    break
                if self._no_improvement_count >= self.n_iter_no_change:
                    if self.verbose:
                        print(
                            f"Training stopped: no improvement of more than "
                            f"tol={self.tol} for {self.n_iter_no_change} epochs."
                        )
                    break
            else:
                ran_out_of_epochs = not incremental
        self._elapsed_offset += time.monotonic() - start
        if best_state is not None:
            self._load_state(best_state)
        if ran_out_of_epochs:
            # MLPClassifier's warning, in its words: tools that filter it in a
            # grid search keep working. After the best state is loaded, so
            # that warnings turned into errors still leave the best weights.
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                "reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=5,  # the caller of fit
            )

    def _make_batches(self, n_samples, batch_size, generator, device):
        """Index tensors of one epoch: a seeded permutation cut into batches."""
        if self.shuffle:
            order = torch.randperm(n_samples, generator=generator)
        else:
            order = torch.arange(n_samples)
        order = order.to(device)
        batches = list(torch.split(order, batch_size))
        min_rows = self._min_batch_rows()
        if len(batches) > 1 and batches[-1].shape[0] < min_rows:
            # e.g. batch norm cannot train on one row: merge the remainder.
            batches[-2:] = [torch.cat(batches[-2:])]
        smallest = min(b.shape[0] for b in batches)
        if smallest < min_rows:
            held_out = (
                f" after early_stopping held out validation_fraction="
                f"{self.validation_fraction}"
                if self.early_stopping
                else ""
            )
            raise ValueError(
                f"The network has batch norm, which cannot train on a batch of "
                f"fewer than {min_rows} rows, but batch_size={self.batch_size} "
                f"and {n_samples} training rows{held_out} give batches of "
                f"{smallest}. Use batch_size >= "
                f"{min_rows}, more rows, or a network without batch norm."
            )
        return batches

    def _record_epoch(self, result, n_train, start, training, validation):
        """Count the epoch, score it and append its ``history_`` record.

        ``training`` and ``validation`` are ``(X, y, numpy weights)`` tensors
        (``validation`` None without ``early_stopping``).
        """
        loss = float(result.loss)
        if not math.isfinite(loss):
            raise ValueError(
                f"The training loss became {loss} at epoch {self.n_iter_ + 1}; "
                "lower learning_rate_init or scale the inputs "
                "(e.g. StandardScaler in a Pipeline)."
            )
        self.n_iter_ += 1
        self.t_ += n_train
        self.loss_curve_.append(loss)
        record = {
            "epoch": self.n_iter_,
            "wall_time": self._elapsed_offset + time.monotonic() - start,
            "loss": loss,
        }
        record.update(result.columns)
        score = None
        if validation is not None:
            score = self._accuracy_tensor(*validation)
            self.validation_scores_.append(score)
            record["validation_score"] = score
        elif self.target_score is not None:
            # No validation split: target_score is reached by the (weighted)
            # accuracy on the rows just trained on.
            score = self._accuracy_tensor(*training)
            record["train_score"] = score
        if (
            score is not None
            and self.target_score is not None
            and self.time_to_target_ is None
            and score >= self.target_score
        ):
            self.time_to_target_ = record["wall_time"]
        self.history_.append(record)
        self._report_epoch(record)
        return record

    def _update_no_improvement_count(self, record):
        """MLPClassifier's stopping rule, applied to one epoch's ``record``.

        Counts the epochs without an improvement of more than ``tol`` of the
        validation score (with ``early_stopping``) or of
        :meth:`_stopping_loss`, and keeps ``best_validation_score_`` and
        ``best_loss_``.

        Returns
        -------
        new_best : bool
            Whether the validation score is the best so far: the caller
            snapshots the model, to be restored at the end of the fit.
        """
        new_best = False
        val_score = record.get("validation_score")
        if val_score is not None:
            improved = val_score > self.best_validation_score_ + self.tol
            if val_score > self.best_validation_score_:
                self.best_validation_score_ = val_score
                new_best = True
        stopping_loss = self._stopping_loss(record)
        if val_score is None:
            improved = stopping_loss < self.best_loss_ - self.tol
        self.best_loss_ = min(self.best_loss_, stopping_loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        return new_best

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

    # -------------------------------------------------------------- predict
    def _validate_X_predict(self, X):
        return validate_data(self, X, reset=False, dtype=[np.float32, np.float64])

    def _logits_numpy(self, X):
        X = self._validate_X_predict(X)
        device = self._model_device()
        outputs = []
        self._set_train_mode(False)
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                chunk = to_tensor(X[start : start + _PREDICT_CHUNK], device)
                outputs.append(self._forward_logits(chunk).double().cpu().numpy())
        if not outputs:
            return np.empty((0, len(self.classes_)))
        return np.concatenate(outputs, axis=0)

    # ---------------------------------------------------------- model state
    def _model_device(self):
        for module in self._torch_modules().values():
            for parameter in module.parameters():
                return parameter.device
        return torch.device("cpu")

    def _set_train_mode(self, mode):
        for module in self._torch_modules().values():
            module.train(mode)

    def _move_modules(self, device):
        for name, module in self._torch_modules().items():
            setattr(self, name, module.to(device))

    def _structure_keys(self):
        """Comparable values of ``_structure_params`` (subclasses refine them)."""
        keys = {}
        for name in self._structure_params:
            value = getattr(self, name)
            if isinstance(value, torch.nn.Module):
                # Its architecture (a pickled copy is the same network).
                keys[name] = ("module", repr(value))
            elif isinstance(value, Integral) and not isinstance(value, bool):
                # As a 1-tuple: hidden_layer_sizes=5 is the network (5,) is.
                keys[name] = (int(value),)
            elif value is None or isinstance(value, (str, Real)):
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
        # A change of a primary parameter changes which other keys count:
        # name only the parameter the user changed.
        primary = [name for name in self._primary_structure_params if name in changed]
        changed = primary or changed
        if changed:
            raise ValueError(
                f"{', '.join(changed)} changed since the network was built; "
                "warm_start and partial_fit continue that network. Refit with "
                "warm_start=False (and fit instead of partial_fit)."
            )

    def _state_copy(self):
        """Snapshot of the modules and the optimizer state (early stopping)."""
        return {
            "modules": {
                name: {k: v.detach().clone() for k, v in module.state_dict().items()}
                for name, module in self._torch_modules().items()
            },
            "optimizer": self._optimizer_state(),
        }

    def _load_state(self, state):
        """Restore a :meth:`_state_copy` snapshot."""
        modules = self._torch_modules()
        with torch.no_grad():
            for name, module_state in state["modules"].items():
                modules[name].load_state_dict(module_state)
        if state["optimizer"] is not None:
            self._load_optimizer_state(state["optimizer"])

    # Pickles hold CPU state only: a model fitted on CUDA unpickles on a
    # machine without a GPU, and no stream, thread or lock is carried along.
    def __getstate__(self):
        state = self.__dict__.copy()
        if self._is_initialised():
            state["_saved_optimizer_state"] = self._optimizer_state()
        for key in self._live_optimizer_attrs:
            state.pop(key, None)
        for key, value in state.items():
            if isinstance(value, torch.nn.Module):
                state[key] = copy.deepcopy(value).to("cpu")
            elif isinstance(value, torch.Tensor):
                state[key] = value.detach().to("cpu")
        state.pop("_device_", None)
        return state

    def __setstate__(self, state):
        optimizer_state = state.pop("_saved_optimizer_state", None)
        self.__dict__.update(state)
        if "classes_" in state:
            self._device_ = torch.device("cpu")
        if optimizer_state is not None:
            self._load_optimizer_state(optimizer_state)

    # -------------------------------------------------------------- sklearn
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
