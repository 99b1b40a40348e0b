"""Saving and loading a model: safetensors weights and a JSON description, never a pickle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import pandas as pd

from samsvae import io
from samsvae.config import LIBRARY_QUANTILES, config_from_dict
from samsvae.data import PerturbationDesign, validate

if TYPE_CHECKING:
    from typing import Self


class PersistenceMixin:
    """``save`` and ``load``."""

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` and ``model.json`` into ``directory``.

        The weights are stored with safetensors and everything else as JSON (never a pickle):
        the configuration, the perturbation and gene vocabularies, whether the model is
        trained, the training history and the SHA-256 of the weight file. The AnnData is not
        saved; pass it to :meth:`load`.

        Parameters
        ----------
        directory
            Directory to write into; created, with its parents, if missing.
        overwrite
            Replace a model already saved in ``directory``.

        Returns
        -------
        pathlib.Path
            ``directory``.

        Raises
        ------
        FileExistsError
            If ``directory`` already holds a model and ``overwrite`` is false.
        """
        metadata = {
            "config": dataclasses.asdict(self.config),
            "design": self.design.to_dict(),
            "is_trained": self.is_trained,
            "history": [] if self.history is None else self.history.to_dict(orient="records"),
        }
        return io.save_model(
            directory,
            model_class=type(self).__name__,
            state_dict=self.module.state_dict(),
            metadata=metadata,
            overwrite=overwrite,
        )

    @classmethod
    def load(cls, directory: str | Path, adata: ad.AnnData | None = None) -> Self:
        """Load a model saved by :meth:`save`.

        The files are checked before use: both must be present, of this model class, and the
        weights must match the SHA-256 recorded in ``model.json``.

        Parameters
        ----------
        directory
            Directory written by :meth:`save`.
        adata
            Optional AnnData to attach, with the model's genes in the model's order; the
            methods that take ``adata`` then default to it. ``None`` (default): call those
            methods with ``adata``.

        Returns
        -------
        Self
            A model of this class, with its training state (trained or not) and history.

        Raises
        ------
        samsvae.io.ModelFileError
            If ``directory`` is missing a file, is damaged or altered, or holds a model of
            another class (a :class:`ValueError`).
        ValueError
            If the genes of ``adata`` do not match the model's, or its expression values do not
            suit the model's likelihood (finite values; non-negative integer counts for count
            likelihoods).
        """
        metadata, state_dict = io.read_model(directory, model_class=cls.__name__)
        try:
            config = config_from_dict(cls.config_cls, metadata["config"])
            design = PerturbationDesign.from_dict(metadata["design"])
        except (KeyError, TypeError, ValueError) as error:
            msg = f"{directory}/{io.METADATA_FILE} does not describe a valid model: {error}"
            raise io.ModelFileError(msg) from None
        model = cls._without_data(config, design)
        if "library_size_quantiles" not in state_dict and "reference_library_size" in state_dict:
            # files written before the depth distribution was kept: the median for every draw
            median = state_dict["reference_library_size"]
            state_dict["library_size_quantiles"] = median.expand(LIBRARY_QUANTILES).clone()
        io.check_state_dict(model.module, state_dict, directory)
        model.module.load_state_dict(state_dict)
        model.is_trained = bool(metadata.get("is_trained", False))
        model.history = pd.DataFrame(metadata.get("history", []))
        if adata is not None:
            validate.check_genes_match(adata, design)
            model._check_expression(adata)
            model.adata = adata
        return model
