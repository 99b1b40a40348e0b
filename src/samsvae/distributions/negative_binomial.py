"""Negative binomial in the (mean, inverse dispersion) parameterisation.

log NB(x | mu, theta) = lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
                        + theta * log(theta / (theta + mu)) + x * log(mu / (theta + mu))

The first line does not depend on the mean, so a training step evaluates it once per batch
(:func:`nb_data_terms`) and only the second line once per particle (:func:`nb_mean_terms`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


# torch's CPU gamma and Poisson samplers run on one thread. Count tensors up to this size (every
# figure in the docs) come from the global generator as before; larger ones, such as the ATE
# chunks at Replogle scale (2e8 entries), are drawn in parts on a thread pool.
ONE_STREAM_MAX = 1 << 26
PART_SIZE = 1 << 22


def nb_sample(log_mu: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
    """Draw counts as a Gamma-Poisson mixture: rate ~ Gamma(theta, theta / mu).

    ``log_theta`` broadcasts against the last axis of ``log_mu``. A CPU tensor with more than
    ``ONE_STREAM_MAX`` entries is drawn in row blocks of about ``PART_SIZE`` entries, each from
    a generator of its own seeded from the global one, on ``torch.get_num_threads()`` threads:
    the counts depend on the global seed, not on the number of threads. Smaller tensors and
    other devices draw from the global generator directly.
    """
    theta = log_theta.exp().expand_as(log_mu)
    scale = (log_mu - log_theta).exp()
    if log_mu.device.type != "cpu" or log_mu.numel() <= ONE_STREAM_MAX:
        return torch.poisson(torch._standard_gamma(theta) * scale)
    return _nb_sample_in_parts(theta, scale).view_as(log_mu)


def _nb_sample_in_parts(theta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """:func:`nb_sample` by row blocks with one seeded generator each, on a thread pool;
    returns (n_rows, n_genes)."""
    n_genes = scale.shape[-1]
    theta, scale = theta.reshape(-1, n_genes), scale.reshape(-1, n_genes)  # theta stays a view
    counts = torch.empty_like(scale)
    rows_per_part = max(1, PART_SIZE // n_genes)
    starts = range(0, len(scale), rows_per_part)
    seeds = torch.randint(0, 2**62, (len(starts),)).tolist()  # from the global generator

    def draw(start: int, seed: int) -> None:
        block = slice(start, start + rows_per_part)
        generator = torch.Generator().manual_seed(seed)
        rate = torch._standard_gamma(theta[block], generator=generator) * scale[block]
        counts[block] = torch.poisson(rate, generator=generator)

    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        list(pool.map(draw, starts, seeds))  # list(): re-raise any worker's error
    return counts
