"""Metrics: treatment-effect agreement, interval coverage, mask and latent recovery."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata


def pearson_r(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays (NaN when either is constant)."""
    a, b = np.ravel(predicted).astype(np.float64), np.ravel(observed).astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def r_squared(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot of ``predicted`` for ``observed``."""
    obs = np.ravel(observed).astype(np.float64)
    res = ((np.ravel(predicted) - obs) ** 2).sum()
    tot = ((obs - obs.mean()) ** 2).sum()
    return float(1 - res / tot) if tot > 0 else float("nan")


def top_genes_mask(observed_effects: np.ndarray, n_top: int = 20) -> np.ndarray:
    """Boolean (n_interventions, G): the ``n_top`` genes with largest |effect| per row."""
    order = np.argsort(-np.abs(observed_effects), axis=1)[:, :n_top]
    selected = np.zeros(observed_effects.shape, dtype=bool)
    np.put_along_axis(selected, order, values=True, axis=1)
    return selected


def ate_metrics(predicted: np.ndarray, observed: np.ndarray, n_top: int = 20) -> dict[str, float]:
    """Pearson r and R^2 over all genes and over the top-|observed| genes per intervention."""
    top = top_genes_mask(observed, n_top)
    return {
        "ate_pearson_r": pearson_r(predicted, observed),
        "ate_r2": r_squared(predicted, observed),
        f"ate_pearson_r_top{n_top}": pearson_r(predicted[top], observed[top]),
        f"ate_r2_top{n_top}": r_squared(predicted[top], observed[top]),
    }


def match_latent_dimensions(estimated: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Column permutation of ``estimated`` (T, K_est) best matching ``true`` (T, K) masks.

    Hungarian algorithm maximising co-activation counts sum_t est_tk' * true_tk. Returns, for each
    true dimension k, the matched estimated column (or -1 when K_est < K).
    """
    coactivation = estimated.astype(np.float64).T @ true.astype(np.float64)  # (K_est, K)
    rows, cols = linear_sum_assignment(-coactivation)
    matched = np.full(true.shape[1], -1)
    matched[cols] = rows
    return matched


def mask_recovery(estimated: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of binary masks after Hungarian matching of latent dimensions.

    Every active estimated entry counts toward precision, including those in unmatched columns,
    so extra active dimensions are penalised.
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
    """Area under the ROC curve of q(m = 1) for the true mask entries, after matching dimensions.

    Threshold-free: 1.0 when every true entry has a higher inclusion probability than every false
    one, 0.5 for an uninformative ranking. Dimensions are matched on expected co-activation.
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
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two sets of cells (rows).

    Euclidean distances in expression space (transform the cells first, e.g. log1p, to compare
    shapes rather than library sizes). Each set is subsampled to ``max_cells`` rows (seeded) to
    bound the O(n^2) cost; the within-set terms use V-statistics, matching
    ``scipy.stats.energy_distance`` squared in one dimension.
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
    """Share of observed effects inside [lower, upper], and the mean interval width.

    For posterior intervals at level 0.9, a calibrated model covers about 90% of held-out data
    effects (the data effects carry their own sampling noise, which widens the target).
    """
    lower, upper, observed = (np.asarray(a, dtype=np.float64) for a in (lower, upper, observed))
    inside = (observed >= lower) & (observed <= upper)
    return {"coverage": float(inside.mean()), "mean_width": float((upper - lower).mean())}


def mean_correlation_coefficient(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean |Pearson r| between true latent dimensions and their matched estimated dimensions.

    ``estimated`` (n_cells, K_est) and ``true`` (n_cells, K): dimensions are paired by the
    Hungarian algorithm on |correlation| (latents are identified only up to permutation and
    sign); a true dimension left without a partner (K_est < K) counts as 0.
    """
    k_est = estimated.shape[1]
    joint = np.corrcoef(np.asarray(estimated, float), np.asarray(true, float), rowvar=False)
    strength = np.nan_to_num(np.abs(joint[:k_est, k_est:]))  # (K_est, K)
    rows, cols = linear_sum_assignment(-strength)
    return float(strength[rows, cols].sum() / true.shape[1])


def relative_to_best_baseline(
    model: dict[str, float], baselines: dict[str, dict[str, float]]
) -> dict[str, float | str]:
    """Each model metric minus the best non-learned baseline's value of it (higher is better).

    ``baselines`` maps a baseline name to its metrics; baselines whose value is NaN (e.g. Pearson
    r of a constant prediction) are skipped. Returns ``{metric}_minus_best_baseline`` and
    ``{metric}_best_baseline`` (the baseline's name) for every metric some baseline defines.
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
