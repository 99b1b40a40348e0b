r"""CPA-VAE: SAMS-VAE with every mask fixed to 1, the paper's "no sparsity" ablation.

    z_i^b ~ Normal(0, I_K);  e_t ~ Normal(0, s_e^2 I_K);  z_i = z_i^b + sum_t d_it e_t;
    x_i ~ p_theta(x | z_i, l_i)

Guide: mean-field q(E) and the same basal encoder as SAMS-VAE. There is no mask variable, so no
mask prior or guide term enters the ELBO.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from samsvae.config import CPAVAEConfig
from samsvae.models.guides import (
    _normal_log_prob,
    mean_field_embedding_distribution,
    mean_field_embedding_parameters,
)
from samsvae.models.records import GlobalSample
from samsvae.models.sams_vae import SAMSVAEModule


class UnmaskedGuide(nn.Module):
    """Parameterizes q(E) with independent Normals; masks are constant ones."""

    def __init__(self, n_perturbations: int, n_latent: int) -> None:
        super().__init__()
        self.embedding_loc, self.embedding_scale_raw = mean_field_embedding_parameters(
            n_perturbations, n_latent
        )

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Draw E for perturbations ``index``; masks are all ones and add nothing to log q."""
        loc, scale = mean_field_embedding_distribution(
            self.embedding_loc, self.embedding_scale_raw, index
        )
        noise = torch.randn(
            (n_particles, *loc.shape), generator=generator, dtype=loc.dtype, device=loc.device
        )
        embeddings = loc + scale * noise
        log_q = _normal_log_prob(embeddings, loc, scale).sum(-1)
        return GlobalSample(index, embeddings, torch.ones_like(embeddings), log_q)

    def mask_probabilities(self) -> torch.Tensor:
        """Every mask is 1."""
        return torch.ones_like(self.embedding_loc)

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The embeddings' loc and raw scale."""
        return [self.embedding_loc, self.embedding_scale_raw]


class CPAVAEModule(SAMSVAEModule):
    """CPA-VAE: the SAMS-VAE module with :class:`UnmaskedGuide` and no mask prior."""

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        config: CPAVAEConfig,
        covariate_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__(n_genes, n_perturbations, config, covariate_sizes)  # type: ignore[arg-type]

    @staticmethod
    def build_guide(n_perturbations: int, config: CPAVAEConfig) -> nn.Module:  # type: ignore[override]
        return UnmaskedGuide(n_perturbations, config.n_latent)

    def mask_log_prior(self, sample: GlobalSample) -> torch.Tensor:
        """No mask variable: contributes 0."""
        return torch.zeros_like(sample.masks)
