"""Benchmark of BlockLocalClassifier: accuracy, n_blocks sweep, speed, memory.

Usage::

    python benchmarks/bench_block_local.py [--quick] [--seeds N] [--reuse-speed]
                                           [--out benchmarks/results]

Writes ``block_local.json``, then ``block_local.md`` and ``block_local.png``
rendered from it, to ``--out`` (``block_local.quick.*`` with ``--quick``).

* Accuracy: ``bll``, ``backprop`` and ``local_aux`` on the
  same architecture, epochs, batch size and learning rate, over several seeds;
  top-1 and top-3 test accuracy, gap to backprop in points.  Data: sklearn
  digits (MLP and a small CNN) and MNIST-1D (generated locally by the
  ``mnist1d`` package, no download), plus an ``n_blocks`` sweep 1, 2, 4, 8.
  MNIST-1D is run twice for the local modes: with the default linear
  auxiliary heads and with one-hidden-layer heads (``aux_hidden=(256,)``);
  backprop has no heads, so its runs are shared.
* Speed and memory: median step time and samples/s of backprop, BLL
  sequential and BLL with one thread per block, for 1 to 8 micro-batches;
  peak activation memory measured with saved-tensor hooks (the bytes autograd
  keeps for backward, parameters excluded; ``tracemalloc`` cannot see torch's
  CPU allocations).  ``--reuse-speed`` skips this section and copies its
  results (tables and throughput panel) from the ``block_local.json`` of
  an earlier run in ``--out``, for reruns of the accuracy part alone.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import os
import sys
import time
import warnings

import numpy as np
import torch
from _common import (
    digits_split,
    environment,
    load_mnist1d,
    make_parser,
    markdown_table,
    parse_args,
    read_results,
    write_results,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import top_k_accuracy_score

from skasync import BlockLocalClassifier
from skasync.neural_network._modes import BLOCK_LOCAL_MODES, modes_where

# The end-to-end baseline first, then the modes with block-local losses.
MODES = list(
    modes_where(BLOCK_LOCAL_MODES, decoupled=False)
    + modes_where(BLOCK_LOCAL_MODES, decoupled=True)
)
# The configuration the speed-ups and the per-block times refer to.
SPEED_REFERENCE = "bll sequential, 1 micro-batch, 1 thread"


def digits_data():
    X_train, X_test, y_train, y_test = digits_split(test_size=0.3)
    return X_train / 16.0, X_test / 16.0, y_train, y_test


def mnist1d_data(n_samples):
    """MNIST-1D standardised by the training set's global mean and std."""
    split = load_mnist1d(n_samples)
    mean, std = split.X_train.mean(), split.X_train.std()
    return (
        (split.X_train - mean) / std,
        (split.X_test - mean) / std,
        split.y_train,
        split.y_test,
        split.name,
    )


def small_cnn():
    """3 conv units + a linear head for 8x8 digits; batch norm fixes each
    block's output scale, which the scale-invariant local losses leave free."""
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


def evaluate(params, data, seeds):
    """Fit once per seed; top-1 / top-3 test accuracy in percent, seconds."""
    X_train, X_test, y_train, y_test = data
    top1, top3, seconds = [], [], []
    for seed in seeds:
        kw = dict(params)
        if kw.get("module") == "cnn":
            # Same user initialisation for every mode at a given seed.
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                kw["module"] = small_cnn()
        clf = BlockLocalClassifier(
            random_state=seed, device="cpu", tol=0, torch_num_threads=1, **kw
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            # The protocol fixes the epochs: each fit ends at max_iter.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X_train, y_train)
        seconds.append(time.perf_counter() - start)
        proba = clf.predict_proba(X_test)
        top1.append(100 * top_k_accuracy_score(y_test, proba, k=1, labels=clf.classes_))
        top3.append(100 * top_k_accuracy_score(y_test, proba, k=3, labels=clf.classes_))
    return np.array(top1), np.array(top3), float(np.mean(seconds))


def _defaults_label():
    """The ablation table's first row: the local-loss weights of the defaults."""
    p = BlockLocalClassifier().get_params()
    return (
        f"bll (defaults: γ={p['agreement_weight']:g}, "
        f"β={p['decorrelation_weight']:g}, λ_pred={p['aux_weight']:g})"
    )


def run_accuracy(quick, seeds):
    """Fit every setup, the BLL ablations and the n_blocks sweep."""
    digits = digits_data()
    n_large = 6000 if quick else 20000
    X_tr, X_te, y_tr, y_te, large_name = mnist1d_data(n_large)
    large = (X_tr, X_te, y_tr, y_te)
    epochs_digits = 6 if quick else 30
    epochs_cnn = 3 if quick else 15
    epochs_large = 4 if quick else 15
    common = {"batch_size": 64, "learning_rate_init": 3e-3}
    setups = [
        (
            f"digits, MLP (256,)x4, 4 blocks, {epochs_digits} ep",
            digits,
            {
                "hidden_layer_sizes": (256,) * 4,
                "n_blocks": 4,
                "max_iter": epochs_digits,
                **common,
            },
        ),
        (
            f"digits, CNN 3 conv+BN units + linear, 4 blocks, {epochs_cnn} ep",
            digits,
            {
                "module": "cnn",
                "input_shape": (1, 8, 8),
                "n_blocks": 4,
                "max_iter": epochs_cnn,
                **common,
            },
        ),
        (
            (
                f"{large_name} ({len(y_tr)} train / {len(y_te)} test), MLP (256,)x4, "
                f"4 blocks, {epochs_large} ep"
            ),
            large,
            {
                "hidden_layer_sizes": (256,) * 4,
                "n_blocks": 4,
                "max_iter": epochs_large,
                "batch_size": 128,
                "learning_rate_init": 3e-3,
            },
        ),
    ]
    # Same net with one-hidden-layer auxiliary heads for bll and local_aux:
    # with linear heads the one-layer early blocks overfit greedily on
    # MNIST-1D (see the diagnosis in docs/benchmarks.rst).
    name, data, params = setups[-1]
    setups.append(
        (
            name.replace("MLP (256,)x4", "MLP (256,)x4 / MLP heads"),
            data,
            {**params, "aux_hidden": (256,)},
        )
    )
    # Backprop ignores the auxiliary heads: runs differing only in
    # aux_hidden are shared rather than repeated.
    backprop_runs = {}
    accuracy = []
    for name, data, params in setups:
        results = {}
        for mode in MODES:
            if mode == "backprop":
                key = (
                    id(data),
                    repr(
                        sorted((k, v) for k, v in params.items() if k != "aux_hidden")
                    ),
                )
                if key not in backprop_runs:
                    backprop_runs[key] = evaluate({**params, "mode": mode}, data, seeds)
                results[mode] = backprop_runs[key]
            else:
                results[mode] = evaluate({**params, "mode": mode}, data, seeds)
            print(f"[acc] {name} {mode}: {results[mode][0].mean():.2f}", flush=True)
        accuracy.append(
            {
                "setup": name,
                "modes": {
                    mode: {"top1": top1, "top3": top3, "fit_seconds": seconds}
                    for mode, (top1, top3, seconds) in results.items()
                },
            }
        )

    # Ablations of the BLL terms on the digits MLP.
    name, data, params = setups[0]
    ablations = [
        (_defaults_label(), {}),
        ("agreement off (γ=0)", {"agreement_weight": 0.0}),
        ("agreement γ=1", {"agreement_weight": 1.0}),
        ("authors' sign (+1), γ=1", {"agreement_weight": 1.0, "agreement_sign": 1}),
        ("decorrelation off (β=0)", {"decorrelation_weight": 0.0}),
        ("aux heads off (λ_pred=0)", {"aux_weight": 0.0}),
        ("gaussian local loss", {"local_loss": "gaussian"}),
        ("bernoulli local loss", {"local_loss": "bernoulli"}),
        ("feedback mlp", {"feedback": "mlp"}),
        ("feedback fixed_random", {"feedback": "fixed_random"}),
        ("MLP aux heads (256,)", {"aux_hidden": (256,)}),
    ]
    if quick:
        ablations = ablations[:3]
    ablation_seeds = seeds[:2]
    ablation_rows = []
    for label, extra in ablations:
        t1, _, _ = evaluate({**params, "mode": "bll", **extra}, data, ablation_seeds)
        ablation_rows.append({"variant": label, "top1": t1})
        print(f"[ablation] {label}: {t1.mean():.2f}", flush=True)

    # n_blocks sweep on one fixed 8-layer MLP (7 hidden layers + output).
    epochs_sweep = 6 if quick else 20
    n_blocks_sweep = [1, 2, 4, 8]
    sweep_params = {
        "hidden_layer_sizes": (256,) * 7,
        "max_iter": epochs_sweep,
        **common,
    }
    backprop, _, _ = evaluate(
        {**sweep_params, "mode": "backprop", "n_blocks": 1}, digits, seeds
    )
    sweep = {
        "epochs": epochs_sweep,
        "n_blocks": n_blocks_sweep,
        "backprop": backprop,
        "bll": [],
        "local_aux": [],
    }
    for n_blocks in n_blocks_sweep:
        for mode in ("bll", "local_aux"):
            top1, _, _ = evaluate(
                {**sweep_params, "mode": mode, "n_blocks": n_blocks}, digits, seeds
            )
            sweep[mode].append(top1)
        print(
            f"[sweep] {n_blocks}: bll {sweep['bll'][-1].mean():.2f} "
            f"aux {sweep['local_aux'][-1].mean():.2f}",
            flush=True,
        )
    return {
        "accuracy": accuracy,
        "ablations": {"setup": name, "seeds": ablation_seeds, "rows": ablation_rows},
        "sweep": sweep,
    }


def _mean_std(values):
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def render_accuracy(results):
    """The accuracy, ablation and sweep tables."""
    seeds = results["seeds"]
    lines = [
        "## Accuracy",
        "",
        (
            f"Seeds {seeds}; mean ± std of test accuracy in %; gap = mode − "
            "backprop in points (top-1). Same architecture, epochs, batch size, "
            "optimiser (Adam) and learning rate for every mode; BLL uses the "
            "estimator's default local-loss weights."
        ),
        "",
    ]
    rows = []
    for setup in results["accuracy"]:
        modes = setup["modes"]
        base1 = np.mean(modes["backprop"]["top1"])
        base3 = np.mean(modes["backprop"]["top3"])
        for mode in MODES:
            top1, top3 = modes[mode]["top1"], modes[mode]["top3"]
            rows.append(
                [
                    setup["setup"],
                    mode,
                    _mean_std(top1),
                    _mean_std(top3),
                    f"{np.mean(top1) - base1:+.2f}",
                    f"{np.mean(top3) - base3:+.2f}",
                    f"{modes[mode]['fit_seconds']:.1f}",
                ]
            )
    lines += markdown_table(
        ["data / model", "mode", "top-1", "top-3", "gap top-1", "gap top-3", "fit s"],
        rows,
    )
    lines.append("")

    ablations = results["ablations"]
    setup = next(a for a in results["accuracy"] if a["setup"] == ablations["setup"])
    base1 = np.mean(setup["modes"]["backprop"]["top1"])
    lines += [f"### Ablations ({ablations['setup']}; seeds {ablations['seeds']})", ""]
    lines += markdown_table(
        ["variant", "top-1", f"gap to backprop ({len(seeds)}-seed mean)"],
        [
            [
                row["variant"],
                _mean_std(row["top1"]),
                f"{np.mean(row['top1']) - base1:+.2f}",
            ]
            for row in ablations["rows"]
        ],
    )
    lines.append("")

    sweep = results["sweep"]
    lines += [
        (
            "### n_blocks sweep (digits, MLP (256,)x7 + output = 8 layers, "
            f"{sweep['epochs']} ep)"
        ),
        "",
    ]
    lines += markdown_table(
        ["n_blocks", "bll top-1", "local_aux top-1", "backprop top-1"],
        [
            [
                n_blocks,
                _mean_std(bll),
                _mean_std(aux),
                f"{np.mean(sweep['backprop']):.2f}",
            ]
            for n_blocks, bll, aux in zip(
                sweep["n_blocks"], sweep["bll"], sweep["local_aux"]
            )
        ],
    )
    lines.append("")
    return lines


def run_speed(quick, date):
    """Step time, throughput and activation memory of each configuration."""
    n_threads = min(2, os.cpu_count() or 1)
    rng = np.random.RandomState(0)
    n_samples = 2048 if quick else 8192
    X = rng.randn(n_samples, 64).astype(np.float32)
    y = rng.randint(0, 10, n_samples)
    base = {
        "hidden_layer_sizes": (512,) * 7,
        "n_blocks": 8,
        "batch_size": 256,
        "max_iter": 2 if quick else 3,
        "random_state": 0,
        "device": "cpu",
        "tol": 0,
    }
    configs = [
        ("backprop, 1 thread", {"mode": "backprop", "torch_num_threads": 1}),
        (
            f"backprop, {n_threads} threads",
            {"mode": "backprop", "torch_num_threads": n_threads},
        ),
        (
            "bll sequential, joint backward, 1 thread",
            {"backward_schedule": "joint", "torch_num_threads": 1},
        ),
    ]
    for n_mb in (1, 2, 4, 8):
        configs.append(
            (
                f"bll sequential, {n_mb} micro-batch, 1 thread",
                {"n_microbatches": n_mb, "torch_num_threads": 1},
            )
        )
    configs.append(
        (
            f"bll sequential, 1 micro-batch, {n_threads} threads",
            {"torch_num_threads": n_threads},
        )
    )
    for n_mb in (1, 2, 4, 8):
        configs.append(
            (
                f"bll threads (8 block threads x 1), {n_mb} micro-batch",
                {
                    "parallel": "threads",
                    "n_microbatches": n_mb,
                    "torch_num_threads": n_threads,
                },
            )
        )
    rows = []
    for name, extra in configs:
        timing = BlockLocalClassifier(**{**base, **extra}).fit(X, y).timing_
        rows.append({"configuration": name, **timing})
        print(f"[speed] {name}: {timing['step_ms']:.1f} ms", flush=True)
    return {
        "measured_on": date,
        "n_threads": n_threads,
        "n_samples": n_samples,
        "rows": [
            {
                key: row[key]
                for key in (
                    "configuration",
                    "step_ms",
                    "samples_per_second",
                    "peak_activation_bytes",
                )
            }
            for row in rows
        ],
        # Per-block medians of the reference configuration.
        "per_block": {
            key: next(r for r in rows if r["configuration"] == SPEED_REFERENCE)[key]
            for key in ("forward_ms", "backward_ms", "update_ms")
        },
    }


def reuse_speed(args):
    """The speed results of the earlier run in ``--out``, marked as copied."""
    try:
        earlier = read_results(args, "block_local")
    except FileNotFoundError:
        sys.exit(
            f"--reuse-speed: no earlier block_local JSON in {args.out}; run once "
            "without --reuse-speed"
        )
    return {**earlier["speed"], "copied": True}


def render_speed(speed):
    """The speed and memory tables."""
    n_threads = speed["n_threads"]
    lines = ["## Speed and memory", ""]
    if speed.get("copied"):
        lines += [
            (
                f"_Copied from the earlier run of {speed['measured_on']} "
                "(`--reuse-speed`); not remeasured._"
            ),
            "",
        ]
    lines += [
        (
            f"CPU, {n_threads} cores shared with other jobs. Sequential runs use 1 or "
            f"{n_threads} intra-op threads; `parallel='threads'` runs 8 block threads "
            "with 1 intra-op thread each (max(1, 2 // 8)). "
            f"MLP 64 → (512,)x7 → 10 cut into 8 blocks, batch 256, {speed['n_samples']} "
            "random samples, median over all steps but the first. Peak activation "
            "memory = peak bytes autograd holds for backward (saved-tensor hooks, "
            "parameters excluded), first 4 steps of the fit. `parallel='streams'` "
            "needs CUDA: not measurable on this machine (no GPU in this session)."
        ),
        "",
    ]
    rows = speed["rows"]
    reference = next(r for r in rows if r["configuration"] == SPEED_REFERENCE)
    backprop = rows[0]
    lines += markdown_table(
        [
            "configuration",
            "step ms",
            "samples/s",
            "step speed-up vs bll sequential (1 mb, 1 thread)",
            "step speed-up vs backprop (1 thread)",
            "peak activation MB",
            "memory vs backprop",
        ],
        [
            [
                r["configuration"],
                f"{r['step_ms']:.1f}",
                f"{r['samples_per_second']:.0f}",
                f"{reference['step_ms'] / r['step_ms']:.2f}x",
                f"{backprop['step_ms'] / r['step_ms']:.2f}x",
                f"{r['peak_activation_bytes'] / 2**20:.2f}",
                f"{r['peak_activation_bytes'] / backprop['peak_activation_bytes']:.2f}x",
            ]
            for r in rows
        ],
    )
    per_block = speed["per_block"]
    n_blocks = len(per_block["forward_ms"])
    lines += [
        "",
        "Per-block medians, bll sequential (1 micro-batch, 1 thread), ms:",
        "",
    ]
    lines += markdown_table(
        ["block"] + [str(k) for k in range(n_blocks)],
        [
            [label] + [f"{v:.2f}" for v in per_block[key]]
            for label, key in (
                ("forward + loss", "forward_ms"),
                ("backward", "backward_ms"),
                ("step + feedback", "update_ms"),
            )
        ],
    )
    lines.append("")
    return lines


def render(results):
    """The Markdown report, from the JSON results alone."""
    env = results["environment"]
    lines = [
        "# BlockLocalClassifier benchmark",
        "",
        (
            f"Command: `{results['command']}`; {env['date']}; python {env['python']}, "
            f"torch {env['torch']}, {env['cpu_count']} CPU cores (shared with other "
            f"jobs: load average at start {env['load_average']:.1f}), no GPU."
        ),
        "",
    ]
    lines += render_accuracy(results)
    lines += render_speed(results["speed"])
    lines += [f"Total benchmark time: {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def short_label(name):
    """Two-line tick label from a setup name: data set, then the model kind.

    The full names (sample counts, layer widths) overlap in the narrow
    accuracy panel; the table holds them.
    """
    parts = name.split(", ")
    label = parts[0].split(" (")[0] + "\n" + parts[1].split(" ")[0]
    return label + " + MLP heads" if "MLP heads" in name else label


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    accuracy = results["accuracy"]
    width = 0.25
    for i, mode in enumerate(MODES):
        top1 = [setup["modes"][mode]["top1"] for setup in accuracy]
        ax.bar(
            np.arange(len(accuracy)) + (i - 1) * width,
            [np.mean(t) for t in top1],
            width,
            yerr=[np.std(t) for t in top1],
            label=mode,
            capsize=3,
        )
    ax.set_xticks(np.arange(len(accuracy)))
    ax.set_xticklabels([short_label(setup["setup"]) for setup in accuracy], fontsize=8)
    low = min(np.mean(s["modes"][m]["top1"]) for s in accuracy for m in MODES)
    ax.set_ylim(max(0, low - 10), 100)
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title("Accuracy (mean ± std over seeds)")
    ax.legend(fontsize=8)

    ax = axes[1]
    sweep = results["sweep"]
    for mode in ("bll", "local_aux"):
        ax.errorbar(
            sweep["n_blocks"],
            [np.mean(v) for v in sweep[mode]],
            yerr=[np.std(v) for v in sweep[mode]],
            marker="o",
            label=mode,
            capsize=3,
        )
    ax.axhline(np.mean(sweep["backprop"]), color="k", ls="--", label="backprop")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sweep["n_blocks"])
    ax.set_xticklabels(sweep["n_blocks"])
    ax.set_xlabel("n_blocks")
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title("digits, 8-layer MLP: n_blocks sweep")
    ax.legend(fontsize=8)

    ax = axes[2]
    speed = results["speed"]["rows"]
    ax.barh(
        [r["configuration"] for r in speed], [r["samples_per_second"] for r in speed]
    )
    ax.set_xlabel("samples / s (CPU)")
    ax.set_title("Throughput, 8 blocks")
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = make_parser(
        __doc__,
        "6 000 MNIST-1D samples, 3 to 6 epochs, 3 ablations, 2 048 speed samples",
        n_seeds=3,
    )
    parser.add_argument(
        "--reuse-speed",
        action="store_true",
        help="copy the speed/memory results from the block_local JSON of an "
        "earlier run in --out instead of remeasuring them",
    )
    args = parse_args(parser, argv)
    seeds = list(range(args.seeds))
    start = time.time()
    env = environment()
    results = {"command": args.command, "environment": env, "seeds": seeds}
    results.update(run_accuracy(args.quick, seeds))
    if args.reuse_speed:
        results["speed"] = reuse_speed(args)
    else:
        results["speed"] = run_speed(args.quick, env["date"])
    results["seconds"] = time.time() - start
    results = write_results(args, "block_local", results, render, plot)
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
