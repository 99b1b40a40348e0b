"""Sphinx configuration of the samsvae documentation site.

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference is rendered from the numpydoc docstrings; the benchmark records are the
markdown tables under ``benchmarks/results/``, included at build time (see
:func:`_benchmark_pages`), so no number is copied by hand. The tutorials (``docs/tutorials``)
are executed at build time at their tiny size (``--small``) by sphinx-gallery; the real-data
one only where ``../shared/data`` holds its screen.
"""

from __future__ import annotations

import sys
from pathlib import Path

import samsvae

DOCS = Path(__file__).parent
RESULTS = DOCS.parent / "benchmarks" / "results"
sys.path.insert(0, str(DOCS))  # _gallery, named in sphinx_gallery_conf

project = "samsvae"
author = "the samsvae developers"
copyright = "2026, the samsvae developers"
release = samsvae.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "tutorials/*", "**/README.md"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # pages start at level-2 sections under their title

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = {"GL08", "SS01", "SS03", "PR01", "PR02", "PR07", "RT01"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.module_cls$", r"\.config_cls$"}

#: The real-data tutorial runs only where its screen is on disk (it is never downloaded).
PAPALEXI = DOCS.parents[1] / "shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad"
_EXECUTED = "simulated_end_to_end|unseen_combinations|reading_masks"
_EXECUTED += "|papalexi2021" if PAPALEXI.is_file() else ""


sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "generated_tutorials",
    "filename_pattern": rf"/({_EXECUTED})\.py$",
    "ignore_pattern": r"_common\.py$",
    "write_computation_times": False,
    "reset_argv": "_gallery.tutorial_arguments",
    "download_all_examples": False,
    "show_signature": False,
    "remove_config_comments": True,
}

html_theme = "sphinx_book_theme"
html_title = "samsvae"
html_theme_options = {"repository_url": "", "use_repository_button": False}


def _benchmark_pages() -> None:
    """One page per ``benchmarks/results/*.md`` record, included verbatim, and their index."""
    out = DOCS / "benchmarks"
    out.mkdir(exist_ok=True)
    names = sorted(p.stem for p in RESULTS.glob("*.md"))
    for stale in {p.stem for p in out.glob("*.md")} - {*names, "index"}:
        (out / f"{stale}.md").unlink()  # a record that was removed
    for name in names:
        title = name.replace("_", " ").capitalize()
        sources = [f"`benchmarks/results/{name}.md`"]
        if (RESULTS / f"{name}.json").is_file():
            sources.append(f"`benchmarks/results/{name}.json`")
        page = [
            f"# {title}",
            "",
            f"Generated at build time from {' and '.join(sources)}.",
            "",
            f"```{{include}} ../../benchmarks/results/{name}.md",
            "```",
            "",
        ]
        (out / f"{name}.md").write_text("\n".join(page))
    index = [
        "# Benchmark records",
        "",
        "Every table the results pages cite, as its benchmark wrote it. Each record names the",
        "command that reproduces it.",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        "",
        *names,
        "```",
        "",
    ]
    (out / "index.md").write_text("\n".join(index))


_benchmark_pages()
