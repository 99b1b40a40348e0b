from __future__ import annotations

import torch

from samsvae.config import ConditionalVAEConfig
from samsvae.models import ConditionalVAEModule


def _module() -> ConditionalVAEModule:
    torch.manual_seed(0)
    return ConditionalVAEModule(5, 4, ConditionalVAEConfig(n_latent=3, n_hidden=8))


def test_decoder_sees_latent_and_full_dosage_row() -> None:
    module = _module()
    assert module.decoder.input_layer.in_features == 3 + 4
    assert module.encoder.shift_layer.in_features == 4
    condition = module.condition(torch.tensor([[1.0, 2.0]]), torch.tensor([1, 3]))
    assert torch.equal(condition, torch.tensor([[0.0, 1.0, 0.0, 2.0]]))


def test_local_terms_match_a_direct_computation() -> None:
    module = _module().double()
    counts = torch.poisson(torch.full((6, 5), 3.0)).double()
    dosage = torch.eye(2, dtype=torch.float64)[torch.arange(6) % 2]
    index = torch.tensor([0, 2])
    sample = module.sample_globals(index, 3)
    assert sample.embeddings.shape == (3, 2, 0)
    noise = torch.randn(3, 6, 3, dtype=torch.float64)
    terms = module.local_terms(counts, dosage, counts.sum(1), sample, basal_noise=noise)

    full = torch.zeros(6, 4, dtype=torch.float64)
    full[:, index] = dosage
    x_normalised = (torch.log1p(counts) - module.gene_mean) / module.gene_scale
    loc, scale = module.encoder(x_normalised, full)
    z = loc + scale * noise
    hidden = module.decoder(torch.cat([z, full.expand(3, -1, -1)], -1))
    mu = counts.sum(1)[:, None] * torch.softmax(module.likelihood.logits(hidden), -1)
    theta = module.likelihood.log_theta.exp()
    nb = torch.distributions.NegativeBinomial(theta, logits=mu.log() - theta.log())
    expected = (
        nb.log_prob(counts).sum(-1)
        + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        - torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(terms.log_weight, expected)
    torch.testing.assert_close(
        module.global_log_prior(sample), torch.zeros(3, 2, dtype=torch.float64)
    )
