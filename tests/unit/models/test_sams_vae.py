from __future__ import annotations

import pytest
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.models import SAMSVAEModule


def test_encoder_first_layer_split_equals_concatenated_input() -> None:
    torch.manual_seed(0)
    module = SAMSVAEModule(5, 3, SAMSVAEConfig(n_latent=2, n_hidden=6))
    encoder = module.encoder
    x = torch.randn(4, 5)
    shift = torch.randn(3, 4, 2)
    weight = torch.cat([encoder.trunk.input_layer.weight, encoder.shift_layer.weight], dim=1)
    concatenated = torch.cat([x.expand(3, 4, 5), shift], dim=-1) @ weight.T
    concatenated = concatenated + encoder.trunk.input_layer.bias
    h = encoder.trunk.forward_hidden(concatenated)
    loc, scale = encoder(x, shift)
    torch.testing.assert_close(loc, encoder.loc(h))
    assert loc.shape == scale.shape == (3, 4, 2)


def test_encoder_fed_x_only_ignores_the_shift() -> None:
    torch.manual_seed(0)
    module = SAMSVAEModule(5, 3, SAMSVAEConfig(n_latent=2, n_hidden=6, encoder_input="x"))
    x = torch.randn(4, 5)
    loc_a, _ = module.encoder(x, torch.zeros(3, 4, 2))
    loc_b, _ = module.encoder(x, torch.randn(3, 4, 2))
    torch.testing.assert_close(loc_a, loc_b)


def test_correlated_guide_scales_linearly_in_perturbations() -> None:
    config = SAMSVAEConfig(n_latent=4, n_hidden=16, guide="correlated")
    n_params = {
        t: sum(p.numel() for p in SAMSVAEModule(10, t, config).guide.parameters())
        for t in (100, 200)
    }
    # An extra perturbation costs its mask logits (K) and one embedding row (H): no T x T one-hot.
    assert n_params[200] - n_params[100] == 100 * (4 + 16)


@pytest.mark.parametrize("guide", ["mean_field", "correlated"])
@pytest.mark.parametrize("likelihood", ["nb", "poisson", "normal"])
def test_local_terms_have_particle_by_cell_shape_and_are_finite(
    guide: str, likelihood: str
) -> None:
    torch.manual_seed(0)
    config = SAMSVAEConfig(n_latent=3, n_hidden=8, guide=guide, likelihood=likelihood)  # type: ignore[arg-type]
    module = SAMSVAEModule(6, 4, config)
    counts = torch.poisson(torch.full((5, 6), 3.0))
    sample = module.sample_globals(torch.tensor([0, 2]), 7)
    assert set(torch.unique(sample.masks).tolist()) <= {0.0, 1.0}
    terms = module.local_terms(counts, torch.ones(5, 2), counts.sum(1).clamp(min=1), sample)
    assert terms.log_weight.shape == (7, 5)
    assert torch.isfinite(terms.log_weight).all()
    terms.log_weight.sum().backward()
    assert module.guide.mask_logits.grad is not None
    assert module.guide.mask_logits.grad[[0, 2]].abs().sum() > 0
    assert module.guide.mask_logits.grad[[1, 3]].abs().sum() == 0


def test_global_log_prior_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    module = SAMSVAEModule(
        4, 3, SAMSVAEConfig(n_latent=2, n_hidden=4, mask_prior=0.1, embedding_prior_scale=2.0)
    )
    sample = module.sample_globals(torch.arange(3), 5)
    expected = (
        torch.distributions.Bernoulli(probs=0.1).log_prob(sample.masks)
        + torch.distributions.Normal(0.0, 2.0).log_prob(sample.embeddings)
    ).sum(-1)
    torch.testing.assert_close(module.global_log_prior(sample), expected)
