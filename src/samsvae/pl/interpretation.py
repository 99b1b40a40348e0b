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
    """Plot a heatmap of the similarity between perturbations.

    Colours run from -1 (blue) to 1 (red) on a diverging scale, with a colour bar. Perturbation
    names label the rows and columns when there are at most 60.

    Parameters
    ----------
    similarity
        Perturbations x perturbations similarity, e.g.
        ``model.get_perturbation_similarity()``.
    order
        Order of the rows and columns: perturbation names, e.g. the index of
        ``model.get_perturbation_clusters(...)``. None keeps the order of ``similarity``.
    ax
        Axes to draw on; None draws on a new figure.
    title
        Title of the Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.
    """
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
    """Plot horizontal bars of the genes a latent dimension moves most.

    Bars are signed (red for up, blue for down), the gene moved most at the top; the x axis is
    the effect of a step along the latent dimension.

    Parameters
    ----------
    effects
        The long table of ``model.get_latent_gene_effects()``, with columns ``latent``,
        ``rank``, ``gene`` and ``effect``.
    latent
        The latent dimension or program to show: a value of ``effects["latent"]``, e.g.
        ``"latent3"``. It is also the title.
    n_top
        Number of genes shown: the first ``n_top`` by rank.
    ax
        Axes to draw on; None draws on a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    Raises
    ------
    ValueError
        If ``latent`` is not in ``effects["latent"]``.
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
    """Plot a UMAP of cells' latent representations, one colour per label.

    The embedding is computed with scanpy (imported here): ``pp.neighbors`` on the latents,
    then ``tl.umap``. A legend is drawn when there are at most 20 distinct labels.

    Parameters
    ----------
    latent
        Latent representation of the cells, (n_cells, K), e.g. from
        ``model.get_latent_representation()``.
    labels
        One label per cell, e.g. each cell's perturbation; compared as strings.
    ax
        Axes to draw on; None draws on a new figure.
    n_neighbors
        Neighbours of the k-nearest-neighbour graph, clipped to [2, n_cells - 1].
    seed
        Random state of the neighbour search and of UMAP.
    title
        Title of the Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on, with axes ``UMAP 1`` and ``UMAP 2``.

    Raises
    ------
    ValueError
        If ``labels`` does not have one entry per row of ``latent``.
    """
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
