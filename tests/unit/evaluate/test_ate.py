"""The vectorised model ATE against a slow, independent reference loop on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import NegativeBinomial

from samsvae.config import SAMSVAEConfig
from samsvae.evaluate import ate
from samsvae.evaluate.ate import (
    AUTO_SAMPLES,
    estimate_average_treatment_effects,
    model_average_treatment_effect_draws,
    model_average_treatment_effects,
)
from samsvae.models import SAMSVAEModule

N_SAMPLES = 1500


def _tiny_module() -> SAMSVAEModule:
    torch.manual_seed(0)
    module = SAMSVAEModule(6, 3, SAMSVAEConfig(n_latent=2, n_hidden=8, guide="mean_field"))
    with torch.no_grad():  # distinct, uncertain masks and sizeable, uncertain effects
        module.guide.mask_logits.copy_(torch.tensor([[3.0, -3.0], [-3.0, 3.0], [1.0, 1.0]]))
        module.guide.embedding_loc.copy_(torch.tensor([[3.0, 0.0], [0.0, -3.0], [2.0, 2.0]]))
        module.likelihood.logits.weight.mul_(3)
    return module


def _g(x: torch.Tensor) -> torch.Tensor:
    total = x.sum(-1, keepdim=True)
    return torch.where(total > 0, torch.log2(1 + 1e4 * x / total.clamp(min=1e-12)), 0.0)


def _reference_draws(module: SAMSVAEModule, dosage_row: torch.Tensor) -> torch.Tensor:
    """g(x) of N_SAMPLES cells, one particle at a time, sampled with torch.distributions."""
    draws = []
    theta = module.likelihood.log_theta.exp()
    for _ in range(N_SAMPLES):
        sample = module.sample_globals(torch.arange(3), 1)
        z = torch.randn(2) + (dosage_row[:, None] * sample.embeddings[0] * sample.masks[0]).sum(0)
        mu = 1e4 * torch.softmax(module.likelihood.logits(module.decoder(z)), -1)
        x = NegativeBinomial(total_count=theta, logits=mu.log() - theta.log()).sample()
        draws.append(_g(x))
    return torch.stack(draws).double()


@pytest.mark.parametrize("estimator", ["expected", "sampled"])
@pytest.mark.parametrize("share_basal", [False, True])
@torch.no_grad()
def test_vectorised_ate_equals_reference_loop_within_monte_carlo_error(
    share_basal: bool, estimator: str
) -> None:
    module = _tiny_module()
    interventions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    torch.manual_seed(1)
    control = _reference_draws(module, torch.zeros(3))
    reference, standard_error = [], []
    for row in interventions:
        treated = _reference_draws(module, row)
        reference.append(treated.mean(0) - control.mean(0))
        standard_error.append(((treated.var(0) + control.var(0)) / N_SAMPLES).sqrt())
    reference_t, se = torch.stack(reference), torch.stack(standard_error)

    torch.manual_seed(2)
    vectorised = model_average_treatment_effects(
        module,
        interventions,
        n_samples=4 * N_SAMPLES,
        share_basal=share_basal,
        estimator=estimator,  # type: ignore[arg-type]
    ).double()
    z_scores = ((vectorised - reference_t) / (se * np.sqrt(1.25))).abs()
    assert reference_t.abs().max() > 10 * se.max()  # the effects are real, not noise
    assert z_scores.max() < 4.5, z_scores


@torch.no_grad()
def test_ate_draws_average_to_the_ate_and_spread_with_global_uncertainty() -> None:
    module = _tiny_module()
    interventions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    torch.manual_seed(3)
    draws = model_average_treatment_effect_draws(
        module, interventions, n_global_samples=200, n_samples_per_global=20
    ).double()
    assert draws.shape == (200, 2, 6)
    torch.manual_seed(4)
    ate = model_average_treatment_effects(module, interventions, n_samples=4000).double()
    standard_error = draws.std(0) / np.sqrt(200)
    assert ((draws.mean(0) - ate).abs() / (standard_error * 1.5)).max() < 4.5

    # Make q(E, M) nearly a point mass: the draws then differ only by the Monte-Carlo error of
    # their 200 cells each, so their spread must shrink well below that of the uncertain guide.
    def spread(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model_average_treatment_effect_draws(
            module, interventions, n_global_samples=60, n_samples_per_global=200
        ).std(0)

    uncertain = spread(5)
    module.guide.mask_logits.mul_(10)
    module.guide.embedding_scale_raw.fill_(-20.0)
    confident = spread(5)
    assert (confident.mean() * 2.5 < uncertain.mean()).item(), (confident, uncertain)


@pytest.mark.parametrize("progress", [False, True])
@torch.no_grad()
def test_progress_bar_counts_every_global_draw(
    monkeypatch: pytest.MonkeyPatch, progress: bool
) -> None:
    bars = []

    class RecordingBar:
        def __init__(self, *, total: int, disable: bool, **_: object) -> None:
            self.total, self.disable, self.done = total, disable, 0
            bars.append(self)

        def __enter__(self) -> RecordingBar:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def update(self, n: int) -> None:
            self.done += n

    monkeypatch.setattr(ate, "tqdm", RecordingBar)
    monkeypatch.setattr(ate.settings, "verbosity", 3)  # drawn even though pytest captures stderr
    interventions = torch.tensor([[1.0, 0.0, 0.0]])
    module = _tiny_module()
    model_average_treatment_effects(
        module, interventions, n_samples=25, particles_per_chunk=10, progress=progress
    )
    model_average_treatment_effect_draws(
        module,
        interventions,
        n_global_samples=7,
        n_samples_per_global=4,
        particles_per_chunk=10,
        progress=progress,
    )
    assert [(bar.total, bar.done, bar.disable) for bar in bars] == [
        (25, 25, not progress),
        (7, 7, not progress),
    ]


@torch.no_grad()
def test_standard_errors_match_the_spread_over_seeds() -> None:
    module = _tiny_module()
    interventions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    estimates = []
    for seed in range(30):
        torch.manual_seed(seed)
        estimates.append(estimate_average_treatment_effects(module, interventions, n_samples=200))
    spread = torch.stack([e.effects for e in estimates]).std(0)
    reported = torch.stack([e.standard_errors for e in estimates]).mean(0)
    ratio = (spread / reported).median()
    assert 0.8 < ratio < 1.25, ratio
    assert all(e.n_samples == 200 for e in estimates)


@torch.no_grad()
def test_integrating_the_counts_out_lowers_the_variance() -> None:
    module = _tiny_module()
    interventions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    errors = {}
    for estimator in ("expected", "sampled"):
        torch.manual_seed(0)
        errors[estimator] = estimate_average_treatment_effects(
            module,
            interventions,
            n_samples=2000,
            estimator=estimator,  # type: ignore[arg-type]
            share_basal=False,
        ).standard_errors
    assert (errors["expected"] < errors["sampled"]).all()
    assert (errors["sampled"] / errors["expected"]).median() > 1.2


@torch.no_grad()
def test_auto_adds_particles_until_every_standard_error_meets_the_target() -> None:
    module = _tiny_module()
    interventions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    torch.manual_seed(0)
    loose = estimate_average_treatment_effects(
        module, interventions, target_standard_error=10.0, particles_per_chunk=50
    )
    assert loose.n_samples == AUTO_SAMPLES[0]  # met at once: the minimum
    torch.manual_seed(0)
    at_minimum = estimate_average_treatment_effects(
        module, interventions, n_samples=AUTO_SAMPLES[0]
    )
    target = float(at_minimum.standard_errors.max()) / 2
    torch.manual_seed(0)
    tight = estimate_average_treatment_effects(
        module, interventions, target_standard_error=target, particles_per_chunk=50
    )
    assert tight.standard_errors.max() <= target
    # halving the error takes about four times the particles, give or take a chunk
    assert 3 * AUTO_SAMPLES[0] <= tight.n_samples <= 6 * AUTO_SAMPLES[0]
    unreachable = estimate_average_treatment_effects(
        module, interventions, target_standard_error=1e-9
    )
    assert unreachable.n_samples == AUTO_SAMPLES[1]


def test_an_unknown_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="estimator='exact'"):
        model_average_treatment_effects(
            _tiny_module(),
            torch.tensor([[1.0, 0.0, 0.0]]),
            n_samples=10,
            estimator="exact",  # type: ignore[arg-type]
        )


@torch.no_grad()
def test_control_cells_without_counts_give_finite_effects_at_the_data_depth() -> None:
    module = _tiny_module()
    module.library_size_quantiles.copy_(
        torch.linspace(0.0, 800.0, len(module.library_size_quantiles))
    )
    torch.manual_seed(0)
    estimate = estimate_average_treatment_effects(
        module, torch.tensor([[1.0, 0.0, 0.0]]), n_samples=300, library_size="data"
    )
    assert (
        torch.isfinite(estimate.effects).all() and torch.isfinite(estimate.standard_errors).all()
    )
