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
autodoc_default_options = {"members": True, "inherited-members": False}
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
