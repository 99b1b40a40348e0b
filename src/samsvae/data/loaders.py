"""Loaders: CSR (or dense) row slices per batch; no per-cell Python, no default collate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from samsvae.config import LIBRARY_QUANTILES
from samsvae.data.batch import Batch

if TYPE_CHECKING:
    from collections.abc import Iterator

_CHUNK_ROWS = 10_000


def as_csr_or_dense(matrix: object) -> sp.csr_matrix | np.ndarray:
    """Give a CSR matrix or ndarray view of an expression matrix.

    Parameters
    ----------
    matrix
        A sparse matrix of any format, or anything ``numpy.asarray`` accepts.

    Returns
    -------
    scipy.sparse.csr_matrix or numpy.ndarray
        ``matrix`` itself when it is CSR; other sparse formats are converted to CSR once;
        dense input is returned as an ndarray (no copy when it already is one).
    """
    if sp.issparse(matrix):
        return matrix if sp.isspmatrix_csr(matrix) else sp.csr_matrix(matrix)
    return np.asarray(matrix)


def library_sizes(matrix: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Compute each cell's library size, the sum of its row.

    Parameters
    ----------
    matrix
        Expression matrix, (n_cells, n_genes), CSR or dense.

    Returns
    -------
    numpy.ndarray
        Row sums, (n_cells,) float64.
    """
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def gene_moments(
    chunk: sp.csr_matrix | np.ndarray, *, log1p: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the values and their squares per gene over the rows of a chunk.

    Parameters
    ----------
    chunk
        Rows of an expression matrix, (n_rows, n_genes), CSR or dense.
    log1p
        Whether to sum ``log1p`` of the values instead of the values.

    Returns
    -------
    total : numpy.ndarray
        Per-gene sum, (n_genes,) float64.
    total_sq : numpy.ndarray
        Per-gene sum of squares, (n_genes,) float64.
    """
    if sp.issparse(chunk):
        chunk = chunk.copy()
        chunk.data = np.log1p(chunk.data) if log1p else chunk.data.astype(np.float64)
        return np.asarray(chunk.sum(0)).ravel(), np.asarray(chunk.multiply(chunk).sum(0)).ravel()
    values = np.log1p(chunk) if log1p else chunk.astype(np.float64)
    return values.sum(0), (values**2).sum(0)


def moments_to_statistics(
    total: np.ndarray, total_sq: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-gene sums into per-gene mean and standard deviation.

    Parameters
    ----------
    total
        Per-gene sum of the values over the rows, (n_genes,).
    total_sq
        Per-gene sum of the squared values, (n_genes,).
    n_rows
        Number of rows summed over (0 gives a mean of 0).

    Returns
    -------
    mean : numpy.ndarray
        Per-gene mean, (n_genes,).
    std : numpy.ndarray
        Per-gene population standard deviation (divisor ``n_rows``), (n_genes,); a negative
        variance left by rounding counts as 0.
    """
    mean = total / max(n_rows, 1)
    var = np.maximum(total_sq / max(n_rows, 1) - mean**2, 0.0)
    return mean, np.sqrt(var)


# Floor of the per-gene scale of the encoder input, as a fraction of the genes' mean std (see
# :func:`encoder_scale`).
SCALE_FLOOR_FRACTION = 0.1


def encoder_scale(std: np.ndarray) -> np.ndarray:
    """Compute the per-gene scale of the standardised encoder input: the training std, floored.

    Parameters
    ----------
    std
        Per-gene standard deviation of the encoder input over the training cells, (n_genes,).

    Returns
    -------
    numpy.ndarray
        Every std raised to at least ``SCALE_FLOOR_FRACTION`` (0.1) times the mean std over
        genes, (n_genes,); if no gene varies the floor is 1.

    Notes
    -----
    A gene (nearly) constant in the training cells has std (nearly) 0, so dividing by it would
    feed the encoder about ``(x - mean) / std``, unbounded, for any new cell where the gene
    varies, at a weight the encoder never saw in training. With the floor, no gene is scaled up
    more than ten times as much as an average gene, whatever the units of the input (log1p
    counts or user values). The mean, unlike the median, is not pulled to 0 by many constant
    genes, nor moved by the rounding left in a constant gene's std.
    """
    mean_std = float(np.mean(std)) if len(std) else 0.0
    floor = SCALE_FLOOR_FRACTION * mean_std if mean_std > 0 else 1.0
    return np.maximum(std, floor)


def gene_statistics(
    matrix: sp.csr_matrix | np.ndarray, rows: np.ndarray, *, log1p: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Compute per-gene mean and standard deviation over a subset of cells.

    The rows are read in chunks of 10,000, so a sparse matrix is never densified whole.

    Parameters
    ----------
    matrix
        Expression matrix, (n_cells, n_genes), CSR or dense.
    rows
        Row positions of the cells to use.
    log1p
        Whether to compute the statistics of ``log1p`` of the values instead of the values.

    Returns
    -------
    mean : numpy.ndarray
        Per-gene mean over ``matrix[rows]``, (n_genes,) float64.
    std : numpy.ndarray
        Per-gene population standard deviation, (n_genes,) float64.
    """
    total = np.zeros(matrix.shape[1])
    total_sq = np.zeros(matrix.shape[1])
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk_sum, chunk_sq = gene_moments(matrix[rows[start : start + _CHUNK_ROWS]], log1p=log1p)
        total += chunk_sum
        total_sq += chunk_sq
    return moments_to_statistics(total, total_sq, len(rows))


def perturbation_counts(dosage: Any, rows: np.ndarray) -> np.ndarray:
    """Count the cells of each perturbation, n_t, over a subset of cells.

    A cell carries perturbation t when its dosage d_it is not 0. Rows are counted in chunks.

    Parameters
    ----------
    dosage
        Dosage matrix, (n_cells, n_perturbations): anything whose ``dosage[rows]`` is a CSR
        matrix.
    rows
        Row positions of the cells to count.

    Returns
    -------
    numpy.ndarray
        n_t, (n_perturbations,) int64.
    """
    rows = np.asarray(rows)
    counts = np.zeros(dosage.shape[1], dtype=np.int64)
    for start in range(0, len(rows), _CHUNK_ROWS):
        counts += np.asarray((dosage[rows[start : start + _CHUNK_ROWS]] != 0).sum(0)).ravel()
    return counts


def loader_perturbation_counts(loader: Any) -> np.ndarray:
    """Count the cells of each perturbation, n_t, over the cells a loader walks.

    Only the dosage is read, no counts.

    Parameters
    ----------
    loader
        A loader of this package: one from :func:`make_loader`, a :class:`DeviceBatches`, or a
        streaming or sharded loader.

    Returns
    -------
    numpy.ndarray
        n_t, (n_perturbations,) int64.
    """
    source = loader.dataset if isinstance(loader, DataLoader) else loader
    return source.perturbation_counts()


@dataclass(frozen=True)
class TrainingStatistics:
    """What training takes from its cells.

    Parameters
    ----------
    gene_mean
        Per-gene mean of the encoder input (``log1p`` of the expression, or the expression
        itself), (n_genes,); the encoder input is standardised with it and ``gene_scale``.
    gene_scale
        Per-gene scale of the encoder input: the std, floored by :func:`encoder_scale`,
        (n_genes,).
    n_cells_per_perturbation
        Plate sizes n_t: the number of cells carrying each perturbation, (n_perturbations,).
    median_library_size
        Median library size of the cells.
    library_size_quantiles
        Quantiles 0%, 1%, ..., 100% of the control cells' library sizes (see
        :func:`control_library_quantiles`), (101,).
    """

    gene_mean: np.ndarray
    gene_scale: np.ndarray
    n_cells_per_perturbation: np.ndarray
    median_library_size: float
    library_size_quantiles: np.ndarray


def control_library_quantiles(libraries: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Compute the quantiles of the control cells' library sizes.

    This is the depth distribution that effects "at the data's depth" draw from.

    Parameters
    ----------
    libraries
        Library sizes of the cells, (n_cells,); values below 1 count as 1.
    is_control
        Whether each cell is a control, (n_cells,) bool. When no cell is (a screen without
        controls), all cells are used.

    Returns
    -------
    numpy.ndarray
        Quantiles 0%, 1%, ..., 100%, (101,) float64.
    """
    chosen = libraries[is_control] if is_control.any() else libraries
    return np.quantile(np.maximum(chosen, 1.0), np.linspace(0, 1, LIBRARY_QUANTILES))


def control_rows(dosage: Any, rows: np.ndarray) -> np.ndarray:
    """Tell which of the rows are control cells (all-zero dosage rows).

    Parameters
    ----------
    dosage
        Dosage matrix: anything whose ``dosage[rows]`` is a CSR matrix.
    rows
        Row positions of the cells.

    Returns
    -------
    numpy.ndarray
        Whether each row is a control, (len(rows),) bool.
    """
    return np.asarray(dosage[rows].getnnz(axis=1) == 0).ravel()


def covariate_rows(covariates: np.ndarray | None, rows: np.ndarray) -> torch.Tensor | None:
    """Take the one-hot covariate rows of some cells as a tensor.

    Parameters
    ----------
    covariates
        One-hot covariate rows of all cells, (n_cells, n_covariates), or None.
    rows
        Row positions of the cells.

    Returns
    -------
    torch.Tensor or None
        ``covariates[rows]``, (len(rows), n_covariates), or None when ``covariates`` is None.
    """
    return None if covariates is None else torch.from_numpy(covariates[rows])


class CellDataset(Dataset):
    """Rows of an expression matrix with their dosage and one-hot covariates, if any.

    Indexing with a list (or array) of row positions returns one :class:`Batch` of those
    cells: ``dataset[rows]``. Library sizes are computed once at construction, as row sums
    floored at 1.

    Parameters
    ----------
    expression
        Expression matrix, (n_cells, n_genes), CSR or dense; sparse rows are densified only
        per batch.
    dosage
        Dosage rows, (n_cells, n_perturbations) CSR.
    covariates
        One-hot covariate rows, (n_cells, n_covariates), or None for a model without
        covariates.
    """

    def __init__(
        self,
        expression: sp.csr_matrix | np.ndarray,
        dosage: sp.csr_matrix,
        covariates: np.ndarray | None = None,
    ) -> None:
        self.expression = expression
        self.dosage = dosage
        self.covariates = covariates
        self.library_size = np.maximum(library_sizes(expression), 1.0).astype(np.float32)

    def __len__(self) -> int:
        return self.expression.shape[0]

    def __getitem__(self, rows: list[int] | np.ndarray) -> Batch:
        rows = np.asarray(rows)
        counts = self.expression[rows]
        counts = counts.toarray() if sp.issparse(counts) else counts
        dosage = self.dosage[rows]
        present = np.unique(dosage.indices)  # perturbations carried by some cell of the batch
        return Batch(
            counts=torch.from_numpy(np.asarray(counts, dtype=np.float32)),
            dosage=torch.from_numpy(dosage[:, present].toarray()),
            perturbation_index=torch.from_numpy(present.astype(np.int64)),
            library_size=torch.from_numpy(self.library_size[rows]),
            index=torch.from_numpy(rows.astype(np.int64)),
            covariates=covariate_rows(self.covariates, rows),
        )

    def training_statistics(self, rows: np.ndarray, *, log1p: bool) -> TrainingStatistics:
        """Compute what training takes from a subset of the cells.

        Parameters
        ----------
        rows
            Row positions of the training cells.
        log1p
            Whether the encoder input is ``log1p`` of the expression (for the per-gene mean
            and scale).

        Returns
        -------
        TrainingStatistics
            Per-gene mean and floored scale, n_t, median library size and the quantiles of the
            control cells' library sizes, all over ``rows``.
        """
        mean, std = gene_statistics(self.expression, rows, log1p=log1p)
        libraries = library_sizes(self.expression[rows])
        return TrainingStatistics(
            gene_mean=mean,
            gene_scale=encoder_scale(std),
            n_cells_per_perturbation=perturbation_counts(self.dosage, rows),
            median_library_size=float(np.median(libraries)),
            library_size_quantiles=control_library_quantiles(
                libraries, control_rows(self.dosage, rows)
            ),
        )


def _identity(batch: Batch) -> Batch:
    return batch


class _Subset(Dataset):
    def __init__(self, dataset: CellDataset, rows: np.ndarray) -> None:
        self.dataset, self.rows = dataset, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: list[int]) -> Batch:
        return self.dataset[self.rows[np.asarray(positions)]]

    def perturbation_counts(self) -> np.ndarray:
        """Count the cells of each perturbation, n_t, over the subset's rows.

        Returns
        -------
        numpy.ndarray
            n_t, (n_perturbations,) int64.
        """
        return perturbation_counts(self.dataset.dosage, self.rows)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """Give the order in which an epoch visits positions ``0 .. n - 1``.

    The order is drawn from ``(seed, epoch)`` alone: it does not depend on how many epochs ran
    before it in this process, so a run resumed from a checkpoint at epoch ``e`` sees the
    batches an uninterrupted run sees.

    Parameters
    ----------
    n
        Number of positions.
    shuffle
        Whether to permute; without it the order is ``0 .. n - 1``.
    seed
        Seed of the run.
    epoch
        Epoch number.

    Returns
    -------
    torch.Tensor
        The positions, (n,) int64.
    """
    if not shuffle:
        return torch.arange(n)
    (epoch_seed,) = np.random.SeedSequence((seed, epoch)).generate_state(1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(epoch_seed)))


class EpochBatches(Sampler[list[int]]):
    """Consecutive batches of :func:`epoch_order` for the epoch last passed to ``set_epoch``.

    Like torch's ``DistributedSampler``, it reshuffles only when told the epoch; Lightning calls
    ``set_epoch`` on a loader's ``sampler`` before every training epoch. The epoch starts at 0.
    Each batch is a list of positions.

    Parameters
    ----------
    n
        Number of positions to batch.
    batch_size
        Positions per batch; the last batch may be smaller.
    shuffle
        Whether to shuffle the positions every epoch.
    seed
        Seed of the shuffles.
    drop_last
        Whether to leave out a last batch smaller than ``batch_size``.
    """

    def __init__(
        self, n: int, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the following passes as epoch ``epoch``.

        Parameters
        ----------
        epoch
            Epoch number.
        """
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """Give this epoch's order of the positions.

        Returns
        -------
        torch.Tensor
            The positions, (n,) int64.
        """
        return epoch_order(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


def make_loader(
    dataset: CellDataset,
    rows: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Make a DataLoader of minibatches of some of the dataset's cells.

    The sampler (an :class:`EpochBatches`) hands whole lists of positions to the dataset, so
    each batch is sliced at once, without per-cell Python or default collation.

    Parameters
    ----------
    dataset
        The cells.
    rows
        Row positions of the cells to load.
    batch_size
        Cells per batch; the last batch may be smaller.
    shuffle
        Whether to shuffle every epoch: epoch ``e`` is shuffled by ``(seed, e)`` (see
        :class:`EpochBatches`).
    seed
        Seed of the shuffles.
    drop_last
        Whether to leave out a last batch smaller than ``batch_size``.

    Returns
    -------
    torch.utils.data.DataLoader
        A loader yielding :class:`Batch` objects; its ``sampler`` is the :class:`EpochBatches`.
    """
    subset = _Subset(dataset, np.asarray(rows))
    batches = EpochBatches(
        len(subset), batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    # A private generator: creating an iterator must not draw from torch's global RNG, which the
    # model samples from (Lightning creates the iterators of a resumed run at other times).
    return DataLoader(
        subset,
        sampler=batches,
        batch_size=None,
        collate_fn=_identity,
        generator=torch.Generator().manual_seed(seed),
    )


class DeviceBatches:
    """Minibatches of rows held densely on an accelerator: no host work or copies per batch.

    Yields the same batches as :func:`make_loader` with the same seed and epoch: its ``sampler``
    gives each epoch's order (see :class:`EpochBatches`), cut here into consecutive slices. The
    counts, dosage, library sizes, row positions and covariates of all ``rows`` are copied to
    ``device`` once, at construction (see :func:`fits_on_device`).

    Parameters
    ----------
    dataset
        The cells.
    rows
        Row positions of the cells to hold.
    batch_size
        Cells per batch; the last batch may be smaller.
    shuffle
        Whether to shuffle every epoch.
    device
        The accelerator to hold the cells on.
    seed
        Seed of the shuffles.
    """

    def __init__(
        self,
        dataset: CellDataset,
        rows: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        device: torch.device | str,
        seed: int = 0,
    ) -> None:
        rows = np.asarray(rows)
        counts = dataset.expression[rows]
        counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
        self.device = torch.device(device)
        self.counts = torch.as_tensor(counts, dtype=torch.float32, device=self.device)
        self.dosage = torch.as_tensor(dataset.dosage[rows].toarray(), device=self.device)
        self.library_size = torch.as_tensor(dataset.library_size[rows], device=self.device)
        self.rows = torch.as_tensor(rows.astype(np.int64), device=self.device)
        covariates = covariate_rows(dataset.covariates, rows)
        self.covariates = None if covariates is None else covariates.to(self.device)
        self.batch_size = batch_size
        self.sampler = EpochBatches(len(rows), batch_size=batch_size, shuffle=shuffle, seed=seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def perturbation_counts(self) -> np.ndarray:
        """Count the cells of each perturbation, n_t, over the rows held.

        Returns
        -------
        numpy.ndarray
            n_t, (n_perturbations,) int64.
        """
        return (self.dosage != 0).sum(0).cpu().numpy()

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.rows)
        order = self.sampler.order().to(self.device)
        for start in range(0, n, self.batch_size):
            positions = order[start : start + self.batch_size]
            dosage = self.dosage[positions]
            present = torch.nonzero(dosage.any(0)).ravel()
            yield Batch(
                counts=self.counts[positions],
                dosage=dosage[:, present],
                perturbation_index=present,
                library_size=self.library_size[positions],
                index=self.rows[positions],
                covariates=None if self.covariates is None else self.covariates[positions],
            )


def fits_on_device(
    dataset: CellDataset, n_rows: int, device: torch.device, fraction: float = 0.3
) -> bool:
    """Tell whether ``n_rows`` cells, held densely, fit in a share of the device's free memory.

    The estimate counts 4 bytes per value of the dense counts, dosage and covariates, plus two
    values per cell (library size and row position).

    Parameters
    ----------
    dataset
        The cells; its shapes size the estimate.
    n_rows
        Number of cells to hold.
    device
        The device; only CUDA devices are considered.
    fraction
        Share of the device's currently free memory the cells may take.

    Returns
    -------
    bool
        Whether the estimate is below ``fraction`` of the free memory; always False for a
        device that is not CUDA.
    """
    if device.type != "cuda":
        return False
    n_covariates = 0 if dataset.covariates is None else dataset.covariates.shape[1]
    n_bytes = (
        4 * n_rows * (dataset.expression.shape[1] + dataset.dosage.shape[1] + n_covariates + 2)
    )
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes < fraction * free
