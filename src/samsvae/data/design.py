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
    """The vocabulary a model is trained on and how labels become dosage rows.

    ``setup_anndata`` records where the data live; the model builds this design from that
    record and the AnnData, and saves it with the model.

    Parameters
    ----------
    perturbations
        Names of the T single perturbations, in the order of the dosage columns.
    genes
        Names of the G modelled genes, in the order of the expression columns.
    control
        Label of unperturbed cells (all-zero dosage row).
    perturbation_key
        Column of ``adata.obs`` with one label per cell: the control label, a perturbation
        name, or names joined by ``combination_delimiter``. May be None when ``dosage_key`` is
        set.
    combination_delimiter
        Separator of combination labels (``"A+B"``).
    layer
        ``adata.layers`` key holding the counts; None uses ``adata.X``.
    dosage_key
        ``adata.obsm`` key of a ready (cells x perturbations) dosage matrix, used instead of the
        labels when set; None builds the dosage from the labels.
    dosage_encoding
        ``"additive"``: a combination's dosage row is the sum of its singles' one-hot rows.
        ``"unique"``: every label is a perturbation of its own.
    covariate_keys
        Categorical ``adata.obs`` columns (batch, donor, cell line) the model conditions on.
    covariate_categories
        For each covariate key, its categories in the order of its one-hot columns.
    """

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
        """List the names of the one-hot covariate columns.

        Returns
        -------
        list of str
            One ``"key=category"`` name per column, (n_covariates,), in the column order of
            :meth:`encode_covariates`.
        """
        return [
            f"{key}={category}"
            for key, categories in zip(self.covariate_keys, self.covariate_categories, strict=True)
            for category in categories
        ]

    def encode_covariates(self, obs: pd.DataFrame) -> np.ndarray | None:
        """Encode the cells' covariates as one-hot rows.

        Each covariate key gives a block of one-hot columns; the blocks are concatenated in the
        order of ``covariate_keys``. Every category must be one the model was set up with.

        Parameters
        ----------
        obs
            Cell annotations holding a column for every covariate key (e.g. ``adata.obs``).

        Returns
        -------
        numpy.ndarray or None
            One-hot rows, (len(obs), n_covariates) float32, or None for a design without
            covariates.

        Raises
        ------
        ValueError
            If a cell's category is missing or was not seen at setup.
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
        """List the perturbations named in a label.

        Under the ``"additive"`` encoding a combination is split into its singles; under
        ``"unique"`` every label is kept whole, so a combination is a perturbation of its own.

        Parameters
        ----------
        label
            One cell's perturbation label.

        Returns
        -------
        list of str
            The perturbation names, stripped of surrounding whitespace; empty for the control.
        """
        return _label_parts(label, self.control, self.combination_delimiter, self.dosage_encoding)

    def unknown_singles(self, labels: Iterable[str]) -> list[str]:
        """Find the perturbation names in the labels that are not in the vocabulary.

        Parameters
        ----------
        labels
            Perturbation labels, split as in :meth:`split_label`.

        Returns
        -------
        list of str
            The unknown names, sorted and without repeats; empty if every name is known.
        """
        known = set(self.perturbations)
        return sorted({s for label in labels for s in self.split_label(label)} - known)

    def encode(self, labels: Sequence[str] | pd.Series | np.ndarray) -> sp.csr_matrix:
        """Encode perturbation labels as dosage rows.

        Parameters
        ----------
        labels
            One label per cell; every perturbation name must be in the vocabulary.

        Returns
        -------
        scipy.sparse.csr_matrix
            Dosage rows, (len(labels), T) float32; a control row is all zeros.
        """
        table, codes = self.encode_codes(labels)
        return sp.csr_matrix(table[codes])

    def encode_codes(
        self, labels: Sequence[str] | pd.Series | np.ndarray
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Encode the distinct labels once and give each cell's row among them.

        ``encode(labels)`` equals ``table[codes]``; this form avoids a per-cell dosage matrix.

        Parameters
        ----------
        labels
            One label per cell; every perturbation name must be in the vocabulary.

        Returns
        -------
        table : scipy.sparse.csr_matrix
            Dosage rows of the distinct labels, (n_distinct, T) float32.
        codes : numpy.ndarray
            Each cell's row in ``table``, (len(labels),). For a categorical pandas column this
            is pandas' own codes array (no per-cell copy; a category no cell carries gets a row
            of zeros); other labels are factorised into the smallest unsigned integer type.

        Raises
        ------
        ValueError
            If a cell has no label.
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
        """Convert the design to a JSON-ready dict.

        Returns
        -------
        dict
            Every field by name, tuples turned into lists; :meth:`from_dict` reads it back.
        """
        values = dataclasses.asdict(self)
        values["perturbations"] = list(self.perturbations)
        values["genes"] = list(self.genes)
        values["covariate_keys"] = list(self.covariate_keys)
        values["covariate_categories"] = [list(c) for c in self.covariate_categories]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PerturbationDesign:
        """Build a design from a dict written by :meth:`to_dict`.

        Parameters
        ----------
        values
            The fields by name. ``covariate_keys`` and ``covariate_categories`` may be absent
            (records from before covariates were supported); they default to empty.

        Returns
        -------
        PerturbationDesign
            The design, equal to the one converted.
        """
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
    """List the perturbation names that appear in the labels.

    Parameters
    ----------
    labels
        Perturbation labels (repeats allowed).
    control
        Label of unperturbed cells; it names no perturbation.
    delimiter
        Separator of combination labels (``"A+B"``).
    encoding
        ``"additive"`` splits combinations into their singles; ``"unique"`` keeps every label
        whole, so a combination is a perturbation of its own.

    Returns
    -------
    tuple of str
        The distinct names, sorted.

    Examples
    --------
    >>> vocabulary_from_labels(["control", "A", "A+B"], "control", "+")
    ('A', 'B')
    >>> vocabulary_from_labels(["control", "A", "A+B"], "control", "+", "unique")
    ('A', 'A+B')
    """
    names: set[str] = set()
    for label in set(map(str, labels)):
        names.update(_label_parts(label, control, delimiter, encoding))
    return tuple(sorted(names))
