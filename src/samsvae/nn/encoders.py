"""Encoder that parameterizes q(z_basal | x, shift)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samsvae.nn.networks import ResidualMLP, required_covariates

SCALE_FLOOR = 1e-4


class BasalEncoder(nn.Module):
    """Parameterizes q(z_basal | x, shift) = Normal(loc, scale).

    The input is ``[normalised x, shift]``; its first layer is split so that the expression part,
    identical for every particle, is multiplied once per cell: W [x; s] = W_x x + W_s s.
    ``use_shift=False`` feeds x only. With ``n_covariates`` > 0 one-hot covariate rows c enter
    the first layer too (W_c c, once per cell).
    """

    def __init__(
        self,
        n_genes: int,
        n_latent: int,
        n_hidden: int,
        n_layers: int,
        *,
        use_shift: bool,
        n_condition: int | None = None,
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        self.trunk = ResidualMLP(n_genes, n_hidden, n_layers)
        n_shift = n_latent if n_condition is None else n_condition  # a conditional VAE feeds d
        self.shift_layer = nn.Linear(n_shift, n_hidden, bias=False) if use_shift else None
        self.covariate_layer = (
            nn.Linear(n_covariates, n_hidden, bias=False) if n_covariates else None
        )
        self.loc = nn.Linear(n_hidden, n_latent)
        self.scale = nn.Linear(n_hidden, n_latent)

    def forward(
        self,
        x_normalised: torch.Tensor,
        shift: torch.Tensor | None,
        covariates: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_normalised (n_cells, n_genes), shift (n_particles, n_cells, n_latent), covariates
        (n_cells, n_covariates) -> loc, scale.

        Both outputs are (n_particles, n_cells, n_latent) with a shift, else (n_cells, n_latent).
        """
        pre = self.trunk.input_layer(x_normalised)  # (n_cells, n_hidden), once per cell
        if self.covariate_layer is not None:
            pre = pre + self.covariate_layer(required_covariates(covariates))
        if self.shift_layer is not None and shift is not None:
            pre = pre + self.shift_layer(shift)  # (n_particles, n_cells, n_hidden)
        h = self.trunk.forward_hidden(pre)
        return self.loc(h), F.softplus(self.scale(h)) + SCALE_FLOOR
