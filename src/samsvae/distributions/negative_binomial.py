"""Negative binomial in the (mean, inverse dispersion) parameterisation.

log NB(x | mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                        + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))

The first line does not depend on the mean, so a training step evaluates it once per batch
(:func:`nb_data_terms`) and only the second line once per particle (:func:`nb_mean_terms`).

This module is the readable definition; where it hands over to a CPU fast path, the fast path
lives in :mod:`samsvae.distributions.negative_binomial_fast` and computes the same thing.
"""

from __future__ import annotations

import torch

from samsvae.distributions import negative_binomial_fast as fast


def nb_data_terms(x: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """lgamma(x + theta) - lgamma(theta) - lgamma(x + 1), elementwise; shape of ``x``.

    On CPU, when at most ``fast.SPARSE_DENSITY`` of the counts are non-zero, the lgamma and
    digamma (gradient) evaluations are made only where x != 0: at x = 0 the terms and their
    derivative are exactly 0. The result and gradient are those of the dense expression, bit
    for bit.
    """
    if x.device.type == "cpu" and torch.count_nonzero(x) <= fast.SPARSE_DENSITY * x.numel():
        return fast.NBDataTermsAtNonzero.apply(x, log_theta)
    theta = log_theta.exp()
    return torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)


def nb_mean_terms(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """theta * log(theta/(theta+mu)) + x * log(mu/(theta+mu)), elementwise and broadcast."""
    log_theta_plus_mu = torch.logaddexp(log_theta, log_mu)
    return log_theta.exp() * (log_theta - log_theta_plus_mu) + x * (log_mu - log_theta_plus_mu)


def nb_log_prob(x: torch.Tensor, log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Elementwise log NB(x | exp(log_mu), exp(log_theta))."""
    return nb_data_terms(x, log_theta) + nb_mean_terms(x, log_mu, log_theta)


def nb_mean_terms_from_logits(
    logits: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, log_theta: torch.Tensor
) -> torch.Tensor:
    """Sum over genes of :func:`nb_mean_terms` at log mu = log_library + log_softmax(logits).

    logits (..., n_cells, n_genes); x (n_cells, n_genes); log_library (n_cells,);
    log_theta (n_genes,). Returns (..., n_cells). Gradients flow to ``logits`` and ``log_theta``.
    Computed by the fused :class:`~samsvae.distributions.negative_binomial_fast.
    NBMeanTermsFromLogits`; :func:`nb_mean_terms_reference` is the same sum, written out.
    """
    return fast.NBMeanTermsFromLogits.apply(logits, x, log_library, log_theta)


def nb_mean_terms_reference(
    logits: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, log_theta: torch.Tensor
) -> torch.Tensor:
    """:func:`nb_mean_terms_from_logits` as plain autograd operations."""
    log_mu = log_library.unsqueeze(-1) + torch.log_softmax(logits, dim=-1)
    return nb_mean_terms(x, log_mu, log_theta).sum(-1)


def nb_sample(log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Draw counts as a Gamma-Poisson mixture: rate ~ Gamma(theta, theta / mu).

    ``log_theta`` broadcasts against the last axis of ``log_mu``. A CPU tensor with more than
    ``fast.ONE_STREAM_MAX`` entries is drawn in row blocks of about ``fast.PART_SIZE`` entries,
    each from a generator of its own seeded from the global one, on
    ``torch.get_num_threads()`` threads: the counts depend on the global seed, not on the number
    of threads. Smaller tensors and other devices draw from the global generator directly.
    """
    theta = log_theta.exp().expand_as(log_mu)
    scale = (log_mu - log_theta).exp()
    if log_mu.device.type != "cpu" or log_mu.numel() <= fast.ONE_STREAM_MAX:
        return torch.poisson(torch._standard_gamma(theta) * scale)
    return fast.nb_sample_in_parts(theta, scale).view_as(log_mu)
