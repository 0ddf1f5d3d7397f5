"""Sphinx configuration of neuroq's API reference (built in CI with warnings as errors:
``python -m sphinx -W -b html docs/api docs/api/_build``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

project = "neuroq"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["autodoc.import_object"]
nitpicky = False
autodoc_inherit_docstrings = False  # SpikingJelly base-class docstrings are not ours
napoleon_use_ivar = True
