"""The demo behind ``skasync demo``: one section per estimator.

Each section fits one estimator inside a :class:`~sklearn.pipeline.Pipeline`
with :class:`~sklearn.model_selection.GridSearchCV` on bundled or simulated
data and returns a plain-text table against its baselines (score and fit
time) and the path of a plot.

Structure
---------
* :data:`SECTIONS`: the registry, section name -> ``(run, n_steps)``; a
  section's ``run(progress, output_dir, n_jobs)`` returns ``(text, plot)``.
* :func:`run_demo`: runs the chosen sections and prints their report.
* ``_forest``: section ``forest`` (:class:`~skasync.ARSieveForestRegressor`).
* ``_torch``: sections ``async`` and ``block-local`` (the torch classifiers,
  one shared grid-search routine).
* ``_tables``, ``_plots``, ``_timing``: table text, figures, fit timing.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import os
import sys
import time
import warnings
from pathlib import Path

from sklearn.exceptions import ConvergenceWarning

from skasync.utils._progress import Progress

from . import _forest, _torch

SECTIONS = {
    "forest": (_forest.demo_forest, _forest.N_STEPS),
    "async": (_torch.demo_async, _torch.N_STEPS),
    "block-local": (_torch.demo_block_local, _torch.N_STEPS),
}
DEMO_SECTIONS = tuple(SECTIONS)


def run_demo(
    output_dir="skasync_demo_output",
    sections=DEMO_SECTIONS,
    n_jobs=None,
    verbose=1,
    stream=None,
):
    """Run the demo and return its report as a string.

    Parameters
    ----------
    output_dir : str or path-like, default="skasync_demo_output"
        Folder for the plots (created if needed).
    sections : iterable of str, default=("forest", "async", "block-local")
        Which estimators to show.
    n_jobs : int or None, default=None
        ``n_jobs`` of the grid searches (None: all cores, at most 2).
    verbose : int, default=1
        Show progress.
    stream : file-like, default=None
        Where the report is printed (stdout when None).

    Returns
    -------
    report : str
        The printed tables.
    """
    stream = sys.stdout if stream is None else stream
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if n_jobs is None:
        n_jobs = min(2, os.cpu_count() or 1)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(
            f"Unknown demo sections {sorted(unknown)}; choose from {DEMO_SECTIONS}."
        )
    start = time.perf_counter()
    reports, plots = [], []
    with (
        Progress(
            sum(SECTIONS[s][1] for s in sections), "skasync demo", verbose=verbose
        ) as progress,
        warnings.catch_warnings(),
    ):
        # loky recycles a worker whose memory grew by a few hundred MB (torch's
        # allocator after a fit) and warns about it; the job is resubmitted,
        # so the warning is only noise in the demo's output.
        warnings.filterwarnings(
            "ignore", message="A worker stopped while some jobs", category=UserWarning
        )
        # The demo trains each network for a few dozen epochs to stay short;
        # the table shows how far they got.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        for section in sections:
            run_section = SECTIONS[section][0]
            text, plot = run_section(progress, output_dir, n_jobs)
            reports.append(text)
            if plot is not None:
                plots.append(plot)
    report = "\n\n".join(reports)
    report += f"\n\nTotal demo time: {time.perf_counter() - start:.1f} s"
    report += f"\nPlots written to {output_dir.resolve()}: " + (
        ", ".join(p.name for p in plots) if plots else "none (install the 'plot' extra)"
    )
    print(report, file=stream, flush=True)
    return report
