r"""Conditional VAE: the perturbation enters the decoder as an input, with no global variables.

    z_i ~ Normal(0, I_K);  x_i ~ p_theta(x | decoder([z_i, d_i]), l_i);  q(z_i | x_i, d_i)

With the additive dosage encoding a combination is the sum of its singles' one-hot rows, so the
decoder can be asked about combinations never seen together; nothing in the model makes their
effects add up in a latent space, which is what the paper compares SAMS-VAE against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from samsvae.config import ConditionalVAEConfig
from samsvae.models.records import GlobalSample, LocalTerms
from samsvae.models.sams_vae import SAMSVAEModule
from samsvae.nn import BasalEncoder


class NoGlobals(nn.Module):
    """A stand-in guide for a model without global variables: empty draws, log q = 0."""

    def __init__(self, n_perturbations: int) -> None:
        super().__init__()
        self.register_buffer("_dtype_probe", torch.zeros(0), persistent=False)
        self.n_perturbations = n_perturbations

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Zero-width embeddings and masks for ``index``; log q = 0."""
        empty = self._dtype_probe.new_zeros((n_particles, len(index), 0))
        return GlobalSample(
            index, empty, empty, self._dtype_probe.new_zeros((n_particles, len(index)))
        )

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """None: there are no global variables."""
        return []


class ConditionalVAEModule(SAMSVAEModule):
    """Conditional VAE on the SAMS-VAE trunk: q(z | x, d) and p(x | [z, d])."""

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        config: ConditionalVAEConfig,
        covariate_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__(n_genes, n_perturbations, config, covariate_sizes)  # type: ignore[arg-type]

    @staticmethod
    def build_encoder(
        n_genes: int,
        n_perturbations: int,  # type: ignore[override]
        config: ConditionalVAEConfig,
        n_covariates: int = 0,
    ) -> BasalEncoder:
        """q(z | x, d, c): the dosage row takes the place of the latent shift."""
        return BasalEncoder(
            n_genes,
            config.n_latent,
            config.n_hidden,
            config.n_layers,
            use_shift=True,
            n_condition=n_perturbations,
            n_covariates=n_covariates,
        )

    @staticmethod
    def build_guide(n_perturbations: int, config: ConditionalVAEConfig) -> nn.Module:  # type: ignore[override]
        return NoGlobals(n_perturbations)

    @staticmethod
    def decoder_input_size(n_perturbations: int, config: ConditionalVAEConfig) -> int:  # type: ignore[override]
        """The decoder sees [z, d]."""
        return config.n_latent + n_perturbations

    def global_log_prior(self, sample: GlobalSample) -> torch.Tensor:
        """No global variables."""
        return torch.zeros_like(sample.log_q)

    def mask_probabilities(self) -> torch.Tensor:
        msg = "The conditional VAE has no masks."
        raise TypeError(msg)

    def condition(self, dosage: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scatter dosage columns ``index`` into full rows d (n_rows, n_perturbations)."""
        full = dosage.new_zeros((dosage.shape[0], self.n_perturbations))
        return full.index_copy(1, index, dosage)

    @staticmethod
    def _with_condition(z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The decoder input [z, d]."""
        return torch.cat([z, condition.expand(*z.shape[:-1], -1)], dim=-1)

    def posterior_latent_mean(self, counts, dosage, sample, *, full, covariates=None):  # type: ignore[override]
        condition = self.condition(dosage, sample.index)
        loc, _ = self.encoder(self.normalise(counts), condition, covariates)
        return loc.expand(sample.log_q.shape[0], *loc.shape)

    def local_terms(
        self,
        counts: torch.Tensor,
        dosage: torch.Tensor,
        library_size: torch.Tensor,
        sample: GlobalSample,
        basal_noise: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> LocalTerms:
        """Per-cell ELBO terms, (n_particles, n_cells); P is the particle count of ``sample``."""
        condition = self.condition(dosage, sample.index)
        loc, scale = self.encoder(self.normalise(counts), condition, covariates)  # (B, K)
        if basal_noise is None:
            basal_noise = torch.randn(
                (sample.log_q.shape[0], *loc.shape), dtype=loc.dtype, device=loc.device
            )
        z = loc + scale * basal_noise
        hidden = self.decode(self._with_condition(z, condition), covariates)
        return self.score_locals(
            hidden, counts, library_size, z_basal=z, z_encoded=z, loc=loc, scale=scale
        )

    def generate(  # type: ignore[override]
        self, dosage, sample, library_size, *, share_basal=False, covariates=None, output="counts"
    ):
        """Sample x for dosage rows under each particle, with z ~ N(0, I)."""
        condition = self.condition(dosage, sample.index)
        n_particles = sample.log_q.shape[0]
        rows = 1 if share_basal else condition.shape[0]
        z = torch.randn(
            (n_particles, rows, self.config.n_latent),
            dtype=condition.dtype,
            device=condition.device,
        ).expand(n_particles, condition.shape[0], -1)
        decoder_input = self._with_condition(z, condition)
        return self.sample_counts(decoder_input, library_size, covariates, output=output)
