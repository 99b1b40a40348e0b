"""Seeded splits of cells, and the named tasks of the paper saved as JSON.

A task assigns each cell (a row position of the AnnData) to training, validation, test or none.
:class:`Split` holds the result with its task name, parameters and seed, saves it as JSON and
loads it back exactly; ``model.train(train_indices=split.train,
validation_indices=split.validation)`` then trains on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from samsvae.data.design import DOSAGE_ENCODINGS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import anndata as ad

SPLIT_FORMAT = 1
TaskName = Literal["random", "norman_ood", "norman_data_efficiency"]
# Parts of the combination cells before filtering, as fractions of each combination's cells:
# training + validation (split by validation_fraction) and test.
COMBINATION_TEST_SHARE = 0.2


def train_validation_split(
    n_cells: int, *, train_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n_cells)`` with ``seed``; the first ``round(train_size * n)`` train.

    Parameters
    ----------
    n_cells
        Number of cells n.
    train_size
        Share of the cells used for training; at least one cell goes to each part unless
        ``train_size >= 1``.
    seed
        Seed of the shuffle.

    Returns
    -------
    train : numpy.ndarray
        Sorted row positions of the training cells.
    validation : numpy.ndarray
        Sorted row positions of the validation cells.

    Notes
    -----
    The positions are int32 when ``n_cells`` fits in it (below 2**31 cells), int64 otherwise.
    """
    order = np.random.default_rng(seed).permutation(n_cells)
    if n_cells <= np.iinfo(np.int32).max:  # half the memory a genome-wide split holds
        order = order.astype(np.int32)
    n_train = n_cells if train_size >= 1 else max(1, min(n_cells - 1, round(train_size * n_cells)))
    # The validation rows are copied out: as a view they would keep the whole permutation alive
    # for as long as they are (all the training rows, after an out-of-core run has let them go).
    train, validation = order[:n_train], order[n_train:].copy()
    train.sort()  # in place: sorted copies would double the per-cell memory for a moment
    validation.sort()
    return train, validation


def shuffled_combinations(combinations: Iterable[str], *, seed: int) -> list[str]:
    """The distinct combinations, sorted, then shuffled with ``seed``.

    Parameters
    ----------
    combinations
        Combination labels (repeats allowed).
    seed
        Seed of the shuffle.

    Returns
    -------
    list of str
        The shuffled combinations; the last ``ceil(held_out_fraction * C)`` are the held-out
        combinations of :func:`split_combinations` and :func:`norman_ood_split`.
    """
    return [str(c) for c in np.random.default_rng(seed).permutation(sorted(set(combinations)))]


def split_combinations(
    combinations: Iterable[str], *, held_out_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Hold out the last ``ceil(held_out_fraction * C)`` of the shuffled combinations.

    Parameters
    ----------
    combinations
        Combination labels.
    held_out_fraction
        Share of the C distinct combinations held out, rounded up.
    seed
        Seed of the shuffle (:func:`shuffled_combinations`).

    Returns
    -------
    kept : list of str
        The kept combinations, sorted.
    held_out : list of str
        The held-out combinations, sorted.

    Examples
    --------
    >>> split_combinations(["A+B", "A+C", "B+C", "C+D"], held_out_fraction=0.25, seed=0)
    (['A+B', 'A+C', 'B+C'], ['C+D'])
    """
    order = shuffled_combinations(combinations, seed=seed)
    n_test = math.ceil(held_out_fraction * len(order))
    return sorted(order[: len(order) - n_test]), sorted(order[len(order) - n_test :])


@dataclass(frozen=True, eq=False)
class Split:
    """Row positions of the training, validation and test cells of a named, seeded task.

    Splits are made by the task functions (:func:`make_split`, :func:`random_split`,
    :func:`norman_ood_split`, :func:`norman_data_efficiency_split`) or read by :meth:`load`;
    each constructor argument is kept as an attribute of the same name.

    Parameters
    ----------
    task
        Name of the task that made the split (a key of :data:`TASKS`).
    parameters
        The task's parameters, JSON values only.
    seed
        The split seed.
    n_obs
        Number of cells of the AnnData split.
    obs_names_sha256
        SHA-256 of its ``obs_names``, checked by :meth:`check`.
    train, validation, test
        Sorted int64 row positions; a cell is in at most one, and may be in none.
    """

    task: str
    parameters: dict[str, Any]
    seed: int
    n_obs: int
    obs_names_sha256: str
    train: np.ndarray = field(repr=False)
    validation: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)

    @property
    def dosage_encoding(self) -> str:
        """The ``dosage_encoding`` to pass to ``setup_anndata`` for this task."""
        return str(self.parameters.get("dosage_encoding", "additive"))

    def check(self, adata: ad.AnnData) -> None:
        """Check that ``adata`` holds the cells split, in the same order.

        Parameters
        ----------
        adata
            The AnnData the row positions are meant for.

        Raises
        ------
        ValueError
            If its number of cells or its ``obs_names`` (in order) differ from those split.
        """
        if adata.n_obs != self.n_obs or _obs_names_sha256(adata) != self.obs_names_sha256:
            msg = (
                f"This {self.task!r} split was made for {self.n_obs} other cells (or another "
                f"order); adata has {adata.n_obs}. Use the AnnData the split was made from."
            )
            raise ValueError(msg)

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (task, parameters, seed, cell check, row positions).

        Parameters
        ----------
        path
            The JSON file to write.
        """
        record = {"format": SPLIT_FORMAT, **self._fields()}
        Path(path).write_text(json.dumps(record, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by :meth:`save`.

        Parameters
        ----------
        path
            The JSON file.

        Returns
        -------
        Split
            The split, equal in every field to the one saved.

        Raises
        ------
        ValueError
            If the file is not a split file of this format.
        """
        record = json.loads(Path(path).read_text())
        if record.pop("format", None) != SPLIT_FORMAT:
            msg = f"{path} is not a samsvae split file (format {SPLIT_FORMAT})."
            raise ValueError(msg)
        for part in ("train", "validation", "test"):
            record[part] = np.asarray(record[part], dtype=np.int64)
        return cls(**record)

    def _fields(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "parameters": self.parameters,
            "seed": self.seed,
            "n_obs": self.n_obs,
            "obs_names_sha256": self.obs_names_sha256,
            "train": self.train.tolist(),
            "validation": self.validation.tolist(),
            "test": self.test.tolist(),
        }


def random_split(
    adata: ad.AnnData, *, seed: int = 0, fractions: Sequence[float] = (0.64, 0.16, 0.2)
) -> Split:
    """Random cell split into training, validation and test (64/16/20 by default).

    Parameters
    ----------
    adata
        The cells to split.
    seed
        Split seed.
    fractions
        Training, validation and test shares; they must sum to 1.

    Returns
    -------
    Split
        The ``"random"`` split; every cell is in exactly one part.
    """
    train, validation, test = (float(f) for f in fractions)
    if min(train, validation, test) < 0 or not math.isclose(train + validation + test, 1):
        msg = f"fractions={tuple(fractions)} must be three non-negative shares summing to 1."
        raise ValueError(msg)
    rank, size = _ranks_within_groups(np.zeros(adata.n_obs), np.random.default_rng(seed))
    part = _parts(rank, size, train, validation)
    parameters = {"fractions": [train, validation, test]}
    return _make_split("random", adata, parameters, seed, part == 0, part == 1, part == 2)


def norman_ood_split(
    adata: ad.AnnData,
    *,
    fraction: float,
    seed: int = 0,
    held_out_fraction: float = 0.25,
    validation_fraction: float = 0.2,
    dosage_encoding: Literal["additive", "unique"] = "additive",
    perturbation_key: str = "perturbation",
    control: str = "control",
    combination_delimiter: str = "+",
) -> Split:
    """Out-of-distribution combinations: train on a fraction of the combinations, test on others.

    The C distinct combinations are sorted and shuffled with ``seed``; the last
    ``ceil(held_out_fraction * C)`` are the test combinations. Controls and single perturbations
    split ``1 - validation_fraction`` / ``validation_fraction`` into training and validation.
    Each combination's cells split first into training, validation and test parts (test: a
    fifth, the rest by ``validation_fraction``), independently of ``fraction``. Training and
    validation then keep the parts of the first ``floor(fraction * C)`` shuffled combinations,
    so training sets are nested as ``fraction`` grows; the test set is the test part of the test
    combinations, the same for every ``fraction``. For ``fraction <= 1 - held_out_fraction`` no
    test combination is trained on; at ``fraction = 1`` all are (an in-distribution reference).

    Parameters
    ----------
    adata
        Cells with labels in ``obs[perturbation_key]``.
    fraction
        Share f of the combinations trained on, in [0, 1].
    seed
        Split seed (the combination shuffle and the cell parts).
    held_out_fraction
        Share of the combinations tested on, rounded up.
    validation_fraction
        Share of the non-test cells used for validation.
    dosage_encoding
        Recorded for ``setup_anndata``. ``"unique"`` needs ``fraction = 1``: a combination that
        is its own perturbation cannot be predicted without training on it.
    perturbation_key, control, combination_delimiter
        As in ``setup_anndata``.

    Returns
    -------
    Split
        The ``"norman_ood"`` split; ``parameters["test_combinations"]`` lists the held-out
        combinations.
    """
    _check_fraction(fraction, "fraction")
    if dosage_encoding == "unique" and fraction < 1:
        msg = (
            f"dosage_encoding='unique' with fraction={fraction}: held-out combinations would be "
            "perturbations never trained on. Use dosage_encoding='additive' or fraction=1."
        )
        raise ValueError(msg)
    cells = _CombinationCells.of(
        adata, perturbation_key, control, combination_delimiter, validation_fraction, seed
    )
    order = shuffled_combinations(cells.labels[cells.is_combination], seed=seed)
    test_combinations = order[len(order) - math.ceil(held_out_fraction * len(order)) :]
    trained = np.isin(cells.labels, order[: _floor_share(fraction, len(order))])
    keep = ~cells.is_combination | trained
    is_test = np.isin(cells.labels, test_combinations) & (cells.part == 2)
    parameters = {
        **_label_parameters(perturbation_key, control, combination_delimiter, dosage_encoding),
        "fraction": float(fraction),
        "held_out_fraction": float(held_out_fraction),
        "validation_fraction": float(validation_fraction),
        "test_combinations": sorted(test_combinations),
    }
    return _make_split(
        "norman_ood", adata, parameters, seed, keep & (cells.part == 0),
        keep & (cells.part == 1), is_test,
    )  # fmt: skip


def norman_data_efficiency_split(
    adata: ad.AnnData,
    *,
    fraction: float,
    seed: int = 0,
    validation_fraction: float = 0.2,
    dosage_encoding: Literal["additive", "unique"] = "additive",
    perturbation_key: str = "perturbation",
    control: str = "control",
    combination_delimiter: str = "+",
) -> Split:
    """Data efficiency: every combination in every part, a fraction of its training cells kept.

    Cells split as in :func:`norman_ood_split` (controls and singles into training and
    validation; each combination's cells into training, validation and test), then each
    combination keeps the first ``floor(fraction * n)`` of its ``n`` training cells in a seeded
    order, so training sets are nested as ``fraction`` grows. Validation and test sets do not
    depend on ``fraction``.

    Parameters
    ----------
    adata
        Cells with labels in ``obs[perturbation_key]``.
    fraction
        Share f of each combination's training cells kept, in [0, 1].
    seed
        Split seed.
    validation_fraction
        Share of the non-test cells used for validation.
    dosage_encoding
        Recorded for ``setup_anndata`` (``"additive"`` or ``"unique"``).
    perturbation_key, control, combination_delimiter
        As in ``setup_anndata``.

    Returns
    -------
    Split
        The ``"norman_data_efficiency"`` split.
    """
    _check_fraction(fraction, "fraction")
    cells = _CombinationCells.of(
        adata, perturbation_key, control, combination_delimiter, validation_fraction, seed
    )
    n_train = np.round(cells.train_share * cells.size)
    kept = ~cells.is_combination | (cells.rank < np.floor(_round_share(fraction) * n_train))
    parameters = {
        **_label_parameters(perturbation_key, control, combination_delimiter, dosage_encoding),
        "fraction": float(fraction),
        "validation_fraction": float(validation_fraction),
    }
    return _make_split(
        "norman_data_efficiency", adata, parameters, seed, kept & (cells.part == 0),
        cells.part == 1, cells.part == 2,
    )  # fmt: skip


TASKS: dict[str, Callable[..., Split]] = {
    "random": random_split,
    "norman_ood": norman_ood_split,
    "norman_data_efficiency": norman_data_efficiency_split,
}


def make_split(adata: ad.AnnData, task: TaskName, *, seed: int = 0, **parameters: Any) -> Split:
    """Split ``adata`` by the task named ``task``.

    Parameters
    ----------
    adata
        The cells to split.
    task
        ``"random"`` (:func:`random_split`), ``"norman_ood"`` (:func:`norman_ood_split`) or
        ``"norman_data_efficiency"`` (:func:`norman_data_efficiency_split`).
    seed
        Split seed.
    **parameters
        The task function's keyword arguments.

    Returns
    -------
    Split
        The split, with ``task`` and ``seed`` recorded in it.
    """
    if task not in TASKS:
        msg = f"task={task!r} is not a known task; choose one of {sorted(TASKS)}."
        raise ValueError(msg)
    return TASKS[task](adata, seed=seed, **parameters)


# --- helpers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CombinationCells:
    """Labels of a screen with combinations and each cell's part before any filtering."""

    labels: np.ndarray  # (n_obs,) str
    is_combination: np.ndarray  # (n_obs,) bool
    rank: np.ndarray  # (n_obs,) position of the cell in a seeded order of its label's cells
    size: np.ndarray  # (n_obs,) number of cells with the cell's label
    train_share: np.ndarray  # (n_obs,) share of the label's cells in training
    part: np.ndarray  # (n_obs,) 0 training, 1 validation, 2 test

    @classmethod
    def of(
        cls,
        adata: ad.AnnData,
        perturbation_key: str,
        control: str,
        delimiter: str,
        validation_fraction: float,
        seed: int,
    ) -> _CombinationCells:
        if perturbation_key not in adata.obs:
            msg = (
                f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns "
                f"are {list(adata.obs.columns)}."
            )
            raise ValueError(msg)
        _check_fraction(validation_fraction, "validation_fraction")
        labels = adata.obs[perturbation_key].astype(str).to_numpy(dtype=str)
        is_combination = (labels != control) & (np.char.find(labels, delimiter) >= 0)
        rank, size = _ranks_within_groups(labels, np.random.default_rng([seed, 1]))
        kept_share = np.where(is_combination, 1 - COMBINATION_TEST_SHARE, 1.0)
        train_share = kept_share * (1 - validation_fraction)
        part = _parts(rank, size, train_share, kept_share * validation_fraction)
        return cls(labels, is_combination, rank, size, train_share, part)


def _ranks_within_groups(
    groups: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's position in a random order of its group's cells, and its group's size."""
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.ravel()
    shuffled = rng.permutation(len(codes))
    by_group = shuffled[np.argsort(codes[shuffled], kind="stable")]  # random within groups
    sizes = np.bincount(codes)
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(len(codes), dtype=np.int64)
    rank[by_group] = np.arange(len(codes)) - starts[codes[by_group]]
    return rank, sizes[codes]


def _parts(
    rank: np.ndarray, size: np.ndarray, train_share: Any, validation_share: Any
) -> np.ndarray:
    """0 (training), 1 (validation) or 2 (test) per cell by its rank within its group."""
    n_train = np.round(train_share * size)
    n_train_validation = np.round((np.asarray(train_share) + validation_share) * size)
    return (rank >= n_train).astype(np.int64) + (rank >= n_train_validation)


def _round_share(share: float) -> float:
    # floor(0.29 * 100) is 28 in floating point; round first so shares of counts floor exactly.
    return share + 1e-12


def _floor_share(share: float, n: int) -> int:
    return math.floor(_round_share(share) * n)


def _check_fraction(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        msg = f"{name}={value} must lie in [0, 1]."
        raise ValueError(msg)


def _label_parameters(
    perturbation_key: str, control: str, delimiter: str, dosage_encoding: str
) -> dict[str, Any]:
    if dosage_encoding not in DOSAGE_ENCODINGS:
        msg = f"dosage_encoding={dosage_encoding!r} must be one of {DOSAGE_ENCODINGS}."
        raise ValueError(msg)
    return {
        "perturbation_key": perturbation_key,
        "control": control,
        "combination_delimiter": delimiter,
        "dosage_encoding": dosage_encoding,
    }


_NAME_SLICE = 65_536


def _obs_names_sha256(adata: ad.AnnData) -> str:
    """SHA-256 of the obs names joined by NUL, fed a slice of names at a time: joining all of
    them at once makes two transient copies (str and bytes) the size of every name."""
    digest, names = hashlib.sha256(), adata.obs_names
    for start in range(0, len(names), _NAME_SLICE):
        part = "\0".join(map(str, names[start : start + _NAME_SLICE]))
        digest.update((f"\0{part}" if start else part).encode())
    return digest.hexdigest()


def _make_split(
    task: str,
    adata: ad.AnnData,
    parameters: dict[str, Any],
    seed: int,
    *masks: np.ndarray,
) -> Split:
    train, validation, test = (np.flatnonzero(mask).astype(np.int64) for mask in masks)
    return Split(
        task, parameters, int(seed), adata.n_obs, _obs_names_sha256(adata), train, validation, test
    )
