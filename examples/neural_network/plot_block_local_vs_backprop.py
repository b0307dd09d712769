"""
=========================================================
Block-local learning vs backprop vs local auxiliary heads
=========================================================

:class:`~skasync.BlockLocalClassifier` cuts a network into blocks and trains
each block by a local loss against targets that a feedback network computes
from the labels (``mode="bll"``, arXiv 2305.14974), so no error signal
travels back through the whole network.  On the same network it also trains
by end-to-end backpropagation (``"backprop"``) and by local auxiliary
classifiers (``"local_aux"``).

Two questions a user asks: how much has each block learnt, and what does a
training step cost?  :meth:`~skasync.BlockLocalClassifier.block_scores`
answers the first (the accuracy of a logistic-regression probe on each hidden
block's output; the last entry is the model's own accuracy) and ``timing_``
the second (median times per step).
"""

# %%
# Three fits of the same network
# ------------------------------
# Four hidden layers of 128 units cut into four blocks, Adam, 30 epochs at
# most with early stopping on a 10 % validation split; digits, standardised,
# with a quarter of the rows held out for the probes.  One torch thread: at
# this size intra-op threads cost more than they save, most of all on a
# machine that is busy with other work.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skasync import BlockLocalClassifier
from skasync.neural_network import TrainingCurveDisplay

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

modes = ["bll", "backprop", "local_aux"]
fitted = {
    mode: BlockLocalClassifier(
        hidden_layer_sizes=(128, 128, 128, 128),
        n_blocks=4,
        mode=mode,
        max_iter=30,
        batch_size=64,
        early_stopping=True,
        torch_num_threads=1,
        random_state=0,
    ).fit(X_train, y_train)
    for mode in modes
}
scores = {mode: clf.block_scores(X_test, y_test) for mode, clf in fitted.items()}
for mode, clf in fitted.items():
    print(
        f"{mode:9s} epochs {clf.n_iter_:2d}, test accuracy {clf.score(X_test, y_test):.3f}, "
        f"step {clf.timing_['step_ms']:.2f} ms"
    )

# %%
# Accuracy per block, step time and the validation curves
# -------------------------------------------------------
# With block-local losses every block is pushed to be useful on its own, so
# the probes of the early blocks score higher than under backprop, whose
# early blocks only need to serve the layers above them.  The step of a
# sequential BLL fit is not cheaper than a backprop step (each block adds a
# feedback target, a decorrelation term and an auxiliary head); its gains are
# that blocks can run in parallel and free their activations early
# (``parallel="threads"``, see the user guide).

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
blocks = np.arange(1, len(scores["bll"]) + 1)
width = 0.8 / len(modes)
for k, mode in enumerate(modes):
    axes[0].bar(blocks + (k - 1) * width, scores[mode], width, label=mode)
axes[0].set_xticks(blocks, [f"block {b}" for b in blocks[:-1]] + ["output"])
axes[0].set_ylim(0.5, 1.07)
axes[0].set_ylabel("test accuracy")
axes[0].set_title("block_scores (probe per block)")
axes[0].legend(fontsize="small", loc="upper center", ncols=3)

step_ms = [fitted[mode].timing_["step_ms"] for mode in modes]
axes[1].bar(modes, step_ms, color=["C0", "C1", "C2"])
axes[1].set_ylabel("median step time (ms)")
axes[1].set_title("timing_['step_ms']")

for k, (mode, clf) in enumerate(fitted.items()):
    TrainingCurveDisplay.from_estimator(
        clf, y="validation_score", ax=axes[2], label=mode, color=f"C{k}"
    )
axes[2].set_ylim(0.8, 1.0)
axes[2].set_title("validation accuracy")
fig.tight_layout()
plt.show()
