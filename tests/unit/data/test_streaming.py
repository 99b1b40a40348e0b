"""Out-of-core loaders: every selected row once per epoch, statistics equal the in-memory ones."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
import scipy.sparse as sp

from samsvae.data.loaders import CellDataset, make_loader
from samsvae.data.streaming import (
    DiskCellDataset,
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


def test_streamed_statistics_equal_in_memory_statistics(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    memory, disk = _datasets(tiny_adata, tmp_path, "h5ad")
    rows = np.arange(5, tiny_adata.n_obs, 2)
    expected = memory.training_statistics(rows, log1p=True)
    streamed = disk.training_statistics(rows, log1p=True)
    np.testing.assert_allclose(streamed.gene_mean, expected.gene_mean, rtol=1e-5)
    np.testing.assert_allclose(streamed.gene_scale, expected.gene_scale, rtol=1e-5)
    np.testing.assert_array_equal(
        streamed.n_cells_per_perturbation, expected.n_cells_per_perturbation
    )
    assert streamed.median_library_size == expected.median_library_size


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
