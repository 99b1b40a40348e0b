"""The tutorials run at tiny size, and the API reference covers every public name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import samsvae

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


def test_api_reference_documents_every_public_name(tmp_path: Path) -> None:
    page = tmp_path / "api.md"
    result = _run(DOCS / "make_api_reference.py", page, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = page.read_text()
    for name in samsvae.__all__:
        assert f"`samsvae.{name}" in text, name
    assert "(no docstring)" not in text
    assert "SAMSVAE.get_mask_probabilities" in text and "samsvae.pl.mask_heatmap" in text
