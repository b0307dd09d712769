"""The rows a torch classifier's fit trains and validates on.

Structure
---------
* :func:`checked_sample_weight`: the ``sample_weight`` argument of ``fit``
  and ``partial_fit``, checked (None for an unweighted fit).
* :func:`split_training_data`: the stratified validation split of
  ``early_stopping`` and the removal of rows of weight 0, giving a
  :class:`TrainingData`.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import warnings
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import _check_sample_weight

from skasync.neural_network._torch_utils import seed_from


class TrainingData(NamedTuple):
    """The rows a fit trains on and the held-out validation rows."""

    X: np.ndarray
    y: np.ndarray  # class indices
    sample_weight: np.ndarray | None
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    w_val: np.ndarray | None


def split_training_data(
    X, y_index, sample_weight, random_state, *, validation_fraction=None
):
    """The training rows and, with a ``validation_fraction``, the validation rows.

    The stratified split (as MLPClassifier's) draws its seed from
    ``random_state`` before anything else does, so it does not depend on the
    model. Rows of weight 0 are then left out of training (sklearn's
    sample-weight semantics: weight 0 is the same as leaving the row out).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y_index : ndarray of shape (n_samples,)
        Class indices.
    sample_weight : ndarray of shape (n_samples,) or None
        From :func:`checked_sample_weight`.
    random_state : RandomState
        Seeds the split.
    validation_fraction : float or None, default=None
        Held-out fraction; None holds nothing out.

    Returns
    -------
    data : TrainingData
    """
    X_val = y_val = w_val = None
    if validation_fraction is not None:
        split_seed = seed_from(random_state)
        arrays = [X, y_index] + ([] if sample_weight is None else [sample_weight])
        try:
            parts = train_test_split(
                *arrays,
                test_size=validation_fraction,
                random_state=split_seed,
                stratify=y_index,
            )
        except ValueError:
            # Too few samples per class for a stratified split: fall back to
            # a plain random split rather than failing.
            try:
                parts = train_test_split(
                    *arrays,
                    test_size=validation_fraction,
                    random_state=split_seed,
                )
            except ValueError as error:  # no training or no validation row
                raise _no_rows_left(validation_fraction, X.shape[0]) from error
        X, X_val, y_index, y_val = parts[:4]
        if sample_weight is not None:
            sample_weight, w_val = parts[4:]
            if not w_val.sum() > 0:
                # A weighted accuracy of rows that all weigh 0 is undefined
                # (it read 0.0 every epoch and early stopping kept epoch 1).
                warnings.warn(
                    f"The {w_val.shape[0]} rows held out for early_stopping all "
                    "have sample_weight 0; their accuracy is scored unweighted. "
                    "Raise validation_fraction or give more rows a positive "
                    "weight.",
                    UserWarning,
                    stacklevel=4,
                )
                w_val = None
        if X.shape[0] < 1 or X_val.shape[0] < 1:
            raise _no_rows_left(validation_fraction, X.shape[0] + X_val.shape[0])
    if sample_weight is not None:
        keep = sample_weight > 0
        if not keep.any():
            raise ValueError(
                "sample_weight is 0 for every training row (the rows held "
                "out for early_stopping aside); give some rows a positive "
                "weight."
            )
        if not keep.all():
            X, y_index, sample_weight = X[keep], y_index[keep], sample_weight[keep]
    return TrainingData(X, y_index, sample_weight, X_val, y_val, w_val)


def _no_rows_left(validation_fraction, n_rows):
    return ValueError(
        f"validation_fraction={validation_fraction} leaves no training or no "
        f"validation samples of the {n_rows} rows; lower it or pass more data."
    )


def checked_sample_weight(sample_weight, X):
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
