"""The realistic simulation regime: shallow, sparse counts, null and target-gene perturbations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from samsvae.datasets import simulate_realistic

if TYPE_CHECKING:
    import anndata as ad


@pytest.fixture(scope="module")
def screen() -> ad.AnnData:
    return simulate_realistic(seed=0)


def _normalised(adata: ad.AnnData) -> np.ndarray:
    counts = adata.X.toarray()
    depth = counts.sum(1, keepdims=True)
    return counts / np.maximum(depth, 1) * np.median(depth)


def _labels(adata: ad.AnnData) -> np.ndarray:
    return adata.obs["perturbation"].astype(str).to_numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depth_and_sparsity_are_those_of_a_shallow_screen(seed: int) -> None:
    adata = simulate_realistic(seed=seed)
    depth = np.asarray(adata.X.sum(1)).ravel()
    assert 100 <= np.median(depth) <= 300
    assert np.quantile(depth, 0.05) >= 50
    assert np.quantile(depth, 0.95) <= 600
    assert 0.03 <= adata.X.nnz / np.prod(adata.shape) <= 0.15


def test_each_perturbation_and_combination_has_its_cells(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    counts = screen.obs["perturbation"].astype(str).value_counts()
    assert counts["control"] == 800
    assert 20 <= len(truth["perturbations"]) <= 30
    assert len(truth["combinations"]) == 10
    for label in [*truth["perturbations"], *truth["combinations"]]:
        assert counts[label] == 100


def test_perturbations_are_named_after_their_measured_target_genes(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    assert list(truth["perturbations"]) == list(truth["target_genes"])
    assert set(truth["target_genes"]) <= set(screen.var_names)
    assert len(set(truth["target_genes"])) == len(truth["target_genes"])


def test_null_perturbations_have_no_effect_in_the_truth(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    null = np.asarray(truth["null"])
    assert 0 < null.sum() < len(null)
    assert np.array_equal(null, np.asarray(truth["kinds"]) == "null")
    assert not np.asarray(truth["masks"])[null].any()
    assert not np.asarray(truth["target_log2_fold_changes"])[null].any()
    cells = np.isin(_labels(screen), np.asarray(truth["perturbations"])[null])
    assert cells.sum() > 0
    np.testing.assert_array_equal(screen.obsm["z"][cells], screen.obsm["z_basal"][cells])


def test_kinds_set_masks_and_knockdowns(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    kinds = np.asarray(truth["kinds"])
    masks = np.asarray(truth["masks"])
    knockdown = np.asarray(truth["target_log2_fold_changes"])
    assert not masks[kinds == "target"].any()
    assert masks[kinds == "program"].any(1).all()
    assert (knockdown[kinds != "null"] < 0).all()


def test_combinations_pair_two_perturbations_that_are_not_null(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    active = set(np.asarray(truth["perturbations"])[~np.asarray(truth["null"])])
    for combination in truth["combinations"]:
        parts = combination.split("+")
        assert len(parts) == 2
        assert set(parts) <= active


def test_target_knockdown_shows_in_the_simulated_means(screen: ad.AnnData) -> None:
    truth = screen.uns["simulation"]
    normalised, labels = _normalised(screen), _labels(screen)
    control = normalised[labels == "control"].mean(0)
    column = {g: j for j, g in enumerate(screen.var_names)}
    true_lfc, observed_lfc = [], []
    for name, gene, knockdown in zip(
        truth["perturbations"],
        truth["target_genes"],
        truth["target_log2_fold_changes"],
        strict=True,
    ):
        j = column[gene]
        mean = normalised[labels == name, j].mean()
        true_lfc.append(knockdown)
        observed_lfc.append(np.log2((mean + 0.01) / (control[j] + 0.01)))
    true_lfc, observed_lfc = np.array(true_lfc), np.array(observed_lfc)
    strong = true_lfc <= -1
    assert strong.sum() >= 3
    assert (observed_lfc[strong] < 0).all()
    assert np.median(observed_lfc[strong]) < -0.7
    assert np.corrcoef(true_lfc, observed_lfc)[0, 1] > 0.6


def test_same_seed_gives_the_same_screen(screen: ad.AnnData) -> None:
    again = simulate_realistic(seed=0)
    other = simulate_realistic(seed=1)
    assert (screen.X != again.X).nnz == 0
    assert list(screen.obs["perturbation"]) == list(again.obs["perturbation"])
    for key, value in screen.uns["simulation"].items():
        np.testing.assert_array_equal(value, again.uns["simulation"][key])
    assert (screen.X != other.X).nnz > 0


@pytest.mark.parametrize(
    "options",
    [
        {"null_fraction": 0.7, "target_only_fraction": 0.5},
        {"null_fraction": -0.1},
        {"n_perturbations": 30, "n_genes": 100},
        {"null_fraction": 0.9, "n_combinations": 10},
    ],
)
def test_impossible_settings_raise(options: dict) -> None:
    with pytest.raises(ValueError, match="="):
        simulate_realistic(**options)


def test_the_truth_does_not_depend_on_the_number_of_cells() -> None:
    """A larger sample of the same screen (same seed) has the same truth: its effects can
    serve as the true effects of the smaller one."""
    small = simulate_realistic(seed=3).uns["simulation"]
    large = simulate_realistic(
        seed=3, n_cells_per_perturbation=300, n_cells_per_combination=300, n_control_cells=2000
    ).uns["simulation"]
    for key in ("masks", "embeddings", "target_log2_fold_changes", "decoder_w2", "dispersions"):
        np.testing.assert_array_equal(small[key], large[key])
    assert list(small["combinations"]) == list(large["combinations"])
    fresh = simulate_realistic(seed=3, sample=1)
    np.testing.assert_array_equal(fresh.uns["simulation"]["masks"], small["masks"])
    assert (fresh.X != simulate_realistic(seed=3).X).nnz > 0  # other cells, same truth
