"""SVAE+ and SAMS-VAE's Beta-Bernoulli masks against direct torch.distributions computations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samsvae.config import SAMSVAEConfig, SVAEPlusConfig
from samsvae.models import SAMSVAEModule, SVAEPlusModule


def _beta_guide_log_q(module: SAMSVAEModule, index: torch.Tensor, sample) -> torch.Tensor:
    guide = module.guide
    q_pi = torch.distributions.Beta(
        F.softplus(guide.inclusion_raw[index]), F.softplus(guide.exclusion_raw[index])
    )
    q_m = torch.distributions.Bernoulli(logits=guide.mask_logits[index])
    return (q_pi.log_prob(sample.mask_probabilities) + q_m.log_prob(sample.masks)).sum(-1)


def test_svae_plus_global_terms_are_beta_bernoulli_with_unscored_point_shifts() -> None:
    torch.manual_seed(0)
    config = SVAEPlusConfig(n_latent=3, n_hidden=8, mask_prior=0.2, mask_prior_concentration=5)
    module = SVAEPlusModule(6, 4, config)
    with torch.no_grad():
        module.guide.shift_loc.copy_(torch.randn(4, 3))
    index = torch.tensor([0, 2, 3])
    sample = module.sample_globals(index, 7)
    assert set(sample.masks.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(sample.embeddings, module.guide.shift_loc[index].expand(7, 3, 3))
    pi, masks = sample.mask_probabilities, sample.masks
    expected_prior = (
        torch.distributions.Beta(1.0, 4.0).log_prob(pi)  # a c = 1, (1 - a) c = 4
        + torch.distributions.Bernoulli(probs=pi).log_prob(masks)
    ).sum(-1)  # no term for the shifts: they are point estimates
    torch.testing.assert_close(module.global_log_prior(sample), expected_prior)
    torch.testing.assert_close(sample.log_q, _beta_guide_log_q(module, index, sample))


def test_svae_plus_local_terms_score_z_against_the_masked_shift_and_ignore_d_in_q() -> None:
    torch.manual_seed(0)
    module = SVAEPlusModule(6, 4, SVAEPlusConfig(n_latent=3, n_hidden=8, likelihood="poisson"))
    with torch.no_grad():
        module.guide.shift_loc.copy_(torch.randn(4, 3))
    counts = torch.poisson(torch.full((5, 6), 3.0))
    dosage = torch.eye(4)[[0, 1, 2, 3, 0]]
    dosage[4] = 0  # a control cell
    sample = module.sample_globals(torch.arange(4), 2)
    noise = torch.randn(2, 5, 3)
    terms = module.local_terms(counts, dosage, counts.sum(1), sample, basal_noise=noise)
    loc, scale = module.encoder(module.normalise(counts), None)
    z = loc + scale * noise
    shift = dosage @ sample.shifts  # (2, 5, 3): m_t(i) * mu_t(i), zero for the control
    torch.testing.assert_close(
        terms.log_p_basal, torch.distributions.Normal(shift, 1.0).log_prob(z).sum(-1)
    )
    torch.testing.assert_close(
        terms.log_q_basal, torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    )
    # q(z | x) does not see the perturbation: another dosage leaves it unchanged.
    other = module.local_terms(counts, dosage.roll(1, 0), counts.sum(1), sample, basal_noise=noise)
    torch.testing.assert_close(other.log_q_basal, terms.log_q_basal)
    torch.testing.assert_close(other.log_likelihood, terms.log_likelihood)


def test_beta_bernoulli_sams_vae_adds_the_beta_terms_and_keeps_the_embedding_prior() -> None:
    torch.manual_seed(0)
    config = SAMSVAEConfig(
        n_latent=2, n_hidden=4, mask_prior=0.1, mask_prior_concentration=20.0, guide="mean_field"
    )
    module = SAMSVAEModule(4, 3, config)
    index = torch.arange(3)
    sample = module.sample_globals(index, 5)
    pi = sample.mask_probabilities
    expected = (
        torch.distributions.Beta(2.0, 18.0).log_prob(pi)
        + torch.distributions.Bernoulli(probs=pi).log_prob(sample.masks)
        + torch.distributions.Normal(0.0, 1.0).log_prob(sample.embeddings)
    ).sum(-1)
    torch.testing.assert_close(module.global_log_prior(sample), expected)
    guide = module.guide
    q_e = torch.distributions.Normal(
        guide.embedding_loc, F.softplus(guide.embedding_scale_raw) + 1e-4
    )
    torch.testing.assert_close(
        sample.log_q,
        _beta_guide_log_q(module, index, sample) + q_e.log_prob(sample.embeddings).sum(-1),
    )
    # q(pi) starts at the prior, and its parameters receive gradients through the ELBO terms.
    torch.testing.assert_close(F.softplus(guide.inclusion_raw), torch.full((3, 2), 2.0))
    (module.global_log_prior(sample) - sample.log_q).sum().backward()
    assert guide.inclusion_raw.grad is not None and guide.inclusion_raw.grad.abs().sum() > 0
