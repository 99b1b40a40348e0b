"""Bad input gets a clear error from our code, and the user's AnnData is left alone."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import samsvae


def _with_value(adata: ad.AnnData, value: float) -> ad.AnnData:
    dense = adata.X.toarray()
    dense[3, 2] = value
    adata.X = sp.csr_matrix(dense)
    return adata


def test_missing_perturbation_key_names_the_columns(tiny_adata: ad.AnnData) -> None:
    message = r"perturbation_key='guide' is not a column.*perturbation"
    with pytest.raises(ValueError, match=message):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, perturbation_key="guide")
    assert "samsvae" not in tiny_adata.uns


def test_absent_control_label_suggests_close_labels(tiny_adata: ad.AnnData) -> None:
    with pytest.raises(ValueError, match=r"control='ctrl' is not a label.*control"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, control="ctrl")


def test_missing_labels_are_reported_with_cells(tiny_adata: ad.AnnData) -> None:
    tiny_adata.obs["perturbation"] = tiny_adata.obs["perturbation"].astype(object)
    tiny_adata.obs.iloc[5, 0] = None
    with pytest.raises(ValueError, match=r"missing labels.*cell5"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.nan, "NaN or infinite"),
        (np.inf, "NaN or infinite"),
        (-1.0, "negative values"),
        (2.5, "non-integer values"),
    ],
)
def test_invalid_counts_are_rejected_without_touching_the_data(
    tiny_adata: ad.AnnData, value: float, message: str
) -> None:
    adata = _with_value(tiny_adata, value)
    before = adata.X.copy()
    samsvae.SAMSVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match=message):
        samsvae.SAMSVAE(adata, n_latent=4, n_hidden=16)
    np.testing.assert_array_equal(adata.X.data, before.data)


def test_non_integer_values_are_fine_for_the_normal_likelihood(tiny_adata) -> None:
    adata = _with_value(tiny_adata, 2.5)
    samsvae.SAMSVAE.setup_anndata(adata)
    samsvae.SAMSVAE(adata, n_latent=4, n_hidden=16, likelihood="normal")


def test_dense_nan_is_rejected(tiny_adata: ad.AnnData) -> None:
    tiny_adata.X = tiny_adata.X.toarray()
    tiny_adata.X[0, 0] = np.nan
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    with pytest.raises(ValueError, match="NaN"):
        samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)


def test_zero_variance_gene_trains_to_a_finite_loss(tiny_adata: ad.AnnData) -> None:
    dense = tiny_adata.X.toarray()
    dense[:, 0] = 0.0  # never expressed
    dense[:, 1] = 3.0  # constant
    tiny_adata.X = sp.csr_matrix(dense)
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16)
    model.train(max_epochs=2, batch_size=64, progress_bar=False)
    assert np.isfinite(model.history[["train_loss", "val_loss"]].to_numpy()).all()
    assert np.isfinite(model.get_latent_representation()).all()


def test_empty_anndata_and_wrong_types_are_rejected(tiny_adata: ad.AnnData) -> None:
    with pytest.raises(ValueError, match="adata is empty"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata[:0].copy())
    with pytest.raises(TypeError, match="Expected an AnnData"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata.X)  # type: ignore[arg-type]


def test_model_without_setup_says_what_to_call(tiny_adata: ad.AnnData) -> None:
    with pytest.raises(ValueError, match=r"call samsvae.SAMSVAE.setup_anndata"):
        samsvae.SAMSVAE(tiny_adata)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latent": 0}, "n_latent=0 must be an integer >= 1"),
        ({"mask_prior": 1.5}, "mask_prior=1.5 must be a number strictly between 0 and 1"),
        ({"guide": "full"}, "guide='full' is not supported"),
        ({"likelihood": "zinb"}, "likelihood='zinb' is not supported"),
    ],
)
def test_absurd_hyperparameters_are_rejected(tiny_adata, kwargs, message) -> None:
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    with pytest.raises(ValueError, match=message):
        samsvae.SAMSVAE(tiny_adata, **kwargs)


def test_bad_training_settings_are_rejected(tiny_model: samsvae.SAMSVAE) -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        tiny_model.train(batch_size=0)
    with pytest.raises(ValueError, match=r"train_size=1\.5"):
        tiny_model.train(train_size=1.5)


def test_new_data_with_other_genes_or_unknown_labels_is_rejected(tiny_model, tiny_adata) -> None:
    with pytest.raises(ValueError, match="genes do not match"):
        tiny_model.iwelbo(tiny_adata[:, :10].copy())
    other = tiny_adata.copy()
    other.obs["perturbation"] = other.obs["perturbation"].astype(str)
    other.obs.iloc[0, 0] = "P77"
    with pytest.raises(ValueError, match=r"Unknown perturbations \['P77'\]"):
        tiny_model.iwelbo(other)


def test_labels_that_name_no_perturbation_are_rejected(tiny_adata: ad.AnnData) -> None:
    tiny_adata.obs["perturbation"] = tiny_adata.obs["perturbation"].astype(str)
    tiny_adata.obs.iloc[3, 0] = " + "
    with pytest.raises(ValueError, match=r"Labels \[' \+ '\] .* name no perturbation"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata)


def test_ambiguous_control_labels_are_rejected(tiny_adata: ad.AnnData) -> None:
    tiny_adata.obs["perturbation"] = tiny_adata.obs["perturbation"].astype(str)
    tiny_adata.obs.iloc[3, 0] = "Control "
    with pytest.raises(ValueError, match=r"control='control' is ambiguous: .*\['Control '\]"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata)
    with pytest.raises(ValueError, match="contains the combination delimiter"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, control="ctrl+neg")


def test_dosage_matrix_with_a_perturbation_of_zero_cells_is_rejected(
    tiny_adata: ad.AnnData,
) -> None:
    dosage = pd.DataFrame(np.zeros((tiny_adata.n_obs, 3)), columns=["A", "B", "C"])
    dosage.iloc[:5, 0] = 1.0
    dosage.iloc[5:9, 2] = 1.0
    tiny_adata.obsm["d"] = dosage.set_index(tiny_adata.obs_names)
    with pytest.raises(ValueError, match=r"1 perturbation column\(s\) with zero cells .*\['B'\]"):
        samsvae.SAMSVAE.setup_anndata(tiny_adata, dosage_key="d")
    assert "samsvae" not in tiny_adata.uns  # nothing was registered
