"""Fast paths of the negative binomial maths in :mod:`samsvae.distributions.negative_binomial`.

Each computes exactly what its readable counterpart there defines, for CPU speed: the data terms
from the non-zero counts only, the fused mean terms with a hand-written backward pass worked
block by block of cells, and counts drawn in parts on a thread pool. Each is tested against the
readable expression (``tests/unit/distributions/test_negative_binomial.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

# Above this share of non-zero counts, gathering and scattering them costs more than lgamma and
# digamma over every entry. `python benchmarks/step_profile.py --data-terms` (512 x 1187 counts,
# forward and backward): 5-7 vs 11-14 ms at 10%, 12 vs 12-13 ms at 40%, 13-16 vs 12-13 ms at 50%.
SPARSE_DENSITY = 0.35


class NBDataTermsAtNonzero(torch.autograd.Function):
    """``negative_binomial.nb_data_terms`` from the non-zero entries of ``x``. The backward
    pass repeats the operations autograd makes for the dense expression, in the same order."""

    @staticmethod
    def forward(ctx, x, log_theta):  # type: ignore[override]
        theta = log_theta.exp()
        lgamma_theta = torch.lgamma(theta)
        nonzero = x.nonzero(as_tuple=True)
        counts = x[nonzero]
        shifted_counts = counts + theta[nonzero[-1]]  # x + theta where x != 0
        shifted = _at_nonzero(x, nonzero, lgamma_theta, torch.lgamma(shifted_counts))
        log_factorial = _at_nonzero(x, nonzero, x.new_zeros(()), torch.lgamma(counts + 1))
        ctx.save_for_backward(x, theta)
        ctx.nonzero, ctx.shifted_counts = nonzero, shifted_counts
        return shifted - lgamma_theta - log_factorial

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if not ctx.needs_input_grad[1]:
            return None, None
        x, theta = ctx.saved_tensors
        digamma_theta = torch.digamma(theta)
        digamma_shifted = _at_nonzero(
            x, ctx.nonzero, digamma_theta, torch.digamma(ctx.shifted_counts)
        )
        leading = tuple(range(x.dim() - 1))
        from_shifted = (grad * digamma_shifted).sum(leading)  # lgamma(x + theta)
        from_theta = (-grad).sum(leading) * digamma_theta  # - lgamma(theta)
        return None, (from_shifted + from_theta) * theta  # through theta = exp(log_theta)


def _at_nonzero(
    x: torch.Tensor, nonzero: tuple[torch.Tensor, ...], fill: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Shaped like ``x``: ``fill`` broadcast, with ``values`` at the ``nonzero`` entries."""
    out = fill.expand_as(x).clone(memory_format=torch.contiguous_format)
    out[nonzero] = values
    return out


# Cells per block of the fused NB terms' arithmetic on CPU. A block's temporaries stay in cache
# instead of making a pass over memory each; every element meets the same operations in the same
# order as in a whole-tensor pass, so the results are the same to the bit.
CELL_BLOCK = 256


def _cell_blocks(
    n_cells: int, *tensors: torch.Tensor
) -> Iterator[tuple[slice, list[torch.Tensor]]]:
    """(cells, views of each tensor at those cells) for every leading index and block of cells.

    Tensors are contiguous (..., n_cells, k). Off the CPU, one block: the whole tensors.
    """
    if not _in_blocks(tensors[0].device):
        yield slice(None), list(tensors)
        return
    rows = [t.view(-1, n_cells, t.shape[-1]) for t in tensors]
    for lead in range(rows[0].shape[0]):
        for start in range(0, n_cells, CELL_BLOCK):
            cells = slice(start, start + CELL_BLOCK)
            yield cells, [r[lead, cells] for r in rows]


def _in_blocks(device: torch.device) -> bool:
    """Block by block on CPU only: a GPU gains nothing from it and would launch more kernels."""
    return device.type == "cpu"


class NBMeanTermsFromLogits(torch.autograd.Function):
    """Fused per-cell NB mean terms for mu = library * softmax(logits), summed over genes.

    With d = log(mu / theta):  theta log(theta/(theta+mu)) + x log(mu/(theta+mu))
    = x d - (theta + x) softplus(d). The backward pass is written out (dlogmu = x - (theta+x)
    sigmoid(d), then through log_softmax), which saves about a third of the elementwise passes
    autograd would make over the (particles, cells, genes) tensor; its arithmetic runs block by
    block of cells (:data:`CELL_BLOCK`).
    """

    @staticmethod
    def forward(ctx, logits, x, log_library, log_theta):  # type: ignore[override]
        log_rho = F.log_softmax(logits.contiguous(), dim=-1)  # blocks are views
        d = log_rho + (log_library.unsqueeze(-1) - log_theta)
        softplus_d = F.softplus(d)
        theta = log_theta.exp()
        ctx.save_for_backward(log_rho, d, softplus_d, x, theta)
        theta_plus_x = theta + x
        out = logits.new_empty(logits.shape[:-1])
        for cells, (d_, softplus_, out_) in _cell_blocks(
            x.shape[-2], d, softplus_d, out.unsqueeze(-1)
        ):
            terms = x[cells] * d_
            torch.sub(terms, theta_plus_x[cells] * softplus_, out=terms)
            torch.sum(terms, -1, keepdim=True, out=out_)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        log_rho, d, softplus_d, x, theta = ctx.saved_tensors
        p = torch.sigmoid(d)  # mu / (theta + mu)
        g = grad_out.contiguous().unsqueeze(-1)  # an expanded grad_out defeats vectorised loops
        theta_plus_x = theta + x
        g_logits = log_rho.exp()  # rho, overwritten block by block with the gradient
        needs_theta = ctx.needs_input_grad[3]
        per_entry = torch.empty_like(d) if needs_theta else d  # d: a placeholder, never written
        for cells, (p_, softplus_, g_, g_logits_, per_entry_) in _cell_blocks(
            x.shape[-2], p, softplus_d, g, g_logits, per_entry
        ):
            x_ = x[cells]
            g_log_mu = theta_plus_x[cells] * p_
            torch.sub(x_, g_log_mu, out=g_log_mu).mul_(g_)  # (x - (theta + x) p) g
            g_logits_.mul_(g_log_mu.sum(-1, keepdim=True))
            torch.sub(g_log_mu, g_logits_, out=g_logits_)
            if needs_theta:  # (theta (p - softplus(d)) - x (1 - p)) g
                entry = theta * (p_ - softplus_)
                torch.sub(entry, x_ * (1 - p_), out=entry)
                torch.mul(entry, g_, out=per_entry_)
        g_log_theta = per_entry.reshape(-1, theta.shape[-1]).sum(0) if needs_theta else None
        return g_logits, None, None, g_log_theta


# torch's CPU gamma and Poisson samplers run on one thread. Count tensors up to this size (every
# figure in the docs) come from the global generator as before; larger ones, such as the ATE
# chunks at Replogle scale (2e8 entries), are drawn in parts on a thread pool.
ONE_STREAM_MAX = 1 << 26
PART_SIZE = 1 << 22


def nb_sample_in_parts(theta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``negative_binomial.nb_sample`` by row blocks with one seeded generator each, on a
    thread pool; returns (n_rows, n_genes)."""
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
