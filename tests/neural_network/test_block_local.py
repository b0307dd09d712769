"""Tests of BlockLocalClassifier (block-local learning, arXiv 2305.14974)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import _thread
import copy
import pickle
import time
import traceback
import warnings

import numpy as np
import pytest
import torch
from _helpers import skasync_threads
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skasync import BlockLocalClassifier
from skasync.neural_network._block_local_engine import BlockLocalConfig
from skasync.neural_network._block_local_losses import (
    agreement_loss,
    decorrelation_loss,
    make_feedback,
    normalise_features,
)
from skasync.neural_network._block_worker import BlockWorker

SMALL = dict(
    hidden_layer_sizes=(16, 16),
    n_blocks=2,
    max_iter=40,
    learning_rate_init=0.01,
    random_state=0,
    device="cpu",
    torch_num_threads=1,
)


def _expected_failures(estimator):
    return estimator._expected_failed_checks()


@parametrize_with_checks(
    [
        BlockLocalClassifier(**SMALL),
        BlockLocalClassifier(**{**SMALL, "parallel": "threads", "n_microbatches": 2}),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits(digits):
    """conftest's scaled digits, split into train and test."""
    X, y = digits
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def _bll(**params):
    """A small, seeded, one-thread CPU BlockLocalClassifier."""
    base = dict(random_state=0, device="cpu", torch_num_threads=1)
    base.update(params)
    return BlockLocalClassifier(**base)


def _cnn(seed=0):
    # A user module initialises from torch's global RNG: fork it so the test
    # gets the same weights whatever ran before, and leaves the RNG alone.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _cnn_layers()


def _cnn_layers():
    # Batch norm fixes each block's output scale, which the scale-invariant
    # local losses leave free (as in the paper's ResNets).
    nn = torch.nn
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
        nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ),
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 10)),
    )


def _weights(clf):
    return [p.detach().clone() for p in clf.blocks_.parameters()]


# ------------------------------------------------------------------ accuracy
@pytest.mark.parametrize(
    "params",
    [
        dict(mode="bll"),
        dict(mode="backprop"),
        dict(mode="local_aux"),
        dict(mode="bll", parallel="threads", n_microbatches=2),
        dict(mode="bll", local_loss="gaussian"),
        dict(mode="bll", local_loss="bernoulli"),
        dict(mode="bll", feedback="mlp"),
        dict(mode="bll", feedback="fixed_random"),
    ],
    ids=lambda p: "-".join(f"{v}" for v in p.values()),
)
def test_accuracy_floor_digits_mlp(digits, params):
    X_train, X_test, y_train, y_test = digits
    clf = _bll(
        hidden_layer_sizes=(64, 64, 64),
        n_blocks=4,
        max_iter=10,
        batch_size=64,
        learning_rate_init=3e-3,
        **params,
    )
    clf.fit(X_train, y_train)
    # local_aux scores 0.89-0.94 over seeds 0-2: the floor leaves room for
    # other CPUs' float rounding (chance is 0.10).
    assert clf.score(X_test, y_test) >= 0.85


@pytest.mark.parametrize("mode", ["bll", "backprop", "local_aux"])
def test_accuracy_floor_digits_cnn(digits, mode):
    X_train, X_test, y_train, y_test = digits
    module = _cnn()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    clf = _bll(
        module=module,
        input_shape=(1, 8, 8),
        n_blocks=4,
        max_iter=8,
        batch_size=32,
        learning_rate_init=3e-3,
        mode=mode,
    ).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.90
    # The parameter is deep-copied, never trained in place.
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])
    assert clf.blocks_[0][0][0] is not module[0][0]


# ------------------------------------------------------------- equivalences
def test_one_block_bll_is_backprop(digits):
    X_train, X_test, y_train, _ = digits
    kw = dict(
        hidden_layer_sizes=(32, 32),
        max_iter=3,
        random_state=3,
        device="cpu",
        torch_num_threads=1,
        tol=0,
    )
    bll = BlockLocalClassifier(mode="bll", n_blocks=1, **kw).fit(X_train, y_train)
    bp = BlockLocalClassifier(mode="backprop", n_blocks=3, **kw).fit(X_train, y_train)
    for a, b in zip(_weights(bll), _weights(bp)):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(bll.predict_proba(X_test), bp.predict_proba(X_test))
    assert len(bll.feedback_) == 0 and len(bll.aux_heads_) == 0


@pytest.mark.parametrize("n_microbatches", [1, 3])
def test_threads_reproduce_sequential(digits, n_microbatches):
    X_train, _, y_train, _ = digits
    kw = dict(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        max_iter=2,
        random_state=0,
        device="cpu",
        torch_num_threads=1,
        n_microbatches=n_microbatches,
        tol=0,
    )
    seq = BlockLocalClassifier(parallel="none", **kw).fit(X_train, y_train)
    thr = BlockLocalClassifier(parallel="threads", **kw).fit(X_train, y_train)
    for a, b in zip(_weights(seq), _weights(thr)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not skasync_threads()


def test_joint_backward_matches_per_block_and_keeps_more_activations(digits):
    X_train, _, y_train, _ = digits
    kw = dict(
        hidden_layer_sizes=(256,) * 7,
        n_blocks=8,
        max_iter=1,
        batch_size=64,
        random_state=0,
        device="cpu",
        torch_num_threads=1,
        tol=0,
    )
    per_block = BlockLocalClassifier(backward_schedule="per_block", **kw).fit(
        X_train, y_train
    )
    joint = BlockLocalClassifier(backward_schedule="joint", **kw).fit(X_train, y_train)
    for a, b in zip(_weights(per_block), _weights(joint)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    backprop = BlockLocalClassifier(mode="backprop", **kw).fit(X_train, y_train)
    peak = {
        name: est.timing_["peak_activation_bytes"]
        for name, est in [
            ("per_block", per_block),
            ("joint", joint),
            ("backprop", backprop),
        ]
    }
    assert peak["per_block"] < peak["joint"]
    assert peak["per_block"] < 0.6 * peak["backprop"]


# ---------------------------------------------------------------- detachment
def _parameters_in_graph(tensor):
    """Every leaf tensor reachable from ``tensor.grad_fn``."""
    found, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            found.add(id(node.variable))
        stack.extend(fn for fn, _ in node.next_functions)
    return found


@pytest.mark.parametrize("mode", ["bll", "local_aux"])
def test_no_gradient_crosses_a_block_boundary(digits, mode):
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        mode=mode,
        max_iter=1,
    ).fit(X_train, y_train)
    from skasync.neural_network._fit_records import FitContext

    context = FitContext(
        epoch=0, generator=torch.Generator(), device=torch.device("cpu")
    )
    engine = clf._make_engine(context)
    X = torch.as_tensor(X_train[:64], dtype=torch.float32)
    y = torch.as_tensor(y_train[:64])
    for worker in engine.workers:
        worker.start_batch(y)
    h = X
    for k, worker in enumerate(engine.workers):
        before = [
            None if p.grad is None else p.grad.clone()
            for w in engine.workers[:k]
            for p in w.block.parameters()
        ]
        out = worker.block(h)
        loss = worker._local_loss(h, out, y, 64, None)
        # The graph of block k's loss holds only block k's (and its head's)
        # parameters.
        own = {id(p) for p in worker.block.parameters()}
        if worker.head is not None:
            own |= {id(p) for p in worker.head.parameters()}
        leaves = _parameters_in_graph(loss)
        assert leaves and leaves <= own
        loss.backward()
        after = [p.grad for w in engine.workers[:k] for p in w.block.parameters()]
        for b, a in zip(before, after):
            assert (b is None and a is None) or torch.equal(a, b)
        handoff = worker.run_microbatch(h, y, 1.0, 64)
        assert handoff.grad_fn is None and not handoff.requires_grad
        h = handoff


def test_backprop_mode_does_cross_boundaries(digits):
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        mode="backprop",
        max_iter=1,
    ).fit(X_train, y_train)
    X = torch.as_tensor(X_train[:16], dtype=torch.float32)
    logits = clf._forward_logits(X)
    leaves = _parameters_in_graph(logits)
    assert {id(p) for p in clf.blocks_[0].parameters()} <= leaves


def test_local_loss_signs_and_values():
    generator = torch.Generator().manual_seed(0)  # torch's global RNG untouched
    a = torch.randn(8, 5, generator=generator)
    xhat = normalise_features(a)
    torch.testing.assert_close(xhat.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(xhat.mean(dim=1), torch.zeros(8), atol=1e-6, rtol=0)
    idx = torch.arange(8)  # one "class" per sample: the table is the batch
    # Agreement falls as the cosine with the target rises (sign=-1).
    assert agreement_loss(xhat, xhat, idx, "cosine") < agreement_loss(
        xhat, -xhat, idx, "cosine"
    )
    torch.testing.assert_close(
        agreement_loss(xhat, xhat, idx, "cosine"), torch.tensor(-1.0)
    )
    assert agreement_loss(xhat, xhat, idx, "cosine", sign=1.0) > 0
    r = torch.sigmoid(xhat)
    assert agreement_loss(r, r.round(), idx, "bernoulli") < agreement_loss(
        r, 1 - r.round(), idx, "bernoulli"
    )
    # Gaussian: the closed form of the expanded square.
    t = torch.randn(8, 5, generator=generator)
    direct = ((xhat - t).pow(2).mean(dim=1) / 4.0).mean() + 0.5 * np.log(
        2 * np.pi * 2.0
    )
    torch.testing.assert_close(agreement_loss(xhat, t, idx, "gaussian"), direct)
    eye = torch.eye(4)
    assert float(decorrelation_loss(eye)) == 0.0
    assert float(decorrelation_loss(torch.ones(4, 4) / 2)) > 0


def test_decorrelation_gradient_matches_autograd_of_the_formula():
    # The hand-written backward (one Gram product) against autograd through
    # the plain formula, and a float64 gradcheck.
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    gram = a @ a.t()
    (gram - torch.diag_embed(torch.diagonal(gram))).pow(2).mean().backward()
    b = x.clone().requires_grad_(True)
    loss = decorrelation_loss(b)
    loss.backward()
    torch.testing.assert_close(b.grad, a.grad)
    expected = np.mean(
        (x.numpy() @ x.numpy().T - np.diag((x.numpy() ** 2).sum(1))) ** 2
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    assert torch.autograd.gradcheck(
        decorrelation_loss, (x.clone().requires_grad_(True),)
    )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("absent_class", [False, True])
def test_feedback_fit_step_equals_sgd_on_the_summed_loss(absent_class, weighted):
    # The direct feedback's gradient is written by hand; one step must equal
    # torch's SGD (momentum, weight decay) on the autograd loss
    # ½ Σ_{present c} ||W^T e_c - mean_c||², absent classes masked out.
    generator = torch.Generator().manual_seed(0)
    n_classes, width = 4, 6
    feedback = make_feedback("direct", n_classes, width, "cosine", generator)
    reference = copy.deepcopy(feedback)
    optimizer = torch.optim.SGD(
        feedback.parameters(), lr=0.9, momentum=0.01, weight_decay=0.01
    )
    ref_optimizer = torch.optim.SGD(
        reference.parameters(), lr=0.9, momentum=0.01, weight_decay=0.01
    )
    worker = BlockWorker(
        0,
        None,
        None,
        feedback,
        None,
        optimizer,
        BlockLocalConfig(n_classes=n_classes),
        False,
    )
    ref_loss_sum = 0.0
    for _ in range(2):
        r = torch.randn(10, width, generator=generator)
        y = torch.arange(10) % (n_classes - 1 if absent_class else n_classes)
        worker._class_sum = None
        # Weighted fits pass each row's weight over the batch's weight sum:
        # class weight sums below 1.
        coef = torch.rand(10, generator=generator) if weighted else torch.ones(10)
        coef = coef / coef.sum()
        worker._collect_class_means(r, y, coef if weighted else None)
        worker._fit_feedback()
        present = torch.bincount(y, minlength=n_classes) > 0
        means = torch.stack(
            [
                (r[y == c] * coef[y == c, None]).sum(0) / coef[y == c].sum()
                for c in range(n_classes)
                if present[c]
            ]
        )
        ref_optimizer.zero_grad()
        table = reference(torch.eye(n_classes))
        loss = 0.5 * (table[present] - means).pow(2).sum()
        loss.backward()
        ref_optimizer.step()
        ref_loss_sum += loss.detach()
        torch.testing.assert_close(feedback.weight, reference.weight)
    torch.testing.assert_close(worker.feedback_loss_sum, ref_loss_sum)


def test_feedback_tracks_class_means(digits):
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32),
        n_blocks=2,
        max_iter=5,
        tol=0,
    ).fit(X_train, y_train)
    feats = clf.transform_blocks(X_train)[0]
    means = np.stack([feats[y_train == c].mean(axis=0) for c in range(10)])
    table = clf.feedback_[0].weight.detach().numpy().T
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    cos = table @ means.T
    # Each prototype is an (EMA) estimate of its own class mean: closest to
    # it, and close in absolute terms.
    np.testing.assert_array_equal(cos.argmax(axis=1), np.arange(10))
    assert np.diag(cos).mean() > 0.9
    assert clf.history_[-1]["feedback_loss"] < clf.history_[0]["feedback_loss"]


# ---------------------------------------------------------- threads, faults
def _failing_hook(block, batch):
    if block == 2 and batch == 3:
        raise RuntimeError("injected block failure")


@pytest.mark.usefixtures("torch_threads_sentinel")
@pytest.mark.parametrize("parallel", ["none", "threads"])
def test_worker_failure_reaches_caller_and_cleans_up(digits, parallel):
    X_train, _, y_train, _ = digits
    before = torch.get_num_threads()
    clf = _bll(
        hidden_layer_sizes=(16, 16, 16),
        n_blocks=4,
        max_iter=3,
        parallel=parallel,
    )
    clf._engine_hook = _failing_hook
    with pytest.raises(RuntimeError, match="injected block failure") as info:
        clf.fit(X_train, y_train)
    assert "_failing_hook" in "".join(traceback.format_tb(info.value.__traceback__))
    assert not skasync_threads()
    assert torch.get_num_threads() == before


@pytest.mark.usefixtures("torch_threads_sentinel", "sigint_raises_keyboard_interrupt")
@pytest.mark.parametrize("where", ["worker", "main thread"])
def test_keyboard_interrupt_joins_threads(digits, where):
    # "worker": a KeyboardInterrupt raised inside a block thread; "main
    # thread": what Ctrl-C does to the caller waiting in fit.
    X_train, _, y_train, _ = digits
    before = torch.get_num_threads()
    sent = []

    def hook(block, batch):
        if where == "worker" and block == 1 and batch == 2:
            raise KeyboardInterrupt
        if where == "main thread" and block == 3 and batch == 1 and not sent:
            sent.append(True)
            _thread.interrupt_main()
            time.sleep(0.2)

    clf = _bll(
        hidden_layer_sizes=(16, 16, 16),
        n_blocks=4,
        max_iter=50,
        parallel="threads",
    )
    clf._engine_hook = hook
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_train, y_train)
    assert not skasync_threads()
    assert torch.get_num_threads() == before


@pytest.mark.usefixtures("torch_threads_sentinel")
def test_threads_set_per_block_and_restored(digits):
    X_train, _, y_train, _ = digits
    seen = []
    clf = BlockLocalClassifier(
        hidden_layer_sizes=(16, 16),
        n_blocks=2,
        max_iter=1,
        parallel="threads",
        torch_num_threads=2,
        random_state=0,
        device="cpu",
    )
    clf._engine_hook = lambda block, batch: seen.append(torch.get_num_threads())
    before = torch.get_num_threads()
    clf.fit(X_train, y_train)
    assert set(seen) == {1}  # 2 threads shared by 2 blocks
    assert torch.get_num_threads() == before


def test_streams_need_cuda(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="parallel='streams' needs a CUDA device"):
        _bll(parallel="streams", max_iter=1).fit(X_train, y_train)


def test_threads_back_end_rejects_backprop_and_joint_backward(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="not available with mode='backprop'"):
        _bll(mode="backprop", parallel="threads", max_iter=1).fit(X_train, y_train)
    with pytest.raises(ValueError, match="backward_schedule='joint'"):
        _bll(backward_schedule="joint", parallel="threads", max_iter=1).fit(
            X_train, y_train
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("parallel", ["none", "threads", "streams"])
def test_cuda_back_ends_agree(digits, parallel):
    X_train, X_test, y_train, y_test = digits
    kw = dict(
        hidden_layer_sizes=(64, 64, 64),
        n_blocks=4,
        max_iter=3,
        random_state=0,
        device="cuda",
        n_microbatches=2,
        tol=0,
    )
    ref = BlockLocalClassifier(parallel="none", **kw).fit(X_train, y_train)
    clf = BlockLocalClassifier(parallel=parallel, **kw).fit(X_train, y_train)
    for a, b in zip(_weights(ref), _weights(clf)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert clf.timing_["peak_memory_bytes"] > 0
    restored = pickle.loads(pickle.dumps(clf))
    assert restored._model_device().type == "cpu"


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "params, match",
    [
        (
            dict(hidden_layer_sizes=(8, 8), split_points=[0, 2]),
            "split_points=.* out of range",
        ),
        (
            dict(hidden_layer_sizes=(8, 8), split_points=[3]),
            "split_points=.* out of range",
        ),
        (
            dict(hidden_layer_sizes=(8, 8, 8), split_points=[2, 1]),
            "strictly increasing",
        ),
        (
            dict(module=torch.nn.Sequential(torch.nn.Linear(64, 7)), n_blocks=1),
            "module's output",
        ),
        (dict(module=_cnn(), input_shape=(1, 7, 7)), "input_shape="),
        (dict(module=torch.nn.Linear(64, 10)), "module must be"),
    ],
)
def test_bad_structure_names_the_parameter(digits, params, match):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=match):
        BlockLocalClassifier(max_iter=1, device="cpu", **params).fit(X_train, y_train)


@pytest.mark.parametrize("mode", ["bll", "local_aux", "backprop"])
def test_more_blocks_than_layers_adapts(digits, mode):
    # Small networks are not bad input: n_blocks=4 on three layer units cuts
    # three blocks, with a warning except for backprop (which trains none).
    X_train, X_test, y_train, y_test = digits
    clf = _bll(
        hidden_layer_sizes=(16, 16),
        n_blocks=4,
        mode=mode,
        max_iter=30,
        learning_rate_init=0.01,
    )
    if mode == "backprop":
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # 30 epochs may end the fit before tol does: MLPClassifier's
            # warning, not one about the blocks.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_train, y_train)
    else:
        with pytest.warns(UserWarning, match="n_blocks=4 is more than the 3 layer"):
            clf.fit(X_train, y_train)
    assert clf.n_blocks_ == 3
    assert clf.block_sizes_ == [1, 1, 1]
    assert clf.score(X_test, y_test) > 0.8
    assert clf.get_params()["n_blocks"] == 4


def test_bad_data(digits):
    X_train, X_test, y_train, _ = digits
    X_bad = X_train.copy()
    X_bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"infinity|NaN"):
        BlockLocalClassifier(**SMALL).fit(X_bad, y_train)
    with pytest.raises(ValueError, match="at least 2 classes"):
        BlockLocalClassifier(**SMALL).fit(X_train[:10], np.zeros(10))
    clf = BlockLocalClassifier(**{**SMALL, "max_iter": 1}).fit(X_train, y_train)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X_test[:, :5])


def test_split_points_define_blocks(digits):
    X_train, _, y_train, _ = digits
    clf = _bll(
        module=_cnn(),
        input_shape=(1, 8, 8),
        split_points=[2, 3],
        max_iter=1,
    ).fit(X_train, y_train)
    assert clf.n_blocks_ == 3 and clf.block_sizes_ == [2, 1, 1]
    default = BlockLocalClassifier(
        hidden_layer_sizes=(8,) * 4, n_blocks=4, max_iter=1, device="cpu"
    ).fit(X_train, y_train)
    assert default.block_sizes_ == [1, 1, 1, 2]  # the remainder goes to the last block


# ------------------------------------------- sklearn integration, attributes
def test_pipeline_grid_search_over_n_blocks(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline(
        [
            ("scale", MinMaxScaler()),
            (
                "clf",
                _bll(
                    hidden_layer_sizes=(32, 32, 32),
                    max_iter=8,
                    batch_size=64,
                    learning_rate_init=3e-3,
                ),
            ),
        ]
    )
    grid = GridSearchCV(pipe, {"clf__n_blocks": [1, 2, 4]}, cv=2).fit(X_train, y_train)
    # every candidate fitted on every fold (a failed fit scores NaN)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert grid.best_estimator_[-1].n_blocks_ == grid.best_params_["clf__n_blocks"]
    assert grid.score(X_test, y_test) > 0.85
    assert not skasync_threads()


def test_clone_pickle_and_warm_start_after_pickle(digits):
    X_train, X_test, y_train, _ = digits
    module = _cnn()
    clf = _bll(
        module=module,
        input_shape=(1, 8, 8),
        max_iter=2,
        warm_start=True,
        tol=0,
    ).fit(X_train, y_train)
    fresh = clone(clf)
    assert not hasattr(fresh, "blocks_") and fresh.module is not module
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(
        restored.predict_proba(X_test), clf.predict_proba(X_test)
    )
    # The optimisers are rebuilt around the unpickled modules: training goes on
    # exactly as in the original.
    restored.fit(X_train, y_train)
    clf.fit(X_train, y_train)
    assert restored.n_iter_ == clf.n_iter_ == 4
    np.testing.assert_allclose(
        restored.predict_proba(X_test), clf.predict_proba(X_test), rtol=1e-5, atol=1e-6
    )


def test_partial_fit(digits):
    X_train, X_test, y_train, y_test = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32),
        n_blocks=2,
        batch_size=32,
        learning_rate_init=3e-3,
    )
    for _ in range(5):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    assert clf.n_iter_ == 5 and clf.score(X_test, y_test) > 0.85


def test_history_timing_and_block_scores(digits):
    X_train, X_test, y_train, y_test = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        max_iter=4,
        batch_size=32,
        learning_rate_init=3e-3,
        early_stopping=True,
    ).fit(X_train, y_train)
    record = clf.history_[-1]
    for key in (
        "loss",
        "block_losses",
        "feedback_loss",
        "train_accuracy",
        "block_accuracies",
        "seconds",
        "validation_score",
    ):
        assert key in record
    assert len(record["block_losses"]) == 4
    assert record["loss"] == pytest.approx(sum(record["block_losses"]))
    timing = clf.timing_
    assert len(timing["forward_ms"]) == len(timing["backward_ms"]) == 4
    assert timing["step_ms"] > 0 and timing["samples_per_second"] > 0
    assert timing["peak_activation_bytes"] > 0
    scores = clf.block_scores(X_test, y_test)
    assert scores.shape == (4,) and np.all((scores > 0.5) & (scores <= 1))
    heads = clf.block_scores(X_test, y_test, method="head")
    assert heads.shape == (4,) and heads[-1] == scores[-1]
    # Hidden blocks: the accuracy of block k's auxiliary head, by hand.
    h = torch.as_tensor(X_test, dtype=torch.float32)
    with torch.no_grad():
        for k in range(3):
            h = clf.blocks_[k](h)
            predicted = clf.classes_[clf.aux_heads_[k](h).argmax(dim=1).numpy()]
            assert heads[k] == pytest.approx(np.mean(predicted == y_test))
            assert heads[k] > 0.5
    backprop = BlockLocalClassifier(
        hidden_layer_sizes=(32,), n_blocks=2, mode="backprop", max_iter=1, device="cpu"
    ).fit(X_train, y_train)
    with pytest.raises(ValueError, match="method='head' needs auxiliary heads"):
        backprop.block_scores(X_test, y_test, method="head")


def test_max_time_stops_threads(digits):
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        max_iter=1000,
        parallel="threads",
        max_time=0.5,
        # Only max_time can end the fit (it stopped near epoch 335 by itself).
        tol=0.0,
        n_iter_no_change=10**6,
    ).fit(X_train, y_train)
    assert clf.n_iter_ < 200
    assert all(np.isfinite(clf.loss_curve_)) and min(clf.loss_curve_) > 0
    assert not skasync_threads()


@pytest.mark.parametrize("parallel", ["none", "threads"])
def test_max_time_before_the_first_batch_is_a_clear_error(digits, parallel):
    # An epoch that trained nothing used to record a loss of 0.0.
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(16, 16),
        n_blocks=2,
        parallel=parallel,
        max_time=1e-6,
    )
    with pytest.raises(ValueError, match="max_time=1e-06 s ran out before"):
        clf.fit(X_train, y_train)
    assert not skasync_threads()


def test_normalise_backward_matches_autograd():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    a.requires_grad_(True)
    assert torch.autograd.gradcheck(normalise_features, (a,))
    c = a - a.mean(dim=1, keepdim=True)
    reference = c / (1e-8 + c.norm(dim=1, keepdim=True))
    grad = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(
        torch.autograd.grad(normalise_features(a), a, grad)[0],
        torch.autograd.grad(reference, a, grad)[0],
    )
    dead = torch.zeros(3, 4, requires_grad=True)  # all-zero ReLU rows
    normalise_features(dead).sum().backward()
    assert torch.isfinite(dead.grad).all()


def test_denoising_term_is_seeded_and_thread_safe(digits):
    X_train, _, y_train, _ = digits
    kw = dict(
        hidden_layer_sizes=(32, 32, 32),
        n_blocks=4,
        max_iter=2,
        random_state=0,
        device="cpu",
        torch_num_threads=1,
        tol=0,
        denoise_weight=0.5,
        denoise_std=0.1,
    )
    seq = BlockLocalClassifier(**kw).fit(X_train, y_train)
    thr = BlockLocalClassifier(parallel="threads", **kw).fit(X_train, y_train)
    plain = BlockLocalClassifier(**{**kw, "denoise_weight": 0.0}).fit(X_train, y_train)
    for a, b in zip(_weights(seq), _weights(thr)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(_weights(seq), _weights(plain)))


@pytest.mark.parametrize("mode", ["bll", "local_aux"])
def test_aux_hidden_builds_mlp_heads(digits, mode):
    X_train, X_test, y_train, y_test = digits
    clf = _bll(
        hidden_layer_sizes=(32, 32),
        n_blocks=3,
        mode=mode,
        aux_hidden=(16,),
        max_iter=10,
        batch_size=64,
        learning_rate_init=3e-3,
    ).fit(X_train, y_train)
    widths = [
        [tuple(p.shape) for p in head.parameters() if p.dim() > 1]
        for head in clf.aux_heads_
    ]
    assert widths == [[(16, 32), (10, 16)]] * 2
    assert clf.score(X_test, y_test) >= 0.85  # 0.91-0.94 over seeds 0-2
    with pytest.raises(ValueError, match="aux_hidden must contain positive ints"):
        clf.set_params(aux_hidden=(0,)).fit(X_train, y_train)


@pytest.mark.parametrize(
    "params",
    [{"batch_size": 399}, {"batch_size": 8, "n_microbatches": 8}],
    ids=["last batch of one row", "micro-batches of one row"],
)
def test_batch_norm_never_trains_on_one_row(params):
    # BatchNorm raises "Expected more than 1 value per channel" on one row:
    # the remainder batch is merged, micro-batches keep two rows or more.
    X, y = load_digits(return_X_y=True)
    clf = _bll(
        hidden_layer_sizes=(16, 16),
        n_blocks=2,
        batch_norm=True,
        max_iter=2,
        **params,
    )
    clf.fit(X[:400] / 16, y[:400])
    assert clf.n_iter_ == 2


def test_micro_batches_used_are_recorded():
    # 8 asked, batches of 8 rows with batch norm: at most 4 of 2 rows.
    X, y = load_digits(return_X_y=True)
    clf = _bll(
        hidden_layer_sizes=(16, 16), n_blocks=2, batch_norm=True, max_iter=1,
        batch_size=8, n_microbatches=8,
    ).fit(X[:400] / 16, y[:400])
    assert clf.timing_["n_microbatches"] == 4


@pytest.mark.parametrize(
    "params, n_rows",
    [({"batch_size": 1}, 50), ({"early_stopping": True}, 2)],
    ids=["batch_size=1", "one training row left"],
)
def test_batch_norm_on_batches_of_one_row_is_a_clear_error(params, n_rows):
    X, y = load_digits(return_X_y=True)
    clf = _bll(hidden_layer_sizes=(16,), batch_norm=True, max_iter=1, **params)
    with pytest.raises(ValueError, match=r"batch norm.*Use batch_size >= 2"):
        clf.fit(X[:n_rows] / 16, y[:n_rows] % 2)


def test_input_shape_without_a_module_names_the_fix(digits):
    X, _, y, _ = digits
    with pytest.raises(ValueError, match=r"input_shape=\(1, 8, 8\) is for a custom"):
        _bll(input_shape=(1, 8, 8)).fit(X, y)
    assert _bll(input_shape=(64,), max_iter=1).fit(X, y).n_iter_ == 1


def test_agreement_sign_is_checked_with_the_other_parameters(digits):
    from sklearn.utils._param_validation import InvalidParameterError

    X, _, y, _ = digits
    with pytest.raises(InvalidParameterError, match="agreement_sign"):
        _bll(agreement_sign=0).fit(X, y)


def test_joint_backward_denoising_uses_the_block_noise_streams(digits):
    # The joint back-end drew denoising noise from torch's global RNG; it
    # now uses the per-block generators, so it equals per-block backward
    # (the blocks are detached) and leaves the global RNG alone.
    X_train, _, y_train, _ = digits
    params = dict(
        hidden_layer_sizes=(16, 16), n_blocks=3, denoise_weight=0.5, max_iter=2
    )
    rng_state = torch.get_rng_state()
    joint = _bll(backward_schedule="joint", **params)
    joint.fit(X_train, y_train)
    assert torch.equal(rng_state, torch.get_rng_state())
    per_block = _bll(backward_schedule="per_block", **params)
    per_block.fit(X_train, y_train)
    for a, b in zip(joint.blocks_.parameters(), per_block.blocks_.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["bll", "backprop"])
def test_blocks_without_a_loss_or_parameters_are_left_alone(digits, mode):
    X_train, _, y_train, _ = digits
    # A lone ReLU block (split layer by layer) has no parameters.
    with torch.random.fork_rng():  # same weights whatever ran before
        torch.manual_seed(0)
        module = torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
    clf = _bll(
        module=module,
        n_blocks=3,
        mode=mode,
        max_iter=2,
    ).fit(X_train, y_train)
    assert clf.n_iter_ == 2
    # All local loss weights 0: hidden blocks keep their initial weights.
    ablation = _bll(
        hidden_layer_sizes=(16, 16),
        n_blocks=2,
        agreement_weight=0,
        decorrelation_weight=0,
        aux_weight=0,
        max_iter=1,
    )
    ablation.fit(X_train, y_train)
    before = [p.detach().clone() for p in ablation.blocks_.parameters()]
    ablation.set_params(warm_start=True).fit(X_train, y_train)
    after = list(ablation.blocks_.parameters())
    n_first = len(list(ablation.blocks_[0].parameters()))
    for a, b in zip(before[:n_first], after[:n_first]):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(before[n_first:], after[n_first:]))


def test_warm_start_applies_new_optimiser_settings_and_rejects_new_structure(digits):
    X_train, _, y_train, _ = digits
    clf = _bll(
        hidden_layer_sizes=(16, 16),
        n_blocks=2,
        max_iter=1,
        warm_start=True,
    ).fit(X_train, y_train)
    clf.set_params(learning_rate_init=0.05, solver="sgd").fit(X_train, y_train)
    assert all(isinstance(opt, torch.optim.SGD) for opt in clf._optimizers)
    assert clf._optimizers[0].param_groups[0]["lr"] == 0.05
    assert clf.n_iter_ == 2
    for change in ({"n_blocks": 1}, {"mode": "backprop"}, {"aux_weight": 0.0}):
        with pytest.raises(ValueError, match=f"{next(iter(change))} changed since"):
            clone(clf).set_params(warm_start=False).fit(X_train, y_train).set_params(
                warm_start=True, **change
            ).fit(X_train, y_train)
    clf.set_params(aux_weight=0.5).fit(X_train, y_train)  # weight only: fine
    # what local_aux does not build from may change
    aux = _bll(hidden_layer_sizes=(16, 16), n_blocks=2, mode="local_aux", max_iter=1)
    aux.set_params(aux_weight=0.0, warm_start=True).fit(X_train, y_train)
    aux.set_params(aux_weight=0.5, local_loss="gaussian").fit(X_train, y_train)
    assert aux.n_iter_ == 2


def test_transform_blocks_gives_what_its_docstring_says(digits):
    # Hidden blocks: their outputs mean-centred and L2-normalised row by row
    # (computed here in NumPy from the blocks themselves); last: the logits,
    # whose argmax is predict.
    X_train, X_test, y_train, _ = digits
    clf = _bll(hidden_layer_sizes=(32, 32), n_blocks=2, max_iter=5).fit(
        X_train, y_train
    )
    features = clf.transform_blocks(X_test)
    assert len(features) == clf.n_blocks_ == 2
    with torch.no_grad():
        hidden = clf.blocks_[0](torch.as_tensor(X_test, dtype=torch.float32))
    hidden = hidden.double().numpy()
    centred = hidden - hidden.mean(axis=1, keepdims=True)
    expected = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(features[0], expected, atol=1e-5)
    np.testing.assert_array_equal(
        clf.classes_[features[-1].argmax(axis=1)], clf.predict(X_test)
    )
