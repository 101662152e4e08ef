"""Sphinx configuration of the documentation site (build: ``bash scripts/dev.sh docs``).

The API pages come from the docstrings (autodoc + napoleon: Google-style ``Args:``
sections, ``.. math::`` blocks, ``>>>`` examples); the guides and references are the
Markdown files beside this one (MyST). ``_ext/site_pages.py`` writes, at build time, the
schedule gallery (drawn by ``scripts/plot_schedules.py``'s own code) and the API listings
(from each package's ``__all__``), so a new schedule appears without editing a page.
MathJax is served from the site itself (``sphinx-mathjax-offline``): nothing loads from
the internet. ``sphinx-copybutton`` puts a copy button on code blocks, ``sphinx-reredirects``
writes a page at each former path that leads to where its content went.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

import mlx_schedules  # noqa: E402  (after the path set-up above)

project = "mlx-schedules"
author = "mlx-schedules contributors"
copyright = "mlx-schedules contributors"
release = mlx_schedules.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx_reredirects",
    "site_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_generated",  # written by site_pages; reached through include directives only
    "LANGUAGE_MODELS.md",  # included by guides/language-models.rst when it exists
    "**/.ipynb_checkpoints",
]

# Broken cross-references fail the build (with -W), except names from other libraries
# (no intersphinx: the build must work without a network).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(mx|mlx|nn|optim|np|numpy|mlx\.core|mlx\.nn|mlx\.optimizers)(\..*)?"),
    (r"py:.*", r"(array|Array|Module|Optimizer|MultiOptimizer|Group|Buffer|Stream)"),
    (r"py:.*", r"(collections\.abc|typing|os|pathlib|io|threading)\..*"),
    (r"py:.*", r"(Callable|Iterable|Iterator|Sequence|Mapping|Any|PathLike|Path|TextIO)"),
    (r"py:.*", r"(optional|callable|iterable|sequence|mapping|tuple of .*|list of .*)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"mlx-schedules {release}"
html_static_path = ["_static"]
html_css_files = ["site.css"]  # no scrollbars on code and formulas at the default width

# The copy button copies a ``>>>`` example or a ``$`` command without its prompts and
# without the output lines (sphinx-copybutton).
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True

# Old page paths lead to the page that now holds their content (sphinx-reredirects): the
# keys are former pages, the values where each went.
redirects = {
    "SCHEDULES": "schedules/index.html",
    "schedules": "schedules/index.html",
    "TRAINERS": "trainer.html",
    "training": "trainer.html",
    "SCRIPTS": "command-line.html",
    "scripts-overview": "command-line.html",
    "BENCH_SCHEDULES": "benchmarks.html",
}
html_show_sourcelink = False
