"""Negative binomial in the (mean, inverse dispersion) parameterisation.

log NB(x | mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                        + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))

The first line does not depend on the mean, so a training step evaluates it once per batch
(:func:`nb_data_terms`) and only the second line once per particle (:func:`nb_mean_terms`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


class _NBMeanTermsFromLogits(torch.autograd.Function):
    """Fused per-cell NB mean terms for mu = library * softmax(logits), summed over genes.

    With d = log(mu / theta):  theta log(theta/(theta+mu)) + x log(mu/(theta+mu))
    = x d - (theta + x) softplus(d). The backward pass is written out (dlogmu = x - (theta+x)
    sigmoid(d), then through log_softmax), which saves about a third of the elementwise passes
    autograd would make over the (particles, cells, genes) tensor.
    """

    @staticmethod
    def forward(ctx, logits, x, log_library, log_theta):  # type: ignore[override]
        log_rho = F.log_softmax(logits, dim=-1)
        d = log_rho + (log_library.unsqueeze(-1) - log_theta)
        softplus_d = F.softplus(d)
        theta = log_theta.exp()
        ctx.save_for_backward(log_rho, d, softplus_d, x, theta)
        return (x * d - (theta + x) * softplus_d).sum(-1)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        log_rho, d, softplus_d, x, theta = ctx.saved_tensors
        p = torch.sigmoid(d)  # mu / (theta + mu)
        g = grad_out.contiguous().unsqueeze(-1)  # an expanded grad_out defeats vectorised loops
        g_log_mu = (x - (theta + x) * p) * g
        g_logits = g_log_mu - log_rho.exp() * g_log_mu.sum(-1, keepdim=True)
        g_log_theta = None
        if ctx.needs_input_grad[3]:
            per_entry = (theta * (p - softplus_d) - x * (1 - p)) * g
            g_log_theta = per_entry.reshape(-1, theta.shape[-1]).sum(0)
        return g_logits, None, None, g_log_theta


def nb_mean_terms_from_logits(
    logits: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, log_theta: torch.Tensor
) -> torch.Tensor:
    """Sum over genes of :func:`nb_mean_terms` at log mu = log_library + log_softmax(logits).

    logits (..., n_cells, n_genes); x (n_cells, n_genes); log_library (n_cells,);
    log_theta (n_genes,). Returns (..., n_cells). Gradients flow to ``logits`` and ``log_theta``.
    """
    return _NBMeanTermsFromLogits.apply(logits, x, log_library, log_theta)


def nb_sample(log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Draw counts as a Gamma-Poisson mixture: rate ~ Gamma(theta, theta / mu) (global RNG)."""
    theta = log_theta.exp().expand_as(log_mu)
    rate = torch._standard_gamma(theta) * (log_mu - log_theta).exp()
    return torch.poisson(rate)
