"""Figures: each function takes results, accepts ``ax=None`` and returns the Axes."""

from __future__ import annotations

from samsvae.pl.figures import ate_scatter, mask_heatmap, training_curves
from samsvae.pl.interpretation import latent_program_bars, latent_umap, similarity_heatmap

__all__ = [
    "ate_scatter",
    "latent_program_bars",
    "latent_umap",
    "mask_heatmap",
    "similarity_heatmap",
    "training_curves",
]
