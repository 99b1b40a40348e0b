"""Out-of-core loaders: every selected row once per epoch, statistics equal the in-memory ones."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from samsvae.data.loaders import (
    CellDataset,
    DeviceBatches,
    epoch_order,
    loader_perturbation_counts,
    make_loader,
)
from samsvae.data.streaming import (
    DiskCellDataset,
    RowBits,
    ShardedBatches,
    StreamingBatches,
    read_backed,
)

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad


def _datasets(adata: ad.AnnData, tmp_path: Path, fmt: str) -> tuple[CellDataset, DiskCellDataset]:
    dosage = sp.csr_matrix(np.eye(adata.n_obs, 3, dtype=np.float32))
    path = tmp_path / f"cells.{fmt}"
    if fmt == "h5ad":
        adata.write_h5ad(path)
    else:
        with warnings.catch_warnings():  # anndata announces its next zarr defaults
            warnings.simplefilter("ignore", UserWarning)
            adata.write_zarr(path)
    on_disk = read_backed(path).X
    return CellDataset(adata.X, dosage), DiskCellDataset(on_disk, dosage, chunk_rows=37)


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_streamed_epoch_yields_each_selected_row_once_with_its_counts(
    tiny_adata: ad.AnnData, tmp_path: Path, fmt: str
) -> None:
    memory, disk = _datasets(tiny_adata, tmp_path, fmt)
    rows = np.arange(0, tiny_adata.n_obs, 3)
    loader = StreamingBatches(
        disk, rows, batch_size=16, shuffle=True, seed=0, block_rows=10, window_blocks=4
    )
    loader.sampler.set_epoch(1)
    batches = list(loader)
    seen = np.concatenate([b.index.numpy() for b in batches])
    assert len(batches) == len(loader) == -(-len(rows) // 16)
    assert sorted(seen) == sorted(rows)
    assert not np.array_equal(seen, rows)  # shuffled
    expected = memory[seen]
    np.testing.assert_array_equal(np.concatenate([b.counts for b in batches]), expected.counts)
    np.testing.assert_array_equal(
        np.concatenate([b.library_size for b in batches]), expected.library_size
    )


def test_streamed_rows_in_any_order_or_repeated_give_the_sorted_distinct_rows_batches(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    _, disk = _datasets(tiny_adata, tmp_path, "h5ad")
    rows = np.arange(2, tiny_adata.n_obs, 3)
    jumbled = np.random.default_rng(0).permutation(np.concatenate([rows, rows[::4]]))
    options = {"batch_size": 16, "shuffle": True, "seed": 0, "block_rows": 10, "window_blocks": 4}
    reference = StreamingBatches(disk, rows, **options)
    assert reference.rows.bits.nbytes == -(-tiny_adata.n_obs // 8)  # one bit a row of the file
    for ours, theirs in zip(StreamingBatches(disk, jumbled, **options), reference, strict=True):
        np.testing.assert_array_equal(ours.index, theirs.index)
        np.testing.assert_array_equal(ours.counts, theirs.counts)


@pytest.mark.parametrize(("batch_size", "window_blocks"), [(16, 4), (40, 1), (5, 2)])
def test_streamed_batches_cut_the_shuffled_windows_in_turn(
    tiny_adata: ad.AnnData, tmp_path: Path, batch_size: int, window_blocks: int
) -> None:
    """The order the docs describe: blocks permuted by (seed, epoch), each window of blocks in
    file order shuffled by its own generator, the windows' rows cut into consecutive batches
    (batches of 40 span several 10-row windows)."""
    memory, disk = _datasets(tiny_adata, tmp_path, "h5ad")
    rows = np.arange(1, tiny_adata.n_obs, 2)
    seed, epoch, block_rows = 3, 2, 10
    loader = StreamingBatches(
        disk,
        rows,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        block_rows=block_rows,
        window_blocks=window_blocks,
    )
    loader.sampler.set_epoch(epoch)
    n_blocks = -(-tiny_adata.n_obs // block_rows)
    blocks = epoch_order(n_blocks, shuffle=True, seed=seed, epoch=epoch).numpy()
    window_rng = np.random.default_rng(np.random.SeedSequence((seed, epoch, 1)))
    expected = []
    for first in range(0, n_blocks, window_blocks):
        window = np.concatenate(
            [rows[rows // block_rows == b] for b in np.sort(blocks[first : first + window_blocks])]
        )
        expected.append(window[window_rng.permutation(len(window))])
    expected = np.concatenate(expected)
    batches = list(loader)
    assert [len(b.index) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), expected)
    np.testing.assert_array_equal(
        np.concatenate([b.counts for b in batches]), memory[expected].counts
    )


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_csr_rows_reads_the_ranges_anndata_reads(
    tiny_adata: ad.AnnData, tmp_path: Path, fmt: str
) -> None:
    from samsvae.data.streaming import _CSRRows

    _, disk = _datasets(tiny_adata, tmp_path, fmt)
    assert isinstance(disk.expression, _CSRRows)
    reference = sp.csr_matrix(tiny_adata.X)
    n = tiny_adata.n_obs
    for rows in (slice(0, n), slice(3, 17), slice(n - 2, n + 5), slice(9, 9), slice(None, 4)):
        ours = disk.expression[rows]
        assert sp.issparse(ours) and ours.dtype == reference.dtype
        np.testing.assert_array_equal(ours.toarray(), reference[rows].toarray())
    with pytest.raises(IndexError, match="contiguous"):
        disk.expression[0:10:2]


def _coded_datasets(
    adata: ad.AnnData, tmp_path: Path, chunk_rows: int = 10_000
) -> tuple[CellDataset, DiskCellDataset, np.ndarray]:
    """The same cells in memory and on disk with a coded dosage of three perturbations (one
    label a cell, one label a combination), and a selection of rows."""
    from samsvae.data.streaming import CodedDosage

    table = sp.csr_matrix(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1]], dtype="f4"))
    codes = np.random.default_rng(0).integers(0, 4, adata.n_obs).astype(np.uint8)
    adata.write_h5ad(tmp_path / "cells.h5ad")
    memory = CellDataset(adata.X, sp.csr_matrix(table[codes]))
    disk = DiskCellDataset(
        read_backed(tmp_path / "cells.h5ad").X, CodedDosage(table, codes), chunk_rows=chunk_rows
    )
    return memory, disk, np.r_[np.arange(5, 20, 2), np.arange(40, adata.n_obs, 3)]


@pytest.mark.parametrize("chunk_rows", [7, 10_000])  # several chunks, some without rows; one
def test_streamed_statistics_equal_in_memory_statistics(
    tiny_adata: ad.AnnData, tmp_path: Path, chunk_rows: int
) -> None:
    memory, disk, rows = _coded_datasets(tiny_adata, tmp_path, chunk_rows)
    expected = memory.training_statistics(rows, log1p=True)
    streamed = disk.training_statistics(rows, log1p=True)
    np.testing.assert_allclose(streamed.gene_mean, expected.gene_mean, rtol=1e-5)
    np.testing.assert_allclose(streamed.gene_scale, expected.gene_scale, rtol=1e-5)
    np.testing.assert_array_equal(
        streamed.n_cells_per_perturbation, expected.n_cells_per_perturbation
    )
    assert streamed.median_library_size == expected.median_library_size


def test_every_loader_counts_the_perturbations_of_its_rows(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    memory, disk, rows = _coded_datasets(tiny_adata, tmp_path)
    expected = (memory.dosage.toarray()[rows] != 0).sum(0)
    assert len(set(expected.tolist())) == 3  # three different counts
    options = {"batch_size": 16, "shuffle": True, "seed": 0}
    loaders = [
        make_loader(memory, rows, **options),
        DeviceBatches(memory, rows, device="cpu", **options),
        ShardedBatches(memory, rows, **options),
        StreamingBatches(disk, rows, block_rows=10, **options),
    ]
    for loader in loaders:
        np.testing.assert_array_equal(loader_perturbation_counts(loader), expected)


def test_sharded_batches_in_one_process_are_make_loader_batches(tiny_adata: ad.AnnData) -> None:
    dataset = CellDataset(tiny_adata.X, sp.csr_matrix(np.eye(tiny_adata.n_obs, 3, dtype="f4")))
    rows = np.arange(1, tiny_adata.n_obs)
    options = {"batch_size": 32, "shuffle": True, "seed": 4}
    sharded, reference = (
        ShardedBatches(dataset, rows, **options),
        make_loader(dataset, rows, **options),
    )
    for loader in (sharded, reference):
        loader.sampler.set_epoch(2)
    for ours, theirs in zip(sharded, reference, strict=True):
        for name in ("counts", "dosage", "perturbation_index", "library_size", "index"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))


def _rich_adata(tiny_adata: ad.AnnData) -> ad.AnnData:
    """tiny_adata with string, integer and boolean obs columns, a named index, obsm, uns and
    layers."""
    adata = tiny_adata.copy()
    adata.obs_names = [f"cell-{i}-é" for i in range(adata.n_obs)]  # non-ASCII names too
    adata.obs.index.name = "barcode"
    adata.obs["donor"] = [f"d{i % 3}" for i in range(adata.n_obs)]
    adata.obs["count"] = np.arange(adata.n_obs)
    adata.obs["flag"] = np.arange(adata.n_obs) % 2 == 0
    adata.obsm["embedding"] = np.ones((adata.n_obs, 2), dtype=np.float32)
    adata.uns["note"] = {"names": np.array(["a", "b"]), "value": 3}
    adata.layers["counts"] = adata.X.copy()
    return adata


def test_read_backed_h5ad_matches_anndata_backed_mode(
    tiny_adata: ad.AnnData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anndata

    from samsvae.data import streaming

    monkeypatch.setattr(streaming, "_STRING_SLICE", 7)  # several slices, a partial last one
    path = tmp_path / "rich.h5ad"
    _rich_adata(tiny_adata).write_h5ad(path)
    ours, reference = read_backed(path), anndata.read_h5ad(path, backed="r")
    assert ours.isbacked and ours.filename == reference.filename
    assert type(ours.X) is type(reference.X)
    pd.testing.assert_frame_equal(ours.obs, reference.obs)
    pd.testing.assert_frame_equal(ours.var, reference.var)
    assert ours.obs_names.get_loc("cell-5-é") == 5  # names stay usable
    np.testing.assert_array_equal(ours.obsm["embedding"], reference.obsm["embedding"])
    np.testing.assert_array_equal(ours.uns["note"]["names"], reference.uns["note"]["names"])
    assert ours.uns["note"]["value"] == reference.uns["note"]["value"]
    assert (ours.layers["counts"] != reference.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(ours.X[3:9].toarray(), reference.X[3:9].toarray())


def test_read_backed_h5ad_with_raw_is_anndata_backed_mode(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    path = tmp_path / "raw.h5ad"
    adata = tiny_adata.copy()
    adata.raw = adata
    adata.write_h5ad(path)
    backed = read_backed(path)
    assert backed.isbacked and backed.raw is not None
    pd.testing.assert_frame_equal(backed.obs, tiny_adata.obs)


def test_coded_dosage_rows_are_the_full_dosage_rows() -> None:
    from samsvae.data.streaming import CodedDosage

    table = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=np.float32))
    codes = np.array([0, 1, 2, 2, 0, 1, 0], dtype=np.uint8)
    full, coded = sp.csr_matrix(table[codes]), CodedDosage(table, codes)
    assert coded.shape == full.shape
    for rows in (np.array([4, 0, 6, 1]), slice(2, 6), np.arange(7) % 2 == 0, np.array([], int)):
        ours = coded[rows]
        assert sp.issparse(ours) and ours.dtype == np.float32
        np.testing.assert_array_equal(ours.toarray(), full[rows].toarray())


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_row_bits_give_the_sorted_distinct_rows_of_any_range(dtype: type) -> None:
    n_rows = 203  # not a multiple of 8: the last byte is partly padding
    rows = np.random.default_rng(0).choice(n_rows, 120, replace=False).astype(dtype)
    bits = RowBits(np.concatenate([rows, rows[:9]]), n_rows)  # repeats count once
    expected = np.sort(rows)
    assert len(bits) == 120 and bits.bits.nbytes == 26
    positions = bits.positions()
    assert positions.dtype == dtype
    np.testing.assert_array_equal(positions, expected)
    for start, stop in [(0, 8), (3, 5), (5, 203), (7, 9), (16, 24), (200, 203), (50, 50)]:
        inside = expected[(expected >= start) & (expected < stop)]
        np.testing.assert_array_equal(bits.between(start, stop), inside)
