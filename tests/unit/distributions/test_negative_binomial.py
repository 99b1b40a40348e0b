from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from samsvae.distributions import (
    nb_data_terms,
    nb_log_prob,
    nb_mean_terms,
    nb_mean_terms_from_logits,
    nb_sample,
    negative_binomial_fast,
)
from samsvae.distributions.negative_binomial import nb_mean_terms_reference


def test_nb_log_prob_matches_scipy(float64: None) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(7, 11)).astype(float)
    mu = rng.gamma(2.0, 5.0, size=(7, 11))
    theta = rng.gamma(2.0, 2.0, size=11)
    expected = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    result = nb_log_prob(torch.tensor(x), torch.tensor(np.log(mu)), torch.tensor(np.log(theta)))
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_nb_data_and_mean_terms_sum_to_the_full_log_prob(float64: None) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((4, 6), 3.0), generator=generator)
    log_mu = torch.randn(3, 4, 6, generator=generator)  # 3 particles share the data terms
    log_theta = torch.randn(6, generator=generator)
    split = nb_data_terms(x, log_theta) + nb_mean_terms(x, log_mu, log_theta)
    torch.testing.assert_close(split, nb_log_prob(x, log_mu, log_theta))


def test_nb_sample_moments_match_mean_and_dispersion() -> None:
    torch.manual_seed(0)
    mu, theta = 8.0, 2.0
    draws = nb_sample(torch.full((200_000,), mu).log(), torch.tensor(theta).log())
    assert abs(draws.mean().item() - mu) < 0.1
    assert abs(draws.var().item() - (mu + mu**2 / theta)) < 1.0


def _small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw in parts from 10,000 entries on, in parts of about 1,000."""
    monkeypatch.setattr(negative_binomial_fast, "ONE_STREAM_MAX", 10_000)
    monkeypatch.setattr(negative_binomial_fast, "PART_SIZE", 1_000)


def test_small_tensors_draw_from_the_global_generator_as_torch_does() -> None:
    log_mu, log_theta = torch.randn(20, 30), torch.randn(30)
    torch.manual_seed(1)
    counts = nb_sample(log_mu, log_theta)
    torch.manual_seed(1)
    direct = torch.poisson(
        torch._standard_gamma(log_theta.exp().expand_as(log_mu)) * (log_mu - log_theta).exp()
    )
    torch.testing.assert_close(counts, direct, rtol=0, atol=0)


def test_counts_drawn_in_parts_follow_the_negative_binomial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _small_parts(monkeypatch)
    mu = torch.tensor([0.5, 4.0, 30.0])
    theta = torch.tensor([0.3, 2.0, 10.0])
    torch.manual_seed(0)
    draws = nb_sample(mu.log().expand(3, 40_000, 3), theta.log())  # 120 parts
    assert draws.shape == (3, 40_000, 3)
    flat = draws.reshape(-1, 3)
    torch.testing.assert_close(flat.mean(0), mu, rtol=0.03, atol=0)
    torch.testing.assert_close(flat.var(0), mu + mu**2 / theta, rtol=0.06, atol=0)
    # parts (333 rows each) are independent: no correlation between a row and its next part's
    rows, lag = flat[:, 2], 1_000 // 3
    assert abs(torch.corrcoef(torch.stack([rows[:-lag], rows[lag:]]))[0, 1].item()) < 0.02


def test_counts_drawn_in_parts_depend_on_the_seed_not_on_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _small_parts(monkeypatch)
    log_mu, log_theta = torch.randn(4, 5_000, 7), torch.randn(7)
    threads = torch.get_num_threads()
    draws = []
    try:
        for n_threads, seed in ((1, 3), (2, 3), (2, 4)):
            torch.set_num_threads(n_threads)
            torch.manual_seed(seed)
            draws.append(nb_sample(log_mu, log_theta))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    assert not torch.equal(draws[1], draws[2])


def test_fused_nb_terms_from_logits_match_autograd_values_and_gradients(float64: None) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((6, 9), 3.0), generator=generator)
    log_library = x.sum(1).clamp(min=1).log()
    logits = torch.randn(4, 6, 9, generator=generator, requires_grad=True)
    log_theta = torch.randn(9, generator=generator, requires_grad=True)
    weights = torch.randn(4, 6, generator=generator)

    fused = nb_mean_terms_from_logits(logits, x, log_library, log_theta)
    grads_fused = torch.autograd.grad((fused * weights).sum(), (logits, log_theta))
    reference = nb_mean_terms_reference(logits, x, log_library, log_theta)
    grads_reference = torch.autograd.grad((reference * weights).sum(), (logits, log_theta))

    torch.testing.assert_close(fused, reference)
    for got, expected in zip(grads_fused, grads_reference, strict=True):
        torch.testing.assert_close(got, expected)
    assert torch.autograd.gradcheck(
        lambda lg, lt: nb_mean_terms_from_logits(lg, x[:2, :3], log_library[:2], lt),
        (
            logits.detach()[:1, :2, :3].clone().requires_grad_(),
            log_theta.detach()[:3].clone().requires_grad_(),
        ),
    )


def _sparse_counts(shape: tuple[int, int], density: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full(shape, 6.0), generator=generator)
    return counts * (torch.rand(shape, generator=generator) < density)


def _fused_terms_and_gradients(
    logits: torch.Tensor, x: torch.Tensor, weights: torch.Tensor
) -> list[torch.Tensor]:
    logits = logits.clone().requires_grad_()
    log_theta = torch.linspace(-2.0, 3.0, x.shape[1], requires_grad=True)
    log_library = x.sum(1).clamp(min=1).log()
    terms = nb_mean_terms_from_logits(logits, x, log_library, log_theta)
    (terms * weights).sum().backward()
    return [terms.detach(), logits.grad, log_theta.grad]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_nb_terms_are_the_same_bits_in_any_blocks_of_cells(
    monkeypatch: pytest.MonkeyPatch, n_threads: int
) -> None:
    # 2 particles x 300 cells x 37 genes: blocks of 7 cells leave a ragged end in every particle,
    # which must not change a single bit against one block per particle or whole tensors.
    generator = torch.Generator().manual_seed(1)
    x = _sparse_counts((300, 37), 0.3, seed=1)
    logits = torch.randn(2, 300, 37, generator=generator)
    weights = torch.randn(2, 300, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        results = []
        for block in (7, 300):
            monkeypatch.setattr(negative_binomial_fast, "CELL_BLOCK", block)
            results.append(_fused_terms_and_gradients(logits, x, weights))
        # the whole tensors at once, as on a GPU
        monkeypatch.setattr(negative_binomial_fast, "_in_blocks", lambda device: False)
        results.append(_fused_terms_and_gradients(logits, x, weights))
    finally:
        torch.set_num_threads(threads)
    for small_blocks, one_per_particle, whole in zip(*results, strict=True):
        torch.testing.assert_close(small_blocks, one_per_particle, rtol=0, atol=0)
        torch.testing.assert_close(small_blocks, whole, rtol=0, atol=0)


@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_nb_data_terms_from_non_zeros_equal_the_dense_expression_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, density: float
) -> None:
    monkeypatch.setattr(negative_binomial_fast, "SPARSE_DENSITY", 1.0)  # every x through non-zeros
    x = _sparse_counts((50, 23), density, seed=2)
    weights = torch.randn(50, generator=torch.Generator().manual_seed(3))

    def terms_and_gradient(data_terms: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        log_theta = torch.linspace(-3.0, 4.0, 23, requires_grad=True)
        terms = data_terms(x, log_theta)
        # as in a training step: summed over genes, and log_theta also reached by another path
        ((terms.sum(-1) * weights).sum() + log_theta.exp().sum()).backward()
        return [terms.detach(), log_theta.grad]

    def dense(x: torch.Tensor, log_theta: torch.Tensor) -> torch.Tensor:
        theta = log_theta.exp()
        return torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)

    for got, expected in zip(
        terms_and_gradient(nb_data_terms), terms_and_gradient(dense), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
