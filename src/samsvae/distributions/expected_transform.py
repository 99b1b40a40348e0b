"""E[log2(1 + c * x)] for a count x ~ NB(mu, theta) (or Poisson(mu)), without drawing x.

The ``perturbseq`` treatment effect averages g(x) = log2(1 + 1e4 * x_g / sum_j x_j) over cells.
Given the decoder's means mu_g = l * rho_g and dispersions, the counts can be integrated out
gene by gene once the cell total sum_j x_j is replaced by its expectation l: what is left is
E[log2(1 + c * x)] with c = 1e4 / l, a one-dimensional sum over the count distribution.

:func:`expected_log2_scaled` is that sum, term by term (the readable definition).
:class:`ExpectedLog2Table` evaluates the same expectation for many (mu, c) at the cost of a
table look-up: per gene, it tabulates the expectation on a grid of log mu and log c once, and
interpolates bilinearly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samsvae.distributions.negative_binomial import nb_data_terms, nb_log_prob, nb_mean_terms

#: mu below this is treated as E = E(MIN_MEAN) * mu / MIN_MEAN (exact to first order in mu:
#: only x = 1 matters there).
MIN_MEAN = 1e-3
#: Grid steps of the table, in natural-log units of mu and of c; linear interpolation error is
#: at most step^2 / 8 times the curvature (|d2E / d(log mu)^2| < 0.4), i.e. below 2e-4.
LOG_MEAN_STEP = 0.06
LOG_SCALE_STEP = 0.05
LOG_THETA_STEP = 0.05
#: Counts below this enter the table's sums one by one; above it, as a quadrature of the
#: (smooth) probability mass function with the midpoint correction of Euler-Maclaurin.
EXACT_COUNTS = 128
#: Inverse dispersion standing for the Poisson limit in the table (relative error ~ mu / theta).
POISSON_THETA = 1e8


def expected_log2_scaled(
    mu: float, theta: float | None, scale: float, *, tail: float = 1e-12
) -> float:
    """E[log2(1 + scale * x)] for x ~ NB(mu, theta) (``theta=None``: Poisson), by summing the
    count distribution term by term until the remaining mass is below ``tail``.

    The readable definition, for tests and single values; :class:`ExpectedLog2Table` is the
    fast path.
    """
    mu_t = torch.tensor(mu, dtype=torch.float64)
    total, mass, start, block = 0.0, 0.0, 0, 4096
    while 1.0 - mass > tail:
        k = torch.arange(start, start + block, dtype=torch.float64)
        if theta is None:
            p = (k * mu_t.log() - mu_t - torch.lgamma(k + 1)).exp()
        else:
            log_theta = torch.tensor(theta, dtype=torch.float64).log()
            p = nb_log_prob(k, mu_t.log(), log_theta).exp()
        total += float((p * torch.log2(1 + scale * k)).sum())
        mass += float(p.sum())
        start += block
        if start > 1e9:  # pragma: no cover - guards against a non-terminating tail
            break
    return total


def _count_nodes(max_mean: float, min_theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes and weights over the counts, float64.

    Counts 0..EXACT_COUNTS-1 have weight 1. Above, the sum over integers is the integral of the
    pmf's smooth extension from EXACT_COUNTS - 1/2 (Euler-Maclaurin, midpoint form), by the
    trapezoid rule on nodes spaced sqrt(k)/2 up to 4 * max_mean (half the width of the bulk of
    any NB, whose sd is at least sqrt(mu)), then 2% apart to the far tail of the most
    over-dispersed gene, where the pmf varies on the scale of k itself.
    """
    nodes = [float(EXACT_COUNTS) - 0.5]
    bulk_end = 4.0 * max(max_mean, EXACT_COUNTS)
    far_end = max(bulk_end, max_mean * max(4.0, 60.0 / min_theta))
    while nodes[-1] < far_end:
        k = nodes[-1]
        nodes.append(k + (0.5 * math.sqrt(k) if k < bulk_end else 0.02 * k))
    knots = torch.tensor(nodes, dtype=torch.float64)
    gaps = knots.diff()
    weights = torch.zeros_like(knots)
    weights[:-1] += gaps / 2
    weights[1:] += gaps / 2
    exact = torch.arange(EXACT_COUNTS, dtype=torch.float64)
    return torch.cat([exact, knots]), torch.cat([torch.ones_like(exact), weights])


def _grid(low: float, high: float, step: float, *, log: bool = True) -> torch.Tensor:
    """Points from log(low) to log(high) (from low to high with ``log=False``) at most
    ``step`` apart; one point if they are equal."""
    low, high = (math.log(low), math.log(high)) if log else (float(low), float(high))
    n = max(1, math.ceil((high - low) / step) + 1)
    return torch.linspace(low, high, n, dtype=torch.float64)


def _cell(value: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the cell of the uniform ``grid`` that holds each value, and the fraction within
    it (0 on a one-point grid)."""
    if len(grid) == 1:
        return torch.zeros_like(value, dtype=torch.long), torch.zeros_like(value)
    position = ((value - grid[0]) / (grid[1] - grid[0])).clamp(0, len(grid) - 1)
    index = position.floor().clamp(max=len(grid) - 2)
    return index.long(), position - index


class ExpectedLog2Table:
    """E[log2(1 + c * x_g)], x_g ~ NB(mu, theta_g), for every gene g, by table look-up.

    Parameters
    ----------
    log_theta
        (n_genes,) log inverse dispersions, or ``None`` for Poisson counts.
    n_genes
        Number of genes (used when ``log_theta`` is None).
    scales
        The smallest and largest c that will be looked up (equal for a fixed library size).
    max_mean
        The largest mu that will be looked up (the largest library size: mu = l * rho <= l).

    Each gene's table holds the expectation at log mu from log(MIN_MEAN) to log(max_mean) and
    log c over ``scales``, computed as sum_k w_k p(k | mu, theta) log2(1 + c k) over the nodes
    of :func:`_count_nodes` (the masses are renormalised to sum to one, which cancels most of the
    quadrature error). Look-ups interpolate bilinearly in (log mu, log c).
    """

    def __init__(
        self,
        log_theta: torch.Tensor | None,
        *,
        n_genes: int,
        scales: tuple[float, float],
        max_mean: float,
        device: torch.device | str = "cpu",
    ) -> None:
        log_theta = (
            torch.full((n_genes,), math.log(POISSON_THETA), dtype=torch.float64)
            if log_theta is None
            else log_theta.detach().double().cpu()
        )
        max_mean = max(float(max_mean), 2 * MIN_MEAN)
        self.log_means = _grid(MIN_MEAN, max_mean, LOG_MEAN_STEP)
        self.log_scales = _grid(min(scales), max(scales), LOG_SCALE_STEP)
        # the expectation is smooth in log theta: tabulate it on a grid of log theta and
        # interpolate each gene's table from there, instead of one table per gene
        log_thetas = _grid(*log_theta.aminmax(), LOG_THETA_STEP, log=False)
        counts, weights = _count_nodes(max_mean, math.exp(float(log_thetas[0])))
        values = torch.log2(1 + self.log_scales.exp()[None, :] * counts[:, None])  # (K, C)
        by_theta = torch.stack(
            [
                _expectations(log_t, self.log_means, counts, weights) @ values
                for log_t in log_thetas
            ]
        )  # (n_thetas, M, C)
        position, fraction = _cell(log_theta, log_thetas)
        fraction = fraction[:, None, None]
        upper = (position + 1).clamp(max=len(log_thetas) - 1)
        tables = by_theta[position] * (1 - fraction) + by_theta[upper] * fraction
        # (n_genes, 1, M, C): one single-channel image per gene, for grid_sample
        self.table = tables.float().unsqueeze(1).to(device)
        self._mean_range = (float(self.log_means[0]), float(self.log_means[-1]))
        self._scale_range = (float(self.log_scales[0]), float(self.log_scales[-1]))

    def __call__(self, log_mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """E[log2(1 + c x_g)] for log mu (..., n_genes) and log c broadcastable to (..., 1)."""
        shape = log_mu.shape
        log_mu = log_mu.reshape(-1, shape[-1])
        n_genes, n_points = log_mu.shape[1], log_mu.shape[0]
        # grid_sample's sampling grid, (G, 1, P, 2): (x, y) = (log c, log mu) mapped to [-1, 1]
        mean_at = _normalised(log_mu.t(), *self._mean_range)
        scale_at = log_scale.expand(*shape[:-1], 1).reshape(1, n_points)
        scale_at = _normalised(scale_at, *self._scale_range).expand(n_genes, n_points)
        grid = torch.stack([scale_at, mean_at.to(scale_at.dtype)], -1).unsqueeze(1)
        value = F.grid_sample(
            self.table, grid, mode="bilinear", padding_mode="border", align_corners=True
        )[:, 0, 0, :].t()
        below = log_mu < self._mean_range[0]
        if below.any():  # only x = 1 has mass to speak of there: E is proportional to mu
            value = torch.where(below, value * (log_mu - self._mean_range[0]).exp(), value)
        return value.reshape(shape)


def _expectations(
    log_theta: torch.Tensor, log_means: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Normalised quadrature masses w_k p(k | mu, theta) for one theta, (n_means, n_counts).

    log p splits into :func:`nb_data_terms`, which does not depend on mu and is computed once,
    and :func:`nb_mean_terms`, per mean.
    """
    log_p = nb_data_terms(counts, log_theta) + nb_mean_terms(counts, log_means[:, None], log_theta)
    p = log_p.exp_().mul_(weights)
    return p / p.sum(-1, keepdim=True)


def _normalised(value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map [low, high] onto grid_sample's [-1, 1] (a one-point axis maps to 0)."""
    if high <= low:
        return torch.zeros_like(value, dtype=torch.float32)
    return (value.float() - low).mul_(2 / (high - low)).sub_(1)
