"""Figures: each function takes results, accepts ``ax=None`` and returns the Axes."""

from __future__ import annotations

from samsvae.pl.figures import ate_scatter, mask_heatmap, training_curves

__all__ = ["ate_scatter", "mask_heatmap", "training_curves"]
