"""Checks of user input, run at the API boundary. Each error names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

    from samsvae.data.design import PerturbationDesign

_CHUNK_ROWS = 10_000


class MissingKeyError(KeyError, ValueError):
    """A key named by the user is not in the AnnData: a KeyError that is also a ValueError, so
    that every bad-input error of samsvae can be caught as ValueError (or TypeError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_anndata(adata: object) -> None:
    """The object is a non-empty AnnData."""
    from anndata import AnnData

    if not isinstance(adata, AnnData):
        msg = f"Expected an AnnData object, got {type(adata).__name__}."
        raise TypeError(msg)
    if adata.n_obs == 0 or adata.n_vars == 0:
        msg = (
            f"adata is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
            "pass an AnnData with at least one cell and one gene."
        )
        raise ValueError(msg)


def check_setup_keys(
    adata: AnnData,
    *,
    perturbation_key: str | None,
    control: str,
    layer: str | None,
    dosage_key: str | None,
    combination_delimiter: str = "+",
) -> None:
    """Keys exist, the control label is present, and every other label names a perturbation."""
    if perturbation_key is None and dosage_key is None:
        msg = "Pass perturbation_key (a column of adata.obs) or dosage_key (a key of adata.obsm)."
        raise ValueError(msg)
    if layer is not None and layer not in adata.layers:
        msg = f"layer={layer!r} is not in adata.layers; layers are {list(adata.layers)}."
        raise MissingKeyError(msg)
    if dosage_key is not None:
        if dosage_key not in adata.obsm:
            msg = f"dosage_key={dosage_key!r} is not in adata.obsm; keys are {list(adata.obsm)}."
            raise MissingKeyError(msg)
        _check_every_perturbation_has_cells(adata.obsm[dosage_key], dosage_key)
        return
    if perturbation_key not in adata.obs.columns:
        msg = (
            f"perturbation_key={perturbation_key!r} is not a column of adata.obs; "
            f"columns are {list(adata.obs.columns)}."
        )
        raise MissingKeyError(msg)
    labels = adata.obs[perturbation_key]
    if labels.isna().any():
        rows = list(adata.obs_names[labels.isna().to_numpy()][:5])
        msg = (
            f"adata.obs[{perturbation_key!r}] has missing labels (first cells: {rows}); "
            f"label every cell, using control={control!r} for unperturbed cells."
        )
        raise ValueError(msg)
    present = set(map(str, labels.unique()))  # distinct labels only: no per-cell strings
    _check_control_is_unambiguous(control, present, perturbation_key, combination_delimiter)
    if control not in present:
        close = difflib.get_close_matches(control, sorted(present), n=3, cutoff=0.3)
        msg = (
            f"control={control!r} is not a label in adata.obs[{perturbation_key!r}]; "
            f"close labels: {close or sorted(present)[:10]}. Pass the label of unperturbed cells."
        )
        raise ValueError(msg)
    empty = sorted(
        label
        for label in present - {control}
        if not any(p.strip() for p in label.split(combination_delimiter))
    )
    if empty:
        msg = (
            f"Labels {empty[:5]} in adata.obs[{perturbation_key!r}] name no perturbation; "
            f"relabel those cells (control={control!r} for unperturbed cells) or drop them."
        )
        raise ValueError(msg)


def _check_control_is_unambiguous(
    control: str, labels: set[str], perturbation_key: str | None, delimiter: str
) -> None:
    """The control label must not contain the delimiter nor differ from another label only by
    case or surrounding spaces ("control" and "Control " would be read as different labels)."""
    if delimiter in control:
        msg = (
            f"control={control!r} contains the combination delimiter {delimiter!r}, so it would "
            "read as a combination; relabel the control cells or pass another "
            "combination_delimiter."
        )
        raise ValueError(msg)
    twins = sorted(
        label for label in labels - {control} if label.strip().lower() == control.strip().lower()
    )
    if twins:
        msg = (
            f"control={control!r} is ambiguous: adata.obs[{perturbation_key!r}] also has "
            f"{twins}, which differ from it only by case or spaces; give all unperturbed cells "
            "one label."
        )
        raise ValueError(msg)


def _check_every_perturbation_has_cells(dosage: object, dosage_key: str) -> None:
    """Every column of a ready dosage matrix must be carried by some cell."""
    names = list(map(str, dosage.columns)) if isinstance(dosage, pd.DataFrame) else None
    values = dosage.to_numpy() if isinstance(dosage, pd.DataFrame) else dosage
    matrix = sp.csr_matrix(values)
    carried = np.asarray((matrix != 0).sum(0)).ravel()
    empty = np.flatnonzero(carried == 0)
    if empty.size:
        which = [names[j] for j in empty[:5]] if names else [int(j) for j in empty[:5]]
        msg = (
            f"adata.obsm[{dosage_key!r}] has {empty.size} perturbation column(s) with zero cells "
            f"(first: {which}); drop those columns, a perturbation needs cells to be learned."
        )
        raise ValueError(msg)


def _row_chunks(matrix: np.ndarray | sp.spmatrix) -> Iterable[np.ndarray]:
    """Values of ``matrix`` in row chunks, never densifying a sparse matrix."""
    if sp.issparse(matrix):
        yield np.asarray(matrix.data)
        return
    for start in range(0, matrix.shape[0], _CHUNK_ROWS):
        yield np.asarray(matrix[start : start + _CHUNK_ROWS])


def check_expression(matrix: np.ndarray | sp.spmatrix, *, counts: bool, where: str) -> None:
    """Finite values; for count likelihoods also non-negative integers."""
    for values in _row_chunks(matrix):
        if not np.all(np.isfinite(values)):
            msg = (
                f"{where} contains NaN or infinite values; remove or impute them "
                "(e.g. drop the affected cells) before setup."
            )
            raise ValueError(msg)
        if not counts:
            continue
        if np.any(values < 0):
            msg = (
                f"{where} contains negative values, but the likelihood expects counts; pass raw "
                "counts (e.g. layer='counts') or use likelihood='normal'."
            )
            raise ValueError(msg)
        if np.any(values != np.round(values)):
            msg = (
                f"{where} contains non-integer values, but the likelihood expects raw counts; "
                "pass raw counts (e.g. layer='counts') or use likelihood='normal'."
            )
            raise ValueError(msg)


def check_covariate_keys(
    adata: AnnData, covariate_keys: Iterable[str] | str | None, perturbation_key: str | None
) -> list[str]:
    """Covariate keys are distinct ``adata.obs`` columns other than the perturbation labels,
    with a value for every cell; returns them as a list (empty for None)."""
    if covariate_keys is None:
        return []
    if isinstance(covariate_keys, str):
        covariate_keys = [covariate_keys]  # a lone key, not its characters
    keys = [str(key) for key in covariate_keys]
    if len(set(keys)) != len(keys):
        msg = f"covariate_keys={keys!r} names a column twice; list each column once."
        raise ValueError(msg)
    if perturbation_key in keys:
        msg = (
            f"covariate_keys includes the perturbation column {perturbation_key!r}; covariates "
            "are other cell attributes (batch, donor), not the perturbation."
        )
        raise ValueError(msg)
    check_covariates_present(adata, keys)
    for key in keys:
        missing = adata.obs[key].isna().to_numpy()
        if missing.any():
            rows = list(adata.obs_names[missing][:5])
            msg = (
                f"adata.obs[{key!r}] has missing values (first cells: {rows}); give every cell "
                "a category (e.g. 'unknown') or drop those cells."
            )
            raise ValueError(msg)
    return keys


def check_covariates_present(adata: AnnData, covariate_keys: Iterable[str]) -> None:
    """Every covariate key is a column of ``adata.obs``."""
    absent = [key for key in covariate_keys if key not in adata.obs.columns]
    if absent:
        msg = (
            f"covariate key(s) {absent} are not columns of adata.obs; "
            f"columns are {list(adata.obs.columns)}."
        )
        raise MissingKeyError(msg)


def check_genes_match(adata: AnnData, design: PerturbationDesign) -> None:
    """The AnnData has exactly the model's genes in the model's order."""
    genes = tuple(map(str, adata.var_names))
    if genes == design.genes:
        return
    missing = sorted(set(design.genes) - set(genes))[:5]
    extra = sorted(set(genes) - set(design.genes))[:5]
    msg = (
        f"adata's genes do not match the model's {design.n_genes} genes "
        f"(missing e.g. {missing}, unexpected e.g. {extra}); subset and order them with "
        "adata[:, model.design.genes]."
    )
    raise ValueError(msg)


def check_perturbation_requests(requests: Iterable[str], design: PerturbationDesign) -> list[str]:
    """Requested labels are the control, trained singles, or combinations of trained singles."""
    requests = [str(r) for r in requests]
    unknown = design.unknown_singles(requests)
    if unknown:
        hints = {u: difflib.get_close_matches(u, design.perturbations, n=3) for u in unknown[:5]}
        rule = (
            "with dosage_encoding='unique' every label is its own perturbation, so only labels "
            "seen in training can be requested"
            if design.dosage_encoding == "unique"
            else "a request must be a trained perturbation or a "
            f"'{design.combination_delimiter}'-joined combination of them"
        )
        msg = f"Unknown perturbations {unknown[:10]}: {rule}. Close matches: {hints}."
        raise ValueError(msg)
    return requests


def labels_of(adata: AnnData, key: str) -> pd.Series:
    """Labels of ``adata.obs[key]`` as strings."""
    return adata.obs[key].astype(str)


def check_split_indices(
    train_indices: Iterable[int], validation_indices: Iterable[int] | None, n_cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of a user-given split, sorted: integers in range, disjoint, some training."""

    def as_rows(name: str, values: Iterable[int]) -> np.ndarray:
        rows = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            msg = f"{name} must hold integer row positions of adata; got dtype {rows.dtype}."
            raise TypeError(msg)
        rows = rows.astype(np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= n_cells):
            msg = f"{name} holds positions outside [0, {n_cells}); adata has {n_cells} cells."
            raise ValueError(msg)
        if len(np.unique(rows)) != len(rows):
            msg = f"{name} repeats row positions; pass each cell at most once."
            raise ValueError(msg)
        return np.sort(rows)

    train = as_rows("train_indices", train_indices)
    if train.size == 0:
        msg = "train_indices is empty; pass at least one training cell."
        raise ValueError(msg)
    validation = as_rows(
        "validation_indices", [] if validation_indices is None else validation_indices
    )
    overlap = np.intersect1d(train, validation)
    if overlap.size:
        msg = (
            f"train_indices and validation_indices share {overlap.size} cells "
            f"(e.g. row {int(overlap[0])}); the two sets must be disjoint."
        )
        raise ValueError(msg)
    return train, validation


def check_one_perturbation_per_cell(dosage: sp.csr_matrix, model_name: str) -> None:
    """Models with one label per cell (SVAE+) refuse dosage rows with several perturbations."""
    counts = np.asarray(dosage.getnnz(axis=1))
    if (counts > 1).any():
        row = int(np.flatnonzero(counts > 1)[0])
        msg = (
            f"{model_name} needs at most one perturbation per cell, but dosage row {row} has "
            f"{counts[row]}; give combinations their own label (perturbation_key with "
            "dosage_encoding='unique') instead of a multi-column dosage_key."
        )
        raise ValueError(msg)
