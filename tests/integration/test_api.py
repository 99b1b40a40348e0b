"""The user-facing SAMSVAE class on a tiny simulated screen."""

from __future__ import annotations

import logging
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import samsvae
from samsvae.base.training import set_training_statistics
from samsvae.inference.mask_refinement import OFF_PROBABILITY, ON_PROBABILITY

FAST = {"max_epochs": 2, "batch_size": 64, "progress_bar": False}


def _parameters(model: samsvae.SAMSVAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def test_setup_anndata_only_writes_its_uns_entry(tiny_adata: ad.AnnData) -> None:
    before = tiny_adata.copy()
    samsvae.SAMSVAE.setup_anndata(tiny_adata, perturbation_key="perturbation", control="control")
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(**FAST)
    assert set(tiny_adata.uns) - set(before.uns) == {"samsvae"}
    assert (tiny_adata.X != before.X).nnz == 0
    pd.testing.assert_frame_equal(tiny_adata.obs, before.obs)
    assert list(tiny_adata.obsm) == list(before.obsm)


def test_train_records_history_and_getters_have_documented_shapes(
    tiny_model: samsvae.SAMSVAE,
) -> None:
    tiny_model.train(**FAST)
    assert list(tiny_model.history["epoch"]) == [0, 1]
    assert np.isfinite(tiny_model.history[["train_loss", "val_loss"]].to_numpy()).all()
    n_obs = tiny_model.adata.n_obs
    assert tiny_model.get_latent_representation().shape == (n_obs, 4)
    assert tiny_model.get_latent_representation(latent="full").shape == (n_obs, 4)
    probabilities = tiny_model.get_mask_probabilities()
    assert probabilities.shape == (6, 4)
    assert list(probabilities.index) == [f"P{t}" for t in range(6)]
    assert ((probabilities > 0) & (probabilities < 1)).all().all()


def test_predict_generates_cells_for_singles_and_unseen_combinations(
    tiny_model: samsvae.SAMSVAE,
) -> None:
    tiny_model.train(**FAST)
    generated = tiny_model.predict(["P0", "P1+P5", "control"], n_samples=7)
    assert generated.shape == (21, 24)
    assert generated.obs["perturbation"].value_counts().to_dict() == {
        "P0": 7,
        "P1+P5": 7,
        "control": 7,
    }
    assert np.all(generated.X >= 0) and np.all(np.round(generated.X) == generated.X)
    with pytest.raises(ValueError, match=r"Unknown perturbations \['P9'\]"):
        tiny_model.predict(["P9"], n_samples=2)


def test_average_treatment_effects_are_interventions_by_genes(
    tiny_model: samsvae.SAMSVAE,
) -> None:
    tiny_model.train(**FAST)
    effects = tiny_model.average_treatment_effects(["P0", "P0+P1"], n_samples=200)
    assert effects.shape == (2, 24)
    assert list(effects.obs_names) == ["P0", "P0+P1"]
    assert np.isfinite(effects.X).all()
    everything = tiny_model.average_treatment_effects(n_samples=50)
    assert everything.n_obs == 6 + 4  # every observed single and combination
    again = tiny_model.average_treatment_effects(["P0", "P0+P1"], n_samples=200)
    np.testing.assert_array_equal(effects.X, again.X)  # seeded
    assert effects.layers["standard_error"].shape == (2, 24)
    assert (effects.layers["standard_error"] > 0).all()
    assert effects.uns["estimator"] == "expected" and effects.uns["n_samples"] == 200


def test_default_effects_agree_with_the_papers_sampled_estimator(
    tiny_model: samsvae.SAMSVAE,
) -> None:
    tiny_model.train(**FAST)
    expected = tiny_model.average_treatment_effects(["P0", "P0+P1"])  # n_samples="auto"
    sampled = tiny_model.average_treatment_effects(
        ["P0", "P0+P1"], estimator="sampled", n_samples=3000
    )
    assert expected.uns["n_samples"] >= 200
    assert expected.layers["standard_error"].max() <= 0.02
    combined = np.sqrt(
        expected.layers["standard_error"] ** 2 + sampled.layers["standard_error"] ** 2
    )
    z = (expected.X - sampled.X) / combined
    assert np.sqrt((z**2).mean()) < 1.5  # agree within the Monte-Carlo error
    assert np.median(sampled.layers["standard_error"]) > np.median(
        expected.layers["standard_error"]
    )


def test_iwelbo_of_held_out_cells_is_finite_and_improves_with_training(
    tiny_adata: ad.AnnData,
) -> None:
    test = tiny_adata[::5].copy()
    train = tiny_adata[np.arange(tiny_adata.n_obs) % 5 != 0].copy()
    samsvae.SAMSVAE.setup_anndata(train)
    model = samsvae.SAMSVAE(train, n_latent=4, n_hidden=16, n_particles=3)
    set_training_statistics(model.module, *_dataset_and_rows(model), log1p=True)
    before = model.iwelbo(test, n_particles=20)
    model.train(max_epochs=30, batch_size=64, lr=3e-3, progress_bar=False)
    after = model.iwelbo(test, n_particles=20)
    assert np.isfinite(before) and np.isfinite(after)
    assert after > before + 1.0


def _dataset_and_rows(model: samsvae.SAMSVAE):
    """The model's training data set and all its rows (the statistics before training)."""
    _, dataset = model._dataset(None)
    return dataset, np.arange(len(dataset))


def test_same_seed_gives_identical_parameters_and_another_seed_does_not(
    tiny_adata: ad.AnnData,
) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    runs = []
    for seed in (0, 0, 1):
        model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16, guide="correlated")
        model.train(seed=seed, **FAST)
        runs.append(_parameters(model))
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_first_fit_starts_from_the_seeds_initial_weights(tiny_adata: ad.AnnData) -> None:
    """train(seed=s) re-draws the initial weights from s: with a learning rate too small to move
    them, the trained weights are the seed's initial ones, and two seeds give two starts."""
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    starts = {}
    for seed in (3, 4):
        model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
        expected = model._build_module(seed=seed).state_dict()
        model.train(seed=seed, max_steps=1, lr=1e-12, global_lr=1e-12, progress_bar=False)
        trained = dict(model.module.named_parameters())
        for key, value in expected.items():
            if key in trained:  # parameters; buffers hold the training data's statistics
                torch.testing.assert_close(trained[key].detach(), value, rtol=0, atol=1e-9)
        starts[seed] = trained["decoder.input_layer.weight"].detach().clone()
    assert not torch.allclose(starts[3], starts[4])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_is_left_alone_by_default_and_every_choice_trains_the_same(
    tiny_adata: ad.AnnData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samsvae.inference.training as training

    thresholds: list[int] = []
    set_thresholds = training._set_malloc_thresholds

    def recorded(value: int) -> bool:
        thresholds.append(value)
        return set_thresholds(value)

    monkeypatch.setattr(training, "_set_malloc_thresholds", recorded)
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    runs = {}
    for allocator in ("default", "reuse", "compact"):
        thresholds.clear()
        model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
        model.train(cpu_allocator=allocator, **FAST)
        runs[allocator] = (list(thresholds), _parameters(model))
    static, raised = 128 * 1024, 1 << 30
    assert runs["default"][0] == []  # the user's heap settings are not touched
    assert runs["reuse"][0] == [raised, static]  # raised for the run, glibc's static after
    assert runs["compact"][0] == [static]
    for allocator in ("reuse", "compact"):
        for key, value in runs["default"][1].items():
            assert torch.equal(value, runs[allocator][1][key]), (allocator, key)


def test_training_predicting_and_saving_leave_the_users_process_as_it_was(
    tiny_adata: ad.AnnData, tmp_path
) -> None:
    from samsvae.inference.process_state import ProcessState

    logging.getLogger("lightning.pytorch").setLevel(logging.INFO)
    torch.manual_seed(2024)
    before, rng = ProcessState.now(), torch.random.get_rng_state()
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(**FAST)
    model.predict(["control"], n_samples=2)
    model.average_treatment_effects(n_samples=10)
    model.save(tmp_path / "model")
    samsvae.SAMSVAE.load(tmp_path / "model", adata=tiny_adata)
    assert ProcessState.now() == before
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert logging.getLogger("lightning.pytorch").level == logging.INFO
    assert model.global_rank == 0


def test_mask_refinement_varimax_refuses_a_model_it_cannot_rotate(tiny_adata: ad.AnnData) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16, guide="correlated")
    with pytest.raises(ValueError, match="mask_refinement='varimax' needs SAMS-VAE"):
        model.train(mask_refinement="varimax", **FAST)
    with pytest.raises(ValueError, match="mask_refinement="):
        model.train(mask_refinement="rotate", **FAST)
    plain = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    with pytest.warns(UserWarning, match="needs at least 9 epochs; 2 train as published"):
        plain.train(mask_refinement="varimax", **FAST)


def test_mask_refinement_varimax_prunes_once_and_holds_the_masks_to_the_end(
    tiny_adata: ad.AnnData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samsvae.inference.mask_refinement as mask_refinement
    import samsvae.inference.training as training

    pruned = []
    prune = training.prune_masks
    monkeypatch.setattr(training, "prune_masks", lambda module: pruned.append(prune(module)))
    # nine epochs on the tiny data leave no entry 5 posterior sds out, so the sd rule (unit
    # tested on its own) would switch every entry off
    monkeypatch.setattr(mask_refinement, "PRUNE_BELOW_SDS", 0.0)
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(mask_refinement="varimax", **{**FAST, "max_epochs": 9})  # restart 6, prune 8
    assert len(pruned) == 1
    probabilities = model.get_mask_probabilities().to_numpy()
    on = probabilities > 0.5
    assert on.any() and not on.all()
    assert not (on & pruned[0]).any()  # what the pruning switched off stays off
    held = np.where(on, ON_PROBABILITY, OFF_PROBABILITY)
    np.testing.assert_allclose(probabilities, held, rtol=1e-6)


def test_mask_refinement_varimax_warns_when_the_pruning_switches_every_mask_off(
    tiny_adata: ad.AnnData,
) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    with pytest.warns(UserWarning, match="switched off every mask entry"):
        model.train(mask_refinement="varimax", **{**FAST, "max_epochs": 9})  # too short
    assert not (model.get_mask_probabilities().to_numpy() > 0.5).any()


def test_out_of_core_training_keeps_the_split_it_trained_on(
    tiny_adata: ad.AnnData, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training rows are held as bits while training out of core, and come back as the
    same positions, in the same integer type, as an in-memory run keeps."""
    import samsvae.base.training as training
    from samsvae.data.splits import train_validation_split
    from samsvae.data.streaming import RowBits, read_backed

    held = []
    keep = training.rows_to_hold
    monkeypatch.setattr(
        training, "rows_to_hold", lambda *args: held.append(keep(*args)) or held[-1]
    )
    tiny_adata.write_h5ad(tmp_path / "tiny.h5ad")
    backed = read_backed(tmp_path / "tiny.h5ad")
    samsvae.SAMSVAE.setup_anndata(backed)
    model = samsvae.SAMSVAE(backed, n_latent=4, n_hidden=16)
    model.train(train_size=0.7, seed=5, max_steps=2, batch_size=64, progress_bar=False)
    train, validation = train_validation_split(backed.n_obs, train_size=0.7, seed=5)
    assert isinstance(held[-1], RowBits)
    assert model.train_indices.dtype == train.dtype == np.int32
    np.testing.assert_array_equal(model.train_indices, train)
    np.testing.assert_array_equal(model.validation_indices, validation)

    given = np.random.default_rng(1).permutation(backed.n_obs)[:60]
    model = samsvae.SAMSVAE(backed, n_latent=4, n_hidden=16)
    split = {"train_indices": given[:50], "validation_indices": given[50:]}
    model.train(**split, max_steps=1, batch_size=64, progress_bar=False)
    assert model.train_indices.dtype == np.int64
    np.testing.assert_array_equal(model.train_indices, np.sort(given[:50]))


def test_dense_and_csr_counts_train_identically(tiny_adata: ad.AnnData) -> None:
    dense = tiny_adata.copy()
    dense.X = np.asarray(dense.X.toarray())
    results = []
    for data in (tiny_adata, dense):
        samsvae.SAMSVAE.setup_anndata(data)
        model = samsvae.SAMSVAE(data, n_latent=4, n_hidden=16)
        model.train(**FAST)
        results.append(_parameters(model))
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key])


def test_ready_dosage_matrix_in_obsm_matches_labels(tiny_adata: ad.AnnData) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    from_labels = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    dosage = from_labels._dosage(tiny_adata)
    tiny_adata.obsm["dosage"] = pd.DataFrame(
        dosage.toarray(),
        index=tiny_adata.obs_names,
        columns=list(from_labels.design.perturbations),
    )
    samsvae.SAMSVAE.setup_anndata(tiny_adata, perturbation_key=None, dosage_key="dosage")
    from_obsm = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    assert from_obsm.design.perturbations == from_labels.design.perturbations
    assert (from_obsm._dosage(tiny_adata) != dosage).nnz == 0
    from_obsm.train(**FAST)


def test_layer_counts_are_used_when_given(tiny_adata: ad.AnnData) -> None:
    tiny_adata.layers["counts"] = tiny_adata.X.copy()
    tiny_adata.X = sp.csr_matrix(np.log1p(tiny_adata.X.toarray()))  # not counts
    with pytest.raises(ValueError, match="non-integer"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata)
        samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    samsvae.SAMSVAE.setup_anndata(tiny_adata, layer="counts")
    samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16).train(**FAST)


def test_normal_likelihood_trains_on_real_valued_data() -> None:
    adata = samsvae.datasets.simulate(
        n_perturbations=4,
        n_combinations=2,
        n_genes=12,
        n_cells_per_perturbation=20,
        n_cells_per_combination=20,
        n_control_cells=40,
        likelihood="normal",
        seed=3,
    )
    assert np.any(adata.X < 0)
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, n_latent=4, n_hidden=16, likelihood="normal")
    model.train(**FAST)
    effects = model.average_treatment_effects(["P0+P1"], method="mean", n_samples=100)
    assert np.isfinite(effects.X).all()


def test_user_class_signature_equals_config_fields() -> None:
    import dataclasses
    import inspect

    from samsvae.config import SAMSVAEConfig

    parameters = inspect.signature(samsvae.SAMSVAE.__init__).parameters
    fields = {f.name: f.default for f in dataclasses.fields(SAMSVAEConfig)}
    user = {name: p.default for name, p in parameters.items() if name not in ("self", "adata")}
    assert user == fields


def test_cpa_vae_trains_saves_and_loads(tiny_adata: ad.AnnData, tmp_path) -> None:
    import dataclasses
    import inspect

    from samsvae.config import CPAVAEConfig

    parameters = inspect.signature(samsvae.CPAVAE.__init__).parameters
    user = {n: p.default for n, p in parameters.items() if n not in ("self", "adata")}
    assert user == {f.name: f.default for f in dataclasses.fields(CPAVAEConfig)}

    samsvae.CPAVAE.setup_anndata(tiny_adata)
    model = samsvae.CPAVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(**FAST)
    assert (model.get_mask_probabilities().to_numpy() == 1).all()
    loaded = samsvae.CPAVAE.load(model.save(tmp_path / "cpa"))
    np.testing.assert_array_equal(
        loaded.average_treatment_effects(["P0+P1"], n_samples=50).X,
        model.average_treatment_effects(["P0+P1"], n_samples=50).X,
    )
    with pytest.raises(ValueError, match=r"load it with samsvae\.CPAVAE\.load"):
        samsvae.SAMSVAE.load(tmp_path / "cpa")


def test_conditional_vae_trains_predicts_combinations_and_round_trips(
    tiny_adata: ad.AnnData, tmp_path
) -> None:
    import dataclasses
    import inspect

    from samsvae.config import ConditionalVAEConfig

    parameters = inspect.signature(samsvae.ConditionalVAE.__init__).parameters
    user = {n: p.default for n, p in parameters.items() if n not in ("self", "adata")}
    assert user == {f.name: f.default for f in dataclasses.fields(ConditionalVAEConfig)}

    samsvae.ConditionalVAE.setup_anndata(tiny_adata)
    model = samsvae.ConditionalVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(**FAST)
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    assert model.predict(["P1+P5"], n_samples=4).shape == (4, 24)
    with pytest.raises(TypeError, match="no masks"):
        model.get_mask_probabilities()
    loaded = samsvae.ConditionalVAE.load(model.save(tmp_path / "cvae"))
    np.testing.assert_array_equal(
        loaded.average_treatment_effects(["P0+P1"], n_samples=50).X,
        model.average_treatment_effects(["P0+P1"], n_samples=50).X,
    )


def test_unique_encoding_trains_and_refuses_unseen_combinations(tiny_adata: ad.AnnData) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata, dosage_encoding="unique")
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    assert model.design.n_perturbations == 6 + 4  # singles and observed combinations
    model.train(**FAST)
    seen = next(p for p in model.design.perturbations if "+" in p)
    assert model.average_treatment_effects([seen], n_samples=20).shape == (1, 24)
    with pytest.raises(ValueError, match="only labels seen in training"):
        model.predict(["P1+P5"] if seen != "P1+P5" else ["P0+P5"], n_samples=2)
    with pytest.raises(ValueError, match="dosage_encoding='onehot' is not supported"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, dosage_encoding="onehot")  # type: ignore[arg-type]


def test_explicit_split_trains_only_on_given_cells(tiny_adata: ad.AnnData) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16, n_particles=2)
    labels = tiny_adata.obs["perturbation"].astype(str).to_numpy()
    held_out = np.flatnonzero(["P0" in label.split("+") for label in labels])
    rest = np.setdiff1d(np.arange(tiny_adata.n_obs), held_out)
    model.train(**FAST, train_indices=rest[::2], validation_indices=rest[1::2])
    np.testing.assert_array_equal(model.train_indices, rest[::2])
    np.testing.assert_array_equal(model.validation_indices, rest[1::2])
    n_t = model.module.n_cells_per_perturbation.numpy()
    assert n_t[model.design.perturbations.index("P0")] == 0  # no training cell carries P0
    with pytest.raises(ValueError, match="must be disjoint"):
        model.train(**FAST, train_indices=rest, validation_indices=rest[:3])
    with pytest.raises(ValueError, match="outside"):
        model.train(**FAST, train_indices=[tiny_adata.n_obs])
    with pytest.raises(ValueError, match="needs train_indices"):
        model.train(**FAST, validation_indices=rest)


def test_svae_plus_uses_one_label_per_cell_and_round_trips(
    tiny_adata: ad.AnnData, tmp_path
) -> None:
    import dataclasses
    import inspect

    from samsvae.config import SVAEPlusConfig

    parameters = inspect.signature(samsvae.SVAEPlus.__init__).parameters
    user = {n: p.default for n, p in parameters.items() if n not in ("self", "adata")}
    assert user == {f.name: f.default for f in dataclasses.fields(SVAEPlusConfig)}

    samsvae.SVAEPlus.setup_anndata(tiny_adata)  # additive by default: SVAE+ overrides it
    model = samsvae.SVAEPlus(tiny_adata, n_latent=4, n_hidden=16)
    assert model.design.dosage_encoding == "unique"
    assert model.design.n_perturbations == 6 + 4  # singles and observed combinations
    model.train(**FAST)
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    seen = next(p for p in model.design.perturbations if "+" in p)
    loaded = samsvae.SVAEPlus.load(model.save(tmp_path / "svae_plus"))
    np.testing.assert_array_equal(
        loaded.average_treatment_effects([seen], n_samples=50).X,
        model.average_treatment_effects([seen], n_samples=50).X,
    )
    with pytest.raises(ValueError, match="only labels seen in training"):
        model.predict(["P1+P5"] if seen != "P1+P5" else ["P0+P5"], n_samples=2)


def test_svae_plus_refuses_a_dosage_matrix_with_several_perturbations_per_cell(
    tiny_adata: ad.AnnData,
) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    dosage = samsvae.SAMSVAE(tiny_adata, n_latent=2, n_hidden=4)._dosage(tiny_adata)
    tiny_adata.obsm["d"] = dosage.toarray()
    samsvae.SVAEPlus.setup_anndata(tiny_adata, dosage_key="d")
    with pytest.raises(ValueError, match="at most one perturbation per cell"):
        samsvae.SVAEPlus(tiny_adata, n_latent=2, n_hidden=4)


def test_beta_bernoulli_sams_vae_trains_and_round_trips(tiny_adata: ad.AnnData, tmp_path) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(
        tiny_adata, n_latent=4, n_hidden=16, mask_prior=0.2, mask_prior_concentration=10.0
    )
    model.train(**FAST)
    loaded = samsvae.SAMSVAE.load(model.save(tmp_path / "bb"))
    assert loaded.config.mask_beta_prior == pytest.approx((2.0, 8.0))
    pd.testing.assert_frame_equal(loaded.get_mask_probabilities(), model.get_mask_probabilities())
    with pytest.raises(ValueError, match="mask_prior_concentration"):
        samsvae.SAMSVAE(tiny_adata, mask_prior_concentration=0.0)


def test_treatment_effect_intervals_bracket_the_draw_mean(tiny_model: samsvae.SAMSVAE) -> None:
    tiny_model.train(**FAST)
    result = tiny_model.treatment_effect_intervals(
        ["P0", "P1+P5"], n_global_samples=20, n_samples_per_global=10
    )
    assert result.shape == (2, 24) and list(result.obs_names) == ["P0", "P1+P5"]
    assert result.uns["level"] == 0.9
    assert np.all(result.layers["lower"] <= result.X + 1e-6)
    assert np.all(result.layers["upper"] + 1e-6 >= result.X)
    assert np.all(result.layers["upper"] > result.layers["lower"])
    with pytest.raises(ValueError, match=r"level=1\.5"):
        tiny_model.treatment_effect_intervals(["P0"], level=1.5)


def test_defaults_are_chosen_from_the_data(tiny_adata: ad.AnnData) -> None:
    from samsvae import defaults

    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata)
    n_perturbations = model.design.n_perturbations
    assert model.config.n_latent == defaults.n_latent_for(n_perturbations) == 12  # 4 ceil(sqrt 6)
    assert model.config.n_hidden == 128 and model.config.guide == "mean_field"
    model.train(max_epochs=1, progress_bar=False)
    settings = model.train_settings
    n_train = len(model.train_indices)
    assert settings["batch_size"] == 128 and settings["lr"] == 1e-3
    assert settings["global_lr"] == pytest.approx(3e-2)
    assert defaults.max_epochs_for(n_train, 128) == 400  # a tiny screen: the upper bound
    assert defaults.max_epochs_for(1_000_000, 512) == 20 and defaults.n_hidden_for(10**6) == 400
    preset = samsvae.SAMSVAE(tiny_adata, **samsvae.presets["replogle"])
    assert (preset.config.n_latent, preset.config.n_hidden) == (100, 400)


def test_effects_at_the_data_depth_draw_control_library_sizes(tiny_model: samsvae.SAMSVAE) -> None:
    tiny_model.train(**FAST)
    adata = tiny_model.adata
    is_control = (adata.obs["perturbation"] == "control").to_numpy()
    train = np.zeros(adata.n_obs, bool)
    train[tiny_model.train_indices] = True
    control_depth = np.asarray(adata.X[train & is_control].sum(1)).ravel()
    quantiles = tiny_model.module.library_size_quantiles.numpy()
    np.testing.assert_allclose(
        quantiles[[0, 50, 100]], np.quantile(control_depth, [0, 0.5, 1]), rtol=1e-5
    )
    at_depth = tiny_model.average_treatment_effects(["P0"], n_samples=200, progress_bar=False)
    deep = tiny_model.average_treatment_effects(
        ["P0"], n_samples=200, library_size=1e4, progress_bar=False
    )
    assert at_depth.uns["library_size"] == "data" and deep.uns["library_size"] == 1e4
    assert not np.allclose(at_depth.X, deep.X)
    cells = tiny_model.predict(["P0"], n_samples=300, library_size="data")
    depth = np.asarray(cells.X.sum(1)).ravel()
    # each sample's depth comes from the control cells': its spread, not one fixed size
    assert depth.std() > 0.2 * control_depth.std()
