"""Named, seeded task splits: the Norman OOD and data-efficiency tasks, random split, JSON."""

from __future__ import annotations

import hashlib
import itertools
from typing import TYPE_CHECKING

import numpy as np
import pytest

import samsvae
from samsvae.data import (
    Split,
    make_split,
    norman_data_efficiency_split,
    norman_ood_split,
    random_split,
    splits,
    train_validation_split,
)

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture
def norman(norman_132: ad.AnnData) -> ad.AnnData:
    return norman_132


def _combinations(adata: ad.AnnData, rows: np.ndarray) -> set[str]:
    labels = adata.obs["perturbation"].to_numpy()[rows]
    return {label for label in labels if "+" in label}


def _parts_are_disjoint(split: Split) -> bool:
    rows = np.concatenate([split.train, split.validation, split.test])
    return len(np.unique(rows)) == len(rows)


def test_ood_holds_out_33_of_132_combinations_never_trained_on_up_to_f_075(
    norman: ad.AnnData,
) -> None:
    for fraction in FRACTIONS[:-1]:
        split = norman_ood_split(norman, fraction=fraction, seed=3)
        test = set(split.parameters["test_combinations"])
        assert len(test) == 33
        assert _combinations(norman, split.test) == test
        trained = _combinations(norman, np.concatenate([split.train, split.validation]))
        assert len(trained) == int(fraction * 132)
        assert not trained & test
        assert _parts_are_disjoint(split)


def test_ood_at_f_1_trains_on_every_combination_but_never_on_test_cells(
    norman: ad.AnnData,
) -> None:
    split = norman_ood_split(norman, fraction=1.0, seed=3)
    assert len(_combinations(norman, split.train)) == 132
    assert _parts_are_disjoint(split)


def test_ood_training_sets_are_nested_as_f_grows(norman: ad.AnnData) -> None:
    splits = [norman_ood_split(norman, fraction=f, seed=3) for f in FRACTIONS]
    for smaller, larger in itertools.pairwise(splits):
        assert set(smaller.train) < set(larger.train)
        assert set(smaller.validation) <= set(larger.validation)
        np.testing.assert_array_equal(smaller.test, larger.test)


def test_ood_controls_and_singles_split_80_20_into_training_and_validation(
    norman: ad.AnnData,
) -> None:
    split = norman_ood_split(norman, fraction=0.0, seed=3)
    labels = norman.obs["perturbation"].astype(str)
    n_without_combinations = int((~labels.str.contains("+", regex=False)).sum())
    assert len(split.train) + len(split.validation) == n_without_combinations
    assert len(split.validation) == 0.2 * n_without_combinations  # stratified by label


def test_the_same_seed_gives_the_same_split_and_another_seed_another(
    norman: ad.AnnData,
) -> None:
    first, again = (norman_ood_split(norman, fraction=0.5, seed=7) for _ in range(2))
    other = norman_ood_split(norman, fraction=0.5, seed=8)
    assert first.parameters == again.parameters
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(first, part), getattr(again, part))
    assert first.parameters["test_combinations"] != other.parameters["test_combinations"]


def test_unique_encoding_refuses_untrained_test_combinations(norman: ad.AnnData) -> None:
    with pytest.raises(ValueError, match="dosage_encoding='unique'"):
        norman_ood_split(norman, fraction=0.75, dosage_encoding="unique")
    assert norman_ood_split(norman, fraction=1.0, dosage_encoding="unique").dosage_encoding == (
        "unique"
    )


def test_data_efficiency_keeps_every_combination_and_nests_training(
    norman: ad.AnnData,
) -> None:
    splits = [norman_data_efficiency_split(norman, fraction=f, seed=1) for f in FRACTIONS]
    for split in splits:
        assert _combinations(norman, split.validation) == _combinations(norman, split.test)
        assert len(_combinations(norman, split.test)) == 132
        assert _parts_are_disjoint(split)
    assert not _combinations(norman, splits[0].train)
    assert len(_combinations(norman, splits[-1].train)) == 132
    for smaller, larger in itertools.pairwise(splits):
        assert set(smaller.train) < set(larger.train)
        np.testing.assert_array_equal(smaller.validation, larger.validation)


def test_random_split_is_a_64_16_20_partition(tiny_adata: ad.AnnData) -> None:
    split = make_split(tiny_adata, "random", seed=0)
    sizes = [len(split.train), len(split.validation), len(split.test)]
    assert sum(sizes) == tiny_adata.n_obs and _parts_are_disjoint(split)
    np.testing.assert_allclose(np.array(sizes) / tiny_adata.n_obs, [0.64, 0.16, 0.2], atol=0.01)


def test_a_saved_split_loads_back_exactly(norman: ad.AnnData, tmp_path: Path) -> None:
    split = norman_ood_split(norman, fraction=np.float32(0.25), seed=np.int64(2))  # type: ignore[arg-type]
    split.save(tmp_path / "split.json")
    loaded = Split.load(tmp_path / "split.json")
    assert (loaded.task, loaded.parameters, loaded.seed) == ("norman_ood", split.parameters, 2)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(loaded, part), getattr(split, part))
    loaded.check(norman)
    with pytest.raises(ValueError, match="other cells"):
        loaded.check(norman[::-1])


def test_a_split_trains_a_model_on_its_rows(tiny_adata: ad.AnnData) -> None:
    split = random_split(tiny_adata, seed=0)
    samsvae.SAMSVAE.setup_anndata(tiny_adata, dosage_encoding=split.dosage_encoding)
    model = samsvae.SAMSVAE(tiny_adata, n_latent=2, n_hidden=8, n_particles=1)
    model.train(
        max_steps=1, train_indices=split.train, validation_indices=split.validation,
        progress_bar=False,
    )  # fmt: skip
    np.testing.assert_array_equal(model.train_indices, split.train)


def test_unknown_task_and_bad_fraction_are_refused(norman: ad.AnnData) -> None:
    with pytest.raises(ValueError, match="not a known task"):
        make_split(norman, "norman_odd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fraction=1.5 must lie in \[0, 1\]"):
        norman_ood_split(norman, fraction=1.5)


def test_the_names_fingerprint_fed_in_slices_is_the_hash_of_all_names_joined(
    tiny_adata: ad.AnnData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Splits saved before the names were hashed slice by slice must still check."""
    expected = hashlib.sha256("\0".join(tiny_adata.obs_names).encode()).hexdigest()
    for slice_size in (7, 1, tiny_adata.n_obs, 65_536):
        monkeypatch.setattr(splits, "_NAME_SLICE", slice_size)
        assert splits._obs_names_sha256(tiny_adata) == expected


def test_train_validation_split_is_a_sorted_partition_of_the_seeded_permutation() -> None:
    train, validation = train_validation_split(1003, train_size=0.9, seed=5)
    assert train.dtype == validation.dtype == np.int32  # 4 bytes a cell below 2**31 cells
    order = np.random.default_rng(5).permutation(1003)
    np.testing.assert_array_equal(train, np.sort(order[:903]))
    np.testing.assert_array_equal(validation, np.sort(order[903:]))
