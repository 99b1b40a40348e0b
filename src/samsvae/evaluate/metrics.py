"""Metrics: treatment-effect agreement, interval coverage, mask and latent recovery."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata


def pearson_r(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Compute the Pearson correlation between two arrays, flattened.

    Parameters
    ----------
    predicted
        Predicted values, any shape.
    observed
        Observed values, with as many entries as ``predicted``.

    Returns
    -------
    float
        Pearson r, NaN when either array is constant.
    """
    a, b = np.ravel(predicted).astype(np.float64), np.ravel(observed).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def r_squared(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Compute the coefficient of determination of predictions, flattened.

    Parameters
    ----------
    predicted
        Predicted values, any shape.
    observed
        Observed values, with as many entries as ``predicted``.

    Returns
    -------
    float
        R^2 = 1 - SS_res / SS_tot, with SS_tot about the mean of ``observed``; negative when
        the predictions are worse than that mean, NaN when ``observed`` is constant.
    """
    obs = np.ravel(observed).astype(np.float64)
    res = ((np.ravel(predicted) - obs) ** 2).sum()
    tot = ((obs - obs.mean()) ** 2).sum()
    return float(1 - res / tot) if tot > 0 else float("nan")


def top_genes_mask(observed_effects: np.ndarray, n_top: int = 20) -> np.ndarray:
    """Select the genes with the largest absolute observed effect of each intervention.

    Parameters
    ----------
    observed_effects
        Effects, (n_interventions, n_genes).
    n_top
        Genes selected per row (default 20).

    Returns
    -------
    numpy.ndarray
        (n_interventions, n_genes) bool, True for the ``n_top`` genes with largest ``|effect|``
        in each row.
    """
    order = np.argsort(-np.abs(observed_effects), axis=1)[:, :n_top]
    selected = np.zeros(observed_effects.shape, dtype=bool)
    np.put_along_axis(selected, order, values=True, axis=1)
    return selected


def ate_metrics(predicted: np.ndarray, observed: np.ndarray, n_top: int = 20) -> dict[str, float]:
    """Score predicted treatment effects against observed ones.

    Parameters
    ----------
    predicted
        Predicted effects, (n_interventions, n_genes).
    observed
        Observed effects, (n_interventions, n_genes).
    n_top
        Number of genes with the largest ``|observed effect|`` per intervention for the top-gene
        metrics (default 20).

    Returns
    -------
    dict of str to float
        ``ate_pearson_r`` and ``ate_r2`` (:func:`pearson_r`, :func:`r_squared`) over all
        entries, and ``ate_pearson_r_top{n_top}`` and ``ate_r2_top{n_top}`` over the top
        genes of each intervention pooled.
    """
    top = top_genes_mask(observed, n_top)
    return {
        "ate_pearson_r": pearson_r(predicted, observed),
        "ate_r2": r_squared(predicted, observed),
        f"ate_pearson_r_top{n_top}": pearson_r(predicted[top], observed[top]),
        f"ate_r2_top{n_top}": r_squared(predicted[top], observed[top]),
    }


def match_latent_dimensions(estimated: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Match estimated latent dimensions to true ones by their masks.

    Hungarian algorithm maximising the co-activation counts sum_t est_tk' * true_tk.

    Parameters
    ----------
    estimated
        Estimated masks (or mask probabilities), (T, K_est).
    true
        True masks, (T, K).

    Returns
    -------
    numpy.ndarray
        (K,) int: for each true dimension k, the matched estimated column, or -1 when it is
        left without one (K_est < K).
    """
    coactivation = estimated.astype(np.float64).T @ true.astype(np.float64)  # (K_est, K)
    rows, cols = linear_sum_assignment(-coactivation)
    matched = np.full(true.shape[1], -1)
    matched[cols] = rows
    return matched


def mask_recovery(estimated: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Score estimated binary masks against true ones after matching latent dimensions.

    Dimensions are matched by :func:`match_latent_dimensions`. Every active estimated entry
    counts toward precision, including those in unmatched columns, so extra active dimensions
    are penalised.

    Parameters
    ----------
    estimated
        Estimated binary masks, (T, K_est).
    true
        True binary masks, (T, K).

    Returns
    -------
    dict of str to float
        ``mask_precision``, ``mask_recall`` and ``mask_f1`` (each 0 where undefined), and
        the numbers of active entries ``mask_active_estimated`` and ``mask_active_true``
        (int).
    """
    estimated, true = estimated.astype(bool), true.astype(bool)
    matched = match_latent_dimensions(estimated, true)
    aligned = np.zeros_like(true)
    valid = matched >= 0
    aligned[:, valid] = estimated[:, matched[valid]]
    true_positive = float((aligned & true).sum())
    n_predicted, n_true = float(estimated.sum()), float(true.sum())
    precision = true_positive / n_predicted if n_predicted else 0.0
    recall = true_positive / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "mask_precision": precision,
        "mask_recall": recall,
        "mask_f1": f1,
        "mask_active_estimated": int(n_predicted),
        "mask_active_true": int(n_true),
    }


def mask_auroc(probabilities: np.ndarray, true: np.ndarray) -> float:
    """Compute the area under the ROC curve of mask probabilities for the true mask entries.

    Threshold-free: 1.0 when every true entry has a higher inclusion probability than every
    false one, 0.5 for an uninformative ranking. Dimensions are matched on expected
    co-activation (:func:`match_latent_dimensions`); a true dimension left without a partner
    gets probability 0.

    Parameters
    ----------
    probabilities
        Estimated q(m = 1), (T, K_est).
    true
        True binary masks, (T, K).

    Returns
    -------
    float
        AUROC (ties count one half), NaN when ``true`` has no active or no inactive entry.
    """
    true = true.astype(bool)
    matched = match_latent_dimensions(probabilities, true)
    aligned = np.zeros(true.shape)
    valid = matched >= 0
    aligned[:, valid] = probabilities[:, matched[valid]]
    positives, negatives = aligned[true], aligned[~true]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positives, negatives]))
    rank_sum = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(rank_sum / (len(positives) * len(negatives)))


def energy_distance(
    predicted: np.ndarray, observed: np.ndarray, *, max_cells: int = 2000, seed: int = 0
) -> float:
    """Compute the energy distance between two sets of cells.

    The distance is ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    Euclidean distances in expression space: transform the cells first (e.g. log1p) to compare
    shapes rather than library sizes. The within-set terms use V-statistics (self-pairs
    included), matching ``scipy.stats.energy_distance`` squared in one dimension.

    Parameters
    ----------
    predicted
        Cells as rows, (n, n_genes); a 1-D array is one feature.
    observed
        Cells as rows, (m, n_genes); a 1-D array is one feature.
    max_cells
        Each set is subsampled to at most this many rows, without replacement, to bound the
        O(n^2) cost (default 2000).
    seed
        Seed of the subsampling (default 0).

    Returns
    -------
    float
        The energy distance, in the units of the expression.
    """
    rng = np.random.default_rng(seed)

    def subsample(cells: np.ndarray) -> torch.Tensor:
        cells = np.asarray(cells, dtype=np.float64)
        if cells.ndim == 1:
            cells = cells[:, None]
        if len(cells) > max_cells:
            cells = cells[rng.choice(len(cells), max_cells, replace=False)]
        return torch.from_numpy(cells)

    x, y = subsample(predicted), subsample(observed)
    between = torch.cdist(x, y).mean()
    within_x, within_y = torch.cdist(x, x).mean(), torch.cdist(y, y).mean()
    return float(2 * between - within_x - within_y)


def interval_coverage(lower: np.ndarray, upper: np.ndarray, observed: np.ndarray) -> dict:
    """Measure how often intervals cover the observed effects, and how wide they are.

    For posterior intervals at level 0.9, a calibrated model covers about 90% of held-out data
    effects (the data effects carry their own sampling noise, which widens the target).

    Parameters
    ----------
    lower
        Lower interval bounds, e.g. (n_interventions, n_genes).
    upper
        Upper interval bounds, same shape.
    observed
        Observed effects, same shape.

    Returns
    -------
    dict
        ``coverage``: the share of observed effects inside [lower, upper] (bounds
        included); ``mean_width``: the mean of upper - lower.
    """
    lower, upper, observed = (np.asarray(a, dtype=np.float64) for a in (lower, upper, observed))
    inside = (observed >= lower) & (observed <= upper)
    return {"coverage": float(inside.mean()), "mean_width": float((upper - lower).mean())}


def mean_correlation_coefficient(estimated: np.ndarray, true: np.ndarray) -> float:
    """Compute the mean ``|Pearson r|`` between true latent dimensions and their matched estimates.

    Dimensions are paired by the Hungarian algorithm on ``|correlation|`` (latents are identified
    only up to permutation and sign).

    Parameters
    ----------
    estimated
        Estimated latent values, (n_cells, K_est).
    true
        True latent values, (n_cells, K).

    Returns
    -------
    float
        Mean over the K true dimensions of ``|r|`` with their partners, in [0, 1]; a true
        dimension left without a partner (K_est < K) counts as 0, as does an undefined
        correlation (a constant dimension).
    """
    k_est = estimated.shape[1]
    joint = np.corrcoef(np.asarray(estimated, float), np.asarray(true, float), rowvar=False)
    strength = np.nan_to_num(np.abs(joint[:k_est, k_est:]))  # (K_est, K)
    rows, cols = linear_sum_assignment(-strength)
    return float(strength[rows, cols].sum() / true.shape[1])


def relative_to_best_baseline(
    model: dict[str, float], baselines: dict[str, dict[str, float]]
) -> dict[str, float | str]:
    """Compare each model metric with the best non-learned baseline's value of it.

    Every metric is taken as higher-is-better.

    Parameters
    ----------
    model
        The model's metrics, by name.
    baselines
        Each baseline's metrics, by baseline name; baselines whose value is not finite (e.g.
        the NaN Pearson r of a constant prediction) are skipped for that metric.

    Returns
    -------
    dict of str to float or str
        For every model metric that some baseline defines: ``{metric}_minus_best_baseline``
        (model value minus the best baseline value) and ``{metric}_best_baseline`` (that
        baseline's name).
    """
    out: dict[str, float | str] = {}
    for key, value in model.items():
        scores = {
            name: metrics[key]
            for name, metrics in baselines.items()
            if key in metrics and np.isfinite(metrics[key])
        }
        if not scores:
            continue
        best = max(scores, key=scores.__getitem__)
        out[f"{key}_minus_best_baseline"] = float(value - scores[best])
        out[f"{key}_best_baseline"] = best
    return out
