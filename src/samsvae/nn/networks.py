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


# Rows per block of the wide output layer's product on CPU: MKL took 15.5 ms for
# (2560 x 400) @ (400 x 1187) in blocks of 512 rows and 20 ms in one call (2 cores), with the
# same bits in every row.
ROW_BLOCK = 512


def wide_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for a layer with many outputs (the genes), in blocks of ``ROW_BLOCK`` rows
    on CPU; values and gradients are those of ``layer(x)``."""
    if x.device.type != "cpu" or x.numel() // x.shape[-1] <= ROW_BLOCK:
        return layer(x)
    return _RowBlockedLinear.apply(x, layer.weight, layer.bias)


class _RowBlockedLinear(torch.autograd.Function):
    """x W^T + b with the forward product in row blocks; the backward makes autograd's products
    for ``F.linear`` (flattened input, addmm) in one call each."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        rows = x.contiguous().view(-1, x.shape[-1])
        out = rows.new_empty(rows.shape[0], weight.shape[0])
        for start in range(0, len(rows), ROW_BLOCK):
            block = slice(start, start + ROW_BLOCK)
            torch.addmm(bias, rows[block], weight.t(), out=out[block])
        ctx.save_for_backward(rows, weight)
        ctx.input_shape = x.shape
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        rows, weight = ctx.saved_tensors
        grad = grad.reshape(-1, weight.shape[0])
        grad_x = grad.mm(weight).view(ctx.input_shape) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(rows) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias
