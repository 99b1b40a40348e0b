"""A tiny quickstart run folder shared by the CLI and report tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from samsvae.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """A tiny quickstart run folder, written once once per test session."""
    out = tmp_path_factory.mktemp("quickstart") / "run"
    result = CliRunner().invoke(
        main,
        [
            "quickstart",
            "--out",
            str(out),
            "--max-epochs",
            "2",
            "--n-perturbations",
            "6",
            "--n-combinations",
            "4",
            "--cells",
            "20",
            "--no-progress",
        ],
    )
    return out, result
