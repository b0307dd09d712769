"""Sphinx configuration for skasync (build: ``sphinx-build -W -b html docs docs/_build``)."""

import skasync

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
