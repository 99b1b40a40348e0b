"""The training plan: which parameters take ``global_lr``, and the validation loss it reports."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from samsvae.config import (
    ConditionalVAEConfig,
    CPAVAEConfig,
    SAMSVAEConfig,
    SVAEPlusConfig,
    TrainConfig,
)
from samsvae.data.loaders import CellDataset, make_loader
from samsvae.inference import training
from samsvae.models import ConditionalVAEModule, CPAVAEModule, SAMSVAEModule, SVAEPlusModule

MASKS = {"guide.mask_logits"}
MEAN_FIELD = {"guide.embedding_loc", "guide.embedding_scale_raw"}
BETA = {"guide.inclusion_raw", "guide.exclusion_raw"}
TABLE = {"guide.perturbation_embedding.weight"}

# Per model: the module and the names of the parameters that must take global_lr.
MODELS = {
    "mean_field": (
        lambda: SAMSVAEModule(6, 4, SAMSVAEConfig(n_latent=3, n_hidden=8, guide="mean_field")),
        MASKS | MEAN_FIELD,
    ),
    "correlated": (
        lambda: SAMSVAEModule(6, 4, SAMSVAEConfig(n_latent=3, n_hidden=8, guide="correlated")),
        MASKS | TABLE,
    ),
    "beta_bernoulli_mean_field": (
        lambda: SAMSVAEModule(
            6,
            4,
            SAMSVAEConfig(
                n_latent=3, n_hidden=8, guide="mean_field", mask_prior_concentration=10.0
            ),
        ),
        MASKS | BETA | MEAN_FIELD,
    ),
    "beta_bernoulli_correlated": (
        lambda: SAMSVAEModule(
            6,
            4,
            SAMSVAEConfig(
                n_latent=3, n_hidden=8, guide="correlated", mask_prior_concentration=10.0
            ),
        ),
        MASKS | BETA | TABLE,
    ),
    "cpa_vae": (lambda: CPAVAEModule(6, 4, CPAVAEConfig(n_latent=3, n_hidden=8)), MEAN_FIELD),
    "svae_plus": (
        lambda: SVAEPlusModule(6, 4, SVAEPlusConfig(n_latent=3, n_hidden=8)),
        MASKS | {"guide.pi_logits", "guide.shift_loc"},
    ),
    "conditional_vae": (
        lambda: ConditionalVAEModule(6, 4, ConditionalVAEConfig(n_latent=3, n_hidden=8)),
        set(),
    ),
}


@pytest.mark.parametrize("model", list(MODELS))
def test_global_lr_applies_to_exactly_the_per_perturbation_parameters(model: str) -> None:
    build, expected = MODELS[model]
    module = build()
    plan = training.TrainingPlan(
        module, n_particles=2, lr=1e-3, global_lr=3e-2, weight_decay=1e-3, restarts=1
    )
    groups = plan.configure_optimizers().param_groups
    name_of = {id(p): name for name, p in module.named_parameters()}
    names = [{name_of[id(p)] for p in group["params"]} for group in groups]
    everything = set(name_of.values())
    assert names[0] == everything - expected
    assert [group["lr"] for group in groups] == [5e-4, 1.5e-2][: len(groups)]  # x 0.5: a restart
    # weight decay on the networks only: the global variables have their priors
    assert [group["weight_decay"] for group in groups] == [1e-3, 0.0][: len(groups)]
    if expected:
        assert names[1] == expected
    else:
        assert len(groups) == 1
    if model == "correlated":  # the shared network of the correlated guide takes lr
        assert {"guide.trunk.input_layer.weight", "guide.loc.weight"} <= names[0]


def _tiny_split() -> tuple[CellDataset, np.ndarray, np.ndarray]:
    """30 cells, 3 perturbations; the training and validation cells carry them in different
    proportions, and perturbation 2 has validation cells only."""
    rng = np.random.default_rng(0)
    train_labels = [0] * 10 + [1] * 5 + [-1] * 5
    val_labels = [0] * 2 + [1] * 4 + [2] * 2 + [-1] * 2
    dosage = np.zeros((30, 3), dtype=np.float32)
    for row, label in enumerate(train_labels + val_labels):
        if label >= 0:
            dosage[row, label] = 1.0
    dosage[3, 1] = 1.0  # a training combination
    counts = rng.poisson(3.0, (30, 5)).astype(np.float32)
    dataset = CellDataset(counts, sp.csr_matrix(dosage))
    return dataset, np.arange(20), np.arange(20, 30)


def test_validation_loss_uses_the_validation_cells_plate_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, train_rows, val_rows = _tiny_split()
    torch.manual_seed(0)
    config = SAMSVAEConfig(n_latent=2, n_hidden=8, guide="mean_field", mask_prior=0.2)
    module = SAMSVAEModule(5, 3, config)
    stats = dataset.training_statistics(train_rows, log1p=True)
    module.gene_mean.copy_(torch.as_tensor(stats.gene_mean))
    module.gene_scale.copy_(torch.as_tensor(stats.gene_scale))
    module.n_cells_per_perturbation.copy_(torch.as_tensor(stats.n_cells_per_perturbation))

    seen: dict = {}
    elbo = training.minibatch_elbo

    def record_validation(module, batch, n_particles, **options):
        if not module.training:  # the draws and weights the validation loss is computed with
            seen.update(rng=torch.get_rng_state(), state=copy.deepcopy(module.state_dict()))
            seen["batch"] = batch
        return elbo(module, batch, n_particles, **options)

    monkeypatch.setattr(training, "minibatch_elbo", record_validation)
    train_config = TrainConfig(batch_size=20, lr=1e-3, accelerator="cpu", progress_bar=False)
    result = training.fit(
        module,
        make_loader(dataset, train_rows, batch_size=20, shuffle=True),
        make_loader(dataset, val_rows, batch_size=10, shuffle=False),
        train_config,
        n_particles=3,
        max_epochs=1,
    )
    reported = result["history"][0]["val_loss"]

    # Direct: one batch of all 10 validation cells, the same draws; n_t over validation cells.
    module.load_state_dict(seen["state"])
    torch.set_rng_state(seen["rng"])
    batch = seen["batch"]
    with torch.no_grad():
        sample = module.sample_globals(batch.perturbation_index, 3)
        local = module.local_terms(batch.counts, batch.dosage, batch.library_size, sample)
        global_terms = module.global_log_prior(sample) - sample.log_q  # (P, T_b)
    val_dosage = dataset.dosage[val_rows].toarray()
    n_t_validation = (val_dosage != 0).sum(0)  # [2, 4, 2]
    n_t_training = stats.n_cells_per_perturbation  # [10, 6, 0]

    def direct_loss(n_t: np.ndarray) -> float:
        total = local.log_weight.sum(-1)  # (P,)
        for j, t in enumerate(batch.perturbation_index.tolist()):
            carriers = (batch.dosage[:, j] != 0).sum().item()
            if n_t[t] > 0:
                total = total + carriers / n_t[t] * global_terms[:, j]
        return -(total / len(val_rows)).mean().item()

    assert reported == pytest.approx(direct_loss(n_t_validation), rel=1e-5)
    assert abs(reported - direct_loss(n_t_training)) > 1e-2 * abs(reported)
