"""Residual multilayer perceptron trunk."""

from __future__ import annotations

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """``n_layers`` hidden layers of width ``n_hidden``, LeakyReLU, residual between hidden layers.

    h_1 = act(W_1 x + b_1);  h_l = h_{l-1} + act(W_l h_{l-1} + b_l) for l = 2..n_layers.
    The first layer may be applied by the caller (``forward_hidden``) when its input is split into
    parts that are cheaper to multiply separately.
    """

    def __init__(self, n_input: int, n_hidden: int, n_layers: int) -> None:
        super().__init__()
        self.input_layer = nn.Linear(n_input, n_hidden)
        self.hidden_layers = nn.ModuleList(
            nn.Linear(n_hidden, n_hidden) for _ in range(n_layers - 1)
        )
        self.activation = nn.LeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_hidden(self.input_layer(x))

    def forward_hidden(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """Continue from the first layer's pre-activation ``W_1 x + b_1``."""
        h = self.activation(pre_activation)
        for layer in self.hidden_layers:
            h = h + self.activation(layer(h))
        return h


def required_covariates(covariates: torch.Tensor | None) -> torch.Tensor:
    """``covariates``, or a clear error when a covariate-conditioned network gets none."""
    if covariates is None:
        msg = "This model was set up with covariate_keys; pass the cells' covariates."
        raise ValueError(msg)
    return covariates
