"""The tabulated E[log2(1 + c x)] against exhaustive summation over the count distribution."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import NegativeBinomial, Poisson

from samsvae.distributions.expected_transform import ExpectedLog2Table, expected_log2_scaled

#: the largest error the table may make, in log2 units (measured: 3.2e-4)
TOLERANCE = 1e-3


def _exhaustive(mu: float, theta: float | None, scale: float) -> float:
    """sum_k p(k) log2(1 + c k) with torch.distributions' pmf, k up to far beyond the bulk."""
    k = torch.arange(0, int(mu * (50 if theta is None else 50 + 2000 / theta)) + 200).double()
    if theta is None:
        log_p = Poisson(torch.tensor(mu, dtype=torch.float64)).log_prob(k)
    else:
        theta_t = torch.tensor(theta, dtype=torch.float64)
        logits = math.log(mu) - theta_t.log()
        log_p = NegativeBinomial(total_count=theta_t, logits=logits).log_prob(k)
    p = log_p.exp()
    assert abs(float(p.sum()) - 1) < 1e-9  # the sum covered the distribution
    return float((p * torch.log2(1 + scale * k)).sum())


@pytest.mark.parametrize("theta", [0.3, 1.7, 25.0, None])
@pytest.mark.parametrize("mu", [0.02, 0.9, 7.0, 60.0, 900.0])
def test_reference_sum_equals_torch_distributions(mu: float, theta: float | None) -> None:
    for scale in (1.0, 30.0):
        assert expected_log2_scaled(mu, theta, scale) == pytest.approx(
            _exhaustive(mu, theta, scale), abs=1e-9
        )


def test_table_equals_exhaustive_summation_for_every_gene() -> None:
    log_theta = torch.log(torch.tensor([0.15, 0.6, 2.0, 9.0, 80.0]))
    library_sizes = (150.0, 4000.0)
    table = ExpectedLog2Table(
        log_theta,
        n_genes=5,
        scales=(1e4 / library_sizes[1], 1e4 / library_sizes[0]),
        max_mean=library_sizes[1],
    )
    worst = 0.0
    for library in (150.0, 613.0, 4000.0):
        for fraction in (1e-7, 3e-4, 0.004, 0.03, 0.2):
            mu = library * fraction
            log_mu = torch.full((1, 5), math.log(mu))
            log_scale = torch.full((1, 1), math.log(1e4 / library))
            looked_up = table(log_mu, log_scale)[0]
            for g in range(5):
                exact = _exhaustive(mu, float(log_theta[g].exp()), 1e4 / library)
                worst = max(worst, abs(float(looked_up[g]) - exact))
    assert worst < TOLERANCE


def test_poisson_table_at_a_fixed_library_size() -> None:
    table = ExpectedLog2Table(None, n_genes=3, scales=(1.0, 1.0), max_mean=1e4)
    for mu in (0.004, 0.5, 3.0, 70.0, 2500.0):
        looked_up = table(torch.full((2, 3), math.log(mu)), torch.zeros(2, 1))
        assert looked_up.shape == (2, 3)
        assert (looked_up - _exhaustive(mu, None, 1.0)).abs().max() < TOLERANCE


def test_table_broadcasts_one_library_size_per_particle() -> None:
    log_theta = torch.zeros(4)
    table = ExpectedLog2Table(log_theta, n_genes=4, scales=(2.0, 20.0), max_mean=5000.0)
    log_mu = torch.log(torch.rand(3, 5, 4) * 10 + 0.1)  # (particles, rows, genes)
    log_scale = torch.log(torch.tensor([2.0, 7.0, 20.0]))[:, None, None]
    together = table(log_mu, log_scale)
    for p in range(3):
        alone = table(log_mu[p], log_scale[p].expand(5, 1))
        torch.testing.assert_close(together[p], alone)
