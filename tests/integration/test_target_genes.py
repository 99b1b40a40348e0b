"""Direct effects on targeted genes, fitted on the realistic simulation (seeded)."""

from __future__ import annotations

import numpy as np

import samsvae


def test_auto_target_genes_recover_the_simulated_knock_downs(tmp_path) -> None:
    adata = samsvae.datasets.simulate_realistic(seed=0)
    truth = adata.uns["simulation"]
    samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="control")
    model = samsvae.SAMSVAE(adata, n_particles=2)  # perturbations are named after their targets
    assert len(model.config.target_genes) == model.design.n_perturbations
    model.train(max_epochs=25, batch_size=256, progress_bar=False)
    effects = model.get_target_gene_effects().set_index("perturbation")
    true_lfc = dict(zip(truth["perturbations"], truth["target_log2_fold_changes"], strict=True))
    strong = [t for t, lfc in true_lfc.items() if lfc <= -1]
    assert len(strong) >= 4
    estimated = effects.loc[list(true_lfc), "log2_fold_change"].to_numpy()
    r = np.corrcoef(estimated, list(true_lfc.values()))[0, 1]
    assert r > 0.6, r
    assert (effects.loc[strong, "log2_fold_change"] < -0.3).all()
    model.save(tmp_path / "model")
    loaded = samsvae.SAMSVAE.load(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.get_target_gene_effects()["mean"], model.get_target_gene_effects()["mean"]
    )
    off = samsvae.SAMSVAE(adata, target_genes=None)
    assert off.config.target_genes == () and off.get_target_gene_effects().empty
