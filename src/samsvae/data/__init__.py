"""AnnData -> perturbation design, validation, splits and minibatch loaders."""

from __future__ import annotations

from samsvae.data.batch import Batch
from samsvae.data.design import PerturbationDesign, vocabulary_from_labels
from samsvae.data.loaders import (
    CellDataset,
    DeviceBatches,
    fits_on_device,
    gene_statistics,
    library_sizes,
    make_loader,
)
from samsvae.data.splits import train_validation_split

__all__ = [
    "Batch",
    "CellDataset",
    "DeviceBatches",
    "PerturbationDesign",
    "fits_on_device",
    "gene_statistics",
    "library_sizes",
    "make_loader",
    "train_validation_split",
    "vocabulary_from_labels",
]
