"""The vectorised model ATE against a slow, independent reference loop on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import NegativeBinomial

from samsvae.config import SAMSVAEConfig
from samsvae.evaluate import ate
from samsvae.evaluate.ate import (
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


@pytest.mark.parametrize("share_basal", [False, True])
@torch.no_grad()
def test_vectorised_ate_equals_reference_loop_within_monte_carlo_error(share_basal: bool) -> None:
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
        module, interventions, n_samples=4 * N_SAMPLES, share_basal=share_basal
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
