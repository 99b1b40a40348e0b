r"""SVAE+ (Lopez et al. 2022, sparse mechanism shift), as the SAMS-VAE paper compares against.

    pi_tk ~ Beta(1, c);  m_tk | pi_tk ~ Bernoulli(pi_tk)             sparse masks (global)
    mu_t  learned per-perturbation shift (a point estimate, no prior)
    z_i   ~ Normal(m_t(i) * mu_t(i), I_K)                             t(i): the cell's one label
    x_i   ~ p_theta(x | z_i, l_i)

c = ``mask_prior_beta`` (the SAMS-VAE paper sweeps 2, 5 and 10). Guide: a point mass on
pi_tk = sigmoid(psi_tk) (a MAP estimate: log p(pi) is a penalty on it, and there is no log q(pi)),
q(m_tk) = Bernoulli(sigmoid(phi_tk)) sampled straight-through as in SAMS-VAE, and q(z_i | x_i)
from an encoder that sees x only. The global term of perturbation t is therefore

    sum_k  log Beta(pi_tk; 1, c) + log Bern(m_tk; pi_tk) - log Bern(m_tk; sigmoid(phi_tk)).

Each cell carries at most one perturbation, so a combination is a label of its own (the
"unique" encoding) and an unseen combination has nothing to compose from. Writing
z = z_basal + m * mu with z_basal ~ Normal(0, I), generation is that of SAMS-VAE with the
embeddings fixed at mu.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from samsvae.config import SVAEPlusConfig
from samsvae.distributions import bernoulli_log_prob
from samsvae.models.guides import _MaskGuide
from samsvae.models.records import GlobalSample, LocalTerms
from samsvae.models.sams_vae import SAMSVAEModule
from samsvae.nn import BasalEncoder


class SparseShiftGuide(_MaskGuide):
    """Parameterizes q(M) and the point estimates pi_t = sigmoid(psi_t) and mu_t.

    ``pi_logits`` (psi) start at the prior mean of pi, 1 / (1 + ``mask_prior_beta``);
    ``shift_loc`` (mu) starts at standard normal draws.
    """

    def __init__(
        self,
        n_perturbations: int,
        n_latent: int,
        temperature: float,
        *,
        mask_prior_beta: float,
    ) -> None:
        super().__init__(n_perturbations, n_latent, temperature)
        shape = (n_perturbations, n_latent)
        # logit(1 / (1 + c)) = -log c
        self.pi_logits = nn.Parameter(torch.full(shape, -math.log(mask_prior_beta)))
        # mu starts away from 0: at mu_t = 0 a mask changes nothing in the likelihood, so the
        # mask logits would hear only the prior's pull towards 0, and a mask switched off stops
        # mu_t's gradient. Standard normal draws give the shifts the spread SAMS-VAE's shifts
        # have at the start, where e_t is drawn from q(e_t) = Normal(0, 1).
        self.shift_loc = nn.Parameter(torch.randn(shape))

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The mask logits, pi's logits and the shifts."""
        return [*super().per_perturbation_parameters(), self.pi_logits, self.shift_loc]

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Draw M for perturbations ``index``; pi and the embeddings (mu) are point estimates.

        log q holds log q(m) alone (a point mass has no density term).
        """
        masks, _, log_q = self._sample_masks(index, n_particles, generator)
        pi = torch.sigmoid(self.pi_logits[index]).expand_as(masks)
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
            mask_prior_beta=config.mask_prior_beta,
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

    def mask_log_prior(self, sample: GlobalSample) -> torch.Tensor:
        """log Beta(pi; 1, c) + log Bernoulli(m | pi) at the point estimate pi = sigmoid(psi);
        elementwise, (n_particles, len(index), n_latent)."""
        psi = self.guide.pi_logits[sample.index]  # (T_b, K)
        c = self.config.mask_prior_beta
        # log Beta(pi; 1, c) = log c + (c - 1) log(1 - pi), and log(1 - pi) = log sigmoid(-psi)
        log_p_pi = math.log(c) + (c - 1) * F.logsigmoid(-psi)
        return log_p_pi + bernoulli_log_prob(sample.masks, psi)

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
