r"""SVAE+ (Lopez et al. 2022, sparse mechanism shift), as the SAMS-VAE paper compares against.

    pi_tk ~ Beta(alpha, beta);  m_tk | pi_tk ~ Bernoulli(pi_tk)       Beta-Bernoulli masks (global)
    mu_t  learned per-perturbation shift (a point estimate, no prior)
    z_i   ~ Normal(m_t(i) * mu_t(i), I_K)                             t(i): the cell's one label
    x_i   ~ p_theta(x | z_i, l_i)

Guide: q(pi) q(m) (Beta and straight-through Bernoulli, as SAMS-VAE's Beta-Bernoulli variant) and
q(z_i | x_i) from an encoder that sees x only. Each cell carries at most one perturbation, so a
combination is a label of its own (the "unique" encoding) and an unseen combination has nothing
to compose from. Writing z = z_basal + m * mu with z_basal ~ Normal(0, I), generation is that of
SAMS-VAE with the embeddings fixed at mu.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from samsvae.config import SVAEPlusConfig
from samsvae.models.guides import _MaskGuide
from samsvae.models.records import GlobalSample, LocalTerms
from samsvae.models.sams_vae import SAMSVAEModule
from samsvae.nn import BasalEncoder


class SparseShiftGuide(_MaskGuide):
    """Parameterizes q(pi) q(M); the shifts mu_t are learned point estimates (init 0)."""

    def __init__(
        self,
        n_perturbations: int,
        n_latent: int,
        temperature: float,
        *,
        beta_prior: tuple[float, float],
    ) -> None:
        super().__init__(n_perturbations, n_latent, temperature, beta_prior=beta_prior)
        self.shift_loc = nn.Parameter(torch.zeros(n_perturbations, n_latent))

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Draw (pi, M) for perturbations ``index``; the embeddings are mu, not random."""
        masks, pi, log_q = self._sample_masks(index, n_particles, generator)
        return GlobalSample(index, self.shift_loc[index].expand_as(masks), masks, log_q, pi)


class SVAEPlusModule(SAMSVAEModule):
    """SVAE+ on the SAMS-VAE trunk: q(z | x), p(z | t) = Normal(m_t * mu_t, I), p(x | z)."""

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        config: SVAEPlusConfig,
        covariate_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__(n_genes, n_perturbations, config, covariate_sizes)  # type: ignore[arg-type]

    @staticmethod
    def build_guide(n_perturbations: int, config: SVAEPlusConfig) -> nn.Module:  # type: ignore[override]
        return SparseShiftGuide(
            n_perturbations,
            config.n_latent,
            config.gumbel_temperature,
            beta_prior=config.mask_beta_prior,  # type: ignore[arg-type]
        )

    @staticmethod
    def build_encoder(
        n_genes: int,
        n_perturbations: int,  # type: ignore[override]
        config: SVAEPlusConfig,
        n_covariates: int = 0,
    ) -> BasalEncoder:
        """q(z | x, c): the encoder sees x (and covariates) only, not the perturbation."""
        return BasalEncoder(
            n_genes,
            config.n_latent,
            config.n_hidden,
            config.n_layers,
            use_shift=False,
            n_covariates=n_covariates,
        )

    def embedding_log_prior(self, embeddings: torch.Tensor) -> torch.Tensor:
        """mu is a point estimate: no prior term."""
        return torch.zeros_like(embeddings)

    def posterior_latent_mean(self, counts, dosage, sample, *, full, covariates=None):  # type: ignore[override]
        """Mean of q(z | x) (``full``) or of z - m * mu, per global draw; (P, n_cells, K)."""
        shift = self.latent_shift(dosage, sample)
        loc, _ = self.encode(counts, None, covariates)
        return loc.expand_as(shift) - (0 if full else shift)

    def local_terms(
        self,
        counts: torch.Tensor,
        dosage: torch.Tensor,
        library_size: torch.Tensor,
        sample: GlobalSample,
        basal_noise: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> LocalTerms:
        """Per-cell terms log p(x|z), log p(z | t) = log N(z; m * mu, I), log q(z | x); (P, B)."""
        shift = self.latent_shift(dosage, sample)  # (P, B, K)
        loc, scale = self.encode(counts, None, covariates)  # (B, K): the same for every particle
        if basal_noise is None:
            basal_noise = torch.randn_like(shift)
        z = loc + scale * basal_noise
        # log N(z; m * mu, I) = log N(z - m * mu; 0, I)
        return self.score_locals(
            self.decode(z, covariates),
            counts,
            library_size,
            z_basal=z - shift,
            z_encoded=z,
            loc=loc,
            scale=scale,
        )
