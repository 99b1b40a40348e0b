"""The minibatch record shared by loaders and objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """Where a data-parallel rank's cells sit in the global batch: positions
    ``offset .. offset + n_cells - 1`` of ``total`` cells."""

    offset: int
    total: int


@dataclass
class Batch:
    """A minibatch of cells.

    counts (B, n_genes) float; dosage (B, T_b) for the perturbations ``perturbation_index`` (T_b,)
    present in the batch; library_size (B,) observed row sums; index (B,) rows of the dataset.
    ``shard`` is set when the batch is one rank's part of a global batch (data parallelism);
    ``perturbation_index`` then lists the perturbations of the whole global batch.
    ``covariates`` (B, n_covariates) holds one-hot covariate rows, or None for a model without.
    """

    counts: torch.Tensor
    dosage: torch.Tensor
    perturbation_index: torch.Tensor
    library_size: torch.Tensor
    index: torch.Tensor
    shard: Shard | None = None
    covariates: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """Copy every tensor to ``device``."""
        return Batch(
            counts=self.counts.to(device),
            dosage=self.dosage.to(device),
            perturbation_index=self.perturbation_index.to(device),
            library_size=self.library_size.to(device),
            index=self.index.to(device),
            shard=self.shard,
            covariates=None if self.covariates is None else self.covariates.to(device),
        )
