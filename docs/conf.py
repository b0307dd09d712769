"""Sphinx configuration for skasync (build: ``sphinx-build -W -b html docs docs/_build``).

The example gallery (sphinx-gallery) runs every ``examples/**/plot_*.py`` and
writes its pages to ``docs/auto_examples``; the user guide draws its figures
at build time with matplotlib's ``plot`` directive.
"""

import matplotlib

# Before any pyplot import: the examples and plot directives draw off-screen.
matplotlib.use("Agg")

import skasync  # noqa: E402

project = "skasync"
author = "The skasync developers"
copyright = "2026, The skasync developers"
release = skasync.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
# Inherited members are documented (fit/predict of the torch classifiers live
# in their skasync base class), except the generic scikit-learn methods, which
# _skip_sklearn_members drops; see api.rst.
autodoc_default_options = {"members": True, "inherited-members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Only the sections we write are validated; references to sklearn/numpy/torch
# resolve through intersphinx when online and are not errors offline.
numpydoc_xref_param_type = False
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme"
html_static_path = []
html_title = "skasync"
intersphinx_mapping = {}
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]

# The example gallery.  Each example must end in a figure and run in under
# 30 s on two cores; sg_execution_times.rst lists the measured times.
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    # Mini-galleries (``.. minigallery:: skasync.X``) in the user guide.
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skasync",),
    "reference_url": {"skasync": None},
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "min_reported_time": 0,
    "download_all_examples": False,
    "remove_config_comments": True,
    # A failing example fails the build, as a warning would.
    "abort_on_example_error": True,
}

# matplotlib's ``.. plot::`` directive (user-guide figures).
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.figsize": (6.4, 3.6), "savefig.bbox": "tight"}
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"


def _skip_sklearn_members(app, what, name, obj, skip, options):
    """Skip the generic methods defined by scikit-learn (``get_params``,
    ``set_params``, ``score``, ``set_*_request``, ...).

    Their docstrings cross-reference scikit-learn's own user guide and
    glossary, which do not resolve offline; they are documented there.
    """
    # ``what`` is the parent's type for autodoc but the member's own type for
    # autosummary's stub generation, so only the member's origin is checked.
    module = getattr(obj, "__module__", None) or ""
    if callable(obj) and module.split(".")[0] == "sklearn":
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_members)
