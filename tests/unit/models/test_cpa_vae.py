from __future__ import annotations

import torch

from samsvae.config import CPAVAEConfig, SAMSVAEConfig
from samsvae.models import CPAVAEModule, SAMSVAEModule


def test_cpa_vae_masks_are_ones_and_only_embeddings_are_scored() -> None:
    torch.manual_seed(0)
    module = CPAVAEModule(5, 4, CPAVAEConfig(n_latent=3, n_hidden=8))
    sample = module.sample_globals(torch.tensor([0, 2]), 6)
    assert torch.equal(sample.masks, torch.ones(6, 2, 3))
    loc = module.guide.embedding_loc[[0, 2]]
    scale = torch.nn.functional.softplus(module.guide.embedding_scale_raw[[0, 2]]) + 1e-4
    expected_q = torch.distributions.Normal(loc, scale).log_prob(sample.embeddings).sum(-1)
    torch.testing.assert_close(sample.log_q, expected_q)
    expected_p = torch.distributions.Normal(0.0, 1.0).log_prob(sample.embeddings).sum(-1)
    torch.testing.assert_close(module.global_log_prior(sample), expected_p)
    assert torch.equal(module.mask_probabilities(), torch.ones(4, 3))


def test_cpa_vae_local_terms_equal_sams_vae_with_all_masks_on() -> None:
    torch.manual_seed(0)
    cpa = CPAVAEModule(5, 4, CPAVAEConfig(n_latent=3, n_hidden=8))
    sams = SAMSVAEModule(5, 4, SAMSVAEConfig(n_latent=3, n_hidden=8, guide="mean_field"))
    sams.load_state_dict(
        cpa.state_dict() | {"guide.mask_logits": sams.guide.mask_logits}, strict=True
    )
    counts = torch.poisson(torch.full((7, 5), 3.0))
    sample = cpa.sample_globals(torch.arange(4), 2)
    noise = torch.randn(2, 7, 3)
    dosage = torch.eye(4)[torch.arange(7) % 4]
    a = cpa.local_terms(counts, dosage, counts.sum(1), sample, basal_noise=noise)
    b = sams.local_terms(counts, dosage, counts.sum(1), sample, basal_noise=noise)
    torch.testing.assert_close(a.log_weight, b.log_weight)
