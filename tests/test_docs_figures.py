"""The documentation shows the figures it promises (no Sphinx build needed).

* every benchmark figure in ``benchmarks/results`` (written by the scripts
  through ``benchmarks/_common.py``'s ``write_results``) is embedded in
  ``docs/benchmarks.rst``, so that rerunning a script updates the page;
* every user-guide page draws or embeds at least one figure;
* every gallery example ends in a figure, under a title sphinx-gallery reads.
"""

# Authors: The skasync developers
# SPDX-License-Identifier: BSD-3-Clause

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"^\.\. (plot|figure|image|minigallery)::", re.MULTILINE)


def test_every_benchmark_figure_is_on_the_benchmark_page():
    page = (ROOT / "docs" / "benchmarks.rst").read_text()
    figures = sorted(
        path.name
        for path in (ROOT / "benchmarks" / "results").glob("*.png")
        if not path.name.endswith(".quick.png")
    )
    assert figures
    missing = [
        name
        for name in figures
        if f".. figure:: ../benchmarks/results/{name}" not in page
    ]
    assert not missing, (
        f"embed {missing} in docs/benchmarks.rst next to its results with "
        "'.. figure:: ../benchmarks/results/<name>.png'"
    )


@pytest.mark.parametrize(
    "page",
    sorted((ROOT / "docs" / "user_guide").glob("*.rst")),
    ids=lambda path: path.name,
)
def test_every_user_guide_page_has_a_figure(page):
    assert FIGURE.search(page.read_text()), f"{page.name} shows no figure"


@pytest.mark.parametrize(
    "example",
    sorted((ROOT / "examples").glob("*/plot_*.py")),
    ids=lambda path: path.name,
)
def test_gallery_examples_have_a_title_and_a_figure(example):
    text = example.read_text()
    title = re.match(r'"""\n(=+)\n(.+)\n(=+)\n', text)
    assert title, "the docstring must open with an over- and underlined title"
    assert len(title[1]) == len(title[3]) >= len(title[2])
    assert "plt.show()" in text or "plt.subplots" in text
