"""SVAE+ and SAMS-VAE's Beta-Bernoulli masks against direct torch.distributions computations."""

from __future__ import annotations

import pytest
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


def test_svae_plus_global_term_is_the_map_beta_penalty_plus_the_bernoulli_terms() -> None:
    torch.manual_seed(0)
    c = 5.0
    config = SVAEPlusConfig(n_latent=3, n_hidden=8, mask_prior_beta=c)
    module = SVAEPlusModule(6, 4, config).double()
    guide = module.guide
    with torch.no_grad():  # fixed values away from the initialisation
        guide.pi_logits.copy_(torch.randn(4, 3, dtype=torch.float64) * 2)
        guide.mask_logits.copy_(torch.randn(4, 3, dtype=torch.float64) * 2)
    index = torch.tensor([0, 2, 3])
    sample = module.sample_globals(index, 50)
    masks = sample.masks
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(sample.embeddings, guide.shift_loc[index].expand(50, 3, 3))

    pi = torch.sigmoid(guide.pi_logits[index]).detach()  # the point estimate, (3, 3)
    expected = (
        torch.distributions.Beta(torch.tensor(1.0).double(), torch.tensor(c).double()).log_prob(pi)
        + torch.distributions.Bernoulli(probs=pi).log_prob(masks)
        - torch.distributions.Bernoulli(logits=guide.mask_logits[index]).log_prob(masks)
    ).sum(-1)  # no log q(pi) (point mass) and no term for the point shifts mu
    global_term = module.global_log_prior(sample) - sample.log_q
    torch.testing.assert_close(global_term, expected, rtol=1e-12, atol=1e-12)
    # The MAP penalty reaches pi's logits; the shifts get no gradient from the global term.
    global_term.sum().backward()
    assert guide.pi_logits.grad[index].abs().min() > 0
    assert guide.shift_loc.grad is None or guide.shift_loc.grad.abs().sum() == 0


def test_svae_plus_starts_at_the_prior_mean_with_unit_normal_shifts() -> None:
    torch.manual_seed(0)
    module = SVAEPlusModule(6, 400, SVAEPlusConfig(n_latent=10, n_hidden=8, mask_prior_beta=10))
    pi = torch.sigmoid(module.guide.pi_logits)
    torch.testing.assert_close(pi, torch.full((400, 10), 1 / 11))
    torch.testing.assert_close(module.mask_probabilities(), torch.full((400, 10), 0.5))
    shifts = module.guide.shift_loc.detach()
    assert abs(shifts.mean().item()) < 0.1
    assert 0.9 < shifts.std().item() < 1.1


def test_svae_plus_config_refuses_a_non_positive_beta() -> None:
    with pytest.raises(ValueError, match="mask_prior_beta=0"):
        SVAEPlusConfig(mask_prior_beta=0)


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
