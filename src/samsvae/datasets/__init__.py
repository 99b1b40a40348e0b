"""Datasets: simulations with ground truth."""

from __future__ import annotations

from samsvae.datasets.simulate import simulate

__all__ = ["simulate"]
