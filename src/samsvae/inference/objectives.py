r"""ELBO and IWELBO estimators as functions of log-probability terms.

Plated ELBO, for training cells i and perturbations t with n_t > 0 training cells:

    L = sum_i E_q[log p(x_i|z_i) + log p(z_i^b) - log q(z_i^b|.)]
        + sum_{t: n_t > 0} E_q[log p(e_t) + log p(m_t) - log q(e_t|.) - log q(m_t)]

Minibatch estimator: each cell carrying t takes a 1/n_t share of t's global term, so a batch of B
cells with c_t carriers of t contributes  sum_{i in batch} local_i + sum_t (c_t / n_t) global_t,
and (1/B) times that is an unbiased estimate of L/N. Only perturbations present in the batch
(c_t > 0) are touched. Each of P particles draws its own (E, M, z^b); the loss averages particles.

Data parallelism: each rank holds a part of the global batch, draws the globals of all the
global batch's perturbations and the z^b noise of the whole global batch from the same RNG
state, and keeps its cells' share; with n_t the global counts, the ranks' scaled losses average
to the single-process loss (:func:`gradient_weight`).

Predictive IWELBO: with P global draws shared by all cells and particle p of each
cell's z^b paired with global draw p,  IWELBO_i = logsumexp_p w_ip - log P, where
w_ip = log p(x_i|z_ip) + log p(z^b_ip) - log q(z^b_ip|.). Globals are not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samsvae.data.batch import Batch
from samsvae.models import SAMSVAEModule


@dataclass(frozen=True)
class LossTerms:
    """Minibatch ELBO pieces, each averaged over particles and divided by the batch size."""

    loss: torch.Tensor
    local: torch.Tensor
    global_: torch.Tensor
    log_likelihood: torch.Tensor


def global_shares(
    cells_with_perturbation: torch.Tensor, n_cells_per_perturbation: torch.Tensor
) -> torch.Tensor:
    """c_t / n_t, and 0 where n_t = 0 (a perturbation unseen in training has no global term)."""
    seen = n_cells_per_perturbation > 0
    return torch.where(seen, cells_with_perturbation / n_cells_per_perturbation.clamp(min=1), 0.0)


def plated_elbo_sum(
    local_log_weight: torch.Tensor,
    global_log_weight: torch.Tensor,
    cells_with_perturbation: torch.Tensor,
    n_cells_per_perturbation: torch.Tensor,
) -> torch.Tensor:
    """Minibatch contribution to L, one value per particle.

    local_log_weight (P, B); global_log_weight (P, T_b) = log p - log q of the globals;
    cells_with_perturbation (T_b,) = c_t; n_cells_per_perturbation (T_b,) = n_t. Returns (P,).
    """
    shares = global_shares(cells_with_perturbation, n_cells_per_perturbation)
    return local_log_weight.sum(-1) + (global_log_weight * shares).sum(-1)


def minibatch_elbo(
    module: SAMSVAEModule,
    batch: Batch,
    n_particles: int,
    *,
    n_cells_per_perturbation: torch.Tensor | None = None,
) -> LossTerms:
    """Draw P particles for ``batch`` and return the negative ELBO per cell as ``loss``.

    ``n_cells_per_perturbation`` (n_perturbations,) gives the plate sizes n_t of the cells the
    batch is drawn from; by default the training cells' (``module.n_cells_per_perturbation``).
    Validation passes the validation cells' n_t: the loss then estimates the negative ELBO per
    cell of the validation cells.
    """
    if n_cells_per_perturbation is None:
        n_cells_per_perturbation = module.n_cells_per_perturbation
    sample = module.sample_globals(batch.perturbation_index, n_particles)
    noise = None
    if batch.shard is not None:
        noise = _shard_basal_noise(batch, n_particles, module.config.n_latent)
    local = module.local_terms(
        batch.counts, batch.dosage, batch.library_size, sample, noise, batch.covariates
    )
    global_log_weight = module.global_log_prior(sample) - sample.log_q
    cells_with = (batch.dosage != 0).sum(0).to(local.log_weight.dtype)
    n_t = n_cells_per_perturbation[batch.perturbation_index]
    n_cells = batch.counts.shape[0]
    elbo = plated_elbo_sum(local.log_weight, global_log_weight, cells_with, n_t).mean() / n_cells
    global_part = (global_log_weight * global_shares(cells_with, n_t)).sum(-1).mean() / n_cells
    return LossTerms(
        loss=-elbo,
        local=local.log_weight.sum(-1).mean() / n_cells,
        global_=global_part,
        log_likelihood=local.log_likelihood.sum(-1).mean() / n_cells,
    )


def _shard_basal_noise(batch: Batch, n_particles: int, n_latent: int) -> torch.Tensor:
    """This rank's rows of the z_basal noise a single process draws for the global batch.

    Every rank draws the (P, total, K) noise of the whole global batch from the same RNG state
    and keeps its rows, so the union over ranks is the single-process draw. Returns
    (n_particles, n_cells, n_latent).
    """
    shard, n_cells = batch.shard, batch.counts.shape[0]
    shape = (n_particles, shard.total, n_latent)  # (P, B_global, K)
    noise = torch.randn(shape, dtype=batch.counts.dtype, device=batch.counts.device)
    return noise[:, shard.offset : shard.offset + n_cells]


def gradient_weight(batch: Batch, world_size: int) -> float:
    """Factor turning a rank's per-cell loss into its share of the global-batch mean.

    DDP averages gradients over ranks, so rank r's loss (a mean over its n_r cells) must be
    scaled by world_size * n_r / B for the average to equal the single-process gradient of the
    mean over all B cells of the global batch.
    """
    if batch.shard is None:
        return 1.0
    return world_size * batch.counts.shape[0] / batch.shard.total


def iwelbo(log_weight: torch.Tensor) -> torch.Tensor:
    """logsumexp over particles minus log P; log_weight (P, B) -> (B,)."""
    return torch.logsumexp(log_weight, dim=0) - math.log(log_weight.shape[0])
