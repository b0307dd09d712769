"""Threads against processes: AsyncLayerwiseMLPClassifier's back-ends on the CPU.

Every parallel mode runs with ``backend="threads"`` and ``backend="processes"``
side by side, against the one-thread serial loop, a baseline written the way
PyTorch's ``mnist_hogwild`` example is (``torch.multiprocessing`` with spawn,
``share_memory()``, autograd, ``torch.optim.SGD``, the same process count)
and sklearn's ``MLPClassifier`` (one BLAS thread). MNIST-1D (60 000 samples,
``pip install mnist1d``), widths 256 and 1024, batch 128, SGD with Nesterov
momentum; >= 3 seeds.

Each run is one ``fit`` with a 10 % validation split scored after every
epoch (``history_``), so:

* samples/s is ``throughput_`` (training only, start-up excluded);
* start-up is the pool's cold start (measured once, in a fresh pool) and
  each fit's hand-over (``throughput_["startup_seconds"]``);
* time to target is the ``wall_time`` of the first epoch whose validation
  accuracy reaches TARGET_FRACTION x serial's best, plus the cold start
  for the process back-end ("start-up included"); ratios between two
  process modes leave it out on both sides ("start-up excl.");
* the mnist_hogwild-style baseline spawns its processes once per fit, as
  the example does, and its samples/s leave that spawn out (timed from a
  barrier its processes pass together).

Against scikit-learn: MLPClassifier trains with the same SGD settings on all
the training rows; PD-ASGD on processes then trains on the same rows, one
``partial_fit`` epoch at a time (test accuracy measured between epochs, clock
stopped), until it reaches MLPClassifier's mean test accuracy. The ratio of
its training time to MLPClassifier's fit time is the goal's figure.

Across ranks (``--add-torchrun``, added to the backends.json in --out):
``torchrun`` launches 2 local gloo ranks that train one model, with
``mode="sync"`` (gradients all-reduced every step) and ``mode="pd-asgd"``
(LayUp: each layer's increment sent to the other rank), beside serial and
PD-ASGD / Hogwild! on processes measured again in the same run. The launch
(interpreter, imports, rendezvous, data) is timed apart from the fit.

Run (pauses nothing itself: keep other work off the machine):
    python benchmarks/bench_backends.py            # ~23 min on 2 cores
    python benchmarks/bench_backends.py --quick    # 1 seed, 10k samples, width 256
    python benchmarks/bench_backends.py --add-sklearn-target   # only that part,
        # added to the backends.json in --out (MLPClassifier measured again)
    python benchmarks/bench_backends.py --add-torchrun   # only that part
Writes backends.json, backends.md and backends.png to --out.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    environment,
    load_mnist1d,
    make_parser,
    markdown_table,
    parse_args,
    result_stem,
    time_to,
    usable_cores,
    write_results,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skasync import AsyncLayerwiseMLPClassifier
from skasync.utils import _processes

TARGET_FRACTION = 0.98
MODES = ["hogwild", "pd-asgd", "d-asgd", "sync"]
# Width 1024 gets 10 epochs: with 6, serial itself reached the target (98 %
# of its best) only in the last epoch, so one seed of a mode ending 1 point
# lower read as "not reached".
WIDTHS = {256: {"epochs": 12, "lr": 0.02}, 1024: {"epochs": 10, "lr": 0.02}}
BATCH = 128


def load(quick):
    split = load_mnist1d(10_000 if quick else 60_000)
    scaler = StandardScaler().fit(split.X_train)
    return {
        "X": scaler.transform(split.X_train).astype(np.float32),
        "y": split.y_train,
        "X_test": scaler.transform(split.X_test).astype(np.float32),
        "y_test": split.y_test,
        "source": split.description,
    }


def make(mode, backend, width, cfg, seed, delay=0.0):
    return AsyncLayerwiseMLPClassifier(
        (width, width),
        mode=mode,
        backend=backend,
        batch_size=BATCH,
        learning_rate_init=cfg["lr"],
        max_iter=cfg["epochs"],
        tol=0.0,
        n_iter_no_change=cfg["epochs"],
        early_stopping=True,
        straggler_delay=delay,
        torch_num_threads=1 if mode == "serial" else None,
        random_state=seed,
    )


def run(data, mode, backend, width, cfg, seed, delay=0.0):
    clf = make(mode, backend, width, cfg, seed, delay)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        start = time.perf_counter()
        clf.fit(data["X"], data["y"])
        wall = time.perf_counter() - start
    return {
        "mode": mode,
        "backend": clf.backend_,
        "width": width,
        "seed": seed,
        "delay": delay,
        "workers": clf.n_workers_,
        "wall": wall,
        "samples_per_second": clf.throughput_["samples_per_second"],
        "startup": clf.throughput_["startup_seconds"],
        "curve": [(h["wall_time"], h["validation_score"]) for h in clf.history_],
        "test": clf.score(data["X_test"], data["y_test"]),
        "staleness": [s["mean"] for s in clf.staleness_],
        # Rows each worker process stepped in the last epoch.
        "worker_samples": getattr(clf, "_worker_samples", None),
    }


# --------------------------------------------- the mnist_hogwild-style baseline
def _hogwild_example_worker(rank, n_processes, model, X, y, cfg, barrier, out):
    # As pytorch/examples mnist_hogwild's train(): spawned once, one
    # torch.optim.SGD per process kept across the epochs, autograd on the
    # shared parameters, one intra-op thread per process. Each epoch this
    # process takes its share of one permutation (the example gives each
    # process a loader over the whole data set instead; the throughput is
    # the same, and the epochs then match the other rows').
    torch.set_num_threads(1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True
    )
    # Both loops timed from the same instant; a partner that died before
    # it breaks the barrier instead of leaving this one waiting.
    barrier.wait(timeout=300)
    start = time.perf_counter()
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for rows in torch.split(order, BATCH)[rank::n_processes]:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[rows]), y[rows])
            loss.backward()
            optimizer.step()
    out[rank] = time.perf_counter() - start


def run_hogwild_example(data, width, cfg, seed, n_processes):
    from multiprocessing import connection as mp_connection

    import torch.multiprocessing as mp

    torch.manual_seed(seed)
    n_features = data["X"].shape[1]
    model = torch.nn.Sequential(
        torch.nn.Linear(n_features, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    )
    model.share_memory()
    X = torch.from_numpy(data["X"]).share_memory_()
    y = torch.from_numpy(data["y"].astype(np.int64)).share_memory_()
    ctx = mp.get_context("spawn")
    out = ctx.Manager().dict()
    barrier = ctx.Barrier(n_processes)
    start_up = time.perf_counter()
    procs = [
        ctx.Process(
            target=_hogwild_example_worker,
            args=(r, n_processes, model, X, y, cfg, barrier, out),
        )
        for r in range(n_processes)
    ]
    for p in procs:
        p.start()
    running = list(procs)
    while running:
        # A worker that fails ends the others: none outlives the run.
        for sentinel in mp_connection.wait([p.sentinel for p in running]):
            done = next(p for p in running if p.sentinel == sentinel)
            done.join()
            running.remove(done)
            if done.exitcode != 0:
                for p in running:
                    p.kill()
                    p.join()
                raise RuntimeError(
                    f"a mnist_hogwild-style worker failed: exit codes "
                    f"{[p.exitcode for p in procs]}"
                )
    seconds = max(out.values())
    total = time.perf_counter() - start_up
    with torch.no_grad():
        test = float(
            (
                model(torch.from_numpy(data["X_test"])).argmax(1).numpy()
                == data["y_test"]
            ).mean()
        )
    return {
        "mode": "mnist_hogwild example",
        "backend": "torch.multiprocessing",
        "width": width,
        "seed": seed,
        "workers": n_processes,
        "samples_per_second": cfg["epochs"] * len(y) / seconds,
        # Spawn, imports and hand-over of the model and data: once per fit.
        "startup": total - seconds,
        "epochs": cfg["epochs"],
        "test": test,
    }


def run_sklearn(data, width, cfg, seed):
    clf = MLPClassifier(
        (width, width),
        solver="sgd",
        learning_rate_init=cfg["lr"],
        momentum=0.9,
        nesterovs_momentum=True,
        batch_size=BATCH,
        max_iter=cfg["epochs"],
        tol=0.0,
        n_iter_no_change=cfg["epochs"],
        random_state=seed,
    )
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(data["X"], data["y"])
        wall = time.perf_counter() - start
    return {
        "mode": "sklearn MLPClassifier",
        "backend": "1 BLAS thread",
        "width": width,
        "seed": seed,
        "wall": wall,
        "samples_per_second": cfg["epochs"] * len(data["y"]) / wall,
        "test": clf.score(data["X_test"], data["y_test"]),
    }


def _serial_fit_worker(data, width, cfg, seed, barrier, out):
    torch.set_num_threads(1)
    barrier.wait()  # both fits start together
    out.put(run(data, "serial", "threads", width, cfg, seed)["samples_per_second"])


def run_two_serial_fits(data, width, cfg, seed):
    """The ceiling: two independent one-thread serial fits at the same time.

    Two spawned processes, one fit each (no sharing at all); their summed
    samples/s over one fit's is what 2 cores give two independent loops
    here (memory bandwidth and cache are shared, so below 2.0).
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_serial_fit_worker, args=(data, width, cfg, seed, barrier, out)
        )
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    rates = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return {
        "mode": "two serial fits at once",
        "backend": "2 processes",
        "width": width,
        "seed": seed,
        "samples_per_second": float(sum(rates)),
        "test": None,
    }


def run_to_sklearn_accuracy(data, width, cfg, seed, target):
    """PD-ASGD on processes, one ``partial_fit`` epoch at a time, until it
    reaches ``target`` test accuracy (or 2x the epochs).

    It trains on the same rows as MLPClassifier (no validation split), with
    the same SGD settings; the clock runs only inside ``partial_fit`` (the
    per-call hand-over included, the warm pool's cold start not) and the
    test accuracy is measured between epochs with the clock stopped.
    """
    clf = make("pd-asgd", "processes", width, cfg, seed).set_params(
        early_stopping=False, max_iter=1
    )
    classes = np.unique(data["y"])
    seconds, curve = 0.0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(2 * cfg["epochs"]):
            start = time.perf_counter()
            clf.partial_fit(data["X"], data["y"], classes=classes)
            seconds += time.perf_counter() - start
            curve.append((seconds, clf.score(data["X_test"], data["y_test"])))
            if curve[-1][1] >= target:
                break
    return {"width": width, "seed": seed, "target": target, "curve": curve}


def sklearn_target_runs(data, widths, n_seeds, sklearn_runs=()):
    """MLPClassifier, then PD-ASGD (processes) until its test accuracy.

    ``sklearn_runs``: MLPClassifier records of this run (``run_sklearn``),
    reused per width and seed; the missing ones are fitted here.
    """
    done = {(r["width"], r["seed"]): r for r in sklearn_runs}
    out = []
    for width, cfg in widths.items():
        sk = [
            done.get((width, seed)) or run_sklearn(data, width, cfg, seed)
            for seed in range(n_seeds)
        ]
        target = float(np.mean([r["test"] for r in sk]))
        for seed in range(n_seeds):
            r = run_to_sklearn_accuracy(data, width, cfg, seed, target)
            r["sklearn_wall"] = sk[seed]["wall"]
            out.append(r)
            print(
                f"w={width} seed={seed} sklearn {sk[seed]['wall']:.1f}s "
                f"acc {target:.4f}; pd-asgd {r['curve'][-1]}",
                flush=True,
            )
    return out


def run_torchrun(mode, width, cfg, seed, quick, n_ranks=2):
    """One fit over ``n_ranks`` local gloo ranks, launched by torchrun.

    Every rank runs this script with ``--torchrun-job``; rank 0 writes its
    record (the same as :func:`run`'s) to a file, and the launch overhead is
    the launcher's wall time minus the fit's.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # the launcher picks a free port itself
            "--nproc-per-node",
            str(n_ranks),
            __file__,
            "--torchrun-job",
            json.dumps(
                {
                    "mode": mode,
                    "width": width,
                    "cfg": cfg,
                    "seed": seed,
                    "out": str(out),
                }
            ),
        ] + (["--quick"] if quick else [])
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        total = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"torchrun failed:\n{done.stderr[-3000:]}")
        record = json.loads(out.read_text())
    record["startup"] = total - record["wall"]
    return record


def torchrun_job(job, quick):
    """A rank's side of :func:`run_torchrun`."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    r = run(load(quick), job["mode"], "auto", job["width"], job["cfg"], job["seed"])
    assert r["backend"] == "torch.distributed", r["backend"]
    r["workers"] = dist.get_world_size()
    if dist.get_rank() == 0:
        Path(job["out"]).write_text(json.dumps(r))
    dist.destroy_process_group()


def torchrun_runs(data, widths, n_seeds, quick):
    """The across-ranks part: torchrun sync and pd-asgd with their references."""
    runs = []
    for width, cfg in widths.items():
        for seed in range(n_seeds):
            plan = [("serial", "threads"), ("pd-asgd", "processes")]
            plan += [("hogwild", "processes")]
            for mode, backend in plan:
                runs.append(run(data, mode, backend, width, cfg, seed))
            for mode in ("sync", "pd-asgd"):
                runs.append(run_torchrun(mode, width, cfg, seed, quick))
            for r in runs[-len(plan) - 2 :]:
                print(
                    f"w={width} seed={seed} {r['mode']:8s} {r['backend']:17s} "
                    f"sps={r['samples_per_second']:.0f} test={r['test']:.4f} "
                    f"wall={r['wall']:.1f}s",
                    flush=True,
                )
    return runs


def warm_pool(data):
    """Each worker's first batches pay torch's lazy initialisation: one short
    fit per mode warms the pool, as the serial loop is warm in this process."""
    small = dict(WIDTHS[256], epochs=1)
    warm = {**data, "X": data["X"][:2000], "y": data["y"][:2000]}
    for mode in MODES:
        run(warm, mode, "processes", 256, small, 0)


def cold_start(n_workers):
    _processes.shutdown_pool()
    pool, started = _processes.get_pool(n_workers)
    assert started
    return pool.startup_seconds


# ------------------------------------------------------------------ analysis
def mean_if_all(values):
    """The mean of ``values``; None when empty or when any is None (n/r)."""
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def summarise(results):
    rows = []
    goals = {}
    for width in sorted({r["width"] for r in results["runs"]}):
        runs = [
            r for r in results["runs"] if r["width"] == width and not r.get("delay")
        ]
        serial = [r for r in runs if r["mode"] == "serial"]
        serial_sps = np.mean([r["samples_per_second"] for r in serial])
        target = TARGET_FRACTION * np.mean(
            [max(s for _, s in r["curve"]) for r in serial]
        )
        cold = results["cold_start"]
        keys = []
        for r in runs:
            key = (r["mode"], r["backend"])
            if key not in keys:
                keys.append(key)
        for mode, backend in keys:
            group = [r for r in runs if (r["mode"], r["backend"]) == (mode, backend)]
            sps = float(np.mean([r["samples_per_second"] for r in group]))
            # Time to target without start-up (the fit's wall time alone) and
            # with it: the pool's cold start for processes, each launch
            # (interpreters, imports, rendezvous, data) for torch.distributed.
            excl, incl = [], []
            for r in group:
                if "curve" not in r:
                    continue
                t = time_to(r["curve"], target)
                excl.append(t)
                if t is not None and backend == "processes":
                    t += cold
                elif t is not None and backend == "torch.distributed":
                    t += r["startup"]
                incl.append(t)
            row = {
                "width": width,
                "mode": mode,
                "backend": backend,
                "samples_per_second": sps,
                "vs_serial": sps / serial_sps,
                "startup": float(np.mean([r.get("startup", 0.0) for r in group])),
                # Start-up included (the main table's rule) and excluded.
                "tta": mean_if_all(incl),
                "tta_excl": mean_if_all(excl),
                "has_curve": bool(excl),
                "test": (
                    float(np.mean([r["test"] for r in group]))
                    if group[0]["test"] is not None
                    else None
                ),
            }
            rows.append(row)
        by = {(r["mode"], r["backend"]): r for r in rows if r["width"] == width}
        serial_row = by[("serial", "threads")]
        example = by.get(("mnist_hogwild example", "torch.multiprocessing"))
        ceiling = by.get(("two serial fits at once", "2 processes"))
        if ceiling:
            goals[
                f"the ceiling: two serial fits at once / serial samples/s, width {width}"
            ] = ceiling["vs_serial"]
        for mode in ("hogwild", "pd-asgd"):
            p = by.get((mode, "processes"))
            if p is None:
                continue
            goals[f"{mode} processes / serial samples/s, width {width}"] = p[
                "vs_serial"
            ]
            if ceiling:
                goals[f"{mode} processes / the ceiling's samples/s, width {width}"] = (
                    p["samples_per_second"] / ceiling["samples_per_second"]
                )
            if example:
                goals[
                    f"{mode} processes / mnist_hogwild example samples/s, width {width}"
                ] = p["samples_per_second"] / example["samples_per_second"]
            if p["tta"] and serial_row["tta"]:
                goals[
                    f"{mode} processes / serial time to target (start-up incl.), width {width}"
                ] = p["tta"] / serial_row["tta"]
        pd, sync, hog = (
            by.get(("pd-asgd", "processes")),
            by.get(("sync", "processes")),
            by.get(("hogwild", "processes")),
        )
        # Both sides pay the same cold start: compared without it.
        if pd and sync and pd["tta_excl"] and sync["tta_excl"]:
            goals[
                f"sync / pd-asgd time to target (processes, start-up excl.), "
                f"width {width}"
            ] = sync["tta_excl"] / pd["tta_excl"]
        if pd and hog and pd["tta_excl"] and hog["tta_excl"]:
            goals[
                f"hogwild / pd-asgd time to target (processes, start-up excl.), "
                f"width {width}"
            ] = hog["tta_excl"] / pd["tta_excl"]
        if pd:
            goals[f"pd-asgd processes test acc - serial test acc, width {width}"] = (
                pd["test"] - serial_row["test"]
            )
        sk = by.get(("sklearn MLPClassifier", "1 BLAS thread"))
        if sk and pd:
            goals[f"pd-asgd processes test acc - sklearn test acc, width {width}"] = (
                pd["test"] - sk["test"]
            )
            # No fit-wall ratio here: PD-ASGD's fit trains on 90 % of the rows
            # and scores a validation split every epoch, MLPClassifier's on
            # all of them; the like-for-like figure is the chase below.
        chase = [r for r in results.get("sklearn_target", []) if r["width"] == width]
        if chase:
            ttas = [time_to(r["curve"], r["target"]) for r in chase]
            goals[
                f"pd-asgd processes time to sklearn's test accuracy / sklearn wall "
                f"(warm pool), width {width}"
            ] = (
                float(np.mean(ttas) / np.mean([r["sklearn_wall"] for r in chase]))
                if all(t is not None for t in ttas)
                else None
            )
        delayed = [r for r in results["runs"] if r["width"] == width and r.get("delay")]
        for mode in ("pd-asgd", "hogwild", "sync"):
            group = [r for r in delayed if r["mode"] == mode]
            if group:
                ttas = [time_to(r["curve"], target) for r in group]
                value = (
                    float(np.mean(ttas)) + results["cold_start"]
                    if all(t is not None for t in ttas)
                    else None
                )
                goals[
                    f"{mode} processes time to target with a 2x straggler "
                    f"(start-up incl.), width {width}"
                ] = value
    return rows, goals


def render(results):
    rows, goals = summarise(results)
    env = results["environment"]
    lines = [
        "# Threads against processes (AsyncLayerwiseMLPClassifier)",
        "",
        f"Command: `{results['command']}`  ",
        f"Data: {results['source']}; batch {BATCH}; {results['seeds']} seed(s); "
        f"{env.get('usable_cores', '?')} cores, torch {env.get('torch', '?')}.  ",
        f"Pool cold start (2 workers, interpreter + torch import): "
        f"{results['cold_start']:.2f} s.",
        "",
        *rows_table(rows, "start-up / fit (s)", startup_digits=3),
        "",
        "Time to target: validation accuracy >= "
        f"{TARGET_FRACTION} x serial's best, wall time of the fit (validation "
        "scoring included), plus the pool's cold start for processes; n/r: not "
        "reached by every seed; -: not measured (no validation curve). "
        "The mnist_hogwild example spawns its processes at each fit: its "
        "start-up is that spawn (interpreters, imports, model and data hand-over).",
        "",
        *sklearn_target_lines(results),
        *torchrun_lines(results),
        "## Against the goals",
        "",
        *markdown_table(
            ["figure", "value"],
            [[k, "n/r" if v is None else f"{v:.3f}"] for k, v in goals.items()],
        ),
        "",
    ]
    return "\n".join(lines)


# The time-to-target columns: (header, key of summarise's rows).
TTA_INCL = [("time to target (s)", "tta")]
TTA_BOTH = [
    ("time to target, start-up excl. (s)", "tta_excl"),
    ("time to target, start-up incl. (s)", "tta"),
]


def rows_table(rows, startup_header, startup_digits, tta_columns=TTA_INCL):
    """The Markdown table of :func:`summarise`'s rows."""
    return markdown_table(
        [
            "width",
            "mode",
            "backend",
            "samples/s",
            "x serial",
            startup_header,
            *[header for header, _ in tta_columns],
            "test acc.",
        ],
        [
            [
                r["width"],
                r["mode"],
                r["backend"],
                f"{r['samples_per_second']:.0f}",
                f"{r['vs_serial']:.2f}",
                f"{r['startup']:.{startup_digits}f}",
                *[tta_text(r, key) for _, key in tta_columns],
                "-" if r["test"] is None else f"{r['test']:.4f}",
            ]
            for r in rows
        ],
    )


def tta_text(row, key="tta"):
    if not row["has_curve"]:
        return "-"  # no validation curve: the baselines, the ceiling
    return "n/r" if row[key] is None else f"{row[key]:.2f}"


def ratio_cell(num, den):
    return "n/r" if num is None or den is None else f"{num / den:.2f}"


def torchrun_lines(results):
    """The across-ranks section: its own run's rows and ratios."""
    part = results.get("torchrun")
    if not part:
        return []
    rows, _ = summarise({"runs": part["runs"], "cold_start": part["cold_start"]})
    ratios = []
    for width in sorted({r["width"] for r in rows}):
        by = {(r["mode"], r["backend"]): r for r in rows if r["width"] == width}
        layup = by.get(("pd-asgd", "torch.distributed"))
        for name, other in (
            ("sync (torchrun)", by.get(("sync", "torch.distributed"))),
            ("pd-asgd (processes)", by.get(("pd-asgd", "processes"))),
            ("hogwild (processes)", by.get(("hogwild", "processes"))),
            ("serial", by.get(("serial", "threads"))),
        ):
            if layup and other:
                ratios.append(
                    [
                        width,
                        name,
                        ratio_cell(other["tta_excl"], layup["tta_excl"]),
                        ratio_cell(other["tta"], layup["tta"]),
                        f"{layup['samples_per_second'] / other['samples_per_second']:.2f}",
                    ]
                )
    return [
        "## Across ranks: torchrun, 2 local gloo ranks",
        "",
        f"Command: `{part['command']}`. Serial and the process back-end were "
        "measured again in the same run. Time to target is given without "
        "start-up (the fit's wall time alone) and with it, one rule for every "
        "row: for torch.distributed the launch (interpreters, imports, "
        "rendezvous, data; the start-up column), for processes the pool's cold "
        f"start ({part['cold_start']:.2f} s; the start-up column is each "
        "fit's hand-over, inside its wall time), none for serial.",
        "",
        *rows_table(rows, "start-up (s)", startup_digits=2, tta_columns=TTA_BOTH),
        "",
        "PD-ASGD over the ranks (LayUp) against the others: their time to "
        "target over LayUp's (> 1: LayUp sooner), start-up excluded on both "
        "sides and included on both sides, and LayUp's samples/s over theirs.",
        "",
        *markdown_table(
            [
                "width",
                "against",
                "time to target, start-up excl.: them / LayUp",
                "time to target, start-up incl.: them / LayUp",
                "samples/s: LayUp / them",
            ],
            ratios,
        ),
        "",
    ]


def sklearn_target_lines(results):
    chase = results.get("sklearn_target")
    if not chase:
        return []
    rows = []
    for r in chase:
        t = time_to(r["curve"], r["target"])
        rows.append(
            [
                r["width"],
                r["seed"],
                f"{r['target']:.4f}",
                f"{r['sklearn_wall']:.2f}",
                "n/r" if t is None else f"{t:.2f}",
                len(r["curve"]),
                f"{r['curve'][-1][1]:.4f}",
            ]
        )
    command = results.get("sklearn_target_command", results["command"])
    return [
        "## PD-ASGD (processes) to MLPClassifier's test accuracy",
        "",
        f"Command: `{command}`. MLPClassifier's mean test accuracy over the "
        "seeds is the target; PD-ASGD trains on the same rows with the same SGD "
        "settings, one `partial_fit` epoch at a time (warm pool; hand-overs "
        "included), test accuracy measured between epochs.",
        "",
        *markdown_table(
            [
                "width",
                "seed",
                "target (test acc.)",
                "MLPClassifier fit (s)",
                "PD-ASGD time to it (s)",
                "PD-ASGD epochs run",
                "PD-ASGD last test acc.",
            ],
            rows,
        ),
        "",
    ]


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({r["width"] for r in results["runs"]})
    fig, axes = plt.subplots(
        1, len(widths), figsize=(6 * len(widths), 4), squeeze=False
    )
    for ax, width in zip(axes[0], widths):
        for r in results["runs"]:
            if (
                r["width"] != width
                or r.get("delay")
                or "curve" not in r
                or r["seed"] != 0
            ):
                continue
            style = "-" if r["backend"] == "processes" else ":"
            xs = [w for w, _ in r["curve"]]
            ax.plot(
                xs,
                [s for _, s in r["curve"]],
                style,
                marker=".",
                label=f"{r['mode']} ({r['backend']})",
            )
        ax.set_title(f"MNIST-1D, width {width} (seed 0)")
        ax.set_xlabel("wall time of the fit (s)")
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = make_parser(__doc__, "1 seed, 10k samples, width 256 only", n_seeds=3)
    parser.add_argument(
        "--add-torchrun",
        action="store_true",
        help="only run the across-ranks part (torchrun, 2 local ranks) with its "
        "references, into the backends.json in --out, and render it again",
    )
    parser.add_argument("--torchrun-job", help=argparse.SUPPRESS)
    parser.add_argument(
        "--add-sklearn-target",
        action="store_true",
        help="only run MLPClassifier and PD-ASGD (processes) to its test "
        "accuracy, into the backends.json in --out, and render it again",
    )
    args = parse_args(parser, argv)
    if args.torchrun_job:
        return torchrun_job(json.loads(args.torchrun_job), args.quick)
    data = load(args.quick)
    widths = {256: dict(WIDTHS[256], epochs=4)} if args.quick else WIDTHS
    cores = usable_cores()
    if args.add_torchrun:
        path = Path(args.out) / f"{result_stem('backends', args.quick)}.json"
        results = json.loads(path.read_text())
        cold = cold_start(cores)
        warm_pool(data)
        results["torchrun"] = {
            "command": args.command,
            "cold_start": cold,
            "runs": torchrun_runs(data, widths, args.seeds, args.quick),
        }
        write_results(args, "backends", results, render, plot)
        return
    if args.add_sklearn_target:
        path = Path(args.out) / f"{result_stem('backends', args.quick)}.json"
        results = json.loads(path.read_text())
        _processes.get_pool(cores)  # warm, as in a full run
        results["sklearn_target"] = sklearn_target_runs(data, widths, args.seeds)
        results["sklearn_target_command"] = args.command
        write_results(args, "backends", results, render, plot)
        return
    cold = cold_start(cores)
    print(f"pool cold start: {cold:.2f} s", flush=True)
    runs = []
    warm_pool(data)
    for width, cfg in widths.items():
        for seed in range(args.seeds):
            plan = [("serial", "threads")] + [
                (mode, backend)
                for backend in ("processes", "threads")
                for mode in MODES
            ]
            if width == 1024:
                # Threads run at serial's speed here (the GIL): one seed of
                # them is the record; the processes are the study.
                plan = [
                    (m, b)
                    for m, b in plan
                    if b == "processes" or m == "serial" or seed == 0
                ]
            for mode, backend in plan:
                r = run(data, mode, backend, width, cfg, seed)
                runs.append(r)
                print(
                    f"w={width} seed={seed} {mode:8s} {backend:9s} "
                    f"sps={r['samples_per_second']:.0f} test={r['test']:.4f} "
                    f"wall={r['wall']:.1f}s",
                    flush=True,
                )
            runs.append(run_two_serial_fits(data, width, cfg, seed))
            runs.append(run_hogwild_example(data, width, cfg, seed, cores))
            runs.append(run_sklearn(data, width, cfg, seed))
            print(
                f"  example {runs[-2]['samples_per_second']:.0f} sklearn {runs[-1]['wall']:.1f}s",
                flush=True,
            )
        # A straggler: worker 0 sleeps 2x serial's step before each of its steps.
        serial = [r for r in runs if r["width"] == width and r["mode"] == "serial"]
        step = float(np.mean([r["wall"] for r in serial])) / (
            cfg["epochs"] * np.ceil(0.9 * len(data["y"]) / BATCH)
        )
        for seed in range(args.seeds):
            for mode in ("pd-asgd", "hogwild", "sync"):
                if width == 1024:
                    continue
                runs.append(
                    run(data, mode, "processes", width, cfg, seed, delay=2 * step)
                )
    sklearn_runs = [r for r in runs if r["mode"] == "sklearn MLPClassifier"]
    chase = sklearn_target_runs(data, widths, args.seeds, sklearn_runs)
    write_results(
        args,
        "backends",
        {
            "command": args.command,
            "environment": environment(),
            "source": data["source"],
            "seeds": args.seeds,
            "cold_start": cold,
            "runs": runs,
            "sklearn_target": chase,
        },
        render,
        plot,
    )


if __name__ == "__main__":
    main()
