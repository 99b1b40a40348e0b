"""Real Perturb-seq data from ../shared/data, when present (skipped cleanly otherwise)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import samsvae

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAPALEXI = SHARED / "papalexi2021" / "papalexi2021_thp1_lowmoi.h5ad"


@pytest.mark.skipif(not PAPALEXI.exists(), reason=f"{PAPALEXI} is not available")
def test_sams_vae_fits_a_papalexi_subset() -> None:
    adata = ad.read_h5ad(PAPALEXI)
    subset = adata[np.random.default_rng(0).choice(adata.n_obs, 1500, replace=False)].copy()
    samsvae.SAMSVAE.setup_anndata(subset, perturbation_key="perturbation", control="non-targeting")
    model = samsvae.SAMSVAE(subset, n_latent=8, n_hidden=32, mask_prior=0.1)
    model.train(max_epochs=2, lr=1e-3, progress_bar=False)
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    assert np.isfinite(model.iwelbo(n_particles=10))
    effects = model.average_treatment_effects(["STAT1", "JAK2"], n_samples=100)
    assert effects.shape == (2, adata.n_vars)
    assert np.isfinite(effects.X).all()


GASPERINI = SHARED / "gasperini2019" / "gasperini2019_k562_highmoi_subset.h5ad"


@pytest.mark.skipif(not GASPERINI.exists(), reason=f"{GASPERINI} is not available")
def test_sams_vae_fits_gasperini_cells_with_several_guides_and_two_batches() -> None:
    adata = ad.read_h5ad(GASPERINI)
    several = np.flatnonzero(adata.obs["n_listed_grna_groups"].to_numpy() >= 2)[:300]
    others = np.random.default_rng(0).choice(adata.n_obs, 1500, replace=False)
    subset = adata[np.union1d(several, others)].copy()
    samsvae.SAMSVAE.setup_anndata(
        subset,
        perturbation_key="perturbations",
        control="none_of_listed",
        covariate_keys=["batch"],
    )
    model = samsvae.SAMSVAE(subset, n_latent=8, n_hidden=32, mask_prior=0.1)
    dosage = model._dosage(subset)
    # a cell with k listed guide groups has k perturbations in its dosage row
    np.testing.assert_array_equal(
        np.asarray(dosage.sum(1)).ravel(), subset.obs["n_listed_grna_groups"].to_numpy()
    )
    assert model.design.covariate_categories == (("prep_batch_1", "prep_batch_2"),)
    model.train(max_epochs=2, lr=1e-3, progress_bar=False)
    assert np.isfinite(model.iwelbo(n_particles=10))
    batch_1 = model.average_treatment_effects(
        ["CITED2_TSS"], n_samples=100, covariates={"batch": "prep_batch_1"}
    )
    assert np.isfinite(batch_1.X).all()


@pytest.mark.skipif(not GASPERINI.exists(), reason=f"{GASPERINI} is not available")
def test_the_default_target_genes_read_gasperinis_map_of_guide_groups_to_genes() -> None:
    adata = ad.read_h5ad(GASPERINI)
    pairs = adata.uns["positive_control_pairs"]
    groups, genes = (list(map(str, pairs[key])) for key in ("grna_group", "response_id"))
    samsvae.SAMSVAE.setup_anndata(
        adata, perturbation_key="perturbations", control="none_of_listed"
    )
    assert samsvae.SAMSVAE(adata).get_target_gene_effects().empty  # no label names a gene
    adata.uns["target_genes"] = dict(zip(groups, genes, strict=True))
    paired = samsvae.SAMSVAE(adata).get_target_gene_effects()
    assert dict(zip(paired["perturbation"], paired["gene"], strict=True)) == dict(
        zip(groups, genes, strict=True)
    )
