"""Loaders: CSR (or dense) row slices per batch; no per-cell Python, no default collate."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from samsvae.data.batch import Batch

_CHUNK_ROWS = 10_000


def as_csr_or_dense(matrix: object) -> sp.csr_matrix | np.ndarray:
    """A CSR matrix or ndarray view of ``matrix`` (converts other sparse formats once)."""
    if sp.issparse(matrix):
        return matrix if sp.isspmatrix_csr(matrix) else sp.csr_matrix(matrix)
    return np.asarray(matrix)


def library_sizes(matrix: sp.csr_matrix | np.ndarray) -> np.ndarray:
    """Row sums, (n_cells,) float64."""
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def gene_statistics(
    matrix: sp.csr_matrix | np.ndarray, rows: np.ndarray, *, log1p: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation of (log1p of) ``matrix[rows]``, chunked."""
    total = np.zeros(matrix.shape[1])
    total_sq = np.zeros(matrix.shape[1])
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = matrix[rows[start : start + _CHUNK_ROWS]]
        if sp.issparse(chunk):
            chunk = chunk.copy()
            chunk.data = np.log1p(chunk.data) if log1p else chunk.data.astype(np.float64)
            total += np.asarray(chunk.sum(0)).ravel()
            total_sq += np.asarray(chunk.multiply(chunk).sum(0)).ravel()
        else:
            values = np.log1p(chunk) if log1p else chunk.astype(np.float64)
            total += values.sum(0)
            total_sq += (values**2).sum(0)
    mean = total / max(len(rows), 1)
    var = np.maximum(total_sq / max(len(rows), 1) - mean**2, 0.0)
    return mean, np.sqrt(var)


class CellDataset(Dataset):
    """Rows of an expression matrix with their dosage; ``dataset[list_of_rows]`` is a Batch."""

    def __init__(self, expression: sp.csr_matrix | np.ndarray, dosage: sp.csr_matrix) -> None:
        self.expression = expression
        self.dosage = dosage
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


def make_loader(
    dataset: CellDataset,
    rows: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader of Batches of ``rows``; the sampler hands whole index lists to the dataset."""
    subset = _Subset(dataset, np.asarray(rows))
    if shuffle:
        sampler = RandomSampler(subset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(subset)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(subset, sampler=batches, batch_size=None, collate_fn=_identity)


class DeviceBatches:
    """Minibatches of rows held densely on an accelerator: no host work or copies per batch.

    Yields the same batches as :func:`make_loader` with the same seed (one ``randperm`` of the
    rows per epoch from a seeded CPU generator, then consecutive slices).
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
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        n = len(self.rows)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
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
            )


def fits_on_device(
    dataset: CellDataset, n_rows: int, device: torch.device, fraction: float = 0.3
) -> bool:
    """Whether dense counts and dosage of ``n_rows`` cells fit in ``fraction`` of free memory."""
    if device.type != "cuda":
        return False
    n_bytes = 4 * n_rows * (dataset.expression.shape[1] + dataset.dosage.shape[1] + 2)
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes < fraction * free
