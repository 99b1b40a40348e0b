"""Figures return their Axes (on the Figure they drew on) and draw into a given ``ax``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from samsvae import pl

NAMES = ["P0", "P1", "P2", "P3"]
PROBABILITIES = pd.DataFrame(
    np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.0], [0.1, 0.7]]),
    index=NAMES,
    columns=["latent0", "latent1"],
)
EFFECTS = pd.DataFrame(
    {
        "latent": ["latent0"] * 3 + ["latent1"] * 3,
        "rank": [1, 2, 3] * 2,
        "gene": ["g2", "g0", "g1", "g1", "g2", "g0"],
        "effect": [-2.0, 1.0, 0.1, 0.5, -0.4, 0.0],
    }
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _draw(name: str, ax: Axes | None) -> Axes:
    similarity = pd.DataFrame(np.eye(4), index=NAMES, columns=NAMES)
    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [2.0, 1.0], "val_loss": [2.5, 1.5]})
    draw = {
        "mask_heatmap": lambda: pl.mask_heatmap(
            PROBABILITIES, order=["P2", "P0", "P1", "P3"], ax=ax
        ),
        "ate_scatter": lambda: pl.ate_scatter(np.arange(6.0), np.arange(6.0) + 0.1, ax=ax),
        "training_curves": lambda: pl.training_curves(history, ax=ax),
        "similarity_heatmap": lambda: pl.similarity_heatmap(similarity, order=NAMES[::-1], ax=ax),
        "latent_program_bars": lambda: pl.latent_program_bars(EFFECTS, "latent0", n_top=2, ax=ax),
    }[name]
    return draw()


FIGURES = [
    "mask_heatmap",
    "ate_scatter",
    "training_curves",
    "similarity_heatmap",
    "latent_program_bars",
]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_makes_its_own_axes_on_a_figure(name: str) -> None:
    ax = _draw(name, None)
    assert isinstance(ax, Axes)
    assert isinstance(ax.figure, Figure)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_draws_into_the_given_axes(name: str) -> None:
    _, given = plt.subplots()
    assert _draw(name, given) is given


def test_mask_heatmap_sorts_rows_by_group_and_draws_boundaries() -> None:
    groups = pd.Series({"P0": "b", "P1": "a", "P2": "b", "P3": "a"})
    ax = pl.mask_heatmap(PROBABILITIES, groups=groups)
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels == ["P1", "P3", "P0", "P2"]
    np.testing.assert_allclose(ax.images[0].get_array()[0], PROBABILITIES.loc["P1"])
    assert len(ax.lines) == 1  # one boundary between groups a and b
    with pytest.raises(ValueError, match="at most one"):
        pl.mask_heatmap(PROBABILITIES, groups=groups, order=NAMES)


def test_program_bars_put_the_gene_moved_most_on_top() -> None:
    ax = pl.latent_program_bars(EFFECTS, "latent0", n_top=2)
    ticks = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert [label for _, label in ticks] == ["g0", "g2"]  # bottom to top: rank 2, then rank 1
    widths = sorted((bar.get_y(), bar.get_width()) for bar in ax.patches)
    assert [w for _, w in widths] == [1.0, -2.0]
    with pytest.raises(ValueError, match="latent='latent9'"):
        pl.latent_program_bars(EFFECTS, "latent9")


def test_ate_scatter_annotates_pearson_r() -> None:
    ax = pl.ate_scatter(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5]))
    r = np.corrcoef([1.0, 2.0, 3.5], [1.0, 2.0, 3.0])[0, 1]
    assert ax.texts[0].get_text() == f"r = {r:.3f}"
    with_nan = pl.ate_scatter(np.array([1.0, 2.0, 3.0, 9.0]), np.array([1.0, 2.0, 3.5, np.nan]))
    assert with_nan.texts[0].get_text() == f"r = {r:.3f}"


def test_latent_umap_needs_one_label_per_cell() -> None:
    with pytest.raises(ValueError, match="labels has 2 entries"):
        pl.latent_umap(np.zeros((3, 2)), ["A", "B"])


@pytest.mark.slow  # numba compiles UMAP on first use: about 7 s
def test_latent_umap_colours_cells_by_label() -> None:
    pytest.importorskip("umap")
    rng = np.random.default_rng(0)
    latent = np.concatenate([rng.normal(0, 0.1, (15, 3)), rng.normal(5, 0.1, (15, 3))])
    labels = ["A"] * 15 + ["B"] * 15
    _, given = plt.subplots()
    ax = pl.latent_umap(latent, labels, ax=given, n_neighbors=5)
    assert ax is given
    assert [len(points.get_offsets()) for points in ax.collections] == [15, 15]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
