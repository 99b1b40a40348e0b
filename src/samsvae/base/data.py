"""Data plumbing of the user-facing models: ``setup_anndata`` and reading counts, dosage rows
and covariates from a registered AnnData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from samsvae.base._common import SETUP_KEY
from samsvae.data import (
    CellDataset,
    PerturbationDesign,
    streaming,
    validate,
    vocabulary_from_labels,
)
from samsvae.data.design import DOSAGE_ENCODINGS
from samsvae.data.loaders import as_csr_or_dense

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from samsvae.models import SAMSVAEModule


class DataMixin:
    """``setup_anndata`` and the model's view of an AnnData: counts, dosage, covariates."""

    one_label_per_cell: ClassVar[bool] = False  # combinations become labels of their own
    adata: ad.AnnData | None
    design: PerturbationDesign
    config: Any
    module: SAMSVAEModule

    @classmethod
    def setup_anndata(
        cls,
        adata: ad.AnnData,
        *,
        perturbation_key: str | None = "perturbation",
        control: str = "control",
        layer: str | None = None,
        combination_delimiter: str = "+",
        dosage_key: str | None = None,
        dosage_encoding: Literal["additive", "unique"] = "additive",
        covariate_keys: Sequence[str] | None = None,
    ) -> None:
        """Register where the counts, perturbation labels and covariates of ``adata`` live.

        Parameters
        ----------
        adata
            Cells x genes. Counts may be dense or sparse; nothing is densified.
        perturbation_key
            Column of ``adata.obs`` with one label per cell: the control label, a perturbation
            name, or names joined by ``combination_delimiter``.
        control
            Label of unperturbed cells (all-zero dosage).
        layer
            ``adata.layers`` key holding the counts; ``None`` uses ``adata.X``.
        combination_delimiter
            Separator of combination labels ("A+B").
        dosage_key
            Optional ``adata.obsm`` key of a ready (cells x perturbations) dosage matrix; a
            DataFrame's columns name the perturbations.
        dosage_encoding
            ``"additive"``: a combination's dosage is the sum of its singles' one-hot rows, so
            unseen combinations of trained singles can be predicted. ``"unique"``: every label is
            a perturbation of its own (combinations cannot be composed).
        covariate_keys
            Optional categorical ``adata.obs`` columns (batch, donor, cell line) that condition
            the encoder and the decoder, so that batch differences are not read as effects.
            Their categories are those present in ``adata``; predictions and treatment effects
            average over the training cells' categories unless given ``covariates``.

        Notes
        -----
        Writes the arguments to ``adata.uns["samsvae"]``; nothing else in ``adata`` changes.
        """
        validate.check_anndata(adata)
        if dosage_encoding not in DOSAGE_ENCODINGS:
            msg = (
                f"dosage_encoding={dosage_encoding!r} is not supported; choose one of "
                f"{list(DOSAGE_ENCODINGS)}."
            )
            raise ValueError(msg)
        validate.check_setup_keys(
            adata,
            perturbation_key=perturbation_key,
            control=control,
            layer=layer,
            dosage_key=dosage_key,
            combination_delimiter=combination_delimiter,
        )
        covariate_keys = validate.check_covariate_keys(adata, covariate_keys, perturbation_key)
        adata.uns[SETUP_KEY] = {
            "perturbation_key": perturbation_key,
            "control": control,
            "layer": layer,
            "combination_delimiter": combination_delimiter,
            "dosage_key": dosage_key,
            "dosage_encoding": dosage_encoding,
            "covariate_keys": covariate_keys,
        }

    @staticmethod
    def _setup_of(adata: ad.AnnData) -> dict[str, Any]:
        validate.check_anndata(adata)
        if SETUP_KEY not in adata.uns:
            msg = (
                "adata has not been set up; call samsvae.SAMSVAE.setup_anndata(adata, "
                "perturbation_key=..., control=...) first."
            )
            raise ValueError(msg)
        return dict(adata.uns[SETUP_KEY])

    def _design_from_setup(self, adata: ad.AnnData) -> PerturbationDesign:
        setup = self._setup_of(adata)
        if self.one_label_per_cell:
            setup["dosage_encoding"] = "unique"
        if setup["dosage_key"] is not None:
            dosage = adata.obsm[setup["dosage_key"]]
            names = (
                tuple(map(str, dosage.columns))
                if isinstance(dosage, pd.DataFrame)
                else tuple(f"perturbation{j}" for j in range(dosage.shape[1]))
            )
        else:
            names = vocabulary_from_labels(
                map(str, adata.obs[setup["perturbation_key"]].unique()),  # no per-cell strings
                setup["control"],
                setup["combination_delimiter"],
                setup["dosage_encoding"],
            )
        if not names:
            msg = "adata has no perturbed cells: every cell carries the control label."
            raise ValueError(msg)
        covariate_keys = tuple(setup.pop("covariate_keys", None) or ())  # absent before 0.3
        return PerturbationDesign(
            perturbations=names,
            genes=tuple(map(str, adata.var_names)),
            covariate_keys=covariate_keys,
            covariate_categories=tuple(
                tuple(sorted(map(str, adata.obs[key].unique()))) for key in covariate_keys
            ),
            **setup,
        )

    # --- data access --------------------------------------------------------------------------
    def _expression(self, adata: ad.AnnData) -> Any:
        """The counts: a CSR matrix or ndarray, or the on-disk array of a backed AnnData."""
        matrix = adata.X if self.design.layer is None else adata.layers[self.design.layer]
        return matrix if streaming.is_on_disk(matrix) else as_csr_or_dense(matrix)

    def _check_expression(self, adata: ad.AnnData) -> None:
        where = "adata.X" if self.design.layer is None else f"adata.layers[{self.design.layer!r}]"
        counts, matrix = self.config.likelihood != "normal", self._expression(adata)
        if streaming.is_on_disk(matrix):
            streaming.check_on_disk(
                matrix, lambda chunk: validate.check_expression(chunk, counts=counts, where=where)
            )
        else:
            validate.check_expression(matrix, counts=counts, where=where)

    def _dosage(
        self, adata: ad.AnnData, *, coded: bool = False
    ) -> sp.csr_matrix | streaming.CodedDosage:
        """The cells' dosage rows; ``coded``: labels as codes into the distinct labels' rows
        (on-disk data, where a full CSR would be one of the few per-cell arrays in memory)."""
        if self.design.dosage_key is not None:
            dosage = adata.obsm[self.design.dosage_key]
            dosage = dosage.to_numpy() if isinstance(dosage, pd.DataFrame) else dosage
            dosage = sp.csr_matrix(dosage, dtype=np.float32)
            if self.one_label_per_cell:
                validate.check_one_perturbation_per_cell(dosage, type(self).__name__)
            return dosage
        labels = adata.obs[self.design.perturbation_key]
        validate.check_perturbation_requests(map(str, labels.unique()), self.design)
        if coded:
            return streaming.CodedDosage(*self.design.encode_codes(labels))
        return self.design.encode(labels)

    def _dataset(
        self, adata: ad.AnnData | None
    ) -> tuple[ad.AnnData, CellDataset | streaming.DiskCellDataset]:
        if adata is None:
            if self.adata is None:
                msg = "This model was loaded without data; pass adata."
                raise ValueError(msg)
            adata = self.adata
        elif adata is not self.adata:
            validate.check_anndata(adata)
            validate.check_genes_match(adata, self.design)
            self._check_expression(adata)
        expression = self._expression(adata)
        on_disk = streaming.is_on_disk(expression)
        dosage = self._dosage(adata, coded=on_disk)
        covariates = self._covariates(adata)
        if on_disk:
            return adata, streaming.DiskCellDataset(expression, dosage, covariates)
        return adata, CellDataset(expression, dosage, covariates)

    def _covariates(self, adata: ad.AnnData) -> np.ndarray | None:
        """One-hot covariate rows of ``adata``'s cells, or None for a model without."""
        validate.check_covariates_present(adata, self.design.covariate_keys)
        return self.design.encode_covariates(adata.obs)

    def _covariate_row(self, covariates: Mapping[str, str] | None) -> torch.Tensor | None:
        """The one-hot row of a ``{key: category}`` choice naming every covariate key, on the
        model's device, or None (each particle then draws them from the training shares)."""
        if covariates is None:
            return None
        keys = self.design.covariate_keys
        if not keys or set(covariates) != set(keys):
            msg = (
                f"covariates={dict(covariates)!r} must give one category for each covariate key "
                f"of the model, {list(keys)}; pass None to average over the training cells."
            )
            raise ValueError(msg)
        obs = pd.DataFrame({key: [str(covariates[key])] for key in keys})
        return torch.from_numpy(self.design.encode_covariates(obs)[0]).to(self._device())

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    def _dosage_rows(self, perturbations: Sequence[str]) -> torch.Tensor:
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        requests = validate.check_perturbation_requests(perturbations, self.design)
        return torch.from_numpy(self.design.encode(requests).toarray())

    def _observed_interventions(self) -> list[str]:
        if self.adata is None or self.design.perturbation_key is None:
            return list(self.design.perturbations)
        labels = map(str, self.adata.obs[self.design.perturbation_key].unique())
        return sorted(label for label in labels if label != self.design.control)
