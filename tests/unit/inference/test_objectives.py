"""The plated ELBO estimator and the IWELBO, checked with fixed random draws in float64."""

from __future__ import annotations

import math

import pytest
import torch

from samsvae.config import ConditionalVAEConfig, CPAVAEConfig, SAMSVAEConfig, SVAEPlusConfig
from samsvae.data.batch import Batch
from samsvae.inference.objectives import iwelbo, minibatch_elbo, plated_elbo_sum
from samsvae.models import ConditionalVAEModule, CPAVAEModule, SAMSVAEModule, SVAEPlusModule

N_CELLS, N_GENES, N_PERTURBATIONS, N_PARTICLES = 40, 7, 5, 3


def _problem(guide: str) -> tuple[SAMSVAEModule, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if guide == "cpa_vae":
        module = CPAVAEModule(N_GENES, N_PERTURBATIONS, CPAVAEConfig(n_latent=3, n_hidden=8))
    elif guide == "conditional_vae":
        config = ConditionalVAEConfig(n_latent=3, n_hidden=8)
        module = ConditionalVAEModule(N_GENES, N_PERTURBATIONS, config)
    elif guide == "svae_plus":
        config = SVAEPlusConfig(n_latent=3, n_hidden=8, mask_prior_beta=2.0)
        module = SVAEPlusModule(N_GENES, N_PERTURBATIONS, config)
    elif guide == "beta_bernoulli":
        config = SAMSVAEConfig(n_latent=3, n_hidden=8, mask_prior=0.2, mask_prior_concentration=4)
        module = SAMSVAEModule(N_GENES, N_PERTURBATIONS, config)
    else:
        config = SAMSVAEConfig(n_latent=3, n_hidden=8, guide=guide, mask_prior=0.2)  # type: ignore[arg-type]
        module = SAMSVAEModule(N_GENES, N_PERTURBATIONS, config)
    module = module.double()
    counts = torch.poisson(torch.full((N_CELLS, N_GENES), 4.0)).double()
    dosage = torch.zeros(N_CELLS, N_PERTURBATIONS, dtype=torch.float64)
    for i in range(N_CELLS):  # controls, singles and pairs; perturbation 4 is never carried
        if i % 4 == 1:
            dosage[i, i % 4] = 1.0
        elif i % 4 in (2, 3):
            dosage[i, [i % 3, (i + 1) % 4]] = 1.0
    module.n_cells_per_perturbation.copy_((dosage != 0).sum(0))
    library = counts.sum(1)
    return module, counts, dosage, library


def _full_data_objective(module, counts, dosage, library, sample, noise) -> torch.Tensor:
    """Direct L per particle: sum over all cells of local terms + sum over t with n_t > 0."""
    local = module.local_terms(counts, dosage, library, sample, basal_noise=noise)
    seen = module.n_cells_per_perturbation > 0
    global_terms = (module.global_log_prior(sample) - sample.log_q)[:, seen]
    return local.log_weight.sum(-1) + global_terms.sum(-1)


@pytest.mark.parametrize(
    "guide",
    ["mean_field", "correlated", "beta_bernoulli", "cpa_vae", "conditional_vae", "svae_plus"],
)
@pytest.mark.parametrize("batch_size", [1, 7, 16, N_CELLS])
def test_plated_elbo_summed_over_an_epoch_equals_the_full_data_objective(
    guide: str, batch_size: int
) -> None:
    module, counts, dosage, library = _problem(guide)
    everything = torch.arange(N_PERTURBATIONS)
    with torch.no_grad():
        sample = module.sample_globals(everything, N_PARTICLES)
        noise = torch.randn(N_PARTICLES, N_CELLS, 3, dtype=torch.float64)
        expected = _full_data_objective(module, counts, dosage, library, sample, noise)
        total = torch.zeros(N_PARTICLES, dtype=torch.float64)
        order = torch.randperm(N_CELLS, generator=torch.Generator().manual_seed(3))
        for rows in order.split(batch_size):
            present = torch.nonzero((dosage[rows] != 0).any(0)).ravel()
            sub = sample.select(present)
            local = module.local_terms(
                counts[rows],
                dosage[rows][:, present],
                library[rows],
                sub,
                basal_noise=noise[:, rows],
            )
            global_log_weight = module.global_log_prior(sub) - sub.log_q
            carriers = (dosage[rows][:, present] != 0).sum(0).double()
            total += plated_elbo_sum(
                local.log_weight,
                global_log_weight,
                carriers,
                module.n_cells_per_perturbation[present],
            )
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=1e-9)


def test_perturbation_absent_from_training_gets_no_global_term() -> None:
    local = torch.zeros(2, 3, dtype=torch.float64)
    carriers = torch.tensor([2.0, 1.0])
    n_t = torch.tensor([4.0, 0.0])  # the second perturbation had no training cells
    global_a = torch.tensor([[1.0, 5.0], [2.0, -7.0]], dtype=torch.float64)
    global_b = global_a.clone()
    global_b[:, 1] = 1e6
    result = plated_elbo_sum(local, global_a, carriers, n_t)
    torch.testing.assert_close(result, plated_elbo_sum(local, global_b, carriers, n_t))
    torch.testing.assert_close(result, global_a[:, 0] * 2 / 4)


def test_minibatch_elbo_has_no_global_term_when_every_perturbation_is_unseen() -> None:
    module, counts, dosage, library = _problem("mean_field")
    module.n_cells_per_perturbation.zero_()
    present = torch.arange(N_PERTURBATIONS - 1)
    batch = Batch(counts, dosage[:, present], present, library, torch.arange(N_CELLS))
    terms = minibatch_elbo(module, batch, N_PARTICLES)
    assert terms.global_.item() == 0.0
    # Gradients still reach the unseen perturbations' embeddings through the latent shift,
    # but not through a prior/guide term: the loss equals minus the local part.
    torch.testing.assert_close(terms.loss, -terms.local)


def test_iwelbo_is_at_least_the_average_single_particle_weight() -> None:
    generator = torch.Generator().manual_seed(0)
    log_weight = torch.randn(50, 9, generator=generator, dtype=torch.float64) * 3
    result = iwelbo(log_weight)
    assert torch.all(result >= log_weight.mean(0))
    torch.testing.assert_close(iwelbo(log_weight[:1]), log_weight[0])
    constant = torch.full((10, 2), -4.0, dtype=torch.float64)
    torch.testing.assert_close(iwelbo(constant), torch.full((2,), -4.0, dtype=torch.float64))
    assert math.isclose(
        iwelbo(torch.tensor([[0.0], [math.log(3.0)]], dtype=torch.float64)).item(), math.log(2.0)
    )
