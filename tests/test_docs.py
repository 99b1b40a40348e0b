"""The tutorials run at tiny size; every public name has a numpydoc docstring and a place in
the API reference."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
TUTORIALS = sorted(p.name for p in (DOCS / "tutorials").glob("[!_]*.py"))
PAPALEXI = DOCS.parents[1] / "shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad"


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("script", TUTORIALS)
def test_tutorial_runs_at_tiny_size_and_writes_figures(script: str, tmp_path: Path) -> None:
    if script == "papalexi2021.py" and not PAPALEXI.is_file():
        pytest.skip(f"{PAPALEXI} is not on this machine")
    out = tmp_path / "figures"
    result = _run(DOCS / "tutorials" / script, "--small", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(out.glob("*.png")), f"{script} wrote no figure"


PUBLIC_MODULES = ("samsvae", "samsvae.data", "samsvae.pl", "samsvae.evaluate", "samsvae.datasets")
#: What the docstring test requires of every public name (numpydoc's codes): a docstring with
#: a one-line summary ending in a period, every parameter documented with a description and no
#: unknown one, and a Returns section where something is returned. Sphinx checks the same set.
NUMPYDOC_CHECKS = {"GL08", "SS01", "SS03", "PR01", "PR02", "PR07", "RT01"}


def _public_objects() -> dict[str, object]:
    """Every public class, function and method reachable from the public modules, by the
    dotted name of its definition (so that a shared method is checked once)."""
    found: dict[str, object] = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            found[f"{obj.__module__}.{obj.__qualname__}"] = obj
            if inspect.isclass(obj):
                for member_name, member in inspect.getmembers(obj):
                    if member_name.startswith("_") or not inspect.isroutine(member):
                        continue
                    found[f"{member.__module__}.{member.__qualname__}"] = member
    return found


def test_every_public_name_has_a_numpydoc_docstring() -> None:
    from numpydoc.validate import validate

    objects = _public_objects()
    assert len(objects) > 80  # the models' methods, data, evaluate, pl and datasets
    problems = {
        name: codes
        for name in objects
        if (codes := sorted({c for c, _ in validate(name)["errors"]} & NUMPYDOC_CHECKS))
    }
    assert not problems, problems


def test_no_docstring_names_a_file_outside_the_repository() -> None:
    root = DOCS.parent
    for name, obj in _public_objects().items():
        for path in re.findall(r"[\w./-]+\.(?:md|py|json|yaml|html)\b", inspect.getdoc(obj) or ""):
            if "/" in path:  # a repository path, not a bare file name such as model.json
                assert (root / path).exists(), f"{name} refers to {path}"


def test_the_api_reference_lists_every_public_name() -> None:
    page = (DOCS / "api.rst").read_text()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or name.startswith("__"):
                continue
            assert re.search(
                rf"^   {name}$|``{module_name}\.{name}``|``samsvae.{name}``", page, re.M
            ), name
