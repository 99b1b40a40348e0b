"""Conventions: import boundaries and documented public names."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import samsvae

PACKAGES = [
    "samsvae",
    "samsvae.data",
    "samsvae.datasets",
    "samsvae.distributions",
    "samsvae.nn",
    "samsvae.models",
    "samsvae.inference",
    "samsvae.evaluate",
    "samsvae.pl",
]


def test_pure_maths_modules_do_not_import_lightning_anndata_or_matplotlib() -> None:
    code = (
        "import sys, samsvae.models, samsvae.distributions, samsvae.nn; "
        "print(','.join(m for m in ('lightning', 'anndata', 'matplotlib', 'scanpy') "
        "if m in sys.modules))"
    )
    # Importing samsvae.models runs samsvae/__init__, so check the submodules' own imports.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code.replace(
                "import sys, ",
                "import sys; "
                "sys.modules['samsvae'] = type(sys)('samsvae'); "
                "sys.modules['samsvae'].__path__ = [__import__('os').path.join("
                f"{samsvae.__path__[0]!r})]; import ",
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert inspect.getdoc(obj), f"{package}.{name} has no docstring"


def test_importing_samsvae_does_not_import_scanpy() -> None:
    # pl.latent_umap imports scanpy inside the function: the figures stay cheap to import.
    code = "import sys, samsvae, samsvae.pl; print('scanpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
