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
    """A CSR matrix or ndarray view of ``matrix`` (converts other sparse formats once)."""
    if sp.issparse(matrix):
        return matrix if sp.isspmatrix_csr(matrix) else sp.csr_matrix(matrix)
    return np.asarray(matrix)


def library_sizes(matrix: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Row sums, (n_cells,) float64."""
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def gene_moments(
    chunk: sp.csr_matrix | np.ndarray, *, log1p: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene sum and sum of squares of (log1p of) the rows of ``chunk``, float64."""
    if sp.issparse(chunk):
        chunk = chunk.copy()
        chunk.data = np.log1p(chunk.data) if log1p else chunk.data.astype(np.float64)
        return np.asarray(chunk.sum(0)).ravel(), np.asarray(chunk.multiply(chunk).sum(0)).ravel()
    values = np.log1p(chunk) if log1p else chunk.astype(np.float64)
    return values.sum(0), (values**2).sum(0)


def moments_to_statistics(
    total: np.ndarray, total_sq: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation from sums over ``n_rows`` rows."""
    mean = total / max(n_rows, 1)
    var = np.maximum(total_sq / max(n_rows, 1) - mean**2, 0.0)
    return mean, np.sqrt(var)


# Floor of the per-gene scale of the encoder input, as a fraction of the genes' mean std (see
# :func:`encoder_scale`).
SCALE_FLOOR_FRACTION = 0.1


def encoder_scale(std: np.ndarray) -> np.ndarray:
    """Per-gene scale of the standardised encoder input: the training std, floored.

    A gene (nearly) constant in the training cells has std (nearly) 0, so dividing by it would
    feed the encoder about ``(x - mean) / std``, unbounded, for any new cell where the gene
    varies, at a weight the encoder never saw in training. Every std is therefore raised to at
    least ``SCALE_FLOOR_FRACTION`` times the mean std over genes: no gene is scaled up more than
    ten times as much as an average gene, whatever the units of the input (log1p counts or user
    values). The mean, unlike the median, is not pulled to 0 by many constant genes, nor moved
    by the rounding left in a constant gene's std. If no gene varies the floor is 1.
    """
    mean_std = float(np.mean(std)) if len(std) else 0.0
    floor = SCALE_FLOOR_FRACTION * mean_std if mean_std > 0 else 1.0
    return np.maximum(std, floor)


def gene_statistics(
    matrix: sp.csr_matrix | np.ndarray, rows: np.ndarray, *, log1p: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation of (log1p of) ``matrix[rows]``, chunked."""
    total = np.zeros(matrix.shape[1])
    total_sq = np.zeros(matrix.shape[1])
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk_sum, chunk_sq = gene_moments(matrix[rows[start : start + _CHUNK_ROWS]], log1p=log1p)
        total += chunk_sum
        total_sq += chunk_sq
    return moments_to_statistics(total, total_sq, len(rows))


def perturbation_counts(dosage: Any, rows: np.ndarray) -> np.ndarray:
    """n_t over ``rows``: how many of them carry each perturbation (d_it != 0), counted in
    chunks of rows; ``dosage`` is anything whose ``dosage[rows]`` is a CSR matrix.

    Returns (n_perturbations,) int64.
    """
    rows = np.asarray(rows)
    counts = np.zeros(dosage.shape[1], dtype=np.int64)
    for start in range(0, len(rows), _CHUNK_ROWS):
        counts += np.asarray((dosage[rows[start : start + _CHUNK_ROWS]] != 0).sum(0)).ravel()
    return counts


def loader_perturbation_counts(loader: Any) -> np.ndarray:
    """n_t over the cells a loader of this package walks (:func:`make_loader`'s,
    :class:`DeviceBatches`, or the streaming and sharded loaders), from the dosage alone: no
    counts are read. Returns (n_perturbations,) int64."""
    source = loader.dataset if isinstance(loader, DataLoader) else loader
    return source.perturbation_counts()


@dataclass(frozen=True)
class TrainingStatistics:
    """What training takes from its cells: per-gene mean and scale (the std, floored by
    :func:`encoder_scale`) of the normalised input (n_genes,), the plate sizes n_t
    (n_perturbations,) and the median library size."""

    gene_mean: np.ndarray
    gene_scale: np.ndarray
    n_cells_per_perturbation: np.ndarray
    median_library_size: float
    library_size_quantiles: np.ndarray


def control_library_quantiles(libraries: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    """Quantiles 0%, 1%, ..., 100% of the control cells' library sizes (of all cells when there
    are no controls, as in a screen without them), (101,) float64: the depth distribution that
    effects "at the data's depth" draw from."""
    chosen = libraries[is_control] if is_control.any() else libraries
    return np.quantile(np.maximum(chosen, 1.0), np.linspace(0, 1, LIBRARY_QUANTILES))


def control_rows(dosage: Any, rows: np.ndarray) -> np.ndarray:
    """Whether each of ``rows`` is a control cell (an all-zero dosage row), (len(rows),) bool."""
    return np.asarray(dosage[rows].getnnz(axis=1) == 0).ravel()


def covariate_rows(covariates: np.ndarray | None, rows: np.ndarray) -> torch.Tensor | None:
    """The one-hot covariate rows of ``rows`` as a tensor, or None without covariates."""
    return None if covariates is None else torch.from_numpy(covariates[rows])


class CellDataset(Dataset):
    """Rows of an expression matrix with their dosage (and one-hot covariates, if any);
    ``dataset[list_of_rows]`` is a Batch."""

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
        """Per-gene moments, n_t and median library size of ``rows``."""
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
        """n_t over the subset's rows, (n_perturbations,) int64."""
        return perturbation_counts(self.dataset.dosage, self.rows)


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """Positions ``0..n-1``, (n,) int64: a permutation drawn from ``(seed, epoch)`` alone.

    The order of an epoch does not depend on how many epochs ran before it in this process, so a
    run resumed from a checkpoint at epoch ``e`` sees the batches an uninterrupted run sees.
    """
    if not shuffle:
        return torch.arange(n)
    (epoch_seed,) = np.random.SeedSequence((seed, epoch)).generate_state(1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(epoch_seed)))


class EpochBatches(Sampler[list[int]]):
    """Consecutive batches of :func:`epoch_order` for the epoch last passed to ``set_epoch``.

    Like torch's ``DistributedSampler``, it reshuffles only when told the epoch; Lightning calls
    ``set_epoch`` on a loader's ``sampler`` before every training epoch.
    """

    def __init__(
        self, n: int, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool = False
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the following passes as epoch ``epoch``."""
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """This epoch's positions, (n,) int64."""
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
    """A DataLoader of Batches of ``rows``; the sampler hands whole index lists to the dataset.

    With ``shuffle``, epoch ``e`` (see :class:`EpochBatches`) is shuffled by ``(seed, e)``.
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
    gives each epoch's order (see :class:`EpochBatches`), cut here into consecutive slices.
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
        """n_t over the rows held, (n_perturbations,) int64."""
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
    """Whether dense counts and dosage of ``n_rows`` cells fit in ``fraction`` of free memory."""
    if device.type != "cuda":
        return False
    n_covariates = 0 if dataset.covariates is None else dataset.covariates.shape[1]
    n_bytes = (
        4 * n_rows * (dataset.expression.shape[1] + dataset.dosage.shape[1] + n_covariates + 2)
    )
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes < fraction * free
