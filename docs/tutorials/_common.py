"""Shared by the tutorials: command-line arguments and saving figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # write figures to files; no window needed

# Sizes of the simulated screen: "small" runs in seconds (used by the tests), "full" as the
# README's quickstart (a few minutes on a CPU).
SIMULATION = {
    "small": {
        "n_perturbations": 8,
        "n_combinations": 6,
        "n_genes": 30,
        "n_cells_per_perturbation": 40,
        "n_cells_per_combination": 40,
        "n_control_cells": 150,
    },
    "full": {},
}
# Training: the full runs use the defaults (sizes, learning rates and budget chosen from the
# screen); --small stops after 3 epochs so that the test suite runs every tutorial in seconds.
TRAIN: dict[str, dict[str, Any]] = {"small": {"max_epochs": 3}, "full": {}}


def arguments(description: str | None, name: str) -> argparse.Namespace:
    """``--small`` (tiny sizes, seconds) and ``--out`` (figure folder, created)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="tiny sizes: runs in seconds")
    parser.add_argument(
        "--out", type=Path, default=Path("tutorial_output") / name, help="figure folder"
    )
    args = parser.parse_args()
    args.size = "small" if args.small else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def save(ax: Any, path: Path) -> None:
    """Save the figure of ``ax`` as PNG. It stays open, so that the documentation build
    (sphinx-gallery) shows it under the code that drew it."""
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    print(f"wrote {path}")
