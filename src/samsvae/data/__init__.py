"""AnnData -> perturbation design, validation, preprocessing, task splits and minibatch loaders."""

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
from samsvae.data.preprocess import preprocess
from samsvae.data.splits import (
    TASKS,
    Split,
    make_split,
    norman_data_efficiency_split,
    norman_ood_split,
    random_split,
    shuffled_combinations,
    split_combinations,
    train_validation_split,
)

__all__ = [
    "TASKS",
    "Batch",
    "CellDataset",
    "DeviceBatches",
    "PerturbationDesign",
    "Split",
    "fits_on_device",
    "gene_statistics",
    "library_sizes",
    "make_loader",
    "make_split",
    "norman_data_efficiency_split",
    "norman_ood_split",
    "preprocess",
    "random_split",
    "shuffled_combinations",
    "split_combinations",
    "train_validation_split",
    "vocabulary_from_labels",
]
