"""Rotating the latent space leaves the model's likelihood where it should; the sparse restart."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.evaluate.interpret import lp_rotation, varimax_rotation
from samsvae.evaluate.metrics import mask_recovery
from samsvae.inference import mask_refinement
from samsvae.inference.mask_refinement import (
    LP_DENSER_AT_MOST,
    OFF_PROBABILITY,
    ON_PROBABILITY,
    expected_shifts,
    on_entries,
    prune_masks,
    refinement_epochs,
    rotate_latent_space,
    sparse_frame,
    sparse_restart,
)
from samsvae.models import SAMSVAEModule
from samsvae.models.records import GlobalSample
from samsvae.nn.encoders import SCALE_FLOOR

N_GENES, N_PERTURBATIONS, N_LATENT = 7, 3, 4


def _module() -> SAMSVAEModule:
    torch.manual_seed(0)
    module = SAMSVAEModule(N_GENES, N_PERTURBATIONS, SAMSVAEConfig(n_latent=N_LATENT, n_hidden=8))
    with torch.no_grad():  # an isotropic encoder scale: the rotation is then exact for q too
        module.encoder.scale.weight.zero_()
        module.encoder.scale.bias.fill_(-0.5)
        module.guide.embedding_loc.normal_()
    return module


def _orthogonal(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(N_LATENT, N_LATENT, generator=generator))
    return q


def test_rotating_the_latent_space_leaves_every_elbo_term_of_every_cell_unchanged() -> None:
    module, rotation = _module(), _orthogonal(1)
    rotated = copy.deepcopy(module)
    rotate_latent_space(rotated, rotation)
    counts = torch.poisson(torch.full((5, N_GENES), 3.0))
    dosage = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]])
    embeddings = torch.randn(2, N_PERTURBATIONS, N_LATENT)
    masks = torch.ones_like(embeddings)  # masks act per axis: all on, the shifts rotate exactly
    noise = torch.randn(2, 5, N_LATENT)
    index = torch.arange(N_PERTURBATIONS)

    def terms(model: SAMSVAEModule, e: torch.Tensor, eps: torch.Tensor) -> list[torch.Tensor]:
        sample = GlobalSample(index, e, masks, torch.zeros(2, N_PERTURBATIONS))
        local = model.local_terms(counts, dosage, counts.sum(1), sample, basal_noise=eps)
        return [local.log_likelihood, local.log_p_basal, local.log_q_basal]

    # the same draws in the new coordinates z' = R^T z are the rows times R
    before = terms(module, embeddings, noise)
    after = terms(rotated, embeddings @ rotation, noise @ rotation)
    for old, new in zip(before, after, strict=True):
        torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rotated.guide.embedding_loc, module.guide.embedding_loc @ rotation)


def test_on_entries_keeps_each_rows_large_entries_above_the_noise_floor() -> None:
    shifts = np.array([[2.0, -0.9, 0.5], [0.0, 0.0, 0.0], [0.001, 0.3, -0.05]])
    assert on_entries(shifts).tolist() == [
        [True, True, False],  # 0.5 < 2 / 3
        [False, False, False],
        [False, True, False],  # 0.001 below a third of 0.3; nothing below 0.02 is kept
    ]


def test_the_sparse_restart_rotates_to_sparse_shifts_and_switches_on_only_their_support() -> None:
    module = _module()
    true_shifts = torch.zeros(N_PERTURBATIONS, N_LATENT)
    true_shifts[0, 0], true_shifts[1, 1], true_shifts[2, 2] = 3.0, -2.0, 2.5
    mixing = _orthogonal(2)
    with torch.no_grad():  # dense masks on shifts seen through a rotation: every entry moves
        module.guide.mask_logits.fill_(4.0)
        module.guide.embedding_loc.copy_(true_shifts @ mixing / torch.sigmoid(torch.tensor(4.0)))
    restart = sparse_restart(module)
    assert restart.switched_on.sum() == 3  # one mechanism a perturbation, as in the truth
    np.testing.assert_allclose(np.abs(restart.shifts).max(1), [3.0, 2.0, 2.5], rtol=1e-4)
    probabilities = module.guide.mask_probabilities().detach().numpy()
    np.testing.assert_allclose(
        probabilities, np.where(restart.switched_on, ON_PROBABILITY, OFF_PROBABILITY), rtol=1e-6
    )
    np.testing.assert_allclose(
        module.guide.embedding_loc.detach().numpy(), restart.shifts, rtol=1e-5, atol=1e-6
    )
    assert torch.is_tensor(expected_shifts(module.guide))


def _dense_unequal_shifts() -> tuple[np.ndarray, np.ndarray]:
    """Shifts with 2-3 mechanisms of unequal size a row, seen through a rotation; and the truth."""
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(24, 6)) * (rng.random((24, 6)) < 0.35)
    truth[~truth.any(1), 0] = 1.0
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    return truth @ rotation, truth


def test_the_sparse_frame_takes_the_lp_rotation_that_finds_weak_mechanisms() -> None:
    shifts, truth = _dense_unequal_shifts()
    frame = sparse_frame(shifts)
    np.testing.assert_allclose(frame.rotation, lp_rotation(shifts))
    # what the rule switches on in the true frame, up to the axes' order
    assert mask_recovery(frame.switched_on, on_entries(truth))["mask_f1"] == 1.0
    varimax = on_entries(shifts @ varimax_rotation(shifts))
    assert mask_recovery(varimax, on_entries(truth))["mask_f1"] < 0.95


def test_the_sparse_frame_falls_back_to_varimax_when_the_lp_frame_is_denser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shifts, _ = _dense_unequal_shifts()
    mixing, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(6, 6)))
    monkeypatch.setattr(mask_refinement, "lp_rotation", lambda _: mixing)  # a dense frame
    assert (
        on_entries(shifts @ mixing).sum()
        > LP_DENSER_AT_MOST * on_entries(shifts @ varimax_rotation(shifts)).sum()
    )
    np.testing.assert_allclose(sparse_frame(shifts).rotation, varimax_rotation(shifts))


def test_pruning_switches_off_the_on_entries_that_shrank_or_are_not_credible() -> None:
    module = _module()
    held = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    embeddings = torch.tensor(
        [[2.0, -0.9, 0.7, 5.0], [-1.0, 3.0, -0.41, 0.0], [0.45, 0.0, 0.0, 0.0]]
    )  # rows' largest on entries 2, 1 and 0.45; the off entries' sizes do not count
    sds = torch.full_like(embeddings, 0.05)
    sds[2, 0] = 0.1  # 0.45 is 4.5 sds from zero: not credible
    with torch.no_grad():
        module.guide.mask_logits.copy_(
            torch.logit(torch.where(held, ON_PROBABILITY, OFF_PROBABILITY))
        )
        module.guide.embedding_loc.copy_(embeddings)
        module.guide.embedding_scale_raw.copy_(torch.log(torch.expm1(sds - SCALE_FLOOR)))
    switched_off = prune_masks(module)
    assert switched_off.tolist() == [
        [False, False, True, False],  # 0.7 < 0.4 * 2; 0.9 is kept
        [False, False, False, False],  # 0.41 >= 0.4 * 1 and 8.2 sds out
        [True, False, False, False],  # the row's largest, but under 5 sds
    ]
    expected = held.numpy() & ~switched_off
    probabilities = module.guide.mask_probabilities().detach().numpy()
    np.testing.assert_allclose(
        probabilities, np.where(expected, ON_PROBABILITY, OFF_PROBABILITY), rtol=1e-6
    )
    torch.testing.assert_close(module.guide.embedding_loc.detach(), embeddings)


def test_the_masks_are_restarted_then_pruned_within_the_budget() -> None:
    assert refinement_epochs(8) is None
    assert refinement_epochs(9) == (6, 8)
    assert refinement_epochs(90) == (60, 75)


@pytest.mark.parametrize("epoch", [6, 8])
def test_the_restart_and_the_pruning_start_from_the_best_weights_so_far(
    epoch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samsvae.inference.training as training

    plan = training.TrainingPlan(_module(), n_particles=1, lr=1e-3, global_lr=None, weight_decay=0)
    with torch.no_grad():
        plan.module.guide.mask_logits.fill_(3.0)  # masks on, as a restart leaves some
    best = training.BestWeights("val_loss")
    best.state = copy.deepcopy(plan.state_dict())  # the best epoch, then training went on
    best_weight = best.state["module.decoder.input_layer.weight"]
    with torch.no_grad():
        plan.module.decoder.input_layer.weight.add_(1.0)
    seen = []
    for step in ("sparse_restart", "prune_masks"):
        monkeypatch.setattr(training, step, lambda module: seen.append(copy.deepcopy(module)))
    trainer = SimpleNamespace(current_epoch=epoch - 1, optimizers=[], callbacks=[])
    training.SparseMaskRestart(refinement_epochs(9), best).on_train_epoch_end(trainer, plan)
    (module,) = seen
    torch.testing.assert_close(module.decoder.input_layer.weight, best_weight)
    assert best.state is None  # and the refined model's best epochs start afresh


def test_the_sparse_restart_refuses_a_guide_it_cannot_rotate() -> None:
    module = SAMSVAEModule(
        N_GENES, N_PERTURBATIONS, SAMSVAEConfig(n_latent=N_LATENT, n_hidden=8, guide="correlated")
    )
    with pytest.raises(ValueError, match="mean-field guide"):
        sparse_restart(module)
