"""What the benchmark scripts share: flags, data loaders, environment, results.

Structure
---------
* :func:`make_parser` / :func:`parse_args`: the flags every script takes,
  ``--quick`` (small settings, one seed), ``--seeds N`` and ``--out``
  (default ``benchmarks/results``); script-specific flags are added by the
  script between the two calls.
* :func:`digits_split` and :func:`load_mnist1d`: the one loader of each
  data set the torch benchmarks use.
* :func:`environment`: the machine and package versions of a run.
* :func:`time_to`: the time a learning curve first reaches a target.
* :func:`write_results`: writes ``<name>.json`` first, then renders
  ``<name>.md`` (and ``<name>.png``) from that JSON alone;
  :func:`markdown_table` builds the Markdown tables.

The scripts run as ``python benchmarks/<script>.py``, so this module is
imported as ``_common`` from their folder.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# ----------------------------------------------------------------------- flags
def make_parser(doc, quick, n_seeds):
    """An argument parser with the common flags.

    Parameters
    ----------
    doc : str
        The script's docstring; its first line is the description.
    quick : str
        What ``--quick`` makes smaller in this script.
    n_seeds : int
        The number of seeds without ``--quick``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small, fast settings and one seed: {quick}; writes <name>.quick.*",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help=f"number of seeds (default: {n_seeds}, 1 with --quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="folder of the result files (default: benchmarks/results)",
    )
    parser.set_defaults(_n_seeds=n_seeds)
    return parser


def parse_args(parser, argv=None):
    """Parse ``argv``; ``args.seeds`` becomes the number of seeds to run."""
    args = parser.parse_args(argv)
    # Whether --seeds was given (a script's --quick may default to more than 1).
    args.seeds_given = args.seeds is not None
    if args.seeds is None:
        args.seeds = 1 if args.quick else args._n_seeds
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    args.command = command(parser.prog, argv)
    return args


def command(script, argv=None):
    """The command line of a run as the reports quote it (no ``--out``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    kept = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["python", f"benchmarks/{script}", *kept])


# ----------------------------------------------------------------------- data
def digits_split(test_size):
    """scikit-learn's digits, split stratified with ``random_state=0``.

    Returns ``X_train, X_test, y_train, y_test`` (pixel values 0..16).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=test_size, random_state=0, stratify=y)


@dataclass
class Split:
    """A train / test split of a data set and the words that name it."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    name: str
    description: str


def load_mnist1d(n_samples):
    """MNIST-1D with ``n_samples`` samples (80 % train, 20 % test), unscaled.

    Generated locally by the ``mnist1d`` package (``pip install mnist1d``; no
    download) with its default arguments (seed 42) and cached under
    ``$XDG_CACHE_HOME/skasync``. Without the package, a seeded
    ``make_classification`` of the same size stands in (``name`` says which).
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "skasync"
    path = cache / f"mnist1d_{n_samples}.npz"
    try:
        data = np.load(path)
        parts = [data[k] for k in ("x", "x_test", "y", "y_test")]
    except OSError:
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError:
            return _mnist1d_stand_in(n_samples)
        args = get_dataset_args()
        args.num_samples = n_samples
        # mnist1d seeds numpy's global generator; put it back afterwards.
        state = np.random.get_state()  # noqa: NPY002
        made = make_dataset(args)
        np.random.set_state(state)  # noqa: NPY002
        parts = [np.asarray(made[k]) for k in ("x", "x_test", "y", "y_test")]
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=parts[0], x_test=parts[1], y=parts[2], y_test=parts[3])
    X_train, X_test, y_train, y_test = parts
    return Split(
        X_train,
        X_test,
        y_train,
        y_test,
        "MNIST-1D",
        f"MNIST-1D, mnist1d.make_dataset ({n_samples} x 40, 10 classes, 80/20 split)",
    )


def _mnist1d_stand_in(n_samples):
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

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
    return Split(
        X_train,
        X_test,
        y_train,
        y_test,
        "make_classification",
        f"make_classification ({n_samples} x 40, 10 classes)",
    )


# ---------------------------------------------------------------- environment
def load_average():
    """The 1-minute load average of the machine (NaN where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def usable_cores():
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment():
    """The machine, the date and the package versions, for a report's header."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_model(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": _version("scikit-learn"),
        "torch": _version("torch"),
        "numba": _version("numba"),
    }


# -------------------------------------------------------------------- results
def _to_json(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray, tuple)):
        return value.tolist() if isinstance(value, np.ndarray) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def time_to(curve, target, column=1):
    """Time of the first point of ``curve`` whose ``column`` reaches ``target``.

    ``curve`` is a sequence of rows ``(time, score, ...)``; None when no row
    reaches the target.
    """
    for row in curve:
        if row[column] >= target:
            return row[0]
    return None


def result_stem(name, quick):
    """``name``, or ``name.quick`` for a ``--quick`` run."""
    return f"{name}.quick" if quick else name


def read_results(args, name):
    """The JSON results an earlier run of the same kind wrote to ``args.out``."""
    path = Path(args.out) / f"{result_stem(name, args.quick)}.json"
    return json.loads(path.read_text())


def write_results(args, name, data, render, plot=None):
    """Write ``<name>.json``, then the Markdown and plot rendered from it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed common flags: ``out`` is the folder, and a ``quick`` run
        writes ``<name>.quick.*``.
    name : str
        The file stem, e.g. ``"forest"``.
    data : dict
        The results; NumPy scalars and arrays become JSON numbers and lists.
    render : callable
        ``render(results) -> str``, the Markdown report.
    plot : callable, default=None
        ``plot(results, path)`` saves the figure.

    Returns
    -------
    results : dict
        The results as read back from the JSON, which ``render`` and ``plot``
        were given.
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = result_stem(name, args.quick)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=1, default=_to_json) + "\n")
    # The report shows only what the JSON holds: rendering the file again
    # later gives the same Markdown.
    results = json.loads(json_path.read_text())
    (out / f"{stem}.md").write_text(render(results))
    if plot is not None:
        plot(results, out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .md", flush=True)
    return results


def markdown_table(header, rows):
    """The lines of a Markdown table; cells are used as they are."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
