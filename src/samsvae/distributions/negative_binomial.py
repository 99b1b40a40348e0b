"""Negative binomial in the (mean, inverse dispersion) parameterisation.

log NB(x | mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                        + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))

The first line does not depend on the mean, so a training step evaluates it once per batch
(:func:`nb_data_terms`) and only the second line once per particle (:func:`nb_mean_terms`).
"""

from __future__ import annotations

import torch


def nb_data_terms(x: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """lgamma(x + theta) - lgamma(theta) - lgamma(x + 1), elementwise; shape of ``x``."""
    theta = log_theta.exp()
    return torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)


def nb_mean_terms(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """theta * log(theta/(theta+mu)) + x * log(mu/(theta+mu)), elementwise and broadcast."""
    log_theta_plus_mu = torch.logaddexp(log_theta, log_mu)
    return log_theta.exp() * (log_theta - log_theta_plus_mu) + x * (log_mu - log_theta_plus_mu)


def nb_log_prob(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Elementwise log NB(x | exp(log_mu), exp(log_theta))."""
    return nb_data_terms(x, log_theta) + nb_mean_terms(x, log_mu, log_theta)


def nb_sample(log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Draw counts as a Gamma-Poisson mixture: rate ~ Gamma(theta, theta / mu) (global RNG)."""
    theta = log_theta.exp().expand_as(log_mu)
    rate = torch._standard_gamma(theta) * (log_mu - log_theta).exp()
    return torch.poisson(rate)
