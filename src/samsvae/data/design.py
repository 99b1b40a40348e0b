"""Per-cell perturbation labels -> sparse dosage design.

A label is the control label, one perturbation name, or several names joined by the combination
delimiter ("A+B"). A control cell has an all-zero dosage row; a combination is the sum of its
singles' one-hot rows. A ready dosage matrix may come from ``adata.obsm`` instead.

Covariates (batch, donor, cell line) are categorical ``adata.obs`` columns; each becomes a block
of one-hot columns, and the blocks are concatenated into one (n_cells, n_covariates) row per cell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

_CODES_CHUNK = 1 << 16  # cells whose label codes are scanned at once


@dataclass(frozen=True)
class PerturbationDesign:
    """The vocabulary a model is trained on and how labels become dosage rows."""

    perturbations: tuple[str, ...]
    genes: tuple[str, ...]
    control: str
    perturbation_key: str | None = "perturbation"
    combination_delimiter: str = "+"
    layer: str | None = None
    dosage_key: str | None = None
    dosage_encoding: str = "additive"
    covariate_keys: tuple[str, ...] = ()
    covariate_categories: tuple[tuple[str, ...], ...] = ()

    @property
    def n_perturbations(self) -> int:
        """Number of single perturbations T."""
        return len(self.perturbations)

    @property
    def n_genes(self) -> int:
        """Number of modelled genes G."""
        return len(self.genes)

    @property
    def n_covariates(self) -> int:
        """Width of the one-hot covariate rows: the number of categories over all keys."""
        return sum(map(len, self.covariate_categories))

    def covariate_columns(self) -> list[str]:
        """Names of the one-hot covariate columns, ``"key=category"``."""
        return [
            f"{key}={category}"
            for key, categories in zip(self.covariate_keys, self.covariate_categories, strict=True)
            for category in categories
        ]

    def encode_covariates(self, obs: pd.DataFrame) -> np.ndarray | None:
        """One-hot covariate rows (len(obs), n_covariates) float32, or None without covariates.

        Every category must be one the model was set up with.
        """
        if not self.covariate_keys:
            return None
        blocks = []
        for key, categories in zip(self.covariate_keys, self.covariate_categories, strict=True):
            # Map each distinct value once, as ``encode`` does: no per-cell strings.
            values, distinct = pd.factorize(obs[key])
            position = {name: j for j, name in enumerate(categories)}
            lookup = np.array([position.get(str(value), -1) for value in distinct], dtype=int)
            unknown = sorted({str(v) for v in distinct if str(v) not in position})
            if unknown or (values < 0).any():  # factorize gives -1 to missing values
                msg = (
                    f"adata.obs[{key!r}] has categories the model was not set up with: "
                    f"{(unknown or ['<missing>'])[:5]}; known: {list(categories)[:10]}. "
                    "Predict only for categories seen at setup, or set up and train again."
                )
                raise ValueError(msg)
            blocks.append(np.eye(len(categories), dtype=np.float32)[lookup[values]])
        return np.concatenate(blocks, axis=1)

    def split_label(self, label: str) -> list[str]:
        """Names of the perturbations in ``label`` (empty for the control).

        ``"additive"`` splits a combination into its singles; ``"unique"`` keeps every label
        whole, so a combination is a perturbation of its own.
        """
        return _label_parts(label, self.control, self.combination_delimiter, self.dosage_encoding)

    def unknown_singles(self, labels: Iterable[str]) -> list[str]:
        """Single perturbation names in ``labels`` that are not in the vocabulary."""
        known = set(self.perturbations)
        return sorted({s for label in labels for s in self.split_label(label)} - known)

    def encode(self, labels: Sequence[str] | pd.Series | np.ndarray) -> sp.csr_matrix:
        """Dosage rows (len(labels), T) as float32 CSR; names must be in the vocabulary."""
        table, codes = self.encode_codes(labels)
        return sp.csr_matrix(table[codes])

    def encode_codes(
        self, labels: Sequence[str] | pd.Series | np.ndarray
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """The dosage rows of the distinct labels (float32 CSR) and each cell's row in them:
        ``encode(labels)`` is ``table[codes]``.

        A categorical column's codes are pandas' own array (no per-cell copy; a category no
        cell carries gets a row of zeros); other labels are factorised into the smallest
        unsigned integer type.
        """
        # Encode each distinct label once, then gather rows by integer codes: no per-cell Python
        # and no per-cell string copies.
        categorical = isinstance(labels, pd.Series) and isinstance(
            labels.dtype, pd.CategoricalDtype
        )
        if categorical:
            codes, unique = labels.cat.codes.to_numpy(), labels.cat.categories
        else:
            codes, unique = pd.factorize(np.asarray(labels))
        if len(codes) and codes.min() < 0:
            msg = f"Perturbation label missing for cell {int(np.flatnonzero(codes < 0)[0])}."
            raise ValueError(msg)
        if not categorical:
            codes = codes.astype(np.min_scalar_type(max(len(unique) - 1, 0)))
        carried = np.zeros(len(unique), dtype=bool)
        for start in range(0, len(codes), _CODES_CHUNK):  # indexing copies codes to intp
            carried[codes[start : start + _CODES_CHUNK]] = True
        return self._label_rows(unique, carried), codes

    def _label_rows(self, labels: Sequence[str], carried: np.ndarray) -> sp.csr_matrix:
        """Dosage rows of distinct ``labels`` (float32 CSR); zeros where not ``carried``."""
        position = {name: j for j, name in enumerate(self.perturbations)}
        table = sp.lil_matrix((len(labels), self.n_perturbations), dtype=np.float32)
        for row in np.flatnonzero(carried):
            for name in self.split_label(str(labels[row])):
                table[row, position[name]] += 1.0
        return table.tocsr()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        values = dataclasses.asdict(self)
        values["perturbations"] = list(self.perturbations)
        values["genes"] = list(self.genes)
        values["covariate_keys"] = list(self.covariate_keys)
        values["covariate_categories"] = [list(c) for c in self.covariate_categories]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PerturbationDesign:
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["perturbations"] = tuple(values["perturbations"])
        values["genes"] = tuple(values["genes"])
        values["covariate_keys"] = tuple(values.get("covariate_keys", ()))
        values["covariate_categories"] = tuple(
            tuple(categories) for categories in values.get("covariate_categories", ())
        )
        return cls(**values)


DOSAGE_ENCODINGS = ("additive", "unique")


def _label_parts(label: str, control: str, delimiter: str, encoding: str) -> list[str]:
    parts = [str(label).strip()] if encoding == "unique" else str(label).split(delimiter)
    return [p.strip() for p in parts if p.strip() and p.strip() != control]


def vocabulary_from_labels(
    labels: Iterable[str], control: str, delimiter: str, encoding: str = "additive"
) -> tuple[str, ...]:
    """Sorted perturbation names appearing in ``labels`` under ``encoding``."""
    names: set[str] = set()
    for label in set(map(str, labels)):
        names.update(_label_parts(label, control, delimiter, encoding))
    return tuple(sorted(names))
