"""Interpretation figures: perturbation similarity, latent programs' genes, UMAP of latents.

numpy, pandas and matplotlib only; ``latent_umap`` imports scanpy inside the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from samsvae.pl.figures import _axes

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from matplotlib.axes import Axes


def similarity_heatmap(
    similarity: pd.DataFrame,
    *,
    order: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str = "perturbation similarity",
) -> Axes:
    """Perturbations x perturbations similarity (e.g. ``model.get_perturbation_similarity()``),
    rows and columns in ``order`` (e.g. the index of ``model.get_perturbation_clusters(...)``)."""
    if order is not None:
        similarity = similarity.loc[list(order), list(order)]
    ax = _axes(ax, (6, 5.5))
    image = ax.imshow(
        similarity.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
    )
    if similarity.shape[0] <= 60:
        ticks = range(similarity.shape[0])
        ax.set_xticks(ticks, similarity.columns, fontsize=5, rotation=90)
        ax.set_yticks(ticks, similarity.index, fontsize=5)
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax)
    return ax


def latent_program_bars(
    effects: pd.DataFrame,
    latent: str,
    *,
    n_top: int = 10,
    ax: Axes | None = None,
) -> Axes:
    """Horizontal bars of the ``n_top`` genes a latent dimension moves most.

    ``effects`` is the long table of ``model.get_latent_gene_effects()`` (latent, rank, gene,
    effect); bars are signed, the gene moved most at the top.
    """
    rows = effects[effects["latent"] == latent].sort_values("rank").head(n_top)
    if rows.empty:
        msg = f"latent={latent!r} is not in effects['latent']; choose one of its values."
        raise ValueError(msg)
    ax = _axes(ax, (4, max(2.5, 0.25 * len(rows))))
    positions = np.arange(len(rows))[::-1]
    colours = np.where(rows["effect"].to_numpy() >= 0, "tab:red", "tab:blue")
    ax.barh(positions, rows["effect"].to_numpy(), color=colours)
    ax.set_yticks(positions, rows["gene"].to_numpy(), fontsize=7)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("effect of a step along the latent dimension")
    ax.set_title(str(latent))
    return ax


def latent_umap(
    latent: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    ax: Axes | None = None,
    n_neighbors: int = 15,
    seed: int = 0,
    title: str = "latent space",
) -> Axes:
    """UMAP (scanpy: ``pp.neighbors`` on the latents, then ``tl.umap``) of ``latent`` (n_cells, K),
    one colour per label (e.g. each cell's perturbation); a legend when there are at most 20."""
    latent = np.asarray(latent, dtype=np.float32)
    labels = np.asarray(labels).astype(str)
    if len(labels) != len(latent):
        msg = f"labels has {len(labels)} entries but latent has {len(latent)} rows; one per cell."
        raise ValueError(msg)
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    cells = ad.AnnData(X=latent, obs=pd.DataFrame(index=[str(i) for i in range(len(latent))]))
    n_neighbors = max(2, min(n_neighbors, len(latent) - 1))
    sc.pp.neighbors(cells, n_neighbors=n_neighbors, use_rep="X", random_state=seed)
    sc.tl.umap(cells, random_state=seed)
    coordinates = cells.obsm["X_umap"]
    ax = _axes(ax, (6, 5))
    categories = np.unique(labels)
    for category in categories:
        points = coordinates[labels == category]
        ax.scatter(points[:, 0], points[:, 1], s=4, linewidths=0, label=category)
    if len(categories) <= 20:
        ax.legend(fontsize=5, markerscale=2, frameon=False, loc="best")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title)
    return ax
