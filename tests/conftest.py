"""Fixtures shared by the test modules (plain helpers: tests/_helpers.py)."""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import csv
import signal
from pathlib import Path

import numpy as np
import pytest
from _helpers import skasync_threads
from hypothesis import settings

# The property tests draw the same examples on every run: a CI failure is
# reproducible, and a green run means the same as the last one. Run with
# --hypothesis-profile=explore to search new examples.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")

REFERENCE_DIR = (
    Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "rangerts"
)


@pytest.fixture
def reference_dir():
    """The R reference results kept in ``benchmarks/reference/rangerts``."""
    assert REFERENCE_DIR.is_dir(), f"reference results missing at {REFERENCE_DIR}"
    return REFERENCE_DIR


@pytest.fixture
def reference_results(reference_dir):
    """Rows of the reference ``results.csv`` (one dict per dgp, n, seed, method)."""
    with open(reference_dir / "results.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def reference_series(reference_dir):
    """Loader of one reference series by file stem, e.g. ``"ar1_06_n500_s1"``.

    Returns the first column of ``series/<stem>.csv`` (after the header).
    """

    def load(stem):
        with open(reference_dir / "series" / f"{stem}.csv") as fh:
            rows = list(csv.reader(fh))
        return np.array([float(row[0]) for row in rows[1:]])

    return load


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits with the pixels scaled to [0, 1]: ``(X, y)``.

    Module-scoped, so a test that changed the arrays in place would not
    reach other modules; modules that split it override it by name.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Every test must leave no skasync worker thread behind."""
    yield
    leaked = skasync_threads()
    assert not leaked, f"threads left running after the test: {leaked}"


@pytest.fixture
def sigint_raises_keyboard_interrupt():
    """Make ``_thread.interrupt_main()`` raise KeyboardInterrupt in the test.

    It does nothing while SIGINT is ignored, as it is for jobs a
    non-interactive shell starts in the background (``pytest &`` in a CI
    script), so the Ctrl-C tests install Python's default handler.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def torch_threads_sentinel():
    """Set torch's thread count to a value no fit sets; restore it afterwards.

    A test that checks "the thread count is restored" compares with the
    count before the fit; when that is what the fit sets anyway (2 on a
    2-core machine, or 1 after another test), the check cannot fail.
    """
    import torch

    original = torch.get_num_threads()
    sentinel = 7
    torch.set_num_threads(sentinel)
    try:
        yield sentinel
    finally:
        torch.set_num_threads(original)
