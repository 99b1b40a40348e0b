"""Dataset loaders on small files of the published schemas; no test touches the network."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp

import samsvae
from samsvae.datasets import cache

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(directory))
    return directory


def _serve(monkeypatch: pytest.MonkeyPatch, name: str, source: Path, sha256: str | None = None):
    """Point the registry entry ``name`` at a local file:// URL."""
    remote = dataclasses.replace(cache.REGISTRY[name], url=source.as_uri(), sha256=sha256)
    monkeypatch.setitem(cache.REGISTRY, name, remote)


def test_replogle_is_canonical_counts_and_guide_pair_labels(replogle_file: Path) -> None:
    adata = samsvae.datasets.replogle2022_k562(replogle_file)
    assert sp.isspmatrix_csr(adata.X)
    assert np.array_equal(adata.X.data, np.round(adata.X.data))
    labels = dict(zip(adata.obs["sgID_AB"], adata.obs["perturbation"], strict=True))
    assert labels["AARS_+_70323216.23-P1P2|AARS_-_70323392.23-P1P2"] == "AARS"
    assert labels["BB_+_10.1-P1|BB_+_12.1-P1"] == "BB_1"
    assert labels["BB_-_90.1-P2|BB_-_95.1-P2"] == "BB_2"
    assert labels["non-targeting_00003|non-targeting_00004"] == "control"
    assert set(adata.obs["perturbation"]) == {"AARS", "BB_1", "BB_2", "control"}
    assert "gem_group" in adata.obs and "pathways" in adata.uns
    samsvae.SAMSVAE.setup_anndata(adata)
    samsvae.SAMSVAE(adata, n_latent=2, n_hidden=8)


def test_norman_is_canonical_counts_and_combination_labels(
    norman_file: Callable[..., Path],
) -> None:
    adata = samsvae.datasets.norman2019(norman_file(n_combinations=3, n_genes=4))
    assert sp.isspmatrix_csr(adata.X)
    assert "counts" not in adata.layers and "log_normalized" in adata.layers
    assert adata.n_vars == 5  # var['highly_variable'] marks 5 of 6 genes
    np.testing.assert_allclose(np.log1p(adata.X.toarray()), adata.layers["log_normalized"])
    expected = {"": "control", "G00": "G00", "G00,G01": "G00+G01", "G00,G02": "G00+G02"}
    for guide_ids, label in expected.items():
        assert set(adata.obs.loc[adata.obs["guide_ids"] == guide_ids, "perturbation"]) == {label}
    assert {"guide_identity", "guide_ids", "guide_G00", "UMI_count"} <= set(adata.obs)
    samsvae.SAMSVAE.setup_anndata(adata)
    samsvae.SAMSVAE(adata, n_latent=2, n_hidden=8)


def test_norman_rejects_a_file_without_counts(tmp_path: Path, replogle_file: Path) -> None:
    with pytest.raises(ValueError, match=r"layers\['counts'\]"):
        samsvae.datasets.norman2019(replogle_file)


def test_replogle_rejects_a_file_without_guide_pair_ids(
    norman_file: Callable[..., Path],
) -> None:
    with pytest.raises(ValueError, match="sgID_AB"):
        samsvae.datasets.replogle2022_k562(norman_file())


def test_download_is_cached_recorded_and_reused(
    norman_file: Callable[..., Path], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = norman_file()
    _serve(monkeypatch, "norman2019", source)
    first = samsvae.datasets.norman2019()
    cached = cache_dir / "norman2019.h5ad"
    recorded = (cache_dir / "norman2019.h5ad.sha256").read_text().strip()
    assert recorded == cache.sha256_of(source)
    source.unlink()  # the second call must not download again
    second = samsvae.datasets.norman2019()
    assert cached.is_file()
    np.testing.assert_array_equal(first.X.toarray(), second.X.toarray())


def test_a_cached_file_that_changed_is_refused(
    replogle_file: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, "replogle2022_k562", replogle_file)
    samsvae.datasets.replogle2022_k562()
    with (cache_dir / "replogle2022_k562.h5ad").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        samsvae.datasets.replogle2022_k562()


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(
    replogle_file: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, "replogle2022_k562", replogle_file, sha256="0" * 64)
    with pytest.raises(ValueError, match="expected 0000"):
        samsvae.datasets.replogle2022_k562()
    assert list(cache_dir.iterdir()) == []


def test_a_known_checksum_is_verified(
    replogle_file: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, "replogle2022_k562", replogle_file, cache.sha256_of(replogle_file))
    samsvae.datasets.replogle2022_k562()
    assert samsvae.datasets.replogle2022_k562().n_obs == 20
    assert not (cache_dir / "replogle2022_k562.h5ad.sha256").exists()


def test_offline_failure_says_where_to_put_the_file(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(monkeypatch, "norman2019", tmp_path / "unreachable.h5ad")
    with pytest.raises(ConnectionError, match="put it at") as raised:
        samsvae.datasets.norman2019()
    assert str(cache_dir / "norman2019.h5ad") in str(raised.value)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_a_missing_local_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.h5ad"):
        samsvae.datasets.norman2019(tmp_path / "missing.h5ad")
