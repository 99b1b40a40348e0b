"""Direct effects on targeted genes: the offsets, the global terms and the likelihood."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.models import SAMSVAEModule
from samsvae.models.target_genes import TargetGeneEffects, auto_target_map, target_pairs


def test_target_sample_offsets_and_global_terms_match_a_direct_computation() -> None:
    pairs = ((0, 2), (1, 3), (1, 4), (3, 0))  # perturbation 1 targets two genes
    effects = TargetGeneEffects(pairs, n_perturbations=4, prior_scale=1.5)
    with torch.no_grad():
        effects.loc.copy_(torch.tensor([-1.0, 0.5, 2.0, -0.3]))
    index = torch.tensor([1, 3, 2])  # perturbation 0 absent from the batch
    torch.manual_seed(0)
    sample = effects.sample(index, n_particles=3)
    assert sample.rows.tolist() == [0, 0, 1] and sample.genes.tolist() == [3, 4, 0]
    dosage = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    offset = sample.offset(dosage, n_genes=5)
    expected = torch.zeros(3, 3, 5)
    for p in range(3):
        for row, gene, value in zip([0, 0, 1], [3, 4, 0], sample.values[p], strict=True):
            expected[p, :, gene] += dosage[:, row] * value
    torch.testing.assert_close(offset, expected)
    loc, scale = (v.detach()[[1, 2, 3]] for v in effects.posterior())
    q = torch.distributions.Normal(loc, scale).log_prob(sample.values)
    p = torch.distributions.Normal(0.0, 1.5).log_prob(sample.values)
    torch.testing.assert_close(
        sample.log_q, torch.stack([q[:, :2].sum(1), q[:, 2], 0 * q[:, 0]], 1)
    )
    torch.testing.assert_close(
        sample.log_p, torch.stack([p[:, :2].sum(1), p[:, 2], 0 * p[:, 0]], 1)
    )
    chosen = sample.select(torch.tensor([1]), n_rows=3)  # perturbation 3 alone
    assert chosen.rows.tolist() == [0] and chosen.genes.tolist() == [0]
    torch.testing.assert_close(chosen.values, sample.values[:, 2:])


def test_nb_likelihood_with_target_effects_is_the_direct_negative_binomial() -> None:
    config = SAMSVAEConfig(n_latent=2, n_hidden=8, target_genes=((0, 1), (2, 3)))
    module = SAMSVAEModule(5, 3, config)
    with torch.no_grad():
        module.target_effects.loc.copy_(torch.tensor([-2.0, 1.0]))
    torch.manual_seed(1)
    counts = torch.poisson(torch.full((4, 5), 3.0))
    dosage = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    library = counts.sum(1).clamp(min=1)
    sample = module.sample_globals(torch.arange(3), 2)
    noise = torch.randn(2, 4, 2)
    terms = module.local_terms(counts, dosage, library, sample, basal_noise=noise)
    shift = dosage @ sample.shifts
    loc, scale = module.encode(counts, shift)
    hidden = module.decode(loc + scale * noise + shift)
    logits = module.likelihood.logits(hidden)
    beta = sample.target.values  # (P, 2): pairs (0, gene 1), (2, gene 3)
    logits[:, 0, 1] += beta[:, 0]
    logits[:, 2, 3] += beta[:, 1]
    mu = library[:, None] * torch.softmax(logits, -1)
    theta = module.likelihood.log_theta.exp()
    nb = torch.distributions.NegativeBinomial(total_count=theta, logits=(mu / theta).log())
    expected = nb.log_prob(counts).sum(-1)
    torch.testing.assert_close(terms.log_likelihood, expected, rtol=1e-4, atol=1e-3)
    # beta's log p and log q join each perturbation's global term
    import dataclasses

    without = dataclasses.replace(sample, target=None)
    torch.testing.assert_close(
        module.global_log_prior(sample) - module.global_log_prior(without), sample.target.log_p
    )
    beta_q = torch.distributions.Normal(*module.target_effects.posterior()).log_prob(beta)
    assert torch.allclose(sample.target.log_q[:, [0, 2]], beta_q.detach(), atol=1e-6)
    assert (sample.target.log_q[:, 1] == 0).all()


def test_target_pairs_resolve_auto_mappings_and_bad_names() -> None:
    perturbations, genes = ("A", "B", "C_TSS"), ("B", "A", "X", "Y")
    assert target_pairs("auto", perturbations, genes) == ((0, 1), (1, 0))
    assert target_pairs(None, perturbations, genes) == ()
    assert target_pairs({"C_TSS": ["X", "Y"]}, perturbations, genes) == ((2, 2), (2, 3))
    with pytest.raises(ValueError, match="'D', which is not a perturbation"):
        target_pairs({"D": "X"}, perturbations, genes)
    with pytest.raises(ValueError, match="gene 'Z', which is not among"):
        target_pairs({"A": "Z"}, perturbations, genes)
    assert math.isclose(SAMSVAEConfig(target_genes=[[0, 1]]).target_genes[0][1], 1)


def test_auto_reads_the_screens_own_map_then_gene_symbols_then_var_names() -> None:
    perturbations = ("CITED2_TSS", "chr3.5275", "GATA1", "MYC")
    var = pd.DataFrame(
        {"gene_symbols": ["CITED2", "GATA1", "MYC"]}, index=["ENSG01", "ENSG02", "MYC"]
    )
    # the symbol column maps GATA1 to its Ensembl ID; MYC is a var_name itself
    assert auto_target_map({}, var, perturbations) == {"GATA1": ["ENSG02"], "MYC": ["MYC"]}
    assert auto_target_map({}, var.drop(columns="gene_symbols"), perturbations) == {"MYC": ["MYC"]}
    # a declared map wins; perturbations absent from the data and unmodelled genes drop out
    declared = {"CITED2_TSS": "ENSG01", "chr3.5275": ["ENSG02", "ENSG99"], "absent": "MYC"}
    assert auto_target_map({"target_genes": declared}, var, perturbations) == {
        "CITED2_TSS": ["ENSG01"],
        "chr3.5275": ["ENSG02"],
    }
    with pytest.raises(TypeError, match=r"uns\['target_genes'\] must map"):
        auto_target_map({"target_genes": ["ENSG01"]}, var, perturbations)
