"""The minibatch record shared by loaders and objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """Where a data-parallel rank's cells sit in the global batch.

    The rank holds positions ``offset .. offset + n_cells - 1`` of the ``total`` cells of the
    global batch.

    Parameters
    ----------
    offset
        Position of the rank's first cell in the global batch.
    total
        Number of cells in the global batch, over all ranks.
    """

    offset: int
    total: int


@dataclass
class Batch:
    """A minibatch of B cells, as loaders yield it and objectives consume it.

    Only the perturbations present in the batch get dosage columns: ``dosage[:, j]`` is the
    dosage of perturbation ``perturbation_index[j]`` of the design.

    Parameters
    ----------
    counts
        Expression of the cells, (B, n_genes) float.
    dosage
        Dosage of the T_b perturbations in ``perturbation_index``, (B, T_b).
    perturbation_index
        Design positions of the perturbations present in the batch, (T_b,) int64. When
        ``shard`` is set, it lists the perturbations of the whole global batch.
    library_size
        Observed row sums of the counts, (B,).
    index
        Row positions of the cells in the dataset, (B,) int64.
    shard
        Set when the batch is one rank's part of a global batch (data parallelism); None
        otherwise.
    covariates
        One-hot covariate rows, (B, n_covariates), or None for a model without covariates.
    """

    counts: torch.Tensor
    dosage: torch.Tensor
    perturbation_index: torch.Tensor
    library_size: torch.Tensor
    index: torch.Tensor
    shard: Shard | None = None
    covariates: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """Copy every tensor to ``device``.

        Parameters
        ----------
        device
            Target device, e.g. ``"cuda"`` or ``torch.device("cpu")``.

        Returns
        -------
        Batch
            A new batch with every tensor on ``device``; ``shard`` is shared, not copied.
        """
        return Batch(
            counts=self.counts.to(device),
            dosage=self.dosage.to(device),
            perturbation_index=self.perturbation_index.to(device),
            library_size=self.library_size.to(device),
            index=self.index.to(device),
            shard=self.shard,
            covariates=None if self.covariates is None else self.covariates.to(device),
        )
