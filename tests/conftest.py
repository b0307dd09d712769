"""Shared pytest configuration."""

import signal
import threading
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference" / "rangerts"


@pytest.fixture
def reference_dir():
    """The R reference results beside the repository (skip when absent)."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(
            f"reference results not found at {REFERENCE_DIR} (../shared missing)"
        )
    return REFERENCE_DIR


def skasync_threads():
    """Names of the worker threads skasync started that are still alive."""
    return [t.name for t in threading.enumerate() if t.name.startswith("skasync-")]


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
