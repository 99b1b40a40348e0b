r"""SAMS-VAE as a pure torch module.

Generative model (Bereket & Karaletsos 2023), for cell i with dosage row d_i:

    z_i^b ~ Normal(0, I_K)                      basal state
    e_t   ~ Normal(0, s_e^2 I_K)                perturbation embedding (global)
    m_tk  ~ Bernoulli(a)                        mask (global); or Beta-Bernoulli:
            pi_tk ~ Beta(a c, (1 - a) c), m_tk | pi_tk ~ Bernoulli(pi_tk)
    z_i   = z_i^b + sum_t d_it (e_t * m_t)      latent state
    x_i   ~ p_theta(x | z_i, l_i, c_i)          decoder + likelihood head

Guide: q(M) q(E | M) (``models.guides``) and q(z_i^b | x_i, shift_i, c_i) (``nn.BasalEncoder``).
c_i are the cell's one-hot covariates (batch, donor), present only when the model is built with
``covariate_sizes``; they enter the first layers of encoder and decoder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from samsvae.config import LIBRARY_QUANTILES, SAMSVAEConfig
from samsvae.distributions import bernoulli_log_prob
from samsvae.models.guides import CorrelatedGuide, MeanFieldGuide, _normal_log_prob
from samsvae.models.records import GlobalSample, LocalTerms
from samsvae.models.target_genes import TargetGeneEffects, target_pairs
from samsvae.nn import LIKELIHOOD_HEADS, BasalEncoder, ResidualMLP
from samsvae.nn.networks import required_covariates

#: What :meth:`SAMSVAEModule.generate` returns: drawn counts, or their mean or log mean.
CountOutput = Literal["counts", "mean", "log_mean"]


def _standard_normal_log_prob(value: torch.Tensor) -> torch.Tensor:
    return -0.5 * value**2 - 0.5 * math.log(2 * math.pi)


class SAMSVAEModule(nn.Module):
    """SAMS-VAE model and guide for ``n_genes`` genes and ``n_perturbations`` perturbations.

    Buffers (saved with the weights): ``gene_mean``/``gene_scale`` normalise the encoder input
    (``gene_scale`` > 0, the floored training std),
    ``n_cells_per_perturbation`` holds n_t of the training cells (the plate sizes of the global
    terms), ``reference_library_size`` is the median training library size used by ``predict``,
    ``library_size_quantiles`` the 0-100% quantiles of the training control cells' library sizes
    (:meth:`draw_library_sizes`).
    ``covariate_sizes`` gives the number of categories of each covariate key; with covariates,
    ``covariate_frequencies`` holds each category's share of the training cells, key by key.
    """

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        config: SAMSVAEConfig,
        covariate_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.config = config
        self.n_genes = n_genes
        self.n_perturbations = n_perturbations
        self.covariate_sizes = tuple(int(size) for size in covariate_sizes)
        h, n_layers = config.n_hidden, config.n_layers
        self.guide = self.build_guide(n_perturbations, config)
        self.encoder = self.build_encoder(n_genes, n_perturbations, config, self.n_covariates)
        self.decoder = ResidualMLP(self.decoder_input_size(n_perturbations, config), h, n_layers)
        self.likelihood = LIKELIHOOD_HEADS[config.likelihood](h, n_genes)
        self.register_buffer("gene_mean", torch.zeros(n_genes))
        self.register_buffer("gene_scale", torch.ones(n_genes))
        self.register_buffer("n_cells_per_perturbation", torch.zeros(n_perturbations))
        self.register_buffer("reference_library_size", torch.tensor(1e4))
        self.register_buffer("library_size_quantiles", torch.full((LIBRARY_QUANTILES,), 1e4))
        pairs = target_pairs(getattr(config, "target_genes", None), (), ())
        self.target_effects = (
            TargetGeneEffects(pairs, n_perturbations, config.target_effect_prior_scale)
            if pairs
            else None
        )
        self.decoder_covariates = None
        if self.n_covariates:  # no extra weights or buffers (nor draws at init) without covariates
            self.decoder_covariates = nn.Linear(self.n_covariates, h, bias=False)
            uniform = [torch.full((size,), 1.0 / size) for size in self.covariate_sizes]
            self.register_buffer("covariate_frequencies", torch.cat(uniform))

    @property
    def n_covariates(self) -> int:
        """Width of the one-hot covariate rows (0 without covariates)."""
        return sum(self.covariate_sizes)

    @staticmethod
    def build_guide(n_perturbations: int, config: SAMSVAEConfig) -> nn.Module:
        """q(M) q(E | M): mean-field or correlated, as ``config.guide`` says; the correlated
        guide's network has ``config.guide_network_size``."""
        beta_prior = config.mask_beta_prior
        if config.guide == "mean_field":
            return MeanFieldGuide(
                n_perturbations, config.n_latent, config.gumbel_temperature, beta_prior=beta_prior
            )
        n_hidden, n_layers = config.guide_network_size
        return CorrelatedGuide(
            n_perturbations,
            config.n_latent,
            config.gumbel_temperature,
            n_hidden=n_hidden,
            n_layers=n_layers,
            beta_prior=beta_prior,
        )

    @staticmethod
    def build_encoder(
        n_genes: int, n_perturbations: int, config: SAMSVAEConfig, n_covariates: int = 0
    ) -> BasalEncoder:
        """q(z_basal | x, shift, c), or q(z_basal | x, c) when ``encoder_input == "x"``."""
        return BasalEncoder(
            n_genes,
            config.n_latent,
            config.n_hidden,
            config.n_layers,
            use_shift=config.encoder_input == "x_and_shift",
            n_covariates=n_covariates,
        )

    @staticmethod
    def decoder_input_size(n_perturbations: int, config: SAMSVAEConfig) -> int:
        """The decoder sees z (n_latent)."""
        return config.n_latent

    def mask_log_prior(self, sample: GlobalSample) -> torch.Tensor:
        """log p(m) = log Bernoulli(m | mask_prior), or log p(pi) + log p(m | pi) for
        Beta-Bernoulli masks; elementwise, (n_particles, len(index), n_latent)."""
        masks, pi = sample.masks, sample.mask_probabilities
        if pi is None:
            prior_logit = torch.logit(torch.tensor(self.config.mask_prior, dtype=masks.dtype))
            return bernoulli_log_prob(masks, prior_logit)
        alpha, beta = (torch.tensor(v, dtype=pi.dtype) for v in self.config.mask_beta_prior)
        p_pi = torch.distributions.Beta(alpha.to(pi.device), beta.to(pi.device))
        return p_pi.log_prob(pi) + bernoulli_log_prob(masks, torch.logit(pi))

    def embedding_log_prior(self, embeddings: torch.Tensor) -> torch.Tensor:
        """log p(e) = log Normal(e | 0, embedding_prior_scale^2), elementwise."""
        scale = torch.tensor(self.config.embedding_prior_scale, dtype=embeddings.dtype)
        return _normal_log_prob(embeddings, torch.zeros_like(scale), scale)

    # --- inputs -------------------------------------------------------------------------------
    def transform_expression(self, x: torch.Tensor) -> torch.Tensor:
        """log1p for count likelihoods, identity for ``normal``; before standardisation."""
        return torch.log1p(x) if self.likelihood.uses_counts else x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(transform(x) - mean) / scale with per-gene training statistics; the scale is the
        training std floored away from 0 (``data.loaders.encoder_scale``), so a gene constant
        in training gives a bounded input on new cells."""
        return (self.transform_expression(x) - self.gene_mean) / self.gene_scale

    def draw_library_sizes(self, n: int) -> torch.Tensor:
        """``n`` library sizes from the training control cells' depth distribution (inverse CDF
        of ``library_size_quantiles``, interpolated linearly), (n, 1) for one per particle."""
        quantiles = self.library_size_quantiles
        position = torch.rand(n, device=quantiles.device) * (len(quantiles) - 1)
        lower = position.floor().long().clamp(max=len(quantiles) - 2)
        fraction = position - lower
        sizes = quantiles[lower] * (1 - fraction) + quantiles[lower + 1] * fraction
        return sizes.unsqueeze(-1)

    # --- covariates ---------------------------------------------------------------------------
    def decode(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder trunk output for z (..., decoder input) and one-hot covariates broadcastable
        to (..., n_covariates); the covariates are added to the first layer's pre-activation."""
        if self.decoder_covariates is None:
            return self.decoder(z)
        pre = self.decoder.input_layer(z) + self.decoder_covariates(
            required_covariates(covariates)
        )
        return self.decoder.forward_hidden(pre)

    def draw_covariates(self, n_particles: int, like: torch.Tensor) -> torch.Tensor | None:
        """One covariate row per particle, each key's category drawn from its training share;
        (n_particles, 1, n_covariates) in ``like``'s dtype and device, None without covariates."""
        if not self.n_covariates:
            return None
        blocks = [
            F.one_hot(torch.multinomial(shares, n_particles, replacement=True), len(shares))
            for shares in self.covariate_frequencies.split(self.covariate_sizes)
        ]
        return torch.cat(blocks, -1).to(like).unsqueeze(1)

    def average_covariates(self) -> torch.Tensor | None:
        """The training cells' mean one-hot covariate row (n_covariates,), None without."""
        return self.covariate_frequencies if self.n_covariates else None

    # --- global variables ---------------------------------------------------------------------
    def sample_globals(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Draw (E, M) ~ q for perturbations ``index``."""
        sample = self.guide.sample(index, n_particles, generator)
        if self.target_effects is None:
            return sample
        target = self.target_effects.sample(index, n_particles, generator)
        return dataclasses.replace(sample, log_q=sample.log_q + target.log_q, target=target)

    def global_log_prior(self, sample: GlobalSample) -> torch.Tensor:
        """log p(e_t) + log p(m_t) summed over latents (+ log p(beta_t) of the direct effects on
        targeted genes), (n_particles, len(index))."""
        log_prior = (
            self.mask_log_prior(sample) + self.embedding_log_prior(sample.embeddings)
        ).sum(-1)
        return log_prior if sample.target is None else log_prior + sample.target.log_p

    def target_offset(self, dosage: torch.Tensor, sample: GlobalSample) -> torch.Tensor | None:
        """sum_t d_it beta_tg on the decoder's output for rows ``dosage`` (n, len(index)):
        (n_particles, n, n_genes), or None without direct effects on targeted genes."""
        return None if sample.target is None else sample.target.offset(dosage, self.n_genes)

    def mask_probabilities(self) -> torch.Tensor:
        """q(m_tk = 1), (n_perturbations, n_latent)."""
        return self.guide.mask_probabilities()

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The guide's parameters with one entry per perturbation (mask logits, embedding
        parameters or table rows), which training gives ``global_lr``."""
        direct = [] if self.target_effects is None else list(self.target_effects.parameters())
        return [*self.guide.per_perturbation_parameters(), *direct]

    # --- local variables ----------------------------------------------------------------------
    def latent_shift(self, dosage: torch.Tensor, sample: GlobalSample) -> torch.Tensor:
        """sum_t d_it e_t * m_t for dosage (n_cells, len(index)) -> (n_particles, n_cells, K)."""
        return torch.matmul(dosage, sample.shifts)

    def encode(
        self,
        counts: torch.Tensor,
        shift: torch.Tensor | None,
        covariates: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """loc, scale of q(z_basal | x, shift, c); (n_particles, n_cells, K) or (n_cells, K)."""
        return self.encoder(self.normalise(counts), shift, covariates)

    def posterior_latent_mean(
        self,
        counts: torch.Tensor,
        dosage: torch.Tensor,
        sample: GlobalSample,
        *,
        full: bool,
        covariates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean of q(z_basal | .) (or of z = z_basal + shift when ``full``) per global draw.

        Returns (n_particles, n_cells, n_latent).
        """
        shift = self.latent_shift(dosage, sample)
        loc, _ = self.encode(counts, shift, covariates)
        return loc.expand_as(shift) + (shift if full else 0)

    def local_terms(
        self,
        counts: torch.Tensor,
        dosage: torch.Tensor,
        library_size: torch.Tensor,
        sample: GlobalSample,
        basal_noise: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> LocalTerms:
        """Per-cell ELBO terms for one particle per global draw.

        counts (n_cells, n_genes); dosage (n_cells, len(sample.index)); library_size (n_cells,);
        basal_noise (n_particles, n_cells, K) fixes the reparameterisation noise when given;
        covariates (n_cells, n_covariates) for a model with covariates.
        """
        shift = self.latent_shift(dosage, sample)  # (P, B, K)
        loc, scale = self.encode(counts, shift, covariates)
        loc, scale = loc.expand_as(shift), scale.expand_as(shift)
        if basal_noise is None:
            basal_noise = torch.randn_like(shift)
        z_basal = loc + scale * basal_noise
        hidden = self.decode(z_basal + shift, covariates)  # (P, B, H): one GEMM, particles x cells
        return self.score_locals(
            hidden,
            counts,
            library_size,
            z_basal=z_basal,
            z_encoded=z_basal,
            loc=loc,
            scale=scale,
            offset=self.target_offset(dosage, sample),
        )

    def score_locals(
        self,
        hidden: torch.Tensor,
        counts: torch.Tensor,
        library_size: torch.Tensor,
        *,
        z_basal: torch.Tensor,
        z_encoded: torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor,
        offset: torch.Tensor | None = None,
    ) -> LocalTerms:
        """log p(x | decoder hidden state), log N(z_basal; 0, I), log q(z_encoded) = log N(loc,
        scale); ``z_encoded`` is the variable the encoder parameterizes (z_basal here)."""
        log_likelihood = self.likelihood.data_terms(counts) + self.likelihood.mean_terms(
            hidden, counts, library_size.log(), offset
        )
        return LocalTerms(
            log_likelihood=log_likelihood,
            log_p_basal=_standard_normal_log_prob(z_basal).sum(-1),
            log_q_basal=_normal_log_prob(z_encoded, loc, scale).sum(-1),
        )

    # --- generation ---------------------------------------------------------------------------
    def generate(
        self,
        dosage: torch.Tensor,
        sample: GlobalSample,
        library_size: float | torch.Tensor,
        *,
        share_basal: bool = False,
        covariates: torch.Tensor | None = None,
        output: CountOutput = "counts",
    ) -> torch.Tensor:
        """Sample x for dosage rows (n_rows, len(index)) under each global draw, with z_b ~ p.

        ``share_basal`` draws one z_b per particle for all rows (common random numbers) instead of
        one per row and particle. ``covariates`` (broadcastable to (n_particles, n_rows,
        n_covariates)) fixes the covariates; by default each particle draws them from the
        training shares (:meth:`draw_covariates`). ``output="mean"`` returns E[x | z, l, c] (the
        likelihood's mean) instead of a draw of x, ``"log_mean"`` its log (count likelihoods).
        Returns (n_particles, n_rows, n_genes).
        """
        shift = self.latent_shift(dosage, sample)
        basal_shape = (shift.shape[0], 1, shift.shape[2]) if share_basal else shift.shape
        z = torch.randn(basal_shape, dtype=shift.dtype, device=shift.device) + shift
        offset = self.target_offset(dosage, sample)
        return self.sample_counts(z, library_size, covariates, offset, output=output)

    def sample_counts(
        self,
        decoder_input: torch.Tensor,
        library_size: float | torch.Tensor,
        covariates: torch.Tensor | None,
        offset: torch.Tensor | None = None,
        *,
        output: CountOutput = "counts",
    ) -> torch.Tensor:
        """x ~ p(x | decoder_input, library, c) for decoder_input (P, R, ·), or its mean or log
        mean (``output``, as in :meth:`generate`); covariates drawn per particle when None
        (models with covariates). Returns (P, R, n_genes)."""
        if covariates is None:
            covariates = self.draw_covariates(decoder_input.shape[0], decoder_input)
        log_library = torch.as_tensor(library_size).to(decoder_input).log()
        hidden = self.decode(decoder_input, covariates)
        log_library = log_library.expand(decoder_input.shape[:-1])
        if output == "mean":
            return self.likelihood.mean(hidden, log_library, offset)
        if output == "log_mean":
            return self.likelihood.log_mean(hidden, log_library, offset)
        return self.likelihood.sample(hidden, log_library, offset)
