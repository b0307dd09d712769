"""Benchmark of BlockLocalClassifier: accuracy, n_blocks sweep, speed, memory.

Usage::

    python benchmarks/bench_block_local.py [--quick] [--reuse-speed]
                                           [--out benchmarks/results]

Writes ``block_local.md`` and ``block_local.png`` to ``--out``.

* Accuracy (design note §7.1): ``bll``, ``backprop`` and ``local_aux`` on the
  same architecture, epochs, batch size and learning rate, over several seeds;
  top-1 and top-3 test accuracy, gap to backprop in points.  Data: sklearn
  digits (MLP and a small CNN) and MNIST-1D (generated locally by the
  ``mnist1d`` package, no download), plus an ``n_blocks`` sweep 1, 2, 4, 8.
  MNIST-1D is run twice for the local modes: with the default linear
  auxiliary heads and with one-hidden-layer heads (``aux_hidden=(256,)``);
  backprop has no heads, so its runs are shared.
* Speed and memory (§7.2): median step time and samples/s of backprop, BLL
  sequential and BLL with one thread per block, for 1 to 8 micro-batches;
  peak activation memory measured with saved-tensor hooks (the bytes autograd
  keeps for backward, parameters excluded; ``tracemalloc`` cannot see torch's
  CPU allocations).  ``--reuse-speed`` skips this section and copies its
  tables (and the throughput panel's numbers) from the existing
  ``block_local.md``, for reruns of the accuracy part alone.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import top_k_accuracy_score
from sklearn.model_selection import train_test_split

from skasync import BlockLocalClassifier

MODES = ["backprop", "bll", "local_aux"]


def digits_data():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)


def mnist1d_data(n_samples):
    """MNIST-1D generated locally (seeded); falls back to make_classification."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = n_samples
        args.seed = 42
        data = make_dataset(args)
        X_train, X_test = data["x"], data["x_test"]
        mean, std = X_train.mean(), X_train.std()
        return (
            (X_train - mean) / std,
            (X_test - mean) / std,
            np.asarray(data["y"]),
            np.asarray(data["y_test"]),
            "MNIST-1D",
        )
    except ImportError:
        from sklearn.datasets import make_classification

        X, y = make_classification(
            n_samples=n_samples,
            n_features=40,
            n_informative=20,
            n_classes=10,
            n_clusters_per_class=2,
            random_state=0,
        )
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.2, random_state=0, stratify=y
        )
        return X_train, X_test, y_train, y_test, "make_classification"


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
        clf.fit(X_train, y_train)
        seconds.append(time.perf_counter() - start)
        proba = clf.predict_proba(X_test)
        top1.append(100 * top_k_accuracy_score(y_test, proba, k=1, labels=clf.classes_))
        top3.append(100 * top_k_accuracy_score(y_test, proba, k=3, labels=clf.classes_))
    return np.array(top1), np.array(top3), float(np.mean(seconds))


def accuracy_section(quick, seeds, lines, figure_data):
    digits = digits_data()
    n_large = 6000 if quick else 20000
    X_tr, X_te, y_tr, y_te, large_name = mnist1d_data(n_large)
    large = (X_tr, X_te, y_tr, y_te)
    epochs_digits = 6 if quick else 30
    epochs_cnn = 3 if quick else 15
    epochs_large = 4 if quick else 15
    common = dict(batch_size=64, learning_rate_init=3e-3)
    setups = [
        (
            f"digits, MLP (256,)x4, 4 blocks, {epochs_digits} ep",
            digits,
            dict(
                hidden_layer_sizes=(256,) * 4,
                n_blocks=4,
                max_iter=epochs_digits,
                **common,
            ),
        ),
        (
            f"digits, CNN 3 conv+BN units + linear, 4 blocks, {epochs_cnn} ep",
            digits,
            dict(
                module="cnn",
                input_shape=(1, 8, 8),
                n_blocks=4,
                max_iter=epochs_cnn,
                **common,
            ),
        ),
        (
            f"{large_name} ({len(y_tr)} train / {len(y_te)} test), MLP (256,)x4, "
            f"4 blocks, {epochs_large} ep",
            large,
            dict(
                hidden_layer_sizes=(256,) * 4,
                n_blocks=4,
                max_iter=epochs_large,
                batch_size=128,
                learning_rate_init=3e-3,
            ),
        ),
    ]
    # Same net with one-hidden-layer auxiliary heads for bll and local_aux:
    # with linear heads the one-layer early blocks overfit greedily on
    # MNIST-1D (see the diagnosis in block_local.md).
    name, data, params = setups[-1]
    setups.append(
        (
            name.replace("MLP (256,)x4", "MLP (256,)x4 / MLP heads"),
            data,
            {**params, "aux_hidden": (256,)},
        )
    )
    lines += [
        "## Accuracy",
        "",
        f"Seeds {list(seeds)}; mean ± std of test accuracy in %; gap = mode − "
        "backprop in points (top-1). Same architecture, epochs, batch size, "
        "optimiser (Adam) and learning rate for every mode; BLL uses the "
        "estimator's default local-loss weights.",
        "",
    ]
    lines += [
        "| data / model | mode | top-1 | top-3 | gap top-1 | gap top-3 | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    # Backprop ignores the auxiliary heads: runs differing only in
    # aux_hidden are shared rather than repeated.
    backprop_runs = {}
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
        base1, base3 = results["backprop"][0].mean(), results["backprop"][1].mean()
        for mode in MODES:
            t1, t3, sec = results[mode]
            lines.append(
                f"| {name} | {mode} | {t1.mean():.2f} ± {t1.std():.2f} | "
                f"{t3.mean():.2f} ± {t3.std():.2f} | {t1.mean() - base1:+.2f} | "
                f"{t3.mean() - base3:+.2f} | {sec:.1f} |"
            )
        figure_data["accuracy"][name] = {m: results[m][0] for m in MODES}
    lines.append("")

    # Ablations of the BLL terms on the digits MLP.
    name, data, params = setups[0]
    ablations = [
        ("bll (defaults: γ=0.1, β=1, λ_pred=0.3)", {}),
        ("agreement off (γ=0)", dict(agreement_weight=0.0)),
        ("agreement γ=1", dict(agreement_weight=1.0)),
        ("authors' sign (+1), γ=1", dict(agreement_weight=1.0, agreement_sign=1)),
        ("decorrelation off (β=0)", dict(decorrelation_weight=0.0)),
        ("aux heads off (λ_pred=0)", dict(aux_weight=0.0)),
        ("gaussian local loss", dict(local_loss="gaussian")),
        ("bernoulli local loss", dict(local_loss="bernoulli")),
        ("feedback mlp", dict(feedback="mlp")),
        ("feedback fixed_random", dict(feedback="fixed_random")),
        ("MLP aux heads (256,)", dict(aux_hidden=(256,))),
    ]
    if quick:
        ablations = ablations[:3]
    ablation_seeds = seeds[:2]
    lines += [
        f"### Ablations ({name}; seeds {list(ablation_seeds)})",
        "",
        "| variant | top-1 | gap to backprop (3-seed mean) |",
        "|---|---|---|",
    ]
    base1 = figure_data["accuracy"][name]["backprop"].mean()
    for label, extra in ablations:
        t1, _, _ = evaluate({**params, "mode": "bll", **extra}, data, ablation_seeds)
        lines.append(
            f"| {label} | {t1.mean():.2f} ± {t1.std():.2f} | {t1.mean() - base1:+.2f} |"
        )
        print(f"[ablation] {label}: {t1.mean():.2f}", flush=True)
    lines.append("")

    # n_blocks sweep on one fixed 8-layer MLP (7 hidden layers + output).
    epochs_sweep = 6 if quick else 20
    sweep = [1, 2, 4, 8]
    lines += [
        "### n_blocks sweep (digits, MLP (256,)x7 + output = 8 layers, "
        f"{epochs_sweep} ep)",
        "",
        "| n_blocks | bll top-1 | local_aux top-1 | backprop top-1 |",
        "|---|---|---|---|",
    ]
    params = dict(hidden_layer_sizes=(256,) * 7, max_iter=epochs_sweep, **common)
    backprop, _, _ = evaluate(
        {**params, "mode": "backprop", "n_blocks": 1}, digits, seeds
    )
    figure_data["sweep"] = {
        "n_blocks": sweep,
        "bll": [],
        "local_aux": [],
        "backprop": backprop.mean(),
    }
    for n_blocks in sweep:
        bll, _, _ = evaluate(
            {**params, "mode": "bll", "n_blocks": n_blocks}, digits, seeds
        )
        aux, _, _ = evaluate(
            {**params, "mode": "local_aux", "n_blocks": n_blocks}, digits, seeds
        )
        figure_data["sweep"]["bll"].append(bll)
        figure_data["sweep"]["local_aux"].append(aux)
        lines.append(
            f"| {n_blocks} | {bll.mean():.2f} ± {bll.std():.2f} | "
            f"{aux.mean():.2f} ± {aux.std():.2f} | {backprop.mean():.2f} |"
        )
        print(
            f"[sweep] {n_blocks}: bll {bll.mean():.2f} aux {aux.mean():.2f}", flush=True
        )
    lines.append("")


def speed_section(quick, lines, figure_data):
    n_threads = min(2, os.cpu_count() or 1)
    rng = np.random.RandomState(0)
    n_samples = 2048 if quick else 8192
    X = rng.randn(n_samples, 64).astype(np.float32)
    y = rng.randint(0, 10, n_samples)
    base = dict(
        hidden_layer_sizes=(512,) * 7,
        n_blocks=8,
        batch_size=256,
        max_iter=2 if quick else 3,
        random_state=0,
        device="cpu",
        tol=0,
    )
    configs = [
        ("backprop, 1 thread", dict(mode="backprop", torch_num_threads=1)),
        (
            f"backprop, {n_threads} threads",
            dict(mode="backprop", torch_num_threads=n_threads),
        ),
        (
            "bll sequential, joint backward, 1 thread",
            dict(backward_schedule="joint", torch_num_threads=1),
        ),
    ]
    for n_mb in (1, 2, 4, 8):
        configs.append(
            (
                f"bll sequential, {n_mb} micro-batch, 1 thread",
                dict(n_microbatches=n_mb, torch_num_threads=1),
            )
        )
    configs.append(
        (
            f"bll sequential, 1 micro-batch, {n_threads} threads",
            dict(torch_num_threads=n_threads),
        )
    )
    for n_mb in (1, 2, 4, 8):
        configs.append(
            (
                f"bll threads (8 block threads x 1), {n_mb} micro-batch",
                dict(
                    parallel="threads", n_microbatches=n_mb, torch_num_threads=n_threads
                ),
            )
        )
    lines += [
        "## Speed and memory",
        "",
        f"CPU, {n_threads} cores shared with other jobs. Sequential runs use 1 or "
        f"{n_threads} intra-op threads; `parallel='threads'` runs 8 block threads "
        "with 1 intra-op thread each (max(1, 2 // 8)). "
        f"MLP 64 → (512,)x7 → 10 cut into 8 blocks, batch 256, {n_samples} "
        "random samples, median over all steps but the first. Peak activation "
        "memory = peak bytes autograd holds for backward (saved-tensor hooks, "
        "parameters excluded), first 4 steps of the fit. `parallel='streams'` "
        "needs CUDA: not measurable on this machine (no GPU in this session).",
        "",
        "| configuration | step ms | samples/s | step speed-up vs bll sequential "
        "(1 mb, 1 thread) | step speed-up vs backprop (1 thread) "
        "| peak activation MB | memory vs backprop |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for name, extra in configs:
        clf = BlockLocalClassifier(**{**base, **extra}).fit(X, y)
        timing = clf.timing_
        rows.append(
            (
                name,
                timing["step_ms"],
                timing["samples_per_second"],
                timing["peak_activation_bytes"],
                timing,
            )
        )
        print(f"[speed] {name}: {timing['step_ms']:.1f} ms", flush=True)
    ref_row = [r for r in rows if r[0] == "bll sequential, 1 micro-batch, 1 thread"][0]
    ref_step = ref_row[1]
    bp_step, bp_mem = rows[0][1], rows[0][3]
    for name, step, sps, mem, _ in rows:
        lines.append(
            f"| {name} | {step:.1f} | {sps:.0f} | {ref_step / step:.2f}x | "
            f"{bp_step / step:.2f}x | {mem / 2**20:.2f} | {mem / bp_mem:.2f}x |"
        )
    seq = ref_row[4]
    lines += [
        "",
        "Per-block medians, bll sequential (1 micro-batch, 1 thread), ms:",
        "",
        "| block | " + " | ".join(str(k) for k in range(8)) + " |",
        "|---|" + "---|" * 8,
        "| forward + loss | "
        + " | ".join(f"{v:.2f}" for v in seq["forward_ms"])
        + " |",
        "| backward | " + " | ".join(f"{v:.2f}" for v in seq["backward_ms"]) + " |",
        "| step + feedback | "
        + " | ".join(f"{v:.2f}" for v in seq["update_ms"])
        + " |",
        "",
    ]
    figure_data["speed"] = [(r[0], r[2], r[3]) for r in rows]


def reuse_speed_section(md_path, lines, figure_data):
    """Copy the speed and memory section of an earlier ``block_local.md``.

    The throughput panel needs only each configuration's samples/s and peak
    activation bytes, which the copied table holds.
    """
    text = Path(md_path).read_text()
    start = text.index("## Speed and memory")
    end = text.index("Total benchmark time")
    section = text[start:end].rstrip().splitlines()
    # After an earlier reuse, the measurement date is in its copy note, not
    # in the header; drop that note so repeated reuses keep one.
    notes = [row for row in section if row.startswith("_Copied from")]
    section = [row for row in section if row not in notes]
    stamp = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", notes[0] if notes else text)
    when = f" of {stamp.group(0)}" if stamp else ""
    lines += (
        section[:1]
        + [
            "",
            f"_Copied from the earlier run{when} (`--reuse-speed`); not remeasured._",
        ]
        + section[1:]
        + [""]
    )
    speed = []
    for row in section:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"[\d.]+", cells[2]):
            speed.append((cells[0], float(cells[2]), float(cells[5]) * 2**20))
    figure_data["speed"] = speed


def short_label(name):
    """Two-line tick label from a setup name: data set, then the model kind.

    The full names (sample counts, layer widths) overlap in the narrow
    accuracy panel; the table holds them.
    """
    parts = name.split(", ")
    label = parts[0].split(" (")[0] + "\n" + parts[1].split(" ")[0]
    return label + " + MLP heads" if "MLP heads" in name else label


def plot(figure_data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    names = list(figure_data["accuracy"])
    width = 0.25
    for i, mode in enumerate(MODES):
        means = [figure_data["accuracy"][n][mode].mean() for n in names]
        stds = [figure_data["accuracy"][n][mode].std() for n in names]
        ax.bar(
            np.arange(len(names)) + (i - 1) * width,
            means,
            width,
            yerr=stds,
            label=mode,
            capsize=3,
        )
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([short_label(n) for n in names], fontsize=8)
    low = min(figure_data["accuracy"][n][m].mean() for n in names for m in MODES)
    ax.set_ylim(max(0, low - 10), 100)
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title("Accuracy (mean ± std over seeds)")
    ax.legend(fontsize=8)

    ax = axes[1]
    sweep = figure_data["sweep"]
    for mode in ("bll", "local_aux"):
        means = [v.mean() for v in sweep[mode]]
        stds = [v.std() for v in sweep[mode]]
        ax.errorbar(
            sweep["n_blocks"], means, yerr=stds, marker="o", label=mode, capsize=3
        )
    ax.axhline(sweep["backprop"], color="k", ls="--", label="backprop")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sweep["n_blocks"])
    ax.set_xticklabels(sweep["n_blocks"])
    ax.set_xlabel("n_blocks")
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title("digits, 8-layer MLP: n_blocks sweep")
    ax.legend(fontsize=8)

    ax = axes[2]
    speed = figure_data["speed"]
    ax.barh([s[0] for s in speed], [s[1] for s in speed])
    ax.set_xlabel("samples / s (CPU)")
    ax.set_title("Throughput, 8 blocks")
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast settings")
    parser.add_argument(
        "--reuse-speed",
        action="store_true",
        help="copy the speed/memory tables from the existing "
        "block_local.md instead of remeasuring them",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [0] if args.quick else [0, 1, 2]
    start = time.time()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    lines = [
        "# BlockLocalClassifier benchmark",
        "",
        f"Command: `python benchmarks/bench_block_local.py"
        f"{' --quick' if args.quick else ''}"
        f"{' --reuse-speed' if args.reuse_speed else ''}`; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; python "
        f"{platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU cores (shared with other jobs: load average at "
        f"start {load[0]:.1f}), no GPU.",
        "",
    ]
    figure_data = {"accuracy": {}}
    accuracy_section(args.quick, seeds, lines, figure_data)
    if args.reuse_speed:
        reuse_speed_section(out / "block_local.md", lines, figure_data)
    else:
        speed_section(args.quick, lines, figure_data)
    lines += [f"Total benchmark time: {time.time() - start:.0f} s.", ""]
    (out / "block_local.md").write_text("\n".join(lines))
    plot(figure_data, out / "block_local.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
