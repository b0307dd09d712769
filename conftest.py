"""pytest configuration shared by tests/ and the docstring examples in skasync/.

The default run (``python -m pytest``) collects both ``tests`` and the
package's ``>>>`` examples (``--doctest-modules``, see pyproject.toml).
Fixtures for tests/ only live in tests/conftest.py.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import os
import sys

import pytest
from _pytest.doctest import DoctestItem

# Plots in tests and examples are drawn off-screen, with no display needed.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _doctest_environment(request):
    """Run each docstring example on one torch thread; close its figures.

    The examples fit tiny networks, where extra intra-op threads only spin:
    on a busy 2-core machine they made an example 10x slower. None of the
    examples' outputs depends on the thread count.
    """
    if not isinstance(request.node, DoctestItem):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
