"""preprocess: QC filters and highly variable genes that keep raw counts in X."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp

import samsvae
from samsvae.data import preprocess

if TYPE_CHECKING:
    import anndata as ad


@pytest.mark.parametrize("flavor", ["seurat_v3", "seurat"])
def test_selected_genes_keep_the_raw_counts(tiny_adata: ad.AnnData, flavor: str) -> None:
    out = preprocess(tiny_adata, n_top_genes=10, flavor=flavor)  # type: ignore[arg-type]
    assert out.n_vars == 10 and out.n_obs == tiny_adata.n_obs
    assert sp.isspmatrix_csr(out.X)
    original = tiny_adata[:, out.var_names].X.toarray()
    np.testing.assert_array_equal(out.X.toarray(), original)
    assert out.uns["samsvae_preprocess"]["flavor"] == flavor
    samsvae.SAMSVAE.setup_anndata(out)


def test_cell_and_gene_filters_and_kept_genes(tiny_adata: ad.AnnData) -> None:
    totals = np.asarray(tiny_adata.X.sum(axis=1)).ravel()
    threshold = int(np.median(totals))
    keep_gene = tiny_adata.var_names[0]
    out = preprocess(tiny_adata, min_counts=threshold, n_top_genes=5, keep_genes=[keep_gene])
    assert out.n_obs == int((totals >= threshold).sum())
    assert keep_gene in out.var_names and out.n_vars in (5, 6)
    assert list(out.obs.columns) == list(tiny_adata.obs.columns)


def test_mitochondrial_fraction_filter(tiny_adata: ad.AnnData) -> None:
    tiny_adata.var_names = ["MT-1", *tiny_adata.var_names[1:]]
    counts = tiny_adata.X.toarray()
    fraction = counts[:, 0] / counts.sum(axis=1)
    out = preprocess(tiny_adata, max_mito_fraction=float(np.median(fraction)), n_top_genes=None)
    assert out.n_obs == int((fraction <= np.median(fraction)).sum())


def test_the_input_is_left_unchanged(tiny_adata: ad.AnnData) -> None:
    before = tiny_adata.copy()
    preprocess(tiny_adata, min_counts=10, min_cells=5, n_top_genes=8)
    assert tiny_adata.shape == before.shape and list(tiny_adata.var) == list(before.var)
    np.testing.assert_array_equal(tiny_adata.X.toarray(), before.X.toarray())


def test_non_counts_and_unknown_keep_genes_are_refused(tiny_adata: ad.AnnData) -> None:
    with pytest.raises(ValueError, match="keep_genes"):
        preprocess(tiny_adata, keep_genes=["not-a-gene"])
    tiny_adata.X = tiny_adata.X * 0.5
    with pytest.raises(ValueError, match="non-integer"):
        preprocess(tiny_adata)
