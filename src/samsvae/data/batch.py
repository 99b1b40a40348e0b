"""The minibatch record shared by loaders and objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A minibatch of cells.

    counts (B, n_genes) float; dosage (B, T_b) for the perturbations ``perturbation_index`` (T_b,)
    present in the batch; library_size (B,) observed row sums; index (B,) rows of the dataset.
    """

    counts: torch.Tensor
    dosage: torch.Tensor
    perturbation_index: torch.Tensor
    library_size: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """Copy every tensor to ``device``."""
        return Batch(
            counts=self.counts.to(device),
            dosage=self.dosage.to(device),
            perturbation_index=self.perturbation_index.to(device),
            library_size=self.library_size.to(device),
            index=self.index.to(device),
        )
