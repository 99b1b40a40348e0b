from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from samsvae.data import CellDataset, PerturbationDesign, gene_statistics, vocabulary_from_labels
from samsvae.data.validate import check_perturbation_requests


def _design() -> PerturbationDesign:
    return PerturbationDesign(perturbations=("A", "B", "C"), genes=("g0", "g1"), control="ctrl")


def test_vocabulary_splits_combinations_and_drops_the_control() -> None:
    labels = ["ctrl", "B", "A+C", "C + B", "ctrl+A"]
    assert vocabulary_from_labels(labels, "ctrl", "+") == ("A", "B", "C")


def test_combinations_encode_as_sums_of_singles_and_controls_as_zero_rows() -> None:
    dosage = _design().encode(["ctrl", "A", "A+C", "B+C", "C"])
    assert sp.isspmatrix_csr(dosage)
    expected = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(dosage.toarray(), expected)


def test_encode_codes_index_the_distinct_labels_rows_in_a_small_type() -> None:
    labels = ["A", "ctrl", "A+C", "A", "B+C", "ctrl"]
    table, codes = _design().encode_codes(labels)
    assert codes.dtype == np.uint8 and table.shape == (4, 3)  # four distinct labels
    expected = [[1, 0, 0], [0, 0, 0], [1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 0, 0]]
    np.testing.assert_array_equal(table[codes].toarray(), expected)


def test_encode_codes_of_a_categorical_are_its_own_codes() -> None:
    # "D" is not in the design, but no cell carries it: its row stays zero, no error.
    categories = ["A", "A+C", "B+C", "D", "ctrl"]
    labels = pd.Series(pd.Categorical(["A", "ctrl", "A+C", "A", "B+C", "ctrl"], categories))
    table, codes = _design().encode_codes(labels)
    assert np.shares_memory(codes, labels.cat.codes.to_numpy())  # no per-cell copy
    assert table.shape == (5, 3) and table[3].nnz == 0
    np.testing.assert_array_equal(
        table[codes].toarray(), _design().encode(labels.astype(str)).toarray()
    )


@pytest.mark.parametrize("labels", [["A", None, "ctrl"], pd.Series(["A", None], dtype="category")])
def test_encode_codes_name_the_cell_without_a_label(labels) -> None:
    with pytest.raises(ValueError, match="label missing for cell 1"):
        _design().encode_codes(labels)


def test_design_round_trips_through_a_dict() -> None:
    design = _design()
    assert PerturbationDesign.from_dict(design.to_dict()) == design


def test_unknown_perturbation_request_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"Unknown perturbations \['D'\]"):
        check_perturbation_requests(["A+D"], _design())
    assert check_perturbation_requests(["A+B", "ctrl"], _design()) == ["A+B", "ctrl"]


@pytest.mark.parametrize("log1p", [True, False])
def test_gene_statistics_of_csr_equal_dense(log1p: bool) -> None:
    rng = np.random.default_rng(0)
    dense = rng.poisson(1.0, size=(50, 6)).astype(np.float32)
    dense[:, 3] = 0  # a zero-variance gene
    rows = np.arange(0, 50, 2)
    mean_s, std_s = gene_statistics(sp.csr_matrix(dense), rows, log1p=log1p)
    mean_d, _ = gene_statistics(dense, rows, log1p=log1p)
    values = np.log1p(dense[rows]) if log1p else dense[rows]
    np.testing.assert_allclose(mean_s, values.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std_s, values.std(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mean_d, mean_s, rtol=1e-6)
    assert std_s[3] == 0


def test_batches_carry_only_present_perturbations_and_match_dense() -> None:
    rng = np.random.default_rng(1)
    dense = rng.poisson(2.0, size=(8, 5)).astype(np.float32)
    dosage = _design().encode(["ctrl", "A", "A", "C", "ctrl", "A+C", "B", "ctrl"])
    rows = [0, 1, 3, 5]
    sparse_batch = CellDataset(sp.csr_matrix(dense), dosage)[rows]
    dense_batch = CellDataset(dense, dosage)[rows]
    assert sparse_batch.perturbation_index.tolist() == [0, 2]  # B is absent from these rows
    np.testing.assert_array_equal(sparse_batch.dosage.numpy(), [[0, 0], [1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(sparse_batch.counts.numpy(), dense[rows])
    np.testing.assert_array_equal(sparse_batch.counts.numpy(), dense_batch.counts.numpy())
    np.testing.assert_array_equal(
        sparse_batch.library_size.numpy(), np.maximum(dense[rows].sum(1), 1)
    )


def test_device_batches_match_the_host_loader_batch_for_batch() -> None:
    from samsvae.data import DeviceBatches, make_loader

    rng = np.random.default_rng(2)
    dense = rng.poisson(2.0, size=(23, 5)).astype(np.float32)
    labels = ["ctrl", "A", "B", "C", "A+C"] * 4 + ["B", "ctrl", "C"]
    dataset = CellDataset(sp.csr_matrix(dense), _design().encode(labels))
    rows = np.arange(1, 23)
    host = list(make_loader(dataset, rows, batch_size=4, shuffle=True, seed=7))
    device = list(DeviceBatches(dataset, rows, batch_size=4, shuffle=True, device="cpu", seed=7))
    assert len(host) == len(device) == 6
    for a, b in zip(host, device, strict=True):
        for field in ("counts", "dosage", "perturbation_index", "library_size", "index"):
            np.testing.assert_array_equal(getattr(a, field).numpy(), getattr(b, field).numpy())


def test_unique_encoding_makes_every_label_its_own_perturbation() -> None:
    labels = ["ctrl", "A", "A+B", "B", " A+B "]
    assert vocabulary_from_labels(labels, "ctrl", "+", "unique") == ("A", "A+B", "B")
    design = PerturbationDesign(
        perturbations=("A", "A+B", "B"), genes=("g0",), control="ctrl", dosage_encoding="unique"
    )
    np.testing.assert_array_equal(
        design.encode(["ctrl", "A+B", "B"]).toarray(), [[0, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    with pytest.raises(ValueError, match="only labels seen in training"):
        check_perturbation_requests(["B+A"], design)


def _covariate_design() -> PerturbationDesign:
    return PerturbationDesign(
        perturbations=("A", "B"),
        genes=("g0",),
        control="ctrl",
        covariate_keys=("batch", "donor"),
        covariate_categories=(("b1", "b2"), ("d1", "d2", "d3")),
    )


def test_covariates_become_concatenated_one_hot_blocks() -> None:
    design = _covariate_design()
    obs = pd.DataFrame({"batch": ["b2", "b1", "b2"], "donor": ["d3", "d1", "d2"]})
    expected = [[0, 1, 0, 0, 1], [1, 0, 1, 0, 0], [0, 1, 0, 1, 0]]
    np.testing.assert_array_equal(design.encode_covariates(obs), expected)
    assert design.n_covariates == 5
    assert design.covariate_columns()[:3] == ["batch=b1", "batch=b2", "donor=d1"]


def test_an_unseen_covariate_category_is_refused_by_name() -> None:
    obs = pd.DataFrame({"batch": ["b1", "b9"], "donor": ["d1", "d1"]})
    with pytest.raises(ValueError, match=r"adata.obs\['batch'\].*'b9'"):
        _covariate_design().encode_covariates(obs)


def test_design_round_trips_covariates_and_reads_designs_saved_without_them() -> None:
    design = _covariate_design()
    assert PerturbationDesign.from_dict(design.to_dict()) == design
    old = {k: v for k, v in _design().to_dict().items() if not k.startswith("covariate")}
    assert PerturbationDesign.from_dict(old) == _design()
    assert _design().encode_covariates(pd.DataFrame({"x": [1]})) is None
