"""Likelihood heads: map the decoder trunk's output to an observation distribution.

Each head splits log p(x | h) into ``data_terms(x)`` (independent of the decoder output, so
computed once per batch, not per particle) and ``mean_terms(h, x, log_library)`` (per particle).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsvae.distributions import nb_data_terms, nb_mean_terms_from_logits, nb_sample
from samsvae.nn.networks import wide_linear

VARIANCE_FLOOR = 1e-4
#: Per-gene additive offsets of the head's output, or None.
Offset = torch.Tensor | None


def _plus_offset(values: torch.Tensor, offset: Offset) -> torch.Tensor:
    return values if offset is None else values + offset


class LikelihoodHead(nn.Module):
    """Interface of an observation model p(x | decoder output, library size)."""

    uses_counts: bool = True

    def data_terms(self, x: torch.Tensor) -> torch.Tensor:
        """Per-cell terms of log p(x|·) that do not depend on the decoder output; (n_cells,)."""
        raise NotImplementedError

    def mean_terms(
        self, h: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        """Per-cell remaining terms, h (..., n_cells, n_hidden) -> (..., n_cells).

        ``offset`` (broadcastable to (..., n_cells, n_genes)) is added to the per-gene output
        (the logits of count heads, the mean of ``normal``): direct effects on single genes.
        """
        raise NotImplementedError

    def log_prob(
        self, h: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        """Full log p(x | h), summed over genes; (..., n_cells)."""
        return self.data_terms(x) + self.mean_terms(h, x, log_library, offset)

    def mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        """Expected expression, (..., n_cells, n_genes)."""
        raise NotImplementedError

    def log_mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        """log of :meth:`mean` (count likelihoods, whose mean is positive)."""
        return self.mean(h, log_library, offset).log()

    def sample(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        """One draw of x per cell (global RNG), (..., n_cells, n_genes)."""
        raise NotImplementedError


class NegativeBinomialHead(LikelihoodHead):
    """mu = library * softmax(W h + b); per-gene inverse dispersion theta_g shared by all cells."""

    def __init__(self, n_hidden: int, n_genes: int) -> None:
        super().__init__()
        self.logits = nn.Linear(n_hidden, n_genes)
        self.log_theta = nn.Parameter(torch.zeros(n_genes))

    def _logits(self, h: torch.Tensor, offset: Offset) -> torch.Tensor:
        return _plus_offset(wide_linear(h, self.logits), offset)

    def _log_mu(self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset) -> torch.Tensor:
        return log_library.unsqueeze(-1) + F.log_softmax(self._logits(h, offset), dim=-1)

    def data_terms(self, x: torch.Tensor) -> torch.Tensor:
        return nb_data_terms(x, self.log_theta).sum(-1)

    def mean_terms(
        self, h: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return nb_mean_terms_from_logits(self._logits(h, offset), x, log_library, self.log_theta)

    def mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return self._log_mu(h, log_library, offset).exp()

    def log_mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return self._log_mu(h, log_library, offset)

    def sample(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return nb_sample(self._log_mu(h, log_library, offset), self.log_theta)


class PoissonHead(LikelihoodHead):
    """rate = library * softmax(W h + b)."""

    def __init__(self, n_hidden: int, n_genes: int) -> None:
        super().__init__()
        self.logits = nn.Linear(n_hidden, n_genes)

    def _log_rate(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset
    ) -> torch.Tensor:
        logits = _plus_offset(self.logits(h), offset)
        return log_library.unsqueeze(-1) + F.log_softmax(logits, dim=-1)

    def data_terms(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.lgamma(x + 1).sum(-1)

    def mean_terms(
        self, h: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        log_rate = self._log_rate(h, log_library, offset)
        return (x * log_rate - log_rate.exp()).sum(-1)

    def mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return self._log_rate(h, log_library, offset).exp()

    def log_mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return self._log_rate(h, log_library, offset)

    def sample(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return torch.poisson(self.mean(h, log_library, offset))


class NormalHead(LikelihoodHead):
    """Normal(loc, exp(log_var) + 1e-4) per gene; for log-normalised or simulated values."""

    uses_counts = False

    def __init__(self, n_hidden: int, n_genes: int) -> None:
        super().__init__()
        self.loc = nn.Linear(n_hidden, n_genes)
        self.log_var = nn.Linear(n_hidden, n_genes)

    def data_terms(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full(
            x.shape[:-1],
            -0.5 * math.log(2 * math.pi) * x.shape[-1],
            dtype=x.dtype,
            device=x.device,
        )

    def mean_terms(
        self, h: torch.Tensor, x: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        var = self.log_var(h).exp() + VARIANCE_FLOOR
        return (-0.5 * (x - self.mean(h, log_library, offset)) ** 2 / var - 0.5 * var.log()).sum(
            -1
        )

    def mean(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        return _plus_offset(self.loc(h), offset)

    def sample(
        self, h: torch.Tensor, log_library: torch.Tensor, offset: Offset = None
    ) -> torch.Tensor:
        var = self.log_var(h).exp() + VARIANCE_FLOOR
        return self.mean(h, log_library, offset) + var.sqrt() * torch.randn_like(var)


LIKELIHOOD_HEADS: dict[str, type[LikelihoodHead]] = {
    "nb": NegativeBinomialHead,
    "poisson": PoissonHead,
    "normal": NormalHead,
}
