"""Seeded splits of cells."""

from __future__ import annotations

import numpy as np


def train_validation_split(
    n_cells: int, *, train_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n_cells)`` with ``seed``; the first ``round(train_size * n)`` train."""
    order = np.random.default_rng(seed).permutation(n_cells)
    n_train = n_cells if train_size >= 1 else max(1, min(n_cells - 1, round(train_size * n_cells)))
    return np.sort(order[:n_train]), np.sort(order[n_train:])
