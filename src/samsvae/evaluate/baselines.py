"""Non-learned baselines for treatment effects."""

from __future__ import annotations

import numpy as np


def additive_effects(
    combinations: list[str], single_effects: dict[str, np.ndarray], delimiter: str = "+"
) -> np.ndarray:
    """Predict each combination's effect as the sum of its singles' observed effects."""
    rows = []
    for label in combinations:
        parts = [p.strip() for p in label.split(delimiter)]
        missing = [p for p in parts if p not in single_effects]
        if missing:
            msg = f"Additive baseline for {label!r} needs observed single effects for {missing}."
            raise ValueError(msg)
        rows.append(np.sum([single_effects[p] for p in parts], axis=0))
    return np.stack(rows)
