from __future__ import annotations

import pytest
import torch

from samsvae.distributions import bernoulli_log_prob, sample_straight_through_bernoulli


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_mask_samples_are_exactly_binary(dtype: torch.dtype) -> None:
    logits = torch.linspace(-4, 4, 50, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    hard, soft = sample_straight_through_bernoulli(logits, (200,), generator=generator)
    assert hard.dtype == dtype
    assert set(torch.unique(hard).tolist()) <= {0.0, 1.0}
    # The hard sample is the threshold of the relaxed one drawn from the same noise.
    assert torch.equal(hard, (soft > 0.5).to(dtype))


def test_gradients_reach_mask_logits() -> None:
    logits = torch.zeros(5, 3, requires_grad=True)
    generator = torch.Generator().manual_seed(1)
    hard, soft = sample_straight_through_bernoulli(logits, (4,), generator=generator)
    weights = torch.arange(1.0, 16.0).reshape(5, 3)
    (hard * weights).sum().backward(retain_graph=True)
    assert logits.grad is not None
    assert torch.all(logits.grad != 0)
    # Straight-through: the gradient equals that of the soft sample.
    expected = torch.autograd.grad((soft * weights).sum(), logits)[0]
    torch.testing.assert_close(logits.grad, expected)


def test_hard_sample_frequency_matches_bernoulli_probability() -> None:
    logits = torch.tensor([-2.0, 0.0, 1.5])
    generator = torch.Generator().manual_seed(2)
    hard, _ = sample_straight_through_bernoulli(
        logits, (40_000,), temperature=0.5, generator=generator
    )
    torch.testing.assert_close(hard.mean(0), torch.sigmoid(logits), atol=0.01, rtol=0)


def test_bernoulli_log_prob_matches_torch() -> None:
    logits = torch.tensor([-3.0, 0.2, 2.0])
    value = torch.tensor([1.0, 0.0, 1.0])
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(value)
    torch.testing.assert_close(bernoulli_log_prob(value, logits), expected)
