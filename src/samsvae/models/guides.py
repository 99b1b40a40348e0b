"""Guides for the global variables q(M) q(E | M) of SAMS-VAE.

q(m_tk) = Bernoulli(sigmoid(phi_tk)), sampled with straight-through binary concrete (phi init 0).
Beta-Bernoulli masks (pi_tk ~ Beta(alpha, beta), m_tk | pi_tk ~ Bernoulli(pi_tk)) add a mean-field
q(pi_tk) = Beta(a_tk, b_tk), initialised at the prior and reparameterised (implicit gradients).
Mean-field: q(e_tk) = Normal(loc_tk, scale_tk) (loc init 0, scale init 1).
Correlated: q(e_t | m_t) = Normal(g(m_t, t)), g an MLP fed the mask row and a learned
per-perturbation embedding (O(T * n_hidden) parameters instead of a T x T one-hot); it starts
where the mean-field guide does (every mean 0, every scale 1).

Each guide lists its per-perturbation parameters (``per_perturbation_parameters``): those a
minibatch updates only when it carries their perturbation, which training may give their own
learning rate. A network shared by all perturbations is not among them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samsvae.distributions import bernoulli_log_prob, sample_straight_through_bernoulli
from samsvae.models.records import GlobalSample
from samsvae.nn.encoders import SCALE_FLOOR
from samsvae.nn.networks import ResidualMLP

_SOFTPLUS_INVERSE_OF_ONE = math.log(math.e - 1)


def _normal_log_prob(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)


def mean_field_embedding_parameters(
    n_perturbations: int, n_latent: int
) -> tuple[nn.Parameter, nn.Parameter]:
    """Loc (init 0) and raw scale (softplus gives 1) of independent Normal embeddings."""
    loc = nn.Parameter(torch.zeros(n_perturbations, n_latent))
    scale_raw = nn.Parameter(torch.full((n_perturbations, n_latent), _SOFTPLUS_INVERSE_OF_ONE))
    return loc, scale_raw


def mean_field_embedding_distribution(
    loc: torch.Tensor, scale_raw: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """loc, scale of q(e_t) for perturbations ``index``, each (len(index), n_latent)."""
    return loc[index], F.softplus(scale_raw[index]) + SCALE_FLOOR


def _softplus_inverse(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class _MaskGuide(nn.Module):
    """Holds the mask logits shared by every masked guide and samples q(M) (and q(pi)).

    ``beta_prior=(alpha, beta)`` makes the masks Beta-Bernoulli: q(pi_tk) = Beta(a_tk, b_tk) with
    a, b initialised at the prior's alpha, beta.
    """

    def __init__(
        self,
        n_perturbations: int,
        n_latent: int,
        temperature: float,
        *,
        beta_prior: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.mask_logits = nn.Parameter(torch.zeros(n_perturbations, n_latent))
        self.temperature = temperature
        self.inclusion_raw: nn.Parameter | None = None
        self.exclusion_raw: nn.Parameter | None = None
        if beta_prior is not None:
            shape = (n_perturbations, n_latent)
            alpha, beta = (_softplus_inverse(value) for value in beta_prior)
            self.inclusion_raw = nn.Parameter(torch.full(shape, alpha))
            self.exclusion_raw = nn.Parameter(torch.full(shape, beta))

    def _sample_masks(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """masks (P, T_b, K), pi (P, T_b, K) or None, log q(m) [+ log q(pi)] (P, T_b)."""
        logits = self.mask_logits[index]  # (T_b, K)
        masks, _ = sample_straight_through_bernoulli(
            logits, (n_particles,), temperature=self.temperature, generator=generator
        )
        log_q = bernoulli_log_prob(masks, logits).sum(-1)
        if self.inclusion_raw is None or self.exclusion_raw is None:
            return masks, None, log_q
        q_pi = torch.distributions.Beta(
            F.softplus(self.inclusion_raw[index]), F.softplus(self.exclusion_raw[index])
        )
        eps = torch.finfo(logits.dtype).eps
        pi = q_pi.rsample((n_particles,)).clamp(eps, 1 - eps)  # global RNG: Beta takes none
        return masks, pi, log_q + q_pi.log_prob(pi).sum(-1)

    def mask_probabilities(self) -> torch.Tensor:
        """q(m_tk = 1), (n_perturbations, n_latent)."""
        return torch.sigmoid(self.mask_logits)

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The mask logits (and q(pi)'s raw parameters): one row per perturbation."""
        beta = [p for p in (self.inclusion_raw, self.exclusion_raw) if p is not None]
        return [self.mask_logits, *beta]

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> GlobalSample:
        """Draw (E, M) for perturbations ``index`` with ``n_particles`` independent copies."""
        masks, pi, log_q_masks = self._sample_masks(index, n_particles, generator)
        loc, scale = self.embedding_distribution(index, masks)
        noise = torch.randn(
            masks.shape, generator=generator, dtype=masks.dtype, device=masks.device
        )
        embeddings = loc + scale * noise
        log_q_embeddings = _normal_log_prob(embeddings, loc, scale).sum(-1)
        return GlobalSample(index, embeddings, masks, log_q_masks + log_q_embeddings, pi)

    def embedding_distribution(
        self, index: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """loc, scale of q(e_t | m_t), broadcastable to (P, T_b, K)."""
        raise NotImplementedError


class MeanFieldGuide(_MaskGuide):
    """Parameterizes q(M) q(E) with independent Normal embeddings."""

    def __init__(
        self,
        n_perturbations: int,
        n_latent: int,
        temperature: float,
        *,
        beta_prior: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(n_perturbations, n_latent, temperature, beta_prior=beta_prior)
        self.embedding_loc, self.embedding_scale_raw = mean_field_embedding_parameters(
            n_perturbations, n_latent
        )

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The mask parameters and the embeddings' loc and raw scale."""
        masks = super().per_perturbation_parameters()
        return [*masks, self.embedding_loc, self.embedding_scale_raw]

    def embedding_distribution(
        self, index: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return mean_field_embedding_distribution(
            self.embedding_loc, self.embedding_scale_raw, index
        )


class CorrelatedGuide(_MaskGuide):
    """Parameterizes q(M) q(E | M): q(e_t | m_t) = Normal(g(m_t, t)).

    g's first layer is W [m_t; onehot(t)] with the one-hot part kept as a table of rows u_t,
    initialised as ``nn.Linear`` would initialise that layer's columns (fan-in n_latent +
    n_perturbations). The loc head starts at zero and the scale head at a constant, so every
    q(e_t | m_t) starts at Normal(0, 1), as the mean-field guide does; only the mask logits, the
    mask-probability parameters and the table are per-perturbation parameters.
    """

    def __init__(
        self,
        n_perturbations: int,
        n_latent: int,
        temperature: float,
        *,
        n_hidden: int,
        n_layers: int,
        beta_prior: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(n_perturbations, n_latent, temperature, beta_prior=beta_prior)
        self.trunk = ResidualMLP(n_latent, n_hidden, n_layers)
        self.perturbation_embedding = nn.Embedding(n_perturbations, n_hidden)
        bound = 1 / math.sqrt(n_latent + n_perturbations)
        nn.init.uniform_(self.perturbation_embedding.weight, -bound, bound)
        self.loc = nn.Linear(n_hidden, n_latent)
        self.scale = nn.Linear(n_hidden, n_latent)
        with torch.no_grad():
            for head in (self.loc, self.scale):
                head.weight.zero_()
            self.loc.bias.zero_()
            self.scale.bias.fill_(_SOFTPLUS_INVERSE_OF_ONE)

    def per_perturbation_parameters(self) -> list[nn.Parameter]:
        """The mask parameters and the perturbation table; not the shared network."""
        masks = super().per_perturbation_parameters()
        return [*masks, self.perturbation_embedding.weight]

    def embedding_distribution(
        self, index: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # W [m_t; onehot(t)] = W_m m_t + u_t, with u_t a learned row per perturbation.
        pre = self.trunk.input_layer(masks) + self.perturbation_embedding(index)
        h = self.trunk.forward_hidden(pre)  # (P, T_b, n_hidden)
        return self.loc(h), F.softplus(self.scale(h)) + SCALE_FLOOR
