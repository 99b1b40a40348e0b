"""Bernoulli samples with straight-through binary-concrete gradients.

- ``sample_straight_through_bernoulli`` returns ``(hard, soft)``: ``hard`` is an exact 0/1
  sample of Bernoulli(sigmoid(logits)); ``soft`` is the binary-concrete (Gumbel-softmax)
  relaxation at the given temperature from the same logistic noise, so ``hard = 1[soft > 1/2]``.
- Gradients of anything computed from ``hard`` flow to ``logits`` as if ``hard`` were ``soft``.
- The hard value is produced by a custom autograd function, not ``hard + soft - soft.detach()``,
  so the forward value is exactly 0 or 1 in every dtype.

References: Maddison et al. 2017; Jang et al. 2017; Bengio et al. 2013 (straight-through).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _HardThreshold(torch.autograd.Function):
    """Forward 1[soft > 1/2]; backward passes the gradient to ``soft`` unchanged."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (soft > 0.5).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad_output


def sample_straight_through_bernoulli(
    logits: torch.Tensor,
    sample_shape: tuple[int, ...] = (),
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(hard, soft)`` of shape ``sample_shape + logits.shape``."""
    shape = sample_shape + logits.shape
    uniform = torch.rand(shape, generator=generator, dtype=logits.dtype, device=logits.device)
    uniform = uniform.clamp(torch.finfo(logits.dtype).tiny, 1 - torch.finfo(logits.dtype).eps)
    logistic_noise = uniform.log() - (-uniform).log1p()
    soft = torch.sigmoid((logits + logistic_noise) / temperature)
    return _HardThreshold.apply(soft), soft


def bernoulli_log_prob(value: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Elementwise log Bernoulli(value | sigmoid(logits))."""
    return value * F.logsigmoid(logits) + (1 - value) * F.logsigmoid(-logits)
