"""Covariates through the user API: setup, training, save/load, predictions, errors, and a
seeded simulation where a batch effect confounded with the perturbations is removed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import samsvae
from samsvae.data.streaming import read_backed

SMALL = {"n_latent": 4, "n_hidden": 16, "n_particles": 2}


@pytest.fixture
def batched(tiny_adata):
    rng = np.random.default_rng(0)
    tiny_adata.obs["batch"] = rng.choice(["b1", "b2"], tiny_adata.n_obs)
    tiny_adata.obs["donor"] = rng.choice(["d1", "d2", "d3"], tiny_adata.n_obs)
    samsvae.SAMSVAE.setup_anndata(tiny_adata, covariate_keys=["batch", "donor"])
    return tiny_adata


@pytest.mark.parametrize("cls", [samsvae.SAMSVAE, samsvae.CPAVAE, samsvae.ConditionalVAE])
def test_a_model_with_covariates_trains_saves_and_loads(batched, cls, tmp_path) -> None:
    model = cls(batched, **SMALL)
    assert model.design.covariate_categories == (("b1", "b2"), ("d1", "d2", "d3"))
    model.train(max_epochs=2, progress_bar=False)
    shares = model.module.covariate_frequencies.numpy()
    expected = [np.mean(batched.obs["batch"].to_numpy()[model.train_indices] == "b1")]
    np.testing.assert_allclose(shares[0], expected[0], rtol=1e-6)
    np.testing.assert_allclose([shares[:2].sum(), shares[2:].sum()], [1, 1], rtol=1e-6)
    before = model.average_treatment_effects(["P0"], n_samples=50).X
    model.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m", batched)
    np.testing.assert_array_equal(loaded.average_treatment_effects(["P0"], n_samples=50).X, before)
    assert np.isfinite(loaded.iwelbo(n_particles=3))
    assert loaded.get_latent_representation(n_samples=2).shape == (batched.n_obs, 4)


def test_fixed_covariates_change_predictions_and_are_checked(batched) -> None:
    model = samsvae.SAMSVAE(batched, **SMALL)
    model.train(max_epochs=2, progress_bar=False)
    one = model.predict(["P0"], n_samples=20, covariates={"batch": "b1", "donor": "d1"}).X
    two = model.predict(["P0"], n_samples=20, covariates={"batch": "b2", "donor": "d1"}).X
    assert not np.array_equal(one, two)
    with pytest.raises(ValueError, match="one category for each covariate key"):
        model.average_treatment_effects(["P0"], covariates={"batch": "b1"})
    with pytest.raises(ValueError, match="'b9'"):
        model.predict(["P0"], covariates={"batch": "b9", "donor": "d1"})
    other = batched.copy()
    other.obs["batch"] = "b7"
    with pytest.raises(ValueError, match="not set up with"):
        model.iwelbo(other)
    del other.obs["donor"]
    with pytest.raises(KeyError, match="donor"):
        model.iwelbo(other)


def test_a_model_without_covariates_refuses_them(tiny_model) -> None:
    with pytest.raises(ValueError, match="covariate key"):
        tiny_model.average_treatment_effects(["P0"], covariates={"batch": "b1"})


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (["nope"], "not columns of adata.obs"),
        (["perturbation"], "perturbation column"),
        (["batch", "batch"], "twice"),
        (["with_gaps"], "missing values"),
    ],
)
def test_bad_covariate_keys_are_refused_at_setup(tiny_adata, keys, problem) -> None:
    tiny_adata.obs["batch"] = "b1"
    tiny_adata.obs["with_gaps"] = ["x", None] * (tiny_adata.n_obs // 2)
    before = tiny_adata.copy()
    with pytest.raises(ValueError, match=problem):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, covariate_keys=keys)
    assert "samsvae" not in tiny_adata.uns
    assert tiny_adata.obs.equals(before.obs)


def test_a_lone_covariate_key_string_is_one_key(tiny_adata) -> None:
    tiny_adata.obs["batch"] = "b1"
    samsvae.SAMSVAE.setup_anndata(tiny_adata, covariate_keys="batch")
    assert samsvae.SAMSVAE(tiny_adata, **SMALL).design.covariate_keys == ("batch",)


def test_out_of_core_batches_carry_the_same_covariates(batched, tmp_path) -> None:
    path = tmp_path / "batched.h5ad"
    batched.write_h5ad(path)
    backed = read_backed(path)
    samsvae.SAMSVAE.setup_anndata(backed, covariate_keys=["batch", "donor"])
    on_disk = samsvae.SAMSVAE(backed, **SMALL)
    in_memory = samsvae.SAMSVAE(batched, **SMALL)
    rows = np.array([5, 3, 40, 41])
    _, disk_data = on_disk._dataset(None)
    _, memory_data = in_memory._dataset(None)
    torch.testing.assert_close(disk_data[rows].covariates, memory_data[rows].covariates)
    on_disk.train(max_epochs=1, progress_bar=False)
    assert np.isfinite(on_disk.history["train_loss"]).all()


def test_batch_covariates_remove_a_confounded_batch_effect() -> None:
    # Seed 0 of benchmarks/science/batch_confounding.py: batch 1 shifts every gene's log
    # expression by N(0, 2^2); controls sit 95% in batch 0 and each perturbation 95% in a
    # preferred batch, so half the perturbations are confounded with the batch. The reference is
    # the data ATE of the same screen with batches assigned at random.
    correlation = _batch_confounding_benchmark().run(0)
    # measured: 0.934 with the batch covariate, 0.850 without
    assert correlation["SAMS-VAE + batch"] > 0.9
    assert correlation["SAMS-VAE + batch"] > correlation["SAMS-VAE, no covariate"] + 0.05


def _batch_confounding_benchmark() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks/science/batch_confounding.py"
    spec = importlib.util.spec_from_file_location("batch_confounding", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
