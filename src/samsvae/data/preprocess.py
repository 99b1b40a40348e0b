"""Quality control and gene selection on raw counts, before ``setup_anndata``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from samsvae.data.validate import check_anndata, check_expression

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

# scanpy is imported inside the functions: importing it costs about 3 s (numba, scikit-learn),
# which every `import samsvae` would otherwise pay.

HVG_FLAVORS = ("seurat_v3", "seurat", "cell_ranger")


def preprocess(
    adata: ad.AnnData,
    *,
    layer: str | None = None,
    min_counts: int = 0,
    min_genes: int = 0,
    max_mito_fraction: float | None = None,
    mito_prefix: str = "MT-",
    min_cells: int = 0,
    n_top_genes: int | None = 2000,
    flavor: Literal["seurat_v3", "seurat", "cell_ranger"] = "seurat_v3",
    keep_genes: Sequence[str] = (),
) -> ad.AnnData:
    """Filter cells and genes and select highly variable genes, keeping raw counts in ``X``.

    The steps, each skipped at its default: cells with fewer than ``min_counts`` counts or
    ``min_genes`` detected genes, or a mitochondrial fraction above ``max_mito_fraction``, are
    dropped; then genes detected in fewer than ``min_cells`` of the remaining cells; then the
    ``n_top_genes`` most variable genes (plus ``keep_genes``) are kept. Values are never
    transformed: SAMS-VAE models the counts themselves.

    Parameters
    ----------
    adata
        Cells x genes with raw integer counts in ``X`` (or in ``layers[layer]``). Not modified.
    layer
        Layer holding the counts; ``None`` reads ``X``.
    min_counts
        Minimum total counts of a cell (:func:`scanpy.pp.filter_cells`).
    min_genes
        Minimum number of genes detected in a cell.
    max_mito_fraction
        Maximum fraction of a cell's counts in genes whose name starts with ``mito_prefix``;
        ``None`` skips the filter.
    mito_prefix
        Name prefix of mitochondrial genes (``"MT-"`` for human, ``"mt-"`` for mouse).
    min_cells
        Minimum number of cells a gene is detected in (:func:`scanpy.pp.filter_genes`).
    n_top_genes
        Number of highly variable genes to keep (:func:`scanpy.pp.highly_variable_genes`);
        ``None`` keeps every gene that passed ``min_cells``.
    flavor
        ``"seurat_v3"`` ranks genes by the variance of their standardised counts against a
        loess fit of the mean-variance trend: it is defined on raw counts, so it reads the
        counts directly (needs the ``scikit-misc`` package, a dependency of samsvae).
        ``"seurat"`` and ``"cell_ranger"`` rank genes by normalised dispersion; they run on a
        library-size-normalised ``log1p`` copy, and the counts are kept.
    keep_genes
        Genes kept even when not highly variable, e.g. the targets of the perturbations.

    Returns
    -------
    A new AnnData with the selected cells and genes: ``X`` holds the counts (CSR if they were
    sparse), other layers are dropped, ``obs``/``obsm``/``uns`` are carried over, and the fields
    written are ``var["highly_variable"]``, ``var["highly_variable_rank"]`` (seurat_v3) or
    ``var["dispersions_norm"]`` (other flavors), and ``uns["samsvae_preprocess"]`` with the
    arguments.

    Raises
    ------
    ValueError
        The counts are not finite non-negative integers, ``flavor`` or ``keep_genes`` is unknown,
        or the filters leave no cell or gene.

    Examples
    --------
    >>> import samsvae
    >>> adata = samsvae.datasets.simulate(n_perturbations=3, n_combinations=0, n_genes=40,
    ...                                   n_cells_per_perturbation=20, n_control_cells=40)
    >>> small = preprocess(adata, min_counts=1, min_cells=3, n_top_genes=20)
    >>> small.n_vars
    20
    """
    import scanpy as sc

    check_anndata(adata)
    if flavor not in HVG_FLAVORS:
        msg = f"flavor={flavor!r} is not supported; choose one of {HVG_FLAVORS}."
        raise ValueError(msg)
    counts = adata.X if layer is None else adata.layers[layer]
    check_expression(
        counts, counts=True, where="adata.X" if layer is None else f"layers[{layer!r}]"
    )
    unknown = sorted(set(keep_genes) - set(adata.var_names))
    if unknown:
        msg = f"keep_genes names genes that are not in adata.var_names: {unknown[:10]}."
        raise ValueError(msg)
    out = ad.AnnData(
        counts.copy(), obs=adata.obs.copy(), var=adata.var.copy(), uns=dict(adata.uns)
    )
    for key, value in adata.obsm.items():
        out.obsm[key] = value
    out = out[_cells_passing(out, min_counts, min_genes, max_mito_fraction, mito_prefix)]
    gene_ok, _ = sc.pp.filter_genes(out, min_cells=min_cells, inplace=False)
    out = out[:, gene_ok].copy()
    if out.n_obs == 0 or out.n_vars == 0:
        msg = f"The filters left {out.n_obs} cells x {out.n_vars} genes; relax them."
        raise ValueError(msg)
    if n_top_genes is not None and n_top_genes < out.n_vars:
        out.var = out.var.join(_highly_variable(out, n_top_genes, flavor))
        keep = out.var["highly_variable"].to_numpy(dtype=bool) | out.var_names.isin(keep_genes)
        out = out[:, keep].copy()
    out.uns["samsvae_preprocess"] = {
        "layer": layer,
        "min_counts": min_counts,
        "min_genes": min_genes,
        "max_mito_fraction": max_mito_fraction,
        "mito_prefix": mito_prefix,
        "min_cells": min_cells,
        "n_top_genes": n_top_genes,
        "flavor": flavor,
        "keep_genes": list(keep_genes),
    }
    return out


def _cells_passing(
    adata: ad.AnnData,
    min_counts: int,
    min_genes: int,
    max_mito_fraction: float | None,
    mito_prefix: str,
) -> np.ndarray:
    """Boolean (n_obs,) mask of the cells passing the QC thresholds."""
    import scanpy as sc

    by_counts, _ = sc.pp.filter_cells(adata, min_counts=min_counts, inplace=False)
    by_genes, _ = sc.pp.filter_cells(adata, min_genes=min_genes, inplace=False)
    keep = by_counts & by_genes
    if max_mito_fraction is not None:
        mito = adata.var_names.str.startswith(mito_prefix)
        total = np.asarray(adata.X.sum(axis=1)).ravel()
        in_mito = np.asarray(adata.X[:, mito].sum(axis=1)).ravel()
        keep &= in_mito <= max_mito_fraction * total
    return keep


def _highly_variable(adata: ad.AnnData, n_top_genes: int, flavor: str) -> pd.DataFrame:
    """scanpy's highly-variable-gene table for ``adata`` (counts in ``X``), not written back."""
    import scanpy as sc

    if flavor == "seurat_v3":
        table = sc.pp.highly_variable_genes(
            adata, n_top_genes=n_top_genes, flavor="seurat_v3", inplace=False
        )
        columns = ["highly_variable", "highly_variable_rank"]
    else:
        normalised = adata.copy()
        normalised.X = sp.csr_matrix(normalised.X, dtype=np.float32)
        sc.pp.normalize_total(normalised)
        sc.pp.log1p(normalised)
        table = sc.pp.highly_variable_genes(
            normalised, n_top_genes=n_top_genes, flavor=flavor, inplace=False
        )
        columns = ["highly_variable", "dispersions_norm"]
    table.index = adata.var_names
    return table[columns]
