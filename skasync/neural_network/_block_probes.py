"""What each block of a fitted :class:`~skasync.BlockLocalClassifier` learnt.

Structure
---------
:class:`BlockProbesMixin` adds the estimator's probing methods:

* :meth:`~BlockProbesMixin.transform_blocks`: each hidden block's
  normalised representation (the features its local loss sees);
* :meth:`~BlockProbesMixin.block_scores`: the accuracy reachable from each
  block, by a logistic-regression probe or by the block's auxiliary head
  (``_head_score``).
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from skasync.neural_network._block_local_losses import normalise_features
from skasync.neural_network._torch_utils import to_tensor


class BlockProbesMixin:
    """Probes of the blocks of a fitted block-local classifier.

    Mixed into :class:`~skasync.BlockLocalClassifier`; uses its fitted
    ``blocks_``, ``aux_heads_`` and ``_input_shape_``.
    """

    def transform_blocks(self, X):
        """Normalised representation of ``X`` after each block but the last.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        features : list of ndarray
            One (n_samples, D_k) float64 array per hidden block (mean-centred,
            L2-normalised, spatially max-pooled for images), followed by the
            logits of the last block.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        device = self._model_device()
        self._set_train_mode(False)
        outputs = [[] for _ in self.blocks_]
        with torch.no_grad():
            for start in range(0, X.shape[0], 4096):
                h = to_tensor(X[start : start + 4096], device)
                if self._input_shape_ is not None:
                    h = h.reshape((h.shape[0],) + self._input_shape_)
                for k, block in enumerate(self.blocks_):
                    h = block(h)
                    feat = h if k == self.n_blocks_ - 1 else normalise_features(h)
                    outputs[k].append(feat.double().cpu().numpy())
        return [np.concatenate(o, axis=0) for o in outputs]

    def block_scores(self, X, y, *, method="probe", cv=3):
        """Accuracy reachable from each block's representation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        method : {"probe", "head"}, default="probe"
            ``"probe"``: cross-validated accuracy of a logistic-regression probe
            on each hidden block's normalised features; ``"head"``: accuracy
            of the block's auxiliary head (needs ``aux_heads_``).  The last
            entry is always the model's own accuracy.
        cv : int, default=3
            Folds of the probe's cross-validation.

        Returns
        -------
        scores : ndarray of shape (`n_blocks_`,)
        """
        check_is_fitted(self)
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score

        y = np.asarray(y)
        if method not in ("probe", "head"):
            raise ValueError(f"method must be 'probe' or 'head', got {method!r}.")
        if method == "head" and len(self.aux_heads_) == 0:
            raise ValueError(
                "method='head' needs auxiliary heads; this model has none "
                f"(mode={self.mode!r}, aux_weight={self.aux_weight}). "
                "Use method='probe'."
            )
        features = self.transform_blocks(X)
        scores = []
        for k in range(self.n_blocks_ - 1):
            if method == "probe":
                probe = LogisticRegression(max_iter=500)
                scores.append(
                    float(np.mean(cross_val_score(probe, features[k], y, cv=cv)))
                )
            else:
                scores.append(self._head_score(k, X, y))
        scores.append(self.score(X, y))
        return np.asarray(scores)

    def _head_score(self, k, X, y):
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        device = self._model_device()
        self._set_train_mode(False)
        with torch.no_grad():
            h = to_tensor(X, device)
            if self._input_shape_ is not None:
                h = h.reshape((h.shape[0],) + self._input_shape_)
            for block in self.blocks_[: k + 1]:
                h = block(h)
            pred = self.aux_heads_[k](h).argmax(dim=1).cpu().numpy()
        return float(np.mean(self.classes_[pred] == y))
