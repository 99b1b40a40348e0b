"""Typed records passed between models and objectives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from samsvae.models.target_genes import TargetSample


@dataclass(frozen=True)
class GlobalSample:
    """Draws of the global variables for the perturbations in ``index``.

    embeddings, masks: (n_particles, len(index), n_latent); log_q: (n_particles, len(index)),
    log q(e_t | m_t) + log q(m_t) (+ log q(pi_t)) summed over latent dimensions.
    mask_probabilities: the draws of pi_tk, (n_particles, len(index), n_latent), for
    Beta-Bernoulli masks (m_tk | pi_tk ~ Bernoulli(pi_tk)); None for plain Bernoulli masks.
    target: the direct effects on targeted genes (``models.target_genes``), or None.
    """

    index: torch.Tensor
    embeddings: torch.Tensor
    masks: torch.Tensor
    log_q: torch.Tensor
    mask_probabilities: torch.Tensor | None = None
    target: TargetSample | None = None

    @property
    def shifts(self) -> torch.Tensor:
        """e_t * m_t, (n_particles, len(index), n_latent)."""
        return self.embeddings * self.masks

    def repeat_particles(self, repeats: int) -> GlobalSample:
        """Each draw repeated ``repeats`` times along the particle axis (draw-major order)."""

        def repeat(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.repeat_interleave(repeats, dim=0)

        return GlobalSample(
            index=self.index,
            embeddings=repeat(self.embeddings),
            masks=repeat(self.masks),
            log_q=repeat(self.log_q),
            mask_probabilities=repeat(self.mask_probabilities),
            target=None if self.target is None else self.target.repeat_particles(repeats),
        )

    def select(self, positions: torch.Tensor) -> GlobalSample:
        """The sample restricted to ``index[positions]``."""
        return GlobalSample(
            index=self.index[positions],
            embeddings=self.embeddings[:, positions],
            masks=self.masks[:, positions],
            log_q=self.log_q[:, positions],
            mask_probabilities=None
            if self.mask_probabilities is None
            else self.mask_probabilities[:, positions],
            target=None if self.target is None else self.target.select(positions, len(self.index)),
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
