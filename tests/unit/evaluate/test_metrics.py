from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import Ridge

from samsvae.evaluate.ate import data_average_treatment_effects, transform
from samsvae.evaluate.baselines import fit_effect_baselines
from samsvae.evaluate.interpret import data_genetic_interactions
from samsvae.evaluate.metrics import (
    ate_metrics,
    energy_distance,
    interval_coverage,
    mask_auroc,
    mask_recovery,
    mean_correlation_coefficient,
    pearson_r,
    r_squared,
    relative_to_best_baseline,
)


def test_mask_recovery_is_invariant_to_permuting_latent_dimensions() -> None:
    rng = np.random.default_rng(0)
    true = rng.random((20, 6)) < 0.3
    result = mask_recovery(true[:, rng.permutation(6)], true)
    assert result["mask_f1"] == result["mask_precision"] == result["mask_recall"] == 1.0


def test_mask_recovery_counts_hand_made_example() -> None:
    true = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    # Columns swapped, one false positive in an extra column, one true entry missed.
    estimated = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=bool)
    result = mask_recovery(estimated, true)
    # Matched: est col 1 -> true col 0 (rows 0), est col 0 -> true col 1 (rows 1, 2).
    # TP = 1 + 2 = 3; predicted active = 4; true active = 4.
    assert result["mask_precision"] == pytest.approx(3 / 4)
    assert result["mask_recall"] == pytest.approx(3 / 4)
    assert result["mask_f1"] == pytest.approx(3 / 4)


def test_ate_metrics_match_hand_computation() -> None:
    observed = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    predicted = np.array([[1.5, 2.0, 2.0], [0.0, -2.0, 4.0]])
    o, p = observed.ravel(), predicted.ravel()
    assert pearson_r(predicted, observed) == pytest.approx(np.corrcoef(o, p)[0, 1])
    ss_res, ss_tot = ((o - p) ** 2).sum(), ((o - o.mean()) ** 2).sum()
    assert r_squared(predicted, observed) == pytest.approx(1 - ss_res / ss_tot)
    top = ate_metrics(predicted, observed, n_top=2)
    # top-2 |observed| per row: (2, 3) and (-1, 4)
    sel_o, sel_p = np.array([2.0, 3.0, -1.0, 4.0]), np.array([2.0, 2.0, -2.0, 4.0])
    assert top["ate_pearson_r_top2"] == pytest.approx(np.corrcoef(sel_o, sel_p)[0, 1])


def test_perturbseq_transform_guards_zero_count_cells() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
    result = transform(x, "perturbseq")
    assert torch.equal(result[0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(result[1], torch.log2(1 + 1e4 * x[1] / 4))


def test_data_ate_and_baselines_match_hand_computation() -> None:
    expression = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 2.0], [4.0, 4.0], [7.0, 6.0]])
    labels = np.array(["c", "c", "A", "B", "A+B"])
    effects = data_average_treatment_effects(
        expression, labels, ["A", "B", "A+B"], "c", method="mean"
    )
    np.testing.assert_allclose(effects, [[0.0, 2.0], [2.0, 4.0], [5.0, 6.0]])

    dosage = sp.csr_matrix([[0, 0], [0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    fitted = fit_effect_baselines(
        sp.csr_matrix(expression), dosage, method="mean", ridge_alpha=0.5
    )
    predicted = fitted.predict(np.array([[1.0, 1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(predicted["control_mean"], 0.0)
    # perturbed cells' mean (13/3, 4) minus the control mean (2, 0)
    np.testing.assert_allclose(predicted["perturbed_mean"], [[7 / 3, 4.0], [7 / 3, 4.0]])
    np.testing.assert_allclose(predicted["additive"], [[2.0, 6.0], [0.0, 2.0]])
    reference = Ridge(alpha=0.5).fit(dosage.toarray().astype(np.float64), expression)
    np.testing.assert_allclose(
        predicted["ridge"], np.array([[1, 1], [1, 0]]) @ reference.coef_.T, rtol=1e-10
    )


def _g(x: np.ndarray) -> np.ndarray:
    """log2(1 + 1e4 x / sum_j x_j), row by row, for cells with counts."""
    return np.log2(1 + 1e4 * x / x.sum(1, keepdims=True))


def test_zero_count_cells_are_left_out_of_data_ate_baselines_and_interactions() -> None:
    expression = np.array(
        [
            [1.0, 3.0, 0.0],
            [2.0, 2.0, 1.0],
            [0.0, 0.0, 0.0],  # a control cell without counts
            [5.0, 1.0, 1.0],
            [0.0, 0.0, 0.0],  # an A cell without counts
            [4.0, 0.0, 2.0],
            [1.0, 1.0, 6.0],
            [3.0, 3.0, 3.0],
        ]
    )
    labels = np.array(["c", "c", "c", "A", "A", "A", "B", "A+B"])
    dosage = sp.csr_matrix(
        [[0, 0], [0, 0], [0, 0], [1, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32
    )
    control, a = _g(expression[[0, 1]]).mean(0), _g(expression[[3, 5]]).mean(0)
    b, ab = _g(expression[[6]]).mean(0), _g(expression[[7]]).mean(0)
    effects = data_average_treatment_effects(expression, labels, ["A", "B", "A+B"], "c")
    np.testing.assert_allclose(effects, np.stack([a, b, ab]) - control, rtol=1e-12)
    naive = _g(expression[[3, 5]]).sum(0) / 3 - _g(expression[[0, 1]]).sum(0) / 3
    assert np.abs(effects[0] - naive).max() > 1.0  # zeros as expression would move it this much

    fitted = fit_effect_baselines(sp.csr_matrix(expression), dosage, ridge_alpha=0.5)
    predicted = fitted.predict(np.array([[1.0, 0.0], [1.0, 1.0]]))
    perturbed = _g(expression[[3, 5, 6, 7]]).mean(0) - control
    np.testing.assert_allclose(predicted["perturbed_mean"][0], perturbed, rtol=1e-12)
    np.testing.assert_allclose(predicted["additive"], [a - control, a + b - 2 * control])
    counted = expression.sum(1) > 0
    design = dosage.toarray().astype(np.float64)[counted]
    reference = Ridge(alpha=0.5).fit(design, _g(expression[counted]))
    np.testing.assert_allclose(
        predicted["ridge"], np.array([[1, 0], [1, 1]]) @ reference.coef_.T, rtol=1e-9
    )

    scores = data_genetic_interactions(expression, labels, ["A+B"], "c", n_bootstrap=20)
    np.testing.assert_allclose(scores.score[0], ab - a - b + control, rtol=1e-12)
    only_zeros = np.array(["c", "c", "c", "A", "D", "A", "B", "A+B"])
    with pytest.raises(ValueError, match="Every cell labelled 'D' has zero total counts"):
        data_average_treatment_effects(expression, only_zeros, ["D"], "c")


def test_additive_baseline_is_undefined_for_perturbations_never_seen_alone() -> None:
    expression = np.array([[1.0], [2.0], [5.0]])
    dosage = sp.csr_matrix([[0, 0], [1, 0], [1, 1]], dtype=np.float32)
    predicted = fit_effect_baselines(expression, dosage, method="mean").predict(
        np.array([[1.0, 0.0], [0.0, 1.0]])
    )
    np.testing.assert_allclose(predicted["additive"][0], [1.0])
    assert np.isnan(predicted["additive"][1]).all()


def test_mask_auroc_is_one_for_a_perfect_ranking_and_half_for_a_constant() -> None:
    rng = np.random.default_rng(0)
    true = rng.random((30, 5)) < 0.3
    perfect = np.where(true, 0.9, 0.1)[:, [2, 0, 1, 4, 3]]
    assert mask_auroc(perfect, true) == pytest.approx(1.0)
    assert mask_auroc(np.full(true.shape, 0.5), true) == pytest.approx(0.5)
    # Hand-made: positives 0.8, 0.4; negatives 0.6, 0.2 -> pairs won 3 of 4.
    probabilities = np.array([[0.8], [0.6], [0.4], [0.2]])
    truth = np.array([[1], [0], [1], [0]], dtype=bool)
    assert mask_auroc(probabilities, truth) == pytest.approx(0.75)


def test_energy_distance_matches_scipy_in_one_dimension_and_a_direct_sum() -> None:
    from scipy.stats import energy_distance as scipy_energy_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.5, 2, 200)
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|)
    assert energy_distance(a, b) == pytest.approx(scipy_energy_distance(a, b) ** 2)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    distance = lambda u, v: np.mean([np.linalg.norm(p - q) for p in u for q in v])  # noqa: E731
    expected = 2 * distance(x, y) - distance(x, x) - distance(y, y)
    assert energy_distance(x, y) == pytest.approx(expected)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert (
        energy_distance(rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)), max_cells=500)
        < 0.05
    )


def test_interval_coverage_counts_hand_made_example() -> None:
    lower = np.array([[0.0, 1.0], [-1.0, 2.0]])
    upper = np.array([[1.0, 3.0], [1.0, 2.5]])
    observed = np.array([[0.5, 3.5], [1.0, 1.0]])  # inside, above, on the bound, below
    result = interval_coverage(lower, upper, observed)
    assert result == {"coverage": 0.5, "mean_width": (1.0 + 2.0 + 2.0 + 0.5) / 4}


def test_mean_correlation_coefficient_matches_permuted_rescaled_flipped_latents() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(size=(500, 3))
    estimated = -2.0 * true[:, [2, 0, 1]] + 5.0  # permuted, rescaled, sign-flipped, shifted
    assert mean_correlation_coefficient(estimated, true) == pytest.approx(1.0)
    noisy = true + rng.normal(size=true.shape)  # each r = 1 / sqrt(2) in expectation
    assert mean_correlation_coefficient(noisy, true) == pytest.approx(2**-0.5, abs=0.05)
    # One estimated dimension for three true ones: two true dimensions count as 0.
    one = mean_correlation_coefficient(true[:, :1], true)
    assert one == pytest.approx(1 / 3)
    expected = np.mean([abs(np.corrcoef(noisy[:, k], true[:, k])[0, 1]) for k in range(3)])
    assert mean_correlation_coefficient(noisy, true) == pytest.approx(expected)


def test_relative_to_best_baseline_subtracts_the_best_finite_baseline() -> None:
    model = {"ate_pearson_r": 0.9, "ate_r2": 0.5, "mask_f1": 0.3}
    baselines = {
        "control_mean": {"ate_pearson_r": float("nan"), "ate_r2": -0.8},
        "additive": {"ate_pearson_r": 0.95, "ate_r2": 0.2},
        "ridge": {"ate_pearson_r": 0.7, "ate_r2": 0.4},
    }
    result = relative_to_best_baseline(model, baselines)
    assert result["ate_pearson_r_minus_best_baseline"] == pytest.approx(-0.05)
    assert result["ate_pearson_r_best_baseline"] == "additive"
    assert result["ate_r2_minus_best_baseline"] == pytest.approx(0.1)
    assert result["ate_r2_best_baseline"] == "ridge"
    assert "mask_f1_minus_best_baseline" not in result  # no baseline defines it
