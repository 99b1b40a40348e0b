"""Interpretation methods of the user classes on a tiny simulated screen."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch

import samsvae
from samsvae.evaluate import data_average_treatment_effects
from samsvae.evaluate.interpret import decoder_expression_scale


@pytest.fixture
def mean_field_model(tiny_adata: ad.AnnData) -> samsvae.SAMSVAE:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    return samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16, n_particles=3, guide="mean_field")


def test_global_posterior_has_one_row_per_perturbation_and_latent(
    mean_field_model: samsvae.SAMSVAE,
) -> None:
    posterior = mean_field_model.get_global_posterior(level=0.8)
    assert posterior.shape == (6 * 4, 5)
    np.testing.assert_allclose(
        posterior["shift_mean"], posterior["mask_probability"] * posterior["embedding_mean"]
    )
    assert (posterior["embedding_lower"] < posterior["embedding_upper"]).all()
    np.testing.assert_allclose(
        posterior["mask_probability"].to_numpy().reshape(6, 4),
        mean_field_model.get_mask_probabilities().to_numpy(),
    )


def test_correlated_guide_posterior_is_reproducible_with_a_seed(
    tiny_model: samsvae.SAMSVAE,
) -> None:
    first = tiny_model.get_global_posterior(n_samples=200, seed=3)
    np.testing.assert_array_equal(first, tiny_model.get_global_posterior(n_samples=200, seed=3))


def test_similarity_and_clusters_cover_every_perturbation(tiny_model: samsvae.SAMSVAE) -> None:
    similarity = tiny_model.get_perturbation_similarity(n_samples=100)
    assert similarity.shape == (6, 6)
    np.testing.assert_allclose(np.diag(similarity), 1.0)
    clusters = tiny_model.get_perturbation_clusters(n_clusters=2, metric="jaccard")
    assert sorted(clusters.index) == sorted(tiny_model.design.perturbations)
    assert set(clusters["cluster"]) <= {1, 2}
    assert clusters["leaf_order"].tolist() == list(range(6))
    with pytest.raises(ValueError, match="metric='euclid'"):
        tiny_model.get_perturbation_similarity(metric="euclid")  # type: ignore[arg-type]


def test_latent_gene_effects_and_enrichment_of_programs(tiny_model: samsvae.SAMSVAE) -> None:
    effects = tiny_model.get_latent_gene_effects(n_top=5)
    assert effects.shape == (4 * 5, 4)
    top = effects[effects["latent"] == "latent0"]["gene"].tolist()
    table = tiny_model.gene_set_enrichment({"top_of_latent0": top}, n_top=5)
    best = table[table["query"] == "latent0"].iloc[0]
    assert best["overlap"] == 5 and best["p_value"] < 1e-3


def test_latent_programs_rotate_the_expected_shifts(tiny_model: samsvae.SAMSVAE) -> None:
    loadings, directions = tiny_model.get_latent_programs()
    shifts = tiny_model.get_global_posterior()["shift_mean"].to_numpy().reshape(6, 4)
    np.testing.assert_allclose(
        directions.to_numpy() @ directions.to_numpy().T, np.eye(4), atol=1e-8
    )
    np.testing.assert_allclose(loadings.to_numpy(), shifts @ directions.to_numpy().T)
    assert list(loadings.columns) == list(directions.index) == [f"program{k}" for k in range(4)]


@pytest.mark.parametrize("rotation", ["varimax", "lp"])
def test_program_gene_effects_are_the_decoder_response_along_each_direction(
    tiny_model: samsvae.SAMSVAE, rotation: str
) -> None:
    _, directions = tiny_model.get_latent_programs(rotation=rotation)
    decode = decoder_expression_scale(tiny_model.module)
    with torch.no_grad():
        z = torch.as_tensor(directions.to_numpy(), dtype=torch.float32)
        expected = (decode(2.0 * z) - decode(torch.zeros(1, 4))).numpy()
    effects = tiny_model.get_latent_gene_effects(step=2.0, rotation=rotation)
    wide = effects.pivot(index="latent", columns="gene", values="effect")
    wide = wide.loc[directions.index, list(tiny_model.design.genes)]
    np.testing.assert_allclose(wide.to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_data_genetic_interactions_equal_the_data_ate_arithmetic(
    mean_field_model: samsvae.SAMSVAE,
) -> None:
    table = mean_field_model.genetic_interactions(["P0+P3"], source="data", n_samples=20)
    adata = mean_field_model.adata
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    ate = data_average_treatment_effects(adata.X, labels, ["P0+P3", "P0", "P3"], "control")
    np.testing.assert_allclose(table["score"], ate[0] - ate[1] - ate[2], atol=1e-10)
    model_table = mean_field_model.genetic_interactions(["P0+P3"], n_samples=3)
    assert model_table.shape == (24, 6)
    with pytest.raises(ValueError, match="two-perturbation"):
        mean_field_model.genetic_interactions(["P0"])


def test_models_without_latent_shifts_refuse_interpretation(tiny_adata: ad.AnnData) -> None:
    samsvae.ConditionalVAE.setup_anndata(tiny_adata)
    model = samsvae.ConditionalVAE(tiny_adata, n_latent=4, n_hidden=16)
    with pytest.raises(ValueError, match="ConditionalVAE has no per-perturbation latent shifts"):
        model.get_latent_gene_effects()
