"""Covariates enter the first layers of encoder and decoder, checked against concatenation."""

from __future__ import annotations

import pytest
import torch

from samsvae.config import SAMSVAEConfig, SVAEPlusConfig
from samsvae.models import ConditionalVAEModule, SAMSVAEModule, SVAEPlusModule
from samsvae.nn import ResidualMLP

SIZES = (2, 3)  # two covariate keys with 2 and 3 categories


def _module(cls=SAMSVAEModule, **config) -> SAMSVAEModule:
    torch.manual_seed(0)
    config_cls = SVAEPlusConfig if cls is SVAEPlusModule else SAMSVAEConfig
    return cls(7, 4, config_cls(n_latent=3, n_hidden=8, **config), covariate_sizes=SIZES)


def _one_hot(n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    blocks = [
        torch.nn.functional.one_hot(torch.randint(size, (n,), generator=generator), size)
        for size in SIZES
    ]
    return torch.cat(blocks, -1).double()


def _concatenated_trunk(trunk: ResidualMLP, extra: torch.nn.Linear) -> ResidualMLP:
    """The same trunk with one first layer over [input, covariates]."""
    joined = ResidualMLP(trunk.input_layer.in_features + extra.in_features, 8, 1).double()
    with torch.no_grad():
        joined.input_layer.weight.copy_(torch.cat([trunk.input_layer.weight, extra.weight], 1))
        joined.input_layer.bias.copy_(trunk.input_layer.bias)
    return joined


def test_decoder_with_covariates_is_a_trunk_over_the_concatenated_input(float64) -> None:
    module = _module().double()
    z, c = torch.randn(2, 5, 3), _one_hot(5)
    joined = _concatenated_trunk(module.decoder, module.decoder_covariates)
    expected = joined(torch.cat([z, c.expand(2, -1, -1)], -1))
    torch.testing.assert_close(module.decode(z, c), expected)


def test_encoder_with_covariates_is_a_trunk_over_the_concatenated_input(float64) -> None:
    module = _module().double()
    counts, c = torch.poisson(torch.full((5, 7), 3.0)), _one_hot(5)
    shift = torch.randn(2, 5, 3)
    encoder = module.encoder
    loc, scale = module.encode(counts, shift, c)
    # reference: first layer over [normalised x, c], plus the shift layer
    joined = _concatenated_trunk(encoder.trunk, encoder.covariate_layer)
    pre = joined.input_layer(torch.cat([module.normalise(counts), c], -1))
    hidden = joined.forward_hidden(pre + encoder.shift_layer(shift))
    torch.testing.assert_close(loc, encoder.loc(hidden))
    torch.testing.assert_close(scale, torch.nn.functional.softplus(encoder.scale(hidden)) + 1e-4)


@pytest.mark.parametrize("cls", [SAMSVAEModule, ConditionalVAEModule, SVAEPlusModule])
def test_every_model_needs_and_uses_the_covariates(cls) -> None:
    module = _module(cls)
    counts, c = torch.poisson(torch.full((5, 7), 3.0)), _one_hot(5).float()
    sample = module.sample_globals(torch.arange(4), 2)
    dosage, library = torch.eye(4)[[0, 1, 2, 3, 0]], counts.sum(1).clamp(min=1)
    noise = torch.randn(2, 5, 3)
    terms = module.local_terms(counts, dosage, library, sample, noise, c)
    other = module.local_terms(counts, dosage, library, sample, noise, c.flip(0))
    assert torch.isfinite(terms.log_weight).all()
    assert not torch.allclose(terms.log_likelihood, other.log_likelihood)
    with pytest.raises(ValueError, match="covariate_keys"):
        module.local_terms(counts, dosage, library, sample, noise)


def test_covariate_draws_follow_the_training_shares() -> None:
    module = _module()
    module.covariate_frequencies.copy_(torch.tensor([0.0, 1.0, 0.25, 0.75, 0.0]))
    torch.manual_seed(0)
    draws = module.draw_covariates(4000, torch.zeros(())).squeeze(1)
    assert draws.shape == (4000, 5)
    assert (draws[:, :2].sum(1) == 1).all() and (draws[:, 2:].sum(1) == 1).all()
    assert (draws[:, 1] == 1).all()
    assert draws[:, 4].sum() == 0
    assert abs(draws[:, 3].mean().item() - 0.75) < 0.03  # sd of the mean 0.007


def test_generate_takes_fixed_covariates_or_draws_them() -> None:
    module = _module()
    sample = module.sample_globals(torch.arange(4), 3)
    dosage = torch.eye(4)[:2]
    fixed = _one_hot(1).float()
    torch.manual_seed(0)
    x = module.generate(dosage, sample, 100.0, covariates=fixed)
    assert x.shape == (3, 2, 7)
    torch.manual_seed(0)
    drawn = module.generate(dosage, sample, 100.0)
    assert drawn.shape == (3, 2, 7) and torch.isfinite(drawn).all()


def test_without_covariates_the_module_has_no_covariate_weights() -> None:
    module = SAMSVAEModule(7, 4, SAMSVAEConfig(n_latent=3, n_hidden=8))
    names = set(module.state_dict())
    assert not any("covariate" in name for name in names)
    assert module.draw_covariates(5, torch.zeros(())) is None
    assert module.average_covariates() is None
