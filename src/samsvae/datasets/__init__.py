"""Datasets: simulations with ground truth and the published screens, downloaded once."""

from __future__ import annotations

from samsvae.datasets.norman import norman2019
from samsvae.datasets.replogle import replogle2022_k562
from samsvae.datasets.simulate import simulate, simulate_realistic

__all__ = ["norman2019", "replogle2022_k562", "simulate", "simulate_realistic"]
