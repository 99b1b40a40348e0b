"""Predictive IWELBO: globals shared across cells, more particles never worse in expectation."""

from __future__ import annotations

import pytest
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.data.batch import Batch
from samsvae.evaluate import likelihood
from samsvae.evaluate.likelihood import predictive_iwelbo
from samsvae.models import SAMSVAEModule


def _batch(n_cells: int = 30, n_genes: int = 6, n_perturbations: int = 3) -> Batch:
    generator = torch.Generator().manual_seed(0)
    counts = torch.poisson(torch.full((n_cells, n_genes), 5.0), generator=generator)
    dosage = torch.zeros(n_cells, n_perturbations)
    dosage[torch.arange(n_cells), torch.arange(n_cells) % n_perturbations] = 1.0
    return Batch(
        counts, dosage, torch.arange(n_perturbations), counts.sum(1), torch.arange(n_cells)
    )


def test_predictive_iwelbo_grows_with_particles_in_expectation() -> None:
    torch.manual_seed(0)
    module = SAMSVAEModule(6, 3, SAMSVAEConfig(n_latent=3, n_hidden=8))
    batch = _batch()
    repeats = 40
    single, many = [], []
    for seed in range(repeats):
        torch.manual_seed(seed)
        single.append(predictive_iwelbo(module, [batch], n_particles=1).mean())
        torch.manual_seed(seed)
        many.append(predictive_iwelbo(module, [batch], n_particles=64).mean())
    single_t, many_t = torch.stack(single), torch.stack(many)
    standard_error = (single_t.std() ** 2 / repeats + many_t.std() ** 2 / repeats).sqrt()
    assert many_t.mean() > single_t.mean() + 2 * standard_error


def test_predictive_iwelbo_draws_globals_once_and_pairs_them_with_local_particles() -> None:
    torch.manual_seed(0)
    module = SAMSVAEModule(6, 3, SAMSVAEConfig(n_latent=3, n_hidden=8))
    batch = _batch()
    halves = [
        Batch(
            batch.counts[r],
            batch.dosage[r],
            batch.perturbation_index,
            batch.library_size[r],
            batch.index[r],
        )
        for r in (torch.arange(0, 15), torch.arange(15, 30))
    ]
    torch.manual_seed(5)
    result = predictive_iwelbo(module, halves, n_particles=4)
    # Reference: one draw of the globals for every batch, then each batch's local particles.
    torch.manual_seed(5)
    with torch.no_grad():
        shared = module.sample_globals(torch.arange(3), 4)
        weights = torch.cat(
            [
                module.local_terms(h.counts, h.dosage, h.library_size, shared).log_weight
                for h in halves
            ],
            dim=1,
        )  # (4, 30)
    expected = torch.logsumexp(weights, 0) - torch.log(torch.tensor(4.0))
    torch.testing.assert_close(result, expected)


def test_progress_bar_walks_every_batch_and_can_be_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    bars = []

    def recording_bar(batches: list[Batch], *, disable: bool, **_: object) -> list[Batch]:
        bars.append((len(batches), disable))
        return batches

    monkeypatch.setattr(likelihood, "tqdm", recording_bar)
    monkeypatch.setattr(likelihood.settings, "verbosity", 3)  # drawn although stderr is captured
    module = SAMSVAEModule(6, 3, SAMSVAEConfig(n_latent=3, n_hidden=8))
    batches = [_batch(), _batch(n_cells=10)]
    for progress in (True, False):
        assert predictive_iwelbo(module, batches, n_particles=2, progress=progress).shape == (40,)
    assert bars == [(2, False), (2, True)]
