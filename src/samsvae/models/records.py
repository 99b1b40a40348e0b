"""Typed records passed between models and objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GlobalSample:
    """Draws of the global variables for the perturbations in ``index``.

    embeddings, masks: (n_particles, len(index), n_latent); log_q: (n_particles, len(index)),
    log q(e_t | m_t) + log q(m_t) summed over latent dimensions.
    """

    index: torch.Tensor
    embeddings: torch.Tensor
    masks: torch.Tensor
    log_q: torch.Tensor

    @property
    def shifts(self) -> torch.Tensor:
        """e_t * m_t, (n_particles, len(index), n_latent)."""
        return self.embeddings * self.masks

    def select(self, positions: torch.Tensor) -> GlobalSample:
        """The sample restricted to ``index[positions]``."""
        return GlobalSample(
            index=self.index[positions],
            embeddings=self.embeddings[:, positions],
            masks=self.masks[:, positions],
            log_q=self.log_q[:, positions],
        )


@dataclass(frozen=True)
class LocalTerms:
    """Per-cell, per-particle terms of the ELBO, each (n_particles, n_cells)."""

    log_likelihood: torch.Tensor
    log_p_basal: torch.Tensor
    log_q_basal: torch.Tensor

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x|z) + log p(z_basal) - log q(z_basal|.), (n_particles, n_cells)."""
        return self.log_likelihood + self.log_p_basal - self.log_q_basal
