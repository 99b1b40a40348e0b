"""Predictive IWELBO of held-out cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from samsvae.inference.objectives import iwelbo
from samsvae.settings import settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from samsvae.data.batch import Batch
    from samsvae.models import SAMSVAEModule


@torch.no_grad()
def predictive_iwelbo(
    module: SAMSVAEModule,
    batches: Iterable[Batch],
    *,
    n_particles: int = 100,
    progress: bool = False,
) -> torch.Tensor:
    """Compute the predictive IWELBO of each held-out cell.

    The ``n_particles`` global draws are made once and shared by all cells; particle p of every
    cell's z_basal is paired with global draw p. Globals are not scored against their priors.

    Parameters
    ----------
    module
        The fitted model.
    batches
        Minibatches of held-out cells (:class:`~samsvae.data.batch.Batch`).
    n_particles
        Number of importance-weighted particles (default 100).
    progress
        Show a progress bar over the batches when the pass takes more than two seconds.

    Returns
    -------
    torch.Tensor
        IWELBO per cell, log(1/P sum_p w_p) in nats, (n_cells,) on the CPU, in the order of
        ``batches``.
    """
    device = next(module.parameters()).device
    everything = torch.arange(module.n_perturbations, device=device)
    shared = module.sample_globals(everything, n_particles)
    values = []
    for batch in tqdm(
        batches, desc="IWELBO", disable=not settings.show_progress(progress), delay=2
    ):
        batch = batch.to(device)
        sample = shared.select(batch.perturbation_index)
        terms = module.local_terms(
            batch.counts, batch.dosage, batch.library_size, sample, covariates=batch.covariates
        )
        values.append(iwelbo(terms.log_weight).cpu())
    return torch.cat(values)
