"""Non-learned baselines for average treatment effects.

All are fitted on training cells and predict the ATE of a dosage row d_a against the control
(cells with zero total counts have no g(x) under ``"perturbseq"`` and are left out of all):
- ``control_mean``: no effect (0 for every gene);
- ``perturbed_mean``: mean g(x) of all perturbed training cells minus the control mean;
- ``additive``: the sum of the observed single-perturbation effects (for combinations);
- ``ridge``: ridge regression of g(x) on the dosage row with an intercept; ATE(a) = W d_a.

The ridge solution is computed in closed form from D^T D and D^T Y accumulated over row chunks,
so the transformed expression Y is never held densely for all cells (scikit-learn's Ridge would
need it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from samsvae.evaluate.ate import ATEMethod, defined_cells, transform_cells

BASELINES = ("control_mean", "perturbed_mean", "additive", "ridge")
_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class EffectBaselines:
    """Non-learned treatment-effect baselines fitted by :func:`fit_effect_baselines`.

    Parameters
    ----------
    perturbed_effect
        Mean g(x) of all perturbed training cells minus the control mean, (n_genes,).
    single_effects
        Observed effect of each perturbation applied alone, (n_perturbations, n_genes); NaN
        for perturbations never seen alone.
    ridge_weights
        Ridge-regression weights W of g(x) on the dosage row, (n_perturbations, n_genes).
    """

    perturbed_effect: np.ndarray
    single_effects: np.ndarray
    ridge_weights: np.ndarray

    def predict(self, dosage: np.ndarray) -> dict[str, np.ndarray]:
        """Predict the ATE of each dosage row under every baseline.

        Parameters
        ----------
        dosage
            Dosage rows d_a, (n_interventions, n_perturbations).

        Returns
        -------
        dict of str to numpy.ndarray
            One (n_interventions, n_genes) float64 array per baseline: ``"control_mean"``
            (zeros), ``"perturbed_mean"`` (``perturbed_effect`` on every row), ``"additive"``
            (d_a @ ``single_effects``; NaN rows where some perturbation of the row was never
            seen alone) and ``"ridge"`` (d_a @ ``ridge_weights``).
        """
        dosage = np.asarray(dosage, dtype=np.float64)
        n_interventions, n_genes = dosage.shape[0], self.ridge_weights.shape[1]
        used = dosage != 0
        singles = np.where(np.isnan(self.single_effects), 0.0, self.single_effects)
        additive = dosage @ singles
        # A row is predictable additively only if every perturbation in it was seen alone.
        unseen = used & np.isnan(self.single_effects).any(1)[None, :]
        additive[unseen.any(1)] = np.nan
        return {
            "control_mean": np.zeros((n_interventions, n_genes)),
            "perturbed_mean": np.tile(self.perturbed_effect, (n_interventions, 1)),
            "additive": additive,
            "ridge": dosage @ self.ridge_weights,
        }


def _transformed_chunks(expression: sp.csr_matrix | np.ndarray, method: ATEMethod):
    """Per chunk of rows: its start, g(x) (rows without one are zeros), which rows have one."""
    for start in range(0, expression.shape[0], _CHUNK_ROWS):
        chunk = expression[start : start + _CHUNK_ROWS]
        defined = defined_cells(chunk, method)
        yield start, transform_cells(chunk, method) * defined[:, None], defined


def fit_effect_baselines(
    expression: sp.csr_matrix | np.ndarray,
    dosage: sp.csr_matrix,
    *,
    method: ATEMethod = "perturbseq",
    ridge_alpha: float = 1.0,
) -> EffectBaselines:
    """Fit the non-learned treatment-effect baselines on training cells.

    Control cells are those with an all-zero dosage row; a cell is a single-perturbation cell
    when its row has one non-zero entry, equal to 1. Under ``"perturbseq"`` cells with zero
    total counts have no g(x) and are left out of every mean and of the regression.

    Parameters
    ----------
    expression
        Counts, (n_cells, n_genes), sparse CSR or dense.
    dosage
        Dosage of each cell, (n_cells, n_perturbations), converted to float64 CSR.
    method
        ``"perturbseq"`` (default; g(x) = log2(1 + 1e4 * x / sum_j x_j), log2 units) or
        ``"mean"`` (identity).
    ridge_alpha
        L2 penalty on the ridge weights (default 1.0); the intercept is not penalised.

    Returns
    -------
    EffectBaselines
        The fitted baselines; call :meth:`EffectBaselines.predict` for effects.

    Raises
    ------
    ValueError
        If no control cell (with counts, under ``"perturbseq"``) is among the training cells.

    Notes
    -----
    The ridge weights solve (Dc^T Dc + alpha I) W = Dc^T Yc, with D the dosage rows and Y the
    transformed expression, both centred (Dc, Yc) so that the intercept is unpenalised; its
    ATE prediction is W d_a.
    """
    dosage = sp.csr_matrix(dosage, dtype=np.float64)
    n_cells, n_perturbations = dosage.shape
    is_control = np.asarray(dosage.getnnz(axis=1) == 0)
    is_single = np.asarray((dosage.getnnz(axis=1) == 1) & (np.asarray(dosage.sum(1)).ravel() == 1))
    single_of = sp.csr_matrix(dosage.multiply(is_single[:, None]))
    n_genes = expression.shape[1]
    sums = {"control": np.zeros(n_genes), "perturbed": np.zeros(n_genes), "all": np.zeros(n_genes)}
    single_sums = np.zeros((n_perturbations, n_genes))
    cross = np.zeros((n_perturbations, n_genes))  # D^T Y
    defined = np.zeros(n_cells, dtype=bool)
    for start, values, defined_rows in _transformed_chunks(expression, method):
        rows = slice(start, start + values.shape[0])
        defined[rows] = defined_rows  # undefined rows of values are 0: they add nothing
        sums["control"] += values[is_control[rows]].sum(0)
        sums["perturbed"] += values[~is_control[rows]].sum(0)
        sums["all"] += values.sum(0)
        single_sums += single_of[rows].T @ values
        cross += dosage[rows].T @ values
    if not (is_control & defined).any():
        msg = (
            "Baselines need control cells (all-zero dosage rows) with counts among the "
            "training cells."
        )
        raise ValueError(msg)
    # Every count and every row of D below is over the cells with a defined g(x) only.
    kept = sp.diags(defined.astype(np.float64)) @ dosage  # (N, T), undefined rows zeroed
    n_kept = defined.sum()
    control_mean = sums["control"] / (is_control & defined).sum()
    n_single = np.asarray(single_of.multiply(defined[:, None]).sum(0)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        single_effects = single_sums / n_single[:, None] - control_mean
    perturbed = (sums["perturbed"] / max((~is_control & defined).sum(), 1)) - control_mean
    # Ridge with an unpenalised intercept: centre D and Y, then (Dc^T Dc + a I) W = Dc^T Yc.
    dosage_mean = np.asarray(kept.sum(0)).ravel() / n_kept
    gram = (kept.T @ kept).toarray() - n_kept * np.outer(dosage_mean, dosage_mean)
    centred_cross = cross - n_kept * np.outer(dosage_mean, sums["all"] / n_kept)
    weights = np.linalg.solve(gram + ridge_alpha * np.eye(n_perturbations), centred_cross)
    return EffectBaselines(perturbed, single_effects, weights)
