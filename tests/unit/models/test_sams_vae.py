from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.data.loaders import CellDataset
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


def test_correlated_guide_starts_like_the_mean_field_guide() -> None:
    torch.manual_seed(0)
    n_perturbations, n_latent = 50, 6
    config = SAMSVAEConfig(n_latent=n_latent, n_hidden=16, n_layers=2, guide="correlated")
    guide = SAMSVAEModule(5, n_perturbations, config).guide
    index = torch.arange(n_perturbations)
    masks = torch.bernoulli(torch.full((4, n_perturbations, n_latent), 0.5))
    with torch.no_grad():
        loc, scale = guide.embedding_distribution(index, masks)
    # Every mean exactly 0 and every scale that of the mean-field guide, softplus(raw) + floor.
    assert torch.equal(loc, torch.zeros(4, n_perturbations, n_latent))
    torch.testing.assert_close(scale, torch.full_like(scale, 1.0 + 1e-4), rtol=1e-6, atol=0.0)
    # The perturbation table starts as the columns of a one-hot input layer, fan-in K + T.
    table = guide.perturbation_embedding.weight
    bound = 1 / math.sqrt(n_latent + n_perturbations)
    assert table.abs().max() <= bound
    assert table.abs().max() > 0.9 * bound
    assert abs(table.mean().item()) < 0.1 * bound


def test_correlated_guide_network_size_follows_its_own_fields() -> None:
    config = SAMSVAEConfig(n_latent=2, n_hidden=12, n_layers=2, guide="correlated")
    default = SAMSVAEModule(5, 3, config)
    assert default.guide.trunk.input_layer.out_features == 12
    assert len(default.guide.trunk.hidden_layers) == 1
    config = SAMSVAEConfig(
        n_latent=2, n_hidden=12, n_layers=2, guide="correlated", guide_n_hidden=7, guide_n_layers=3
    )
    module = SAMSVAEModule(5, 3, config)
    guide = module.guide
    assert guide.trunk.input_layer.out_features == 7
    assert len(guide.trunk.hidden_layers) == 2  # 3 layers: the input layer and two more
    assert guide.perturbation_embedding.embedding_dim == 7
    assert guide.loc.in_features == guide.scale.in_features == 7
    assert module.encoder.trunk.input_layer.out_features == 12  # the rest keeps n_hidden
    assert module.decoder.input_layer.out_features == 12
    for name, value in (("guide_n_hidden", 0), ("guide_n_layers", 1.5)):
        with pytest.raises(ValueError, match=f"{name}={value!r} must be an integer >= 1"):
            SAMSVAEConfig(**{name: value})


def test_a_gene_constant_in_training_gives_bounded_encoder_input_on_new_cells() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(4.0, (40, 6)).astype(np.float32)
    counts[:, 2] = 3.0  # constant in training: std 0
    dataset = CellDataset(counts, sp.csr_matrix((40, 2), dtype=np.float32))
    stats = dataset.training_statistics(np.arange(40), log1p=True)
    std = np.log1p(counts).std(0)
    floor = 0.1 * std.mean()  # a tenth of the genes' mean std
    np.testing.assert_allclose(stats.gene_scale, np.maximum(std, floor), rtol=1e-5)
    assert stats.gene_scale[2] == pytest.approx(floor, rel=1e-5)

    module = SAMSVAEModule(6, 2, SAMSVAEConfig(n_latent=2, n_hidden=4))
    module.gene_mean.copy_(torch.as_tensor(stats.gene_mean))
    module.gene_scale.copy_(torch.as_tensor(stats.gene_scale))
    new_cells = torch.tensor([[4.0, 4.0, 0.0, 4.0, 4.0, 4.0], [4.0, 4.0, 50.0, 4.0, 4.0, 4.0]])
    normalised = module.normalise(new_cells)
    expected = (np.log1p([0.0, 50.0]) - np.log1p(3.0)) / floor
    np.testing.assert_allclose(normalised[:, 2].numpy(), expected, rtol=1e-5)
    assert normalised.abs().max() < 100  # (x - mean) / 1e-6 would be about 1e6


def test_library_sizes_are_drawn_from_the_control_cells_depth_distribution() -> None:
    """Inverse-CDF draws from the stored quantiles: with the quantiles of a known sample, the
    draws' quantiles match the sample's, and every draw lies within its range."""
    from samsvae.data.loaders import control_library_quantiles

    rng = np.random.default_rng(0)
    libraries = np.concatenate([rng.lognormal(5, 0.6, 4000), np.full(1000, 1e5)])
    is_control = np.arange(5000) < 4000  # the deep cells are perturbed: left out
    quantiles = control_library_quantiles(libraries, is_control)
    np.testing.assert_allclose(quantiles, np.quantile(libraries[:4000], np.linspace(0, 1, 101)))
    module = SAMSVAEModule(10, 3, SAMSVAEConfig(n_latent=2, n_hidden=4))
    module.library_size_quantiles.copy_(torch.as_tensor(quantiles))
    torch.manual_seed(0)
    draws = module.draw_library_sizes(50_000)
    assert draws.shape == (50_000, 1)
    assert draws.min() >= quantiles[0] - 1e-3 and draws.max() <= quantiles[-1] + 1e-3
    for q in (0.1, 0.5, 0.9):
        expected = np.quantile(libraries[:4000], q)
        assert abs(float(draws.quantile(q)) / expected - 1) < 0.03
    assert np.allclose(
        control_library_quantiles(libraries, np.zeros(5000, bool)),
        np.quantile(libraries, np.linspace(0, 1, 101)),
    )  # no controls: all cells
