"""samsvae: the Sparse Additive Mechanism Shift VAE for single-cell perturbation screens."""

from __future__ import annotations

from samsvae import datasets, pl
from samsvae.api import CPAVAE, SAMSVAE, ConditionalVAE, SVAEPlus
from samsvae.defaults import presets, train_presets
from samsvae.settings import settings

__version__ = "0.1.0"

__all__ = [
    "CPAVAE",
    "SAMSVAE",
    "ConditionalVAE",
    "SVAEPlus",
    "__version__",
    "datasets",
    "pl",
    "presets",
    "settings",
    "train_presets",
]
