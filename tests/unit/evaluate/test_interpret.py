"""Interpretation functions against hand-computed values on tiny fixed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom

from samsvae.config import SAMSVAEConfig
from samsvae.evaluate.interpret import (
    cluster_by_similarity,
    combination_parts,
    cosine_similarity,
    data_genetic_interactions,
    gene_set_enrichment,
    interaction_scores,
    jaccard_similarity,
    latent_gene_response,
    latent_programs,
    lp_rotation,
    model_genetic_interactions,
    rank_genes,
    read_gmt,
    summarise_globals,
    varimax_rotation,
)
from samsvae.models import SAMSVAEModule
from samsvae.models.guides import CorrelatedGuide, MeanFieldGuide


def test_cosine_similarity_matches_hand_values_and_zero_rows_match_nothing() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0], [0.0, 0.0]])
    similarity = cosine_similarity(vectors)
    expected = np.array(
        [
            [1.0, 1 / math.sqrt(2), -1.0, 0.0],
            [1 / math.sqrt(2), 1.0, -1 / math.sqrt(2), 0.0],
            [-1.0, -1 / math.sqrt(2), 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(similarity, expected)


def test_jaccard_similarity_is_intersection_over_union() -> None:
    masks = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    similarity = jaccard_similarity(masks)
    np.testing.assert_allclose(similarity, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="binary"):
        jaccard_similarity(np.array([[0.3, 1.0]]))


def test_clustering_separates_two_obvious_blocks_and_orders_them_together() -> None:
    masks = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 0, 0]])
    clustering = cluster_by_similarity(jaccard_similarity(masks), n_clusters=2)
    labels = clustering.labels
    assert labels[0] == labels[1] == labels[4] != labels[2] == labels[3]
    blocks = [set(clustering.order[:3]), set(clustering.order[3:])]
    assert {0, 1, 4} in blocks or {0, 1, 4} == set(clustering.order[2:])
    by_threshold = cluster_by_similarity(jaccard_similarity(masks), distance_threshold=0.9)
    np.testing.assert_array_equal(by_threshold.labels, labels)
    with pytest.raises(ValueError, match="exactly one"):
        cluster_by_similarity(jaccard_similarity(masks))


def test_latent_gene_response_of_a_linear_decoder_is_its_weight_rows() -> None:
    weights = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 3.0]])  # (K = 2, G = 3)
    bias = torch.tensor([1.0, -1.0, 0.0])
    response = latent_gene_response(lambda z: z @ weights + bias, 2, step=2.0)
    torch.testing.assert_close(response, 2.0 * weights)


def test_latent_gene_response_along_directions_of_a_linear_decoder() -> None:
    weights = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 3.0]])
    directions = np.array([[0.6, 0.8], [1.0, -1.0], [0.0, 0.0]])
    response = latent_gene_response(lambda z: z @ weights, 2, step=3.0, directions=directions)
    expected = 3.0 * torch.as_tensor(directions, dtype=torch.float32) @ weights
    torch.testing.assert_close(response, expected)


def _varimax_criterion(loadings: np.ndarray) -> float:
    # sum over columns of the variance of the squared row-normalised loadings
    unit = loadings / np.linalg.norm(loadings, axis=1, keepdims=True)
    return float((unit**2).var(0).sum())


def _simple_structure(rng: np.random.Generator, n_rows: int, n_columns: int) -> np.ndarray:
    """One non-zero per row, every column used: the sparsest loadings there are."""
    loadings = np.zeros((n_rows, n_columns))
    columns = np.arange(n_rows) % n_columns
    loadings[np.arange(n_rows), columns] = rng.choice([-1.0, 1.0], n_rows) * rng.uniform(
        2, 5, n_rows
    )
    return loadings


def test_varimax_undoes_a_rotation_of_simple_structure() -> None:
    rng = np.random.default_rng(0)
    truth = _simple_structure(rng, 40, 4)
    rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    programs = latent_programs(truth @ rotation.T)
    np.testing.assert_allclose(programs.directions @ programs.directions.T, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(programs.loadings, truth @ rotation.T @ programs.directions.T)
    # Each program is one true column, up to order and sign.
    match = np.abs(programs.loadings.T @ truth).argmax(1)
    assert sorted(match) == [0, 1, 2, 3]
    signs = np.sign((programs.loadings * truth[:, match]).sum(0))
    np.testing.assert_allclose(programs.loadings, truth[:, match] * signs, atol=1e-5)


def test_varimax_rotation_beats_other_rotations_on_its_criterion() -> None:
    rng = np.random.default_rng(1)
    loadings = rng.normal(size=(30, 5)) * (rng.random((30, 5)) < 0.3)
    loadings[~loadings.any(1), 0] = 1.0
    best = _varimax_criterion(loadings @ varimax_rotation(loadings))
    for _ in range(20):
        other, _ = np.linalg.qr(rng.normal(size=(5, 5)))
        assert best >= _varimax_criterion(loadings @ other) - 1e-12
    assert best >= _varimax_criterion(loadings) - 1e-12


def _lp_criterion(loadings: np.ndarray, power: float = 1.5, smoothing: float = 1e-2) -> float:
    unit = loadings / np.linalg.norm(loadings, axis=1, keepdims=True)
    return float(((unit**2 + smoothing**2) ** (power / 2)).sum())


def _distance_to_truth(truth: np.ndarray, found: np.ndarray) -> float:
    """Largest entry-wise distance of the row-normalised ``found`` to the row-normalised
    ``truth`` after matching columns up to order and sign; inf when no one-to-one match."""
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    found = found / np.linalg.norm(found, axis=1, keepdims=True)
    match = np.abs(found.T @ truth).argmax(1)
    if sorted(match) != list(range(truth.shape[1])):
        return math.inf
    signs = np.sign((found * truth[:, match]).sum(0))
    return float(np.abs(found - truth[:, match] * signs).max())


def _rotated_dense_unequal_shifts() -> tuple[np.ndarray, np.ndarray]:
    """Sparse shifts whose rows have 2-3 mechanisms of unequal size, and the same through a
    random rotation: a frame varimax does not recover."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(24, 6)) * (rng.random((24, 6)) < 0.35)
    truth[~truth.any(1), 0] = 1.0
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    return truth, truth @ rotation


def test_lp_rotation_undoes_a_rotation_of_dense_unequal_shifts_where_varimax_does_not() -> None:
    truth, shifts = _rotated_dense_unequal_shifts()
    found = lp_rotation(shifts)
    np.testing.assert_allclose(found @ found.T, np.eye(6), atol=1e-10)
    assert _distance_to_truth(truth, shifts @ found) < 0.01
    assert _distance_to_truth(truth, shifts @ varimax_rotation(shifts)) > 0.05


@pytest.mark.parametrize("power", [1.0, 1.5])
def test_lp_rotation_beats_varimax_and_other_rotations_on_its_criterion(power: float) -> None:
    rng = np.random.default_rng(1)
    loadings = rng.normal(size=(30, 5)) * (rng.random((30, 5)) < 0.3)
    loadings[~loadings.any(1), 0] = 1.0
    best = _lp_criterion(loadings @ lp_rotation(loadings, power=power), power)
    assert best <= _lp_criterion(loadings @ varimax_rotation(loadings), power) + 1e-9
    for _ in range(20):
        other, _ = np.linalg.qr(rng.normal(size=(5, 5)))
        assert best <= _lp_criterion(loadings @ other, power) + 1e-9


def test_lp_rotation_is_seeded_without_the_global_rng_and_checks_its_arguments() -> None:
    loadings = np.random.default_rng(2).normal(size=(12, 4))
    before = np.random.get_state()[1].copy()  # noqa: NPY002 (the global RNG)
    np.testing.assert_array_equal(lp_rotation(loadings), lp_rotation(loadings))
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    with pytest.raises(ValueError, match="n_starts must be at least 1"):
        lp_rotation(loadings, n_starts=0)
    with pytest.raises(ValueError, match=r"power must lie in \(0, 2\)"):
        lp_rotation(loadings, power=2.0)


def test_lp_latent_programs_are_the_lp_frame_oriented_and_ordered() -> None:
    truth, shifts = _rotated_dense_unequal_shifts()
    programs = latent_programs(shifts, rotation="lp")
    np.testing.assert_allclose(programs.loadings, shifts @ programs.directions.T, atol=1e-12)
    # the same axes as lp_rotation, up to order and sign
    lp = shifts @ lp_rotation(shifts)
    match = np.abs(programs.loadings.T @ lp).argmax(1)
    assert sorted(match) == list(range(6))
    signs = np.sign((programs.loadings * lp[:, match]).sum(0))
    np.testing.assert_allclose(programs.loadings, lp[:, match] * signs, atol=1e-10)
    assert (programs.loadings**3).sum(0).min() >= 0
    assert np.all(np.diff((programs.loadings**2).sum(0)) <= 0)
    # varimax's programs do not undo the rotation; the Lp programs do
    assert _distance_to_truth(truth, programs.loadings) < 0.01
    assert _distance_to_truth(truth, latent_programs(shifts).loadings) > 0.05


def test_latent_programs_orientation_order_and_no_rotation() -> None:
    shifts = np.array([[0.0, -4.0], [0.0, -3.0], [1.0, 0.0], [0.0, 1.0]])
    programs = latent_programs(shifts)
    assert (programs.loadings**3).sum(0).min() >= 0  # heaviest loadings positive
    assert np.all(np.diff((programs.loadings**2).sum(0)) <= 0)  # largest program first
    unrotated = latent_programs(shifts, rotation="none")
    np.testing.assert_array_equal(unrotated.directions, np.eye(2))
    np.testing.assert_array_equal(unrotated.loadings, shifts)
    with pytest.raises(ValueError, match="rotation='promax'"):
        latent_programs(shifts, rotation="promax")  # type: ignore[arg-type]


def test_gene_ranking_orders_by_absolute_effect_within_each_latent() -> None:
    response = np.array([[0.1, -3.0, 2.0], [0.0, 0.5, -0.7]])
    table = rank_genes(response, ["a", "b", "c"], latent_names=["z0", "z1"], n_top=2)
    assert table["gene"].tolist() == ["b", "c", "c", "b"]
    assert table["rank"].tolist() == [1, 2, 1, 2]
    assert table["latent"].tolist() == ["z0", "z0", "z1", "z1"]
    np.testing.assert_allclose(table["effect"], [-3.0, 2.0, -0.7, 0.5])


def test_enrichment_p_value_is_the_hypergeometric_upper_tail(tmp_path) -> None:
    universe = [f"g{i}" for i in range(20)]
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("setA\tdescription\tg0\tg1\tg2\tg3\tg4\tnot_in_universe\nsetB\t-\tg10\tg11\n")
    assert read_gmt(gmt)["setB"] == ["g10", "g11"]
    table = gene_set_enrichment({"program": ["g0", "g1", "g2", "g15"]}, gmt, universe)
    row = table.set_index("gene_set").loc["setA"]
    # 20 genes, setA has 5 of them, the query 4, overlap 3: P(X >= 3).
    assert (row["overlap"], row["set_size"], row["query_size"]) == (3, 5, 4)
    assert row["p_value"] == pytest.approx(hypergeom.sf(2, 20, 5, 4))
    assert row["genes"] == "g0,g1,g2"
    assert table.set_index("gene_set").loc["setB", "p_value"] == pytest.approx(1.0)
    # Benjamini-Hochberg over the two rows: q_(1) = 2 p_(1), q_(2) = p_(2).
    assert row["q_value"] == pytest.approx(2 * hypergeom.sf(2, 20, 5, 4))


def test_interaction_score_is_combination_minus_the_sum_of_singles() -> None:
    np.testing.assert_allclose(interaction_scores([5.0, 1.0], [2.0, 0.5], [1.0, 0.5]), [2.0, 0.0])
    assert combination_parts("A+B") == ("A", "B")
    with pytest.raises(ValueError, match="two-perturbation"):
        combination_parts("A+B+C")


def test_data_genetic_interaction_of_hand_made_groups() -> None:
    # g = identity ("mean"); group means: control 1, A 3, B 4, A+B 10 -> GI = 10 - 3 - 4 + 1 = 4.
    expression = np.array([[1.0], [1.0], [3.0], [3.0], [4.0], [4.0], [9.0], [11.0]])
    labels = np.array(["ctrl", "ctrl", "A", "A", "B", "B", "A+B", "A+B"])
    scores = data_genetic_interactions(
        expression, labels, ["A+B"], "ctrl", method="mean", n_bootstrap=500, seed=0
    )
    np.testing.assert_allclose(scores.score, [[4.0]])
    # Only the A+B cells vary: bootstrap means of {9, 11} lie in [9, 11], so GI in [3, 5].
    assert 3.0 <= scores.lower[0, 0] < 4.0 < scores.upper[0, 0] <= 5.0
    assert scores.standard_error[0, 0] == pytest.approx(math.sqrt(0.5), rel=0.15)


def test_mean_field_summary_is_closed_form() -> None:
    guide = MeanFieldGuide(3, 2, temperature=1.0)
    with torch.no_grad():
        guide.mask_logits.copy_(torch.tensor([[0.0, 10.0], [-10.0, 0.0], [1.0, 1.0]]))
        guide.embedding_loc.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 3.0]]))
    summary = summarise_globals(guide, 3, level=0.95)
    probabilities = torch.sigmoid(guide.mask_logits).detach().double().numpy()
    np.testing.assert_allclose(summary.mask_probabilities, probabilities)
    np.testing.assert_allclose(summary.shift_mean, probabilities * summary.embedding_mean)
    # scale initialised to 1 (+ floor): the 95% interval is loc +- 1.96.
    np.testing.assert_allclose(summary.embedding_upper - summary.embedding_mean, 1.96, atol=1e-2)
    assert summary.closed_form


def test_sampled_summary_of_the_correlated_guide_agrees_with_its_draws() -> None:
    torch.manual_seed(0)
    guide = CorrelatedGuide(5, 3, temperature=1.0, n_hidden=8, n_layers=1)
    summary = summarise_globals(guide, 5, n_samples=4000, chunk_size=2)
    assert not summary.closed_form
    assert summary.shift_mean.shape == (5, 3)
    assert (summary.embedding_lower < summary.embedding_mean).all()
    assert (summary.embedding_mean < summary.embedding_upper).all()
    draws = guide.sample(torch.arange(5), 4000)
    np.testing.assert_allclose(
        summary.shift_mean, draws.shifts.mean(0).detach().double().numpy(), atol=0.08
    )


def test_model_genetic_interactions_vanish_for_a_linear_normal_decoder(float64) -> None:
    # normal likelihood with a linear decoder: E[x | z] is affine in z, so ATEs add up; only
    # the head's noise floor (sd 0.01) remains, far below the control mean a wrong sign would add.
    config = SAMSVAEConfig(n_latent=2, n_hidden=4, n_layers=1, likelihood="normal")
    module = SAMSVAEModule(3, 2, config)
    module.decoder = torch.nn.Identity()
    module.likelihood = type(module.likelihood)(2, 3)
    with torch.no_grad():
        module.likelihood.log_var.weight.zero_()
        module.likelihood.log_var.bias.fill_(-20.0)  # noise sd = sqrt(variance floor) = 0.01
    torch.manual_seed(0)
    scores = model_genetic_interactions(
        module,
        torch.tensor([[1.0, 1.0]]),
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[0.0, 1.0]]),
        combinations=["A+B"],
        method="mean",
        n_posterior_samples=4,
        n_basal=3,
    )
    np.testing.assert_allclose(scores.score, np.zeros((1, 3)), atol=0.05)
    assert scores.lower.shape == scores.upper.shape == (1, 3)
