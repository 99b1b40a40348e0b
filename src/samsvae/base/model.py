"""The base class of the user-facing models: a façade over data, training, effects,
interpretation and persistence, each in its own module."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from samsvae import defaults
from samsvae.base._common import seeded
from samsvae.base.data import DataMixin
from samsvae.base.effects import EffectsMixin
from samsvae.base.interpretation import InterpretationMixin
from samsvae.base.persistence import PersistenceMixin
from samsvae.base.training import TrainingMixin
from samsvae.config import ConditionalVAEConfig, CPAVAEConfig, SAMSVAEConfig, SVAEPlusConfig
from samsvae.models.target_genes import auto_target_map, target_pairs

if TYPE_CHECKING:
    from typing import Self

    import anndata as ad

    from samsvae.data import PerturbationDesign
    from samsvae.models import SAMSVAEModule

ModelConfig = SAMSVAEConfig | CPAVAEConfig | ConditionalVAEConfig | SVAEPlusConfig


class PerturbationModel(
    DataMixin, TrainingMixin, EffectsMixin, InterpretationMixin, PersistenceMixin
):
    """Shared machinery of the perturbation models: setup, training, save/load, predictions.

    A subclass names its torch module and config (``module_cls``, ``config_cls``) and may
    check the data it is given in :meth:`_check_data` (the one set-up hook).
    """

    module_cls: ClassVar[type[SAMSVAEModule]]
    config_cls: ClassVar[type[ModelConfig]]

    def __init__(
        self,
        adata: ad.AnnData | None,
        config: ModelConfig,
        *,
        design: PerturbationDesign | None = None,
    ) -> None:
        self.config = config
        self.adata = adata
        if design is None:
            if adata is None:
                msg = "Pass an AnnData set up with setup_anndata."
                raise ValueError(msg)
            design = self._design_from_setup(adata)
        self.design = design
        if adata is not None:
            self.config = self._resolve_config(config, adata)
        self.module = self._build_module(seed=0)
        self.train_settings: dict[str, Any] | None = None
        self.history: pd.DataFrame | None = None
        self.is_trained = False
        self.global_rank = 0  # this process's rank in the last data-parallel training
        if adata is not None:
            self._check_data(adata)

    @classmethod
    def _without_data(cls, config: ModelConfig, design: PerturbationDesign) -> Self:
        """A model of ``config`` and ``design`` with no AnnData attached (``load``)."""
        model = cls.__new__(cls)
        PerturbationModel.__init__(model, None, config, design=design)
        return model

    def _resolve_config(self, config: ModelConfig, adata: ad.AnnData) -> ModelConfig:
        """Sizes chosen from the data where unset; named target genes as index pairs."""
        config = defaults.resolve_model_sizes(
            config, n_cells=adata.n_obs, n_perturbations=self.design.n_perturbations
        )
        if hasattr(config, "target_genes"):
            requested = config.target_genes
            if isinstance(requested, str) and requested == "auto":
                requested = auto_target_map(adata.uns, adata.var, self.design.perturbations)
            pairs = target_pairs(requested, self.design.perturbations, self.design.genes)
            config = dataclasses.replace(config, target_genes=pairs)
        return config

    def _check_data(self, adata: ad.AnnData) -> None:
        """Refuse data the model cannot train on; subclasses add their own checks here."""
        self._check_expression(adata)

    def _build_module(self, *, seed: int) -> SAMSVAEModule:
        """A freshly initialised module; the same ``seed`` always gives the same weights, and the
        caller's RNG is left as it was."""
        with seeded(seed):
            return self.module_cls(
                self.design.n_genes,
                self.design.n_perturbations,
                self.config,
                covariate_sizes=tuple(map(len, self.design.covariate_categories)),
            )
