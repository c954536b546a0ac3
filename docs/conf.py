"""Sphinx configuration for the requests-tokenrotate documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``; the code
examples run with ``-b doctest`` (CI runs both, see .ci/docs).
"""

from __future__ import annotations

import requests_tokenrotate

project = "requests-tokenrotate"
author = "The requests-tokenrotate authors"
copyright = "the requests-tokenrotate authors, Apache-2.0"  # noqa: A001
release = requests_tokenrotate.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"requests-tokenrotate {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Every code example runs (sphinx-build -b doctest); the plain ``>>>`` blocks too.
doctest_test_doctest_blocks = "default"
doctest_global_setup = """
import requests
import requests_tokenrotate as rt
"""
