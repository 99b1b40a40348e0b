"""The optimised training loss equals a straightforward computation of the same estimator.

The reference concatenates the encoder input, evaluates the full negative binomial with
torch.distributions for every particle, loops over perturbations for the global terms, and uses
no fused kernels; both see the same random draws (same seed, same draw order).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, NegativeBinomial, Normal

from samsvae.config import SAMSVAEConfig
from samsvae.data.batch import Batch
from samsvae.inference.objectives import minibatch_elbo
from samsvae.models import SAMSVAEModule

N_CELLS, N_GENES, N_PERTURBATIONS, N_LATENT, N_PARTICLES = 12, 9, 6, 3, 4


def _reference_loss(module: SAMSVAEModule, batch: Batch, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    index = batch.perturbation_index
    sample = module.sample_globals(index, N_PARTICLES)  # same draws as minibatch_elbo
    basal_noise = torch.randn(N_PARTICLES, N_CELLS, N_LATENT, dtype=torch.float64)
    shift = torch.einsum("bt,ptk->pbk", batch.dosage, sample.embeddings * sample.masks)

    encoder = module.encoder
    weight = torch.cat([encoder.trunk.input_layer.weight, encoder.shift_layer.weight], dim=1)
    x_normalised = (torch.log1p(batch.counts) - module.gene_mean) / module.gene_scale
    inputs = torch.cat([x_normalised.expand(N_PARTICLES, -1, -1), shift], dim=-1)
    hidden = encoder.trunk.forward_hidden(inputs @ weight.T + encoder.trunk.input_layer.bias)
    loc = encoder.loc(hidden)
    scale = torch.nn.functional.softplus(encoder.scale(hidden)) + 1e-4
    z_basal = loc + scale * basal_noise

    logits = module.likelihood.logits(module.decoder(z_basal + shift))
    mu = batch.library_size[:, None] * torch.softmax(logits, -1)
    theta = module.likelihood.log_theta.exp()
    log_likelihood = (
        NegativeBinomial(total_count=theta, logits=mu.log() - theta.log())
        .log_prob(batch.counts)
        .sum(-1)
    )
    local = (
        log_likelihood
        + Normal(0.0, 1.0).log_prob(z_basal).sum(-1)
        - Normal(loc, scale).log_prob(z_basal).sum(-1)
    )  # (P, B)

    total = local.sum(-1)
    prior_logit = torch.logit(torch.tensor(module.config.mask_prior, dtype=torch.float64))
    for j, t in enumerate(index.tolist()):
        n_t = module.n_cells_per_perturbation[t]
        if n_t == 0:
            continue
        carriers = (batch.dosage[:, j] != 0).sum()
        masks, embeddings = sample.masks[:, j], sample.embeddings[:, j]
        e_loc, e_scale = module.guide.embedding_distribution(index[j : j + 1], masks[:, None])
        q_embedding = Normal(
            e_loc.expand(N_PARTICLES, 1, -1)[:, 0], e_scale.expand(N_PARTICLES, 1, -1)[:, 0]
        )
        log_q = Bernoulli(logits=module.guide.mask_logits[t]).log_prob(masks).sum(
            -1
        ) + q_embedding.log_prob(embeddings).sum(-1)
        log_p = Bernoulli(logits=prior_logit).log_prob(masks).sum(-1) + Normal(
            0.0, module.config.embedding_prior_scale
        ).log_prob(embeddings).sum(-1)
        total = total + carriers / n_t * (log_p - log_q)
    return -(total / N_CELLS).mean()


@pytest.mark.parametrize("guide", ["mean_field", "correlated"])
def test_optimised_loss_equals_reference_on_fixed_draws(guide: str) -> None:
    torch.manual_seed(0)
    config = SAMSVAEConfig(n_latent=N_LATENT, n_hidden=7, n_layers=2, guide=guide, mask_prior=0.1)  # type: ignore[arg-type]
    module = SAMSVAEModule(N_GENES, N_PERTURBATIONS, config).double()
    with torch.no_grad():
        for parameter in module.guide.parameters():  # away from the symmetric initialisation
            parameter.add_(0.3 * torch.randn_like(parameter))
        module.likelihood.log_theta.normal_()
        module.gene_mean.uniform_(0, 1)
        module.gene_scale.uniform_(0.5, 1.5)
        module.n_cells_per_perturbation.copy_(torch.tensor([5.0, 0.0, 3.0, 8.0, 2.0, 4.0]))
    counts = torch.poisson(torch.full((N_CELLS, N_GENES), 3.0)).double()
    index = torch.tensor([0, 1, 3, 5])  # perturbation 1 is present but unseen in training
    dosage = torch.zeros(N_CELLS, len(index), dtype=torch.float64)
    dosage[torch.arange(N_CELLS), torch.arange(N_CELLS) % len(index)] = 1.0
    dosage[0, 2] = 2.0  # a combination with a real-valued dose
    batch = Batch(counts, dosage, index, counts.sum(1).clamp(min=1), torch.arange(N_CELLS))

    torch.manual_seed(11)
    optimised = minibatch_elbo(module, batch, N_PARTICLES).loss
    reference = _reference_loss(module, batch, seed=11)
    torch.testing.assert_close(optimised, reference, rtol=1e-10, atol=1e-9)

    grads = torch.autograd.grad(optimised, list(module.parameters()), allow_unused=True)
    ref_grads = torch.autograd.grad(reference, list(module.parameters()), allow_unused=True)
    for got, expected in zip(grads, ref_grads, strict=True):
        if expected is None:
            assert got is None or torch.all(got == 0)
        else:
            torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)
