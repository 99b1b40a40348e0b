"""Mask heatmap, treatment-effect scatter and training curves (numpy, pandas, matplotlib only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from matplotlib.axes import Axes


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def mask_heatmap(
    probabilities: pd.DataFrame,
    *,
    order: Sequence[str] | None = None,
    groups: pd.Series | None = None,
    ax: Axes | None = None,
    title: str = "q(mask = 1)",
) -> Axes:
    """Plot a heatmap of mask inclusion probabilities, perturbations (rows) x latent dimensions.

    Each cell of the heatmap is q(m_tk = 1), the posterior probability that perturbation t
    shifts latent dimension k, on a viridis scale from 0 to 1 with a colour bar. Perturbation
    names label the rows when there are at most 60.

    Parameters
    ----------
    probabilities
        Inclusion probabilities, perturbations (index) x latent dimensions (columns), as
        returned by ``model.get_mask_probabilities()``.
    order
        Row order: perturbation names, e.g. the index of
        ``model.get_perturbation_clusters(...)``. Pass at most one of ``order`` and ``groups``.
    groups
        Group label of each perturbation (index: perturbation names), e.g. pathways or
        clusters. Rows are sorted by group (stably, so the order of ``probabilities`` is kept
        within a group) and white lines separate the groups.
    ax
        Axes to draw on; None draws on a new figure sized to the number of rows.
    title
        Title of the Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.

    Raises
    ------
    ValueError
        If both ``order`` and ``groups`` are given.

    Notes
    -----
    Without ``order`` or ``groups``, rows keep the order of ``probabilities``.
    """
    if order is not None and groups is not None:
        msg = "Pass at most one of `order` or `groups`."
        raise ValueError(msg)
    if groups is not None:
        group_of = groups.reindex(probabilities.index).astype(str)
        order = list(group_of.sort_values(kind="stable").index)
    if order is not None:
        probabilities = probabilities.loc[list(order)]
    ax = _axes(ax, (6, max(3, 0.12 * probabilities.shape[0])))
    image = ax.imshow(
        probabilities.to_numpy(),
        aspect="auto",
        cmap="viridis",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    if groups is not None:
        sorted_groups = group_of.loc[probabilities.index].to_numpy()
        for boundary in np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]):
            ax.axhline(boundary + 0.5, color="white", linewidth=0.8)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("perturbation")
    if probabilities.shape[0] <= 60:
        ax.set_yticks(range(probabilities.shape[0]), probabilities.index, fontsize=5)
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax)
    return ax


def ate_scatter(
    predicted: np.ndarray,
    observed: np.ndarray,
    *,
    ax: Axes | None = None,
    title: str = "average treatment effects",
) -> Axes:
    """Scatter predicted against observed average treatment effects, with Pearson r.

    Every entry (all interventions x genes) is one point; a dashed grey line marks y = x, and
    the Pearson correlation r of the points is written in the top left corner (NaN when either
    side is constant). Pairs where either value is NaN or infinite are left out of the plot and
    of r.

    Parameters
    ----------
    predicted
        Predicted effects, any shape, e.g. (n_interventions, n_genes).
    observed
        Observed effects, the same shape as ``predicted``.
    ax
        Axes to draw on; None draws on a new 4.5 x 4.5 inch figure.
    title
        Title of the Axes.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on: observed ATE on x, predicted ATE on y.
    """
    ax = _axes(ax, (4.5, 4.5))
    x, y = np.ravel(observed), np.ravel(predicted)
    finite = np.isfinite(x) & np.isfinite(y)  # r and the axes over the pairs with both values
    x, y = x[finite], y[finite]
    ax.scatter(x, y, s=3, alpha=0.4, linewidths=0)
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
    r = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else float("nan")
    ax.text(0.04, 0.94, f"r = {r:.3f}", transform=ax.transAxes, va="top")
    ax.set_xlabel("observed ATE")
    ax.set_ylabel("predicted ATE")
    ax.set_title(title)
    return ax


def training_curves(history: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Plot the training and validation loss per epoch.

    The loss is the negative ELBO per cell. A curve is drawn for each of the ``train_loss`` and
    ``val_loss`` columns that ``history`` has.

    Parameters
    ----------
    history
        Per-epoch losses with an ``epoch`` column, e.g. ``model.history`` after training.
    ax
        Axes to draw on; None draws on a new figure.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on, with a legend.
    """
    ax = _axes(ax, (5, 3.5))
    for column in ("train_loss", "val_loss"):
        if column in history:
            ax.plot(history["epoch"], history[column], label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative ELBO per cell")
    ax.legend()
    return ax
