"""Residual multilayer perceptron trunk, and the product of a wide output layer."""

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


# Rows per block of the wide output layer's product on CPU. Whether blocks beat one call depends
# on the shape: on this project's machine (MKL, AVX-512), (2560 x 400) @ (400 x G) took 0.72-0.75
# of the time in blocks of 512 rows for G = 1,187, about the same for G = 299 and 2,000, and
# 1.06-1.12 for G = 5,000 (`python benchmarks/step_profile.py --gene-layer`). The rule below keeps
# that measurement: blocks up to MAX_BLOCKED_OUTPUTS outputs, one call above.
ROW_BLOCK = 512
MAX_BLOCKED_OUTPUTS = 3000


def wide_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)`` for a layer with many outputs (the genes); on CPU, in blocks of ``ROW_BLOCK``
    rows where that is faster. Values and gradients are those of ``layer(x)`` either way."""
    if (
        x.device.type != "cpu"
        or layer.bias is None
        or x.numel() // x.shape[-1] <= ROW_BLOCK
        or not blocks_win(layer.weight)
    ):
        return layer(x)
    return _RowBlockedLinear.apply(x, layer.weight, layer.bias)


def blocks_win(weight: torch.Tensor) -> bool:
    """Whether the product with ``weight`` (outputs x inputs) runs in row blocks on CPU."""
    return weight.shape[0] <= MAX_BLOCKED_OUTPUTS


def _addmm_in_row_blocks(
    bias: torch.Tensor, rows: torch.Tensor, weight_t: torch.Tensor, out: torch.Tensor
) -> None:
    """out = bias + rows @ weight_t, one block of ``ROW_BLOCK`` rows at a time."""
    for start in range(0, len(rows), ROW_BLOCK):
        block = slice(start, start + ROW_BLOCK)
        torch.addmm(bias, rows[block], weight_t, out=out[block])


class _RowBlockedLinear(torch.autograd.Function):
    """x W^T + b with the forward product in row blocks; the backward makes autograd's products
    for ``F.linear`` (flattened input, addmm) in one call each."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        rows = x.contiguous().view(-1, x.shape[-1])
        out = rows.new_empty(rows.shape[0], weight.shape[0])
        _addmm_in_row_blocks(bias, rows, weight.t(), out)
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
