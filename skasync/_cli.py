"""Command-line interface: ``skasync demo`` (also ``python -m skasync demo``).

The argument parser only; the demo itself is :mod:`skasync._demo`.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import argparse

from skasync import __version__
from skasync._demo import DEMO_SECTIONS, run_demo


def _n_jobs(text):
    """``--n-jobs``: a positive count, or -1 for every CPU (as joblib)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of jobs or -1 (every CPU)"
        )
    return value


def main(argv=None):
    """Entry point of the ``skasync`` console script."""
    parser = argparse.ArgumentParser(
        prog="skasync", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--version", action="version", version=f"skasync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="fit every estimator in Pipelines with GridSearchCV and "
        "print a table against the baselines",
    )
    demo.add_argument(
        "--output",
        default="skasync_demo_output",
        help="folder for the plots (default: %(default)s)",
    )
    demo.add_argument(
        "--only",
        nargs="+",
        choices=DEMO_SECTIONS,
        default=list(DEMO_SECTIONS),
        help="run only these sections",
    )
    demo.add_argument(
        "--n-jobs",
        type=_n_jobs,
        default=None,
        help="parallel jobs of the grid searches (default: up to 2)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(
            args.output,
            sections=args.only,
            n_jobs=args.n_jobs,
            verbose=0 if args.quiet else 1,
        )
    return 0
