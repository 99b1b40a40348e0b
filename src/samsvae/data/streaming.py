"""Out-of-core and data-parallel minibatches: matrices read from disk in blocks, batches sharded.

Out of core: an AnnData opened in backed mode (``anndata.read_h5ad(path, backed="r")``) or a zarr
store opened by :func:`read_backed` keeps its counts on disk. :class:`DiskCellDataset` reads
contiguous row ranges only; :class:`StreamingBatches` shuffles the order of blocks of rows, reads
``window_blocks`` blocks at a time and shuffles the rows within that window, so memory is bounded
by one window whatever the number of cells.

Data parallel: with ``torch.distributed`` initialised (Lightning's DDP), every rank walks the same
global batches and keeps a disjoint, contiguous part of each; the batch records its place in the
global batch (:class:`~samsvae.data.batch.Shard`) so the objective can draw the same noise as a
single process would (see :func:`samsvae.inference.objectives.minibatch_elbo`).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp
import torch
import zarr
from anndata.abc import CSCDataset, CSRDataset

from samsvae.data.batch import Batch, Shard
from samsvae.data.loaders import (
    EpochBatches,
    TrainingStatistics,
    control_library_quantiles,
    control_rows,
    covariate_rows,
    encoder_scale,
    gene_moments,
    library_sizes,
    moments_to_statistics,
    perturbation_counts,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator

    from samsvae.data.loaders import CellDataset

__all__ = [
    "CodedDosage",
    "DiskCellDataset",
    "RowBits",
    "ShardedBatches",
    "StreamingBatches",
    "check_on_disk",
    "is_on_disk",
    "read_backed",
]

_CHUNK_ROWS = 10_000


def read_backed(path: str | os.PathLike[str]) -> ad.AnnData:
    """Open an ``.h5ad`` file or a zarr store with its counts left on disk.

    ``.h5ad`` opens in anndata's backed mode (read only), as ``anndata.read_h5ad(path,
    backed="r")`` does, with string arrays (the obs names above all) read in slices, which keeps
    the memory they leave behind to the strings themselves. A zarr store keeps ``X`` as
    anndata's lazy sparse dataset (``anndata.io.sparse_dataset``) with ``obs`` and ``var`` in
    memory. Pass the result to ``setup_anndata``; training and evaluation then stream the rows.
    """
    path = Path(path)
    if path.suffix == ".h5ad" or h5py.is_hdf5(path):
        return _read_h5ad_backed(path)
    group = zarr.open_group(path, mode="r")
    matrix = group["X"]
    x = ad.io.sparse_dataset(matrix) if isinstance(matrix, zarr.Group) else matrix
    obs, var = ad.io.read_elem(group["obs"]), ad.io.read_elem(group["var"])
    return ad.AnnData(X=x, obs=obs, var=var)


# What backed mode holds in memory: everything but X (raw and pre-0.7 files go to anndata).
_IN_MEMORY = ("obs", "var", "obsm", "varm", "obsp", "varp", "uns", "layers")
_STRING_SLICE = 4096


def _read_h5ad_backed(path: Path) -> ad.AnnData:
    """``anndata.read_h5ad(path, backed="r")``, reading string arrays through
    :func:`_read_strings_in_slices`."""
    file = h5py.File(path, "r")
    try:
        if "encoding-type" not in file.attrs or "raw" in file:
            file.close()
            return ad.read_h5ad(path, backed="r")
        elements = {
            key: ad.experimental.read_dispatched(file[key], _read_strings_in_slices)
            for key in _IN_MEMORY
            if key in file
        }
    except BaseException:
        file.close()
        raise
    return ad.AnnData(filename=file, **elements)  # backed: X stays in the open file


def _read_strings_in_slices(read: Callable[[Any], Any], name: str, elem: Any, iospec: Any) -> Any:
    """Read a 1-d HDF5 string array slice by slice into one object array (others as anndata).

    Read whole, h5py makes a bytes object per string before decoding it, and the freed bytes
    stay scattered between the strings: a million obs names then hold about 107 MB of memory
    instead of about 80. A slice at a time, each slice reuses the last one's memory.
    """
    is_1d_strings = isinstance(elem, h5py.Dataset) and elem.ndim == 1
    if iospec.encoding_type != "string-array" or not is_1d_strings:
        return read(elem)
    strings = np.empty(elem.shape, dtype=object)
    for start in range(0, len(strings), _STRING_SLICE):
        strings[start : start + _STRING_SLICE] = elem.asstr()[start : start + _STRING_SLICE]
    return strings


def is_on_disk(matrix: object) -> bool:
    """Whether ``matrix`` is a backed (h5py / zarr) array or sparse dataset, not in memory."""
    return isinstance(matrix, CSRDataset | CSCDataset | h5py.Dataset | zarr.Array)


def check_on_disk(matrix: object, check: Callable[[Any], None]) -> None:
    """Run ``check`` on every row chunk of an on-disk ``matrix``; refuse CSC storage."""
    if isinstance(matrix, CSCDataset):
        msg = (
            "The on-disk counts are stored CSC (column-major), which cannot be read by rows; "
            "rewrite them as CSR, e.g. adata.X = adata.X.tocsr() before write_h5ad."
        )
        raise ValueError(msg)
    matrix = _rows_reader(matrix)
    for start in range(0, matrix.shape[0], _CHUNK_ROWS):
        check(matrix[start : start + _CHUNK_ROWS])


def _rows_reader(matrix: Any) -> Any:
    """``matrix``, or for an on-disk CSR dataset a :class:`_CSRRows` over its arrays."""
    group = getattr(matrix, "group", None)
    if isinstance(matrix, CSRDataset) and group is not None:
        return _CSRRows(group, matrix.shape)
    return matrix


class _CSRRows:
    """Contiguous row ranges of a CSR matrix stored as ``data``/``indices``/``indptr`` arrays
    (an h5ad or zarr group), read straight from the arrays.

    anndata's sparse dataset reads a range the same way, but loads the whole ``indptr`` on the
    first read and keeps it (8 bytes a cell, for all of training), and anndata 0.12 with
    scipy >= 1.17 looks up scipy's installed version on every read (``importlib.metadata``,
    about 4.5 ms: nine tenths of reading 1,024 rows of the benchmark file). Here each read takes
    only its rows' pointers and arrays.
    """

    def __init__(self, group: Any, shape: tuple[int, int]) -> None:
        self.group, self.shape = group, tuple(shape)

    def __getitem__(self, rows: slice) -> sp.csr_matrix:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            msg = "_CSRRows reads contiguous row ranges only."
            raise IndexError(msg)
        stop = max(start, stop)
        indptr = np.asarray(self.group["indptr"][start : stop + 1])
        first, last = int(indptr[0]), int(indptr[-1])
        data = np.asarray(self.group["data"][first:last])
        indices = np.asarray(self.group["indices"][first:last])
        return sp.csr_matrix((data, indices, indptr - first), shape=(stop - start, self.shape[1]))


def _as_rows(chunk: Any) -> sp.csr_matrix | np.ndarray:
    return chunk if sp.issparse(chunk) else np.asarray(chunk)


def shard_bounds(n_cells: int, rank: int, world_size: int) -> tuple[int, int]:
    """Positions ``[start, stop)`` of ``rank``'s part of a batch of ``n_cells`` cells."""
    return rank * n_cells // world_size, (rank + 1) * n_cells // world_size


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def make_batch(
    counts: sp.csr_matrix | np.ndarray,
    dosage: sp.csr_matrix,
    library_size: np.ndarray,
    rows: np.ndarray,
    *,
    rank: int = 0,
    world_size: int = 1,
    covariates: np.ndarray | None = None,
) -> Batch:
    """A Batch of ``rank``'s part of a global batch (all arguments are of the global batch).

    ``perturbation_index`` lists the perturbations of the *global* batch, so every rank draws
    the same global variables as a single process would. ``covariates`` holds the one-hot
    covariate rows of the whole dataset (None without covariates).
    """
    present = np.unique(dosage.indices)  # perturbations carried by some cell of the batch
    shard = None
    if world_size > 1:
        start, stop = shard_bounds(len(rows), rank, world_size)
        shard = Shard(offset=start, total=len(rows))
        counts, dosage = counts[start:stop], dosage[start:stop]
        library_size, rows = library_size[start:stop], rows[start:stop]
    counts = counts.toarray() if sp.issparse(counts) else counts
    return Batch(
        counts=torch.from_numpy(np.asarray(counts, dtype=np.float32)),
        dosage=torch.from_numpy(dosage[:, present].toarray()),
        perturbation_index=torch.from_numpy(present.astype(np.int64)),
        library_size=torch.from_numpy(library_size.astype(np.float32)),
        index=torch.from_numpy(rows.astype(np.int64)),
        shard=shard,
        covariates=covariate_rows(covariates, rows),
    )


def _clamped_library(counts: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Library sizes as :class:`~samsvae.data.loaders.CellDataset` stores them."""
    return np.maximum(library_sizes(counts), 1.0).astype(np.float32)


class CodedDosage:
    """Per-cell dosage rows kept as the rows of the distinct labels and one code per cell.

    ``dosage[rows]`` is the CSR the full matrix would give; a code takes one or two bytes a
    cell where the full CSR of one label per cell takes about twelve.
    """

    def __init__(self, table: sp.csr_matrix, codes: np.ndarray) -> None:
        self.table, self.codes = table, codes

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.codes), self.table.shape[1]

    def __getitem__(self, rows: Any) -> sp.csr_matrix:
        return self.table[np.atleast_1d(self.codes[rows])]


class DiskCellDataset:
    """Rows of an on-disk expression matrix with their (in-memory) dosage and covariates.

    ``dataset[rows]`` reads the span ``min(rows)..max(rows)`` with one contiguous read (rows of
    an evaluation pass are consecutive) and returns a Batch; nothing is ever densified beyond a
    batch or a read chunk.
    """

    def __init__(
        self,
        expression: Any,
        dosage: sp.csr_matrix | CodedDosage,
        covariates: np.ndarray | None = None,
        *,
        chunk_rows: int = _CHUNK_ROWS,
    ) -> None:
        self.expression = _rows_reader(expression)
        self.dosage = dosage
        self.covariates = covariates
        self.chunk_rows = chunk_rows

    def __len__(self) -> int:
        return self.expression.shape[0]

    def read(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start..stop-1`` (one contiguous read)."""
        return _as_rows(self.expression[start:stop])

    def __getitem__(self, rows: list[int] | np.ndarray) -> Batch:
        rows = np.asarray(rows)
        first = int(rows.min())
        counts = self.read(first, int(rows.max()) + 1)[rows - first]
        return make_batch(
            counts,
            self.dosage[rows],
            _clamped_library(counts),
            rows,
            covariates=self.covariates,
        )

    def training_statistics(self, rows: np.ndarray, *, log1p: bool) -> TrainingStatistics:
        """Per-gene moments, median library size and n_t of the distinct ``rows``, in one pass
        over the file."""
        rows = _sorted_distinct(rows)
        total = total_sq = np.zeros(self.expression.shape[1])
        n_t = np.zeros(self.dosage.shape[1], dtype=np.int64)
        # One array of library sizes filled chunk by chunk, and n_t counted chunk by chunk:
        # per-cell temporaries (a list, its join, dosage[rows]) stay in the heap once freed.
        libraries = np.empty(len(rows))
        is_control = np.empty(len(rows), dtype=bool)
        starts = range(0, len(self), self.chunk_rows)
        bounds = np.searchsorted(rows, [*starts, len(self)])  # rows[first:last]: a chunk's
        for start, first, last in zip(starts, bounds[:-1], bounds[1:], strict=True):
            if first == last:
                continue
            keep = rows[first:last] - start
            chunk = self.read(start, start + int(keep[-1]) + 1)[keep]
            chunk_sum, chunk_sq = gene_moments(chunk, log1p=log1p)
            total, total_sq = total + chunk_sum, total_sq + chunk_sq
            libraries[first:last] = library_sizes(chunk)
            is_control[first:last] = control_rows(self.dosage, rows[first:last])
            n_t += perturbation_counts(self.dosage, rows[first:last])
        mean, std = moments_to_statistics(total, total_sq, len(rows))
        return TrainingStatistics(
            gene_mean=mean,
            gene_scale=encoder_scale(std),
            n_cells_per_perturbation=n_t,
            library_size_quantiles=control_library_quantiles(libraries, is_control),
            median_library_size=float(np.median(libraries, overwrite_input=True)),
        )


class ShardedBatches:
    """The batches of :func:`~samsvae.data.loaders.make_loader` (same seed, same epochs), each
    cut into one part per data-parallel rank; this rank's parts are yielded.

    With one process it yields exactly ``make_loader``'s batches. A last global batch with fewer
    cells than ranks is dropped (each rank must take a step).
    """

    batch_sampler = None  # read by Lightning, which calls sampler.set_epoch

    def __init__(
        self, dataset: CellDataset, rows: np.ndarray, *, batch_size: int, shuffle: bool, seed: int
    ) -> None:
        self.dataset, self.rows, self.batch_size = dataset, np.asarray(rows), batch_size
        self.sampler = EpochBatches(
            len(self.rows), batch_size=batch_size, shuffle=shuffle, seed=seed
        )

    def __len__(self) -> int:
        return _n_batches(len(self.rows), self.batch_size)

    def perturbation_counts(self) -> np.ndarray:
        """n_t over all the rows (every rank's), (n_perturbations,) int64."""
        return perturbation_counts(self.dataset.dosage, self.rows)

    def __iter__(self) -> Iterator[Batch]:
        rank, world_size = _rank_and_world()
        order = self.rows[self.sampler.order().numpy()]
        data = self.dataset
        n_batches = _n_batches(len(order), self.batch_size, world_size)
        for start in range(0, n_batches * self.batch_size, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield make_batch(
                data.expression[rows],
                data.dosage[rows],
                data.library_size[rows],
                rows,
                rank=rank,
                world_size=world_size,
                covariates=data.covariates,
            )


def _n_batches(n_cells: int, batch_size: int, world_size: int = 1) -> int:
    """Global batches per epoch; a last one with fewer cells than ranks is dropped."""
    n_full, rest = divmod(n_cells, batch_size)
    return n_full + (rest >= world_size)


class StreamingBatches:
    """Shuffled minibatches of ``rows`` of a :class:`DiskCellDataset`, read window by window.

    Each epoch (see :class:`~samsvae.data.loaders.EpochBatches`) permutes the blocks of
    ``block_rows`` consecutive file rows by ``(seed, epoch)``; every ``window_blocks`` blocks are
    read (one contiguous read each), their selected rows shuffled, and cut into batches of
    ``batch_size``; rows left over join the next window. Memory: one window plus one batch, and
    the selected rows as one bit a row of the file (:class:`RowBits`).
    Without ``shuffle``, rows come in file order. Under data parallelism each rank keeps its part
    of every global batch (as :class:`ShardedBatches`).
    """

    batch_sampler = None  # read by Lightning, which calls sampler.set_epoch

    def __init__(
        self,
        dataset: DiskCellDataset,
        rows: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        block_rows: int = 1024,
        window_blocks: int = 32,
    ) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.block_rows, self.window_blocks = block_rows, window_blocks
        self.rows = RowBits(rows, len(dataset))
        self.n_cells = len(self.rows)
        n_blocks = -(-len(dataset) // block_rows)
        self.sampler = EpochBatches(n_blocks, batch_size=1, shuffle=shuffle, seed=seed)

    def __len__(self) -> int:
        return _n_batches(self.n_cells, self.batch_size)

    def perturbation_counts(self) -> np.ndarray:
        """n_t over the selected rows (every rank's), (n_perturbations,) int64; the rows are
        read from their bits a chunk at a time."""
        n_t = np.zeros(self.dataset.dosage.shape[1], dtype=np.int64)
        for start in range(0, len(self.dataset), _CHUNK_ROWS):
            rows = self.rows.between(start, min(start + _CHUNK_ROWS, len(self.dataset)))
            n_t += perturbation_counts(self.dataset.dosage, rows)
        return n_t

    def _windows(self) -> Iterator[tuple[_Window, np.ndarray]]:
        """Each window and the order of its rows: shuffled within the window (file order
        without ``shuffle``)."""
        blocks = self.sampler.order().numpy()
        window_seed = np.random.SeedSequence((self.sampler.seed, self.sampler.epoch, 1))
        rng = np.random.default_rng(window_seed)
        for first in range(0, len(blocks), self.window_blocks):
            window = self._read_window(np.sort(blocks[first : first + self.window_blocks]))
            n_rows = len(window.rows)
            yield window, rng.permutation(n_rows) if self.sampler.shuffle else np.arange(n_rows)
            del window  # before the next window is read: one window held, not two

    def _read_window(self, blocks: np.ndarray) -> _Window:
        """The selected rows of ``blocks`` (file order), one contiguous read per block."""
        parts, rows = [], []
        for block in blocks:
            start = int(block) * self.block_rows
            stop = min(start + self.block_rows, len(self.dataset))
            selected = self.rows.between(start, stop)
            parts.append(self.dataset.read(start, stop)[selected - start])
            rows.append(selected)
        return _Window(parts, np.concatenate(rows))

    def __iter__(self) -> Iterator[Batch]:
        rank, world_size = _rank_and_world()
        n_left = _n_batches(self.n_cells, self.batch_size, world_size)
        # Each batch gathers its rows from the window's blocks in the window's order, so the
        # window is never copied whole (joined, shuffled, or joined to the rows left over from
        # the last one); a batch that spans windows is joined from its pieces.
        pieces: list[tuple[Any, np.ndarray]] = []
        n_pending = 0  # rows in pieces
        for window, order in self._windows():
            start = 0
            while n_left and start < len(order):
                stop = min(start + self.batch_size - n_pending, len(order))
                positions = order[start:stop]
                pieces.append((window.take(positions), window.rows[positions]))
                n_pending += stop - start
                start = stop
                if n_pending == self.batch_size:
                    yield self._batch(*_join(pieces), rank, world_size)
                    pieces, n_pending, n_left = [], 0, n_left - 1
            del window  # see _windows
        if n_left and pieces:
            yield self._batch(*_join(pieces), rank, world_size)

    def _batch(self, counts: Any, rows: np.ndarray, rank: int, world_size: int) -> Batch:
        return make_batch(
            counts,
            self.dataset.dosage[rows],
            _clamped_library(counts),
            rows,
            rank=rank,
            world_size=world_size,
            covariates=self.dataset.covariates,
        )


def _sorted_distinct(rows: np.ndarray) -> np.ndarray:
    """``rows`` sorted without repeats; the array itself (no copy) when it already is."""
    rows = np.asarray(rows)
    if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():
        return np.unique(rows)
    return rows


class RowBits:
    """Row positions of an ``n_rows``-row matrix held as one bit a row (``np.packbits``): the
    training rows of a million cells take 125 kB here against 4 MB as int32 positions, for as
    long as training runs. Repeats and order of the given rows are dropped."""

    def __init__(self, rows: np.ndarray, n_rows: int) -> None:
        rows = np.asarray(rows)
        member = np.zeros(n_rows, dtype=bool)
        member[rows] = True
        self.bits, self.n_rows, self.dtype = np.packbits(member), n_rows, rows.dtype
        self.count = int(np.count_nonzero(member))

    def __len__(self) -> int:
        return self.count

    def between(self, start: int, stop: int) -> np.ndarray:
        """The rows in ``[start, stop)``, sorted."""
        first = start - start % 8  # the first bit of start's byte
        member = np.unpackbits(self.bits[first // 8 : -(-stop // 8)])[start - first : stop - first]
        return (start + np.flatnonzero(member)).astype(self.dtype, copy=False)

    def positions(self) -> np.ndarray:
        """Every row, sorted, in the integer type the rows were given in."""
        return self.between(0, self.n_rows)


class _Window:
    """The blocks of one window as read (``parts``, never joined) and their file ``rows``."""

    def __init__(self, parts: list[Any], rows: np.ndarray) -> None:
        self.parts, self.rows = parts, rows
        self.offsets = np.cumsum([0, *(part.shape[0] for part in parts)])

    def take(self, positions: np.ndarray) -> sp.csr_matrix | np.ndarray:
        """Counts of the window's rows at ``positions``, in that order (as the joined window
        indexed by ``positions``)."""
        part_of = np.searchsorted(self.offsets, positions, side="right") - 1
        grouped = np.argsort(part_of, kind="stable")  # positions by block, in order within one
        bounds = np.searchsorted(part_of[grouped], np.arange(len(self.parts) + 1))
        pieces = [
            self.parts[part][positions[grouped[first:stop]] - self.offsets[part]]
            for part, (first, stop) in enumerate(itertools.pairwise(bounds))
            if stop > first
        ]
        return _stack(pieces)[np.argsort(grouped)]  # back to the order of positions


def _join(pieces: list[tuple[Any, np.ndarray]]) -> tuple[Any, np.ndarray]:
    """(counts, rows) of consecutive pieces of windows, as one."""
    if len(pieces) == 1:
        return pieces[0]
    return _stack([counts for counts, _ in pieces]), np.concatenate([rows for _, rows in pieces])


def _stack(parts: list[Any]) -> sp.csr_matrix | np.ndarray:
    if any(sp.issparse(p) for p in parts):
        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)
