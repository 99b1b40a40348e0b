"""User-facing model classes: AnnData in, AnnData / DataFrame out; thin and delegating."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from samsvae import defaults, io
from samsvae.config import (
    LIBRARY_QUANTILES,
    ConditionalVAEConfig,
    CPAVAEConfig,
    SAMSVAEConfig,
    SVAEPlusConfig,
    TrainConfig,
    config_from_dict,
)
from samsvae.data import (
    CellDataset,
    DeviceBatches,
    PerturbationDesign,
    fits_on_device,
    make_loader,
    streaming,
    train_validation_split,
    validate,
    vocabulary_from_labels,
)
from samsvae.data.design import DOSAGE_ENCODINGS
from samsvae.data.loaders import as_csr_or_dense
from samsvae.evaluate import interpret
from samsvae.evaluate.ate import (
    ATE_METHODS,
    DEFAULT_TARGET_STANDARD_ERROR,
    ATEEstimator,
    ATEMethod,
    LibrarySize,
    estimate_average_treatment_effects,
    model_average_treatment_effect_draws,
)
from samsvae.evaluate.likelihood import predictive_iwelbo
from samsvae.inference.training import fit
from samsvae.models import ConditionalVAEModule, CPAVAEModule, SAMSVAEModule, SVAEPlusModule
from samsvae.models.target_genes import target_pairs

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

SETUP_KEY = "samsvae"
ModelConfig = SAMSVAEConfig | CPAVAEConfig | ConditionalVAEConfig | SVAEPlusConfig


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _rows_to_hold(rows: np.ndarray, loader: Any) -> np.ndarray | streaming.RowBits:
    """The training rows to keep while training: an out-of-core loader's bits (one a cell)
    rather than the positions; :func:`_row_positions` gives the positions back."""
    return loader.rows if isinstance(loader, streaming.StreamingBatches) else rows


def _row_positions(rows: np.ndarray | streaming.RowBits) -> np.ndarray:
    return rows.positions() if isinstance(rows, streaming.RowBits) else rows


def _digest(parts: Iterable[bytes | np.ndarray]) -> str:
    """A short SHA-256 of the concatenated ``parts``, to tell runs apart. Hashed part by part,
    so that row arrays are not joined into a per-cell copy the heap keeps through training."""
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
    return sha.hexdigest()[:16]


def _single_accelerator_device(config: TrainConfig) -> torch.device | None:
    """The CUDA device a single-device run trains on, or None (CPU, several devices)."""
    wants_gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    if not wants_gpu or config.devices not in ("auto", 1, "1"):
        return None
    return torch.device("cuda", torch.cuda.current_device())


def _check_ate_method(method: str) -> None:
    if method not in ATE_METHODS:
        msg = f"method={method!r} is not supported; choose one of {list(ATE_METHODS)}."
        raise ValueError(msg)


def _is_distributed(config: TrainConfig) -> bool:
    """Whether training may run on several processes (data parallelism)."""
    return (
        config.strategy != "auto" or config.num_nodes > 1 or config.devices not in ("auto", 1, "1")
    )


class PerturbationModel:
    """Shared machinery of the perturbation models: setup, training, save/load, predictions."""

    has_masks: ClassVar[bool] = True
    one_label_per_cell: ClassVar[bool] = False  # combinations become labels of their own
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
            self.config = defaults.resolve_model_sizes(
                config, n_cells=adata.n_obs, n_perturbations=design.n_perturbations
            )
            if hasattr(config, "target_genes"):
                pairs = target_pairs(config.target_genes, design.perturbations, design.genes)
                self.config = dataclasses.replace(self.config, target_genes=pairs)
        self.module = self._build_module(seed=0)
        self.train_settings: dict[str, Any] | None = None
        self.history: pd.DataFrame | None = None
        self.is_trained = False
        self.global_rank = 0  # this process's rank in the last data-parallel training
        if adata is not None:
            self._check_expression(adata)

    def _build_module(self, *, seed: int) -> SAMSVAEModule:
        """A freshly initialised module; the same ``seed`` always gives the same weights, and the
        caller's RNG is left as it was."""
        with _seeded(seed):
            return self.module_cls(
                self.design.n_genes,
                self.design.n_perturbations,
                self.config,
                covariate_sizes=tuple(map(len, self.design.covariate_categories)),
            )

    # --- setup --------------------------------------------------------------------------------
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

    # --- training -----------------------------------------------------------------------------
    def train(
        self,
        *,
        max_epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        global_lr: float | None = None,
        weight_decay: float = 1e-6,
        train_size: float = 0.9,
        seed: int = 0,
        early_stopping: bool = False,
        early_stopping_patience: int = 20,
        gradient_clip_val: float | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        strategy: str = "auto",
        num_nodes: int = 1,
        progress_bar: bool = True,
        cpu_allocator: str = "default",
        mask_refinement: str = "none",
        train_indices: Sequence[int] | np.ndarray | None = None,
        validation_indices: Sequence[int] | np.ndarray | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every_n_epochs: int = 1,
        resume: bool = False,
        restart_on_divergence: int = 0,
        divergence_lr_factor: float = 0.5,
    ) -> None:
        """Fit by maximising the plated ELBO with Adam; keep the best-validation weights.

        Settings left as ``None`` are chosen from the data (:mod:`samsvae.defaults`):
        ``batch_size`` from the number of training cells, ``lr`` 1e-3, ``global_lr`` (the
        learning rate of the per-perturbation parameters: mask logits and embeddings) 30 times
        ``lr``, and ``max_epochs`` to make about 20,000 steps (between 20 and 400 epochs); the
        values used are in ``model.train_settings``.

        ``train_size`` of the cells (seeded split) are used for training, the rest for
        validation; or pass ``train_indices`` (and optionally
        ``validation_indices``), row positions of ``adata``, to fix the split yourself (a task's
        split): cells in neither set, e.g. test cells, are not used.
        Per-gene normalisation statistics, library sizes and the plate sizes n_t come from the
        training cells. The per-epoch losses end up in ``model.history``.

        With ``checkpoint_dir``, the training state is saved there (safetensors + JSON, replaced
        atomically) every ``checkpoint_every_n_epochs`` epochs; ``resume=True`` continues the run
        it holds (or starts one if it holds none), ending on CPU with the same parameters as an
        uninterrupted run. A checkpoint of another model, data split or seed is refused.
        ``restart_on_divergence`` allows that many restarts from the last checkpoint when the loss
        becomes NaN/inf, each multiplying the learning rates by ``divergence_lr_factor``; with
        0 training stops with :class:`~samsvae.inference.training.NonFiniteLossError`.

        An AnnData opened in backed mode (or by :func:`samsvae.data.streaming.read_backed`) is
        trained out of core: blocks of rows are read, shuffled within a window, and batched.
        ``strategy="ddp"`` with ``devices`` and ``num_nodes`` trains data-parallel through
        Lightning: ``batch_size`` stays the global batch, each rank takes a disjoint part of it,
        n_t are global counts, and the result matches one process up to rounding (see
        ``docs/distributed.md`` for torchrun and SLURM launches).

        ``mask_refinement="varimax"`` (SAMS-VAE with the mean-field guide and Bernoulli masks)
        makes the masks sparse. Trained as published (``"none"``, the default), the fitted
        latent space is often a rotation of one in which each perturbation moves few axes, and
        the masks are then dense. The option rotates the latent space after two thirds of the
        epochs to the varimax frame of the expected shifts E[e * m], which changes no cell's
        likelihood. It restarts the masks there (q(m = 1) 0.99 on each perturbation's large
        rotated shifts, 0.01 elsewhere), holds them while the networks adapt, and releases them
        for the last ninth. Budgets under 9 epochs train as published, with a warning. It can
        cost prediction: on a simulation calibrated to real screens, ATE r against the true
        effects fell from 0.74 to 0.65.

        Training leaves the process as it found it: torch's RNG states, deterministic-algorithm
        and cuDNN flags, matmul precision, Lightning's logger levels and a data-parallel process
        group are restored afterwards (``model.global_rank`` keeps this process's rank). The one
        exception is opt-in: on Linux (glibc), ``cpu_allocator="reuse"`` raises glibc's mmap and
        trim thresholds so that freed large CPU buffers serve the next step (faster CPU steps at
        genome scale, a resident size that grows with the heap's fragmentation), and
        ``"compact"`` sets the static 128 KiB thresholds so that every large temporary is
        returned when freed (a lower, steady peak: about 60 MB lower on the out-of-core
        benchmark, for CPU steps 3-4 times as long there); glibc cannot restore its dynamic
        threshold once either is set, so the static 128 KiB stays after training. Results are
        the same bit for bit with every choice.
        """
        config = TrainConfig(
            max_epochs=max_epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            global_lr=global_lr,
            weight_decay=weight_decay,
            train_size=train_size,
            seed=seed,
            early_stopping=early_stopping,
            early_stopping_patience=early_stopping_patience,
            gradient_clip_val=gradient_clip_val,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            progress_bar=progress_bar,
            cpu_allocator=cpu_allocator,
            mask_refinement=mask_refinement,
            checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir),
            checkpoint_every_n_epochs=checkpoint_every_n_epochs,
            resume=resume,
            restart_on_divergence=restart_on_divergence,
            divergence_lr_factor=divergence_lr_factor,
        )
        adata, dataset = self._dataset(None)
        if not self.is_trained:  # a first fit starts from the seed's initial weights
            self.module = self._build_module(seed=seed)
        if train_indices is None:
            if validation_indices is not None:
                msg = "validation_indices needs train_indices; pass both or neither."
                raise ValueError(msg)
            train_rows, val_rows = train_validation_split(
                adata.n_obs, train_size=train_size, seed=seed
            )
        else:
            train_rows, val_rows = validate.check_split_indices(
                train_indices, validation_indices, adata.n_obs
            )
        chosen = defaults.resolve_training(
            n_train_cells=len(train_rows),
            batch_size=batch_size,
            lr=lr,
            global_lr=global_lr,
            max_epochs=max_epochs,
            max_steps=max_steps,
        )
        config = dataclasses.replace(
            config, **{key: chosen[key] for key in ("batch_size", "lr", "global_lr")}
        )
        self._set_training_statistics(dataset, train_rows)
        fingerprint = self._fingerprint(train_rows, val_rows)
        max_epochs = chosen["max_epochs"]
        self.train_settings = {**chosen, "max_steps": max_steps, "n_train_cells": len(train_rows)}
        train_loader, val_loader = self._loaders(dataset, train_rows, val_rows, config)
        held_rows = _rows_to_hold(train_rows, train_loader)
        del train_rows  # held_rows only, while training
        result = fit(
            self.module,
            train_loader,
            val_loader,
            config,
            n_particles=self.config.n_particles,
            max_epochs=max_epochs,
            fingerprint=fingerprint,
        )
        # Evaluation (ATE, IWELBO, predictions) runs where training ran.
        self.module.to(_single_accelerator_device(config) or torch.device("cpu"))
        self.history = pd.DataFrame(result["history"])
        self.global_rank = result["global_rank"]
        self.train_indices = _row_positions(held_rows)
        self.validation_indices = val_rows
        self.is_trained = True

    @staticmethod
    def _loaders(
        dataset: CellDataset | streaming.DiskCellDataset,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        config: TrainConfig,
    ) -> tuple[Any, Any]:
        """Device-resident batches on one GPU when the data fit, else CSR slicing on the host;
        streamed blocks for on-disk data; global batches cut per rank under data parallelism."""
        device = _single_accelerator_device(config)
        if isinstance(dataset, streaming.DiskCellDataset) or _is_distributed(config):
            sharded = (
                streaming.StreamingBatches
                if isinstance(dataset, streaming.DiskCellDataset)
                else streaming.ShardedBatches
            )

            def loader(rows: np.ndarray, shuffle: bool) -> Any:
                return sharded(
                    dataset, rows, batch_size=config.batch_size, shuffle=shuffle, seed=config.seed
                )
        elif device is not None and fits_on_device(dataset, dataset.expression.shape[0], device):

            def loader(rows: np.ndarray, shuffle: bool) -> DeviceBatches:
                return DeviceBatches(
                    dataset,
                    rows,
                    batch_size=config.batch_size,
                    shuffle=shuffle,
                    device=device,
                    seed=config.seed,
                )
        else:

            def loader(rows: np.ndarray, shuffle: bool) -> Any:
                return make_loader(
                    dataset, rows, batch_size=config.batch_size, shuffle=shuffle, seed=config.seed
                )

        return loader(train_rows, True), (loader(val_rows, False) if len(val_rows) else None)

    def _fingerprint(self, train_rows: np.ndarray, val_rows: np.ndarray) -> dict[str, Any]:
        """What a training checkpoint must share with this run to be resumed by it."""
        design = self.design
        names = "\n".join(design.genes + design.perturbations + tuple(design.covariate_columns()))
        return {
            "model_class": type(self).__name__,
            **dataclasses.asdict(self.config),
            "genes_and_perturbations": _digest([names.encode()]),
            "train_and_validation_cells": _digest(
                np.ascontiguousarray(rows, dtype=np.int64)
                for rows in (train_rows, np.array([-1]), val_rows)
            ),
        }

    def _set_training_statistics(
        self, dataset: CellDataset | streaming.DiskCellDataset, rows: np.ndarray
    ) -> None:
        stats = dataset.training_statistics(rows, log1p=self.config.likelihood != "normal")
        module = self.module
        module.gene_mean.copy_(torch.as_tensor(stats.gene_mean, dtype=torch.float32))
        module.gene_scale.copy_(torch.as_tensor(stats.gene_scale, dtype=torch.float32))
        n_t = torch.as_tensor(stats.n_cells_per_perturbation, dtype=torch.float32)
        module.n_cells_per_perturbation.copy_(n_t)
        module.reference_library_size.fill_(max(stats.median_library_size, 1.0))
        module.library_size_quantiles.copy_(
            torch.as_tensor(stats.library_size_quantiles, dtype=torch.float32)
        )
        if dataset.covariates is not None:  # each category's share of the training cells
            shares = torch.as_tensor(dataset.covariates[rows].mean(0), dtype=torch.float32)
            module.covariate_frequencies.copy_(shares)

    # --- getters ------------------------------------------------------------------------------
    def get_target_gene_effects(self) -> pd.DataFrame:
        """The direct effects on targeted genes (``target_genes``), one row per (perturbation,
        gene) pair: the posterior mean and standard deviation of beta (natural-log change of the
        gene's expected share) and log2 fold change (the mean over log 2). Empty without pairs.
        """
        columns = ["perturbation", "gene", "mean", "sd", "log2_fold_change"]
        effects = getattr(self.module, "target_effects", None)
        if effects is None:
            return pd.DataFrame(columns=columns)
        with torch.no_grad():
            loc, scale = (value.cpu().numpy() for value in effects.posterior())
        return pd.DataFrame(
            {
                "perturbation": [
                    self.design.perturbations[t] for t in effects.perturbation.tolist()
                ],
                "gene": [self.design.genes[g] for g in effects.gene.tolist()],
                "mean": loc,
                "sd": scale,
                "log2_fold_change": loc / np.log(2),
            },
            columns=columns,
        )

    def get_mask_probabilities(self) -> pd.DataFrame:
        """q(m_tk = 1) as a DataFrame, perturbations x latent dimensions."""
        with torch.no_grad():
            probabilities = self.module.mask_probabilities().cpu().numpy()
        return pd.DataFrame(
            probabilities,
            index=list(self.design.perturbations),
            columns=[f"latent{k}" for k in range(probabilities.shape[1])],
        )

    @torch.no_grad()
    def get_latent_representation(
        self,
        adata: ad.AnnData | None = None,
        *,
        latent: Literal["basal", "full"] = "basal",
        n_samples: int = 20,
        batch_size: int = 1024,
        seed: int | None = 0,
    ) -> np.ndarray:
        """Posterior mean of z_basal (``"basal"``) or z = z_basal + shift (``"full"``).

        Averages the encoder mean over ``n_samples`` draws of the global variables.
        Returns an array (n_cells, n_latent).
        """
        if latent not in ("basal", "full"):
            msg = f"latent={latent!r} is not supported; choose 'basal' or 'full'."
            raise ValueError(msg)
        adata, dataset = self._dataset(adata)
        rows = np.arange(adata.n_obs)
        out = []
        with _seeded(seed):
            for batch in make_loader(dataset, rows, batch_size=batch_size, shuffle=False):
                batch = batch.to(self._device())
                sample = self.module.sample_globals(batch.perturbation_index, n_samples)
                z = self.module.posterior_latent_mean(
                    batch.counts,
                    batch.dosage,
                    sample,
                    full=latent == "full",
                    covariates=batch.covariates,
                )
                out.append(z.mean(0).cpu().numpy())
        return np.concatenate(out)

    # --- predictions --------------------------------------------------------------------------
    def _dosage_rows(self, perturbations: Sequence[str]) -> torch.Tensor:
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        requests = validate.check_perturbation_requests(perturbations, self.design)
        return torch.from_numpy(self.design.encode(requests).toarray())

    @torch.no_grad()
    def predict(
        self,
        perturbations: Sequence[str],
        *,
        n_samples: int = 100,
        library_size: LibrarySize | None = None,
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
    ) -> ad.AnnData:
        """Generate ``n_samples`` cells for each requested perturbation or '+' combination.

        Each cell draws the globals from q and z_basal from the prior. ``library_size`` defaults to
        the median training library size; ``"data"`` draws each sample's from the training
        control cells' library sizes (the same for every requested row of that sample). For a
        model with covariates, ``covariates`` fixes
        them (``{"batch": "b1"}``, one category per key); by default each sample draws them
        from the training cells' shares. Returns AnnData (len(perturbations) * n_samples,
        genes) with ``obs["perturbation"]``.
        """
        dosage = self._dosage_rows(perturbations)
        covariate_row = self._covariate_row(covariates)
        labels = [
            str(p) for p in ([perturbations] if isinstance(perturbations, str) else perturbations)
        ]
        library = (
            float(self.module.reference_library_size) if library_size is None else library_size
        )
        index = torch.nonzero(dosage.abs().sum(0) > 0).ravel()
        with _seeded(seed):
            if library == "data":
                library = self.module.draw_library_sizes(n_samples)
            sample = self.module.sample_globals(index.to(self._device()), n_samples)
            rows = dosage[:, index].to(self._device())
            x = self.module.generate(rows, sample, library, covariates=covariate_row)  # (S, R, G)
        x = x.transpose(0, 1).reshape(-1, self.design.n_genes).cpu().numpy()
        obs = pd.DataFrame(
            {"perturbation": pd.Categorical(np.repeat(labels, n_samples))},
            index=[f"generated{i}" for i in range(x.shape[0])],
        )
        return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=list(self.design.genes)))

    def average_treatment_effects(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        method: ATEMethod = "perturbseq",
        estimator: ATEEstimator = "expected",
        n_samples: int | Literal["auto"] = "auto",
        target_standard_error: float = DEFAULT_TARGET_STANDARD_ERROR,
        library_size: LibrarySize = "data",
        share_basal: bool | None = None,
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> ad.AnnData:
        """Model ATE of each perturbation against the control, with standard errors.

        Each of ``n_samples`` particles draws the global variables from the guide and a basal
        state from the prior, and decodes a cell under the control and under each perturbation.
        ``estimator="expected"`` (the default) integrates each gene's counts out given that
        cell's expected expression (exact up to replacing the cell's total count by its library
        size, and a tabulation error below 1e-3); ``"sampled"`` draws the counts, the paper's
        estimator, with more Monte-Carlo noise for the same number of particles.
        ``n_samples="auto"`` adds particles until every effect's standard error is at most
        ``target_standard_error`` (log2 units under ``method="perturbseq"``).

        ``library_size="data"`` (the default) samples each particle's cells at a library size drawn
        from the training control cells' library sizes: the effect a screen of this depth would
        measure, the one to compare with effects observed in the data. A number fixes it; the
        paper's estimator uses ``library_size=1e4`` (deep cells: with ``method="perturbseq"``
        larger, less noise-damped log-fold changes than shallow data show).

        ``share_basal=True`` reuses each particle's basal state for the control and every
        intervention (common random numbers: same expectation, lower variance); the default
        does so under ``"expected"`` only, so that ``estimator="sampled"`` is the paper's
        estimator. A model with covariates averages the effect over the
        training cells' categories, or takes it at ``covariates`` (one category per key).
        ``progress_bar`` shows progress when the estimate takes more than two seconds.

        ``perturbations`` defaults to every label seen in the training data. Returns AnnData
        (interventions x genes) with the effects in X, their standard errors in
        ``layers["standard_error"]``, and ``uns["ate_method"]``, ``uns["library_size"]``,
        ``uns["estimator"]`` and ``uns["n_samples"]`` (particles used).
        """
        _check_ate_method(method)
        if perturbations is None:
            perturbations = self._observed_interventions()
        dosage = self._dosage_rows(perturbations)
        with _seeded(seed):
            estimate = estimate_average_treatment_effects(
                self.module,
                dosage,
                method=method,
                estimator=estimator,
                n_samples=n_samples,
                target_standard_error=target_standard_error,
                library_size=library_size,
                share_basal=share_basal,
                covariates=self._covariate_row(covariates),
                progress=progress_bar,
            )
        result = self._effects_anndata(
            estimate.effects.numpy(), perturbations, method, library_size
        )
        result.layers["standard_error"] = estimate.standard_errors.numpy()
        result.uns["estimator"] = estimator
        result.uns["n_samples"] = estimate.n_samples
        return result

    def treatment_effect_intervals(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        level: float = 0.9,
        method: ATEMethod = "perturbseq",
        n_global_samples: int = 100,
        n_samples_per_global: int = 100,
        library_size: LibrarySize = "data",
        estimator: ATEEstimator = "expected",
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> ad.AnnData:
        """Posterior intervals of the treatment effects from draws of the global variables.

        Each of ``n_global_samples`` draws of (E, M) from q gives an ATE estimate from
        ``n_samples_per_global`` cells (common random numbers for control and intervention);
        the central ``level`` interval of those draws bounds each effect. The spread includes the
        Monte-Carlo error of the inner estimate (intervals are a little conservative; raise
        ``n_samples_per_global`` to shrink it). A model without global variables (conditional
        VAE) has only that Monte-Carlo spread. ``library_size``, ``estimator``, ``covariates``
        and ``progress_bar`` as in :meth:`average_treatment_effects`.

        Returns AnnData (interventions x genes): X the mean of the draws, ``layers["lower"]`` and
        ``layers["upper"]`` the interval, ``uns["level"]`` and ``uns["ate_method"]``.
        """
        if not 0 < level < 1:
            msg = f"level={level!r} must lie strictly between 0 and 1 (e.g. 0.9)."
            raise ValueError(msg)
        _check_ate_method(method)
        perturbations = self._observed_interventions() if perturbations is None else perturbations
        with _seeded(seed):
            draws = model_average_treatment_effect_draws(
                self.module,
                self._dosage_rows(perturbations),
                method=method,
                n_global_samples=n_global_samples,
                n_samples_per_global=n_samples_per_global,
                library_size=library_size,
                estimator=estimator,
                covariates=self._covariate_row(covariates),
                progress=progress_bar,
            ).numpy()
        tail = (1 - level) / 2
        result = self._effects_anndata(draws.mean(0), perturbations, method, library_size)
        result.layers["lower"] = np.quantile(draws, tail, axis=0).astype(np.float32)
        result.layers["upper"] = np.quantile(draws, 1 - tail, axis=0).astype(np.float32)
        result.uns["level"] = level
        return result

    def _effects_anndata(
        self,
        effects: np.ndarray,
        perturbations: Sequence[str],
        method: str,
        library_size: LibrarySize,
    ) -> ad.AnnData:
        result = ad.AnnData(
            X=np.asarray(effects, dtype=np.float32),
            obs=pd.DataFrame(
                index=[perturbations]
                if isinstance(perturbations, str)
                else [str(p) for p in perturbations]
            ),
            var=pd.DataFrame(index=list(self.design.genes)),
        )
        result.uns["ate_method"] = method
        result.uns["library_size"] = library_size
        return result

    def _observed_interventions(self) -> list[str]:
        if self.adata is None or self.design.perturbation_key is None:
            return list(self.design.perturbations)
        labels = map(str, self.adata.obs[self.design.perturbation_key].unique())
        return sorted(label for label in labels if label != self.design.control)

    def iwelbo(
        self,
        adata: ad.AnnData | None = None,
        *,
        n_particles: int = 100,
        batch_size: int = 256,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> float:
        """Mean predictive IWELBO per cell of ``adata`` (default: the training AnnData);
        ``progress_bar`` shows progress when it takes more than two seconds."""
        adata, dataset = self._dataset(adata)
        loader = make_loader(dataset, np.arange(adata.n_obs), batch_size=batch_size, shuffle=False)
        with _seeded(seed):
            values = predictive_iwelbo(
                self.module, loader, n_particles=n_particles, progress=progress_bar
            )
        return float(values.mean())

    # --- interpretation -----------------------------------------------------------------------
    def _require_globals(self, what: str) -> None:
        if not self.has_masks:
            msg = (
                f"{type(self).__name__} has no per-perturbation latent shifts; {what} needs some."
            )
            raise ValueError(msg)

    def _latent_names(self) -> list[str]:
        return [f"latent{k}" for k in range(self.config.n_latent)]

    def get_global_posterior(
        self, *, level: float = 0.9, n_samples: int = 1000, seed: int | None = 0
    ) -> pd.DataFrame:
        """Posterior summaries of the global variables, one row per (perturbation, latent).

        Columns: ``mask_probability`` q(m_tk = 1); ``embedding_mean``, ``embedding_lower``,
        ``embedding_upper`` (central ``level`` credible interval of e_tk); ``shift_mean``
        E_q[e_tk m_tk]. Exact for mean-field guides, from ``n_samples`` draws otherwise.
        """
        self._require_globals("get_global_posterior")
        with _seeded(seed):
            summary = interpret.summarise_globals(
                self.module.guide, self.design.n_perturbations, level=level, n_samples=n_samples
            )
        return interpret.global_summary_table(
            summary, self.design.perturbations, self._latent_names()
        )

    def get_perturbation_similarity(
        self,
        *,
        metric: interpret.SimilarityMetric = "cosine",
        n_samples: int = 1000,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Perturbations x perturbations similarity in the sparse latent space.

        ``"cosine"``: cosine of the rows of E_q[e_t * m_t]; ``"jaccard"``: Jaccard index of the
        masks m_t = 1[q(m_tk = 1) > 0.5].
        """
        if metric not in interpret.SIMILARITY_METRICS:
            choices = list(interpret.SIMILARITY_METRICS)
            msg = f"metric={metric!r} is not supported; choose one of {choices}."
            raise ValueError(msg)
        posterior = self.get_global_posterior(n_samples=n_samples, seed=seed)
        column = "shift_mean" if metric == "cosine" else "mask_probability"
        values = posterior[column].to_numpy().reshape(self.design.n_perturbations, -1)
        similarity = (
            interpret.cosine_similarity(values)
            if metric == "cosine"
            else interpret.jaccard_similarity(values > 0.5)
        )
        names = list(self.design.perturbations)
        return pd.DataFrame(similarity, index=names, columns=names)

    def get_perturbation_clusters(
        self,
        *,
        n_clusters: int | None = None,
        distance_threshold: float | None = None,
        metric: interpret.SimilarityMetric = "cosine",
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Perturbation programs: average-linkage clustering on 1 - similarity (``metric`` as in
        :meth:`get_perturbation_similarity`); pass exactly one of ``n_clusters`` or
        ``distance_threshold``. Returns a DataFrame indexed by perturbation, in dendrogram leaf
        order, with ``cluster`` (1, 2, ...) and ``leaf_order`` columns."""
        similarity = self.get_perturbation_similarity(metric=metric, seed=seed)
        clustering = interpret.cluster_by_similarity(
            similarity.to_numpy(), n_clusters=n_clusters, distance_threshold=distance_threshold
        )
        table = pd.DataFrame({"cluster": clustering.labels}, index=similarity.index)
        table["leaf_order"] = np.argsort(clustering.order)
        return table.iloc[clustering.order]

    def get_latent_programs(
        self,
        *,
        rotation: interpret.ProgramRotation = "varimax",
        n_samples: int = 1000,
        seed: int | None = 0,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Latent programs: an orthonormal basis of the latent space in which the perturbations'
        expected shifts E_q[e_t * m_t] are sparse (``"varimax"`` rotation; ``"none"``: the
        latent axes). Use it when the masks are dense: the latent axes are then mixtures of
        mechanisms, while the rotated axes can point at them (``evaluate.interpret``).

        Returns ``(loadings, directions)``: loadings (perturbations x programs) is how far each
        perturbation shifts the cell along each program; directions (programs x latents) are
        the unit vectors of the programs. Programs are ordered by their sum of squared loadings.
        """
        self._require_globals("get_latent_programs")
        posterior = self.get_global_posterior(n_samples=n_samples, seed=seed)
        shifts = posterior["shift_mean"].to_numpy().reshape(self.design.n_perturbations, -1)
        programs = interpret.latent_programs(shifts, rotation=rotation)
        names = self._program_names(rotation)
        loadings = pd.DataFrame(programs.loadings, index=self.design.perturbations, columns=names)
        directions = pd.DataFrame(programs.directions, index=names, columns=self._latent_names())
        return loadings, directions

    def _program_names(self, rotation: str) -> list[str]:
        # Rotated programs are not latent dimensions: name them apart.
        prefix = "latent" if rotation == "none" else "program"
        return [f"{prefix}{k}" for k in range(self.config.n_latent)]

    def get_latent_gene_effects(
        self,
        *,
        step: float = 1.0,
        n_top: int | None = None,
        rotation: interpret.ProgramRotation = "none",
    ) -> pd.DataFrame:
        """Genes each latent program moves: f(step d) - f(0) at the basal mean z = 0, with d a
        latent axis (``rotation="none"``) or a program direction of :meth:`get_latent_programs`
        (``"varimax"``).

        f is the decoder's log expected normalised expression (natural log; for the ``normal``
        likelihood, the expected value). Returns a long table (latent, rank, gene, effect),
        ranked by |effect| within each program; ``n_top`` keeps the first rows of each.
        """
        self._require_globals("get_latent_gene_effects")
        if rotation == "none":  # the axes themselves: no posterior summary needed
            directions = pd.DataFrame(np.eye(self.config.n_latent), index=self._latent_names())
        else:
            _, directions = self.get_latent_programs(rotation=rotation)
        decode = interpret.decoder_expression_scale(self.module)
        response = interpret.latent_gene_response(
            decode, self.config.n_latent, step=step, directions=directions.to_numpy()
        )
        return interpret.rank_genes(
            response.numpy(), self.design.genes, latent_names=directions.index, n_top=n_top
        )

    def gene_set_enrichment(
        self,
        gene_sets: Mapping[str, Sequence[str]] | str | Path,
        *,
        of: Literal["perturbation_clusters", "latent_programs"] = "latent_programs",
        n_clusters: int = 10,
        n_top: int = 20,
    ) -> pd.DataFrame:
        """Enrichment of ``gene_sets`` (a dict or a GMT file path) in each program.

        ``"latent_programs"``: the ``n_top`` genes of each latent dimension
        (:meth:`get_latent_gene_effects`; universe: the model's genes).
        ``"perturbation_clusters"``: the perturbations of each of ``n_clusters`` clusters
        (:meth:`get_perturbation_clusters`; universe: the perturbation names, read as target
        genes). One-sided Fisher exact
        (hypergeometric) test, BH-adjusted over the table (``evaluate.interpret``).
        """
        if of == "latent_programs":
            ranked = self.get_latent_gene_effects(n_top=n_top)
            queries = ranked.groupby("latent", sort=False)["gene"].agg(list).to_dict()
            universe = self.design.genes
        elif of == "perturbation_clusters":
            clusters = self.get_perturbation_clusters(n_clusters=n_clusters)
            queries = {f"cluster{c}": list(g.index) for c, g in clusters.groupby("cluster")}
            universe = self.design.perturbations
        else:
            choices = ["perturbation_clusters", "latent_programs"]
            msg = f"of={of!r} is not supported; choose one of {choices}."
            raise ValueError(msg)
        return interpret.gene_set_enrichment(queries, gene_sets, universe)

    def genetic_interactions(
        self,
        combinations: Sequence[str] | None = None,
        *,
        source: Literal["model", "data"] = "model",
        method: ATEMethod = "perturbseq",
        n_samples: int = 100,
        level: float = 0.9,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """GI(A+B) = ATE(A+B) - ATE(A) - ATE(B) per combination and gene, long table with
        ``score``, ``lower``, ``upper`` (central ``level`` interval) and ``standard_error``.

        ``source="model"``: ``n_samples`` posterior draws of the globals (100 basal draws each);
        ``"data"``: the training AnnData's cells, ``n_samples`` bootstrap replicates over cells.
        ``combinations`` defaults to the two-way combinations observed in the training data.
        """
        _check_ate_method(method)
        delimiter = self.design.combination_delimiter
        if combinations is None:
            combinations = [c for c in self._observed_interventions() if delimiter in c]
        combinations = [str(c) for c in combinations]
        if not combinations:
            msg = "No two-way combinations to score; pass combinations=['A+B', ...]."
            raise ValueError(msg)
        pairs = [interpret.combination_parts(c, delimiter) for c in combinations]
        if source == "data":
            if self.design.perturbation_key is None:
                msg = "source='data' needs cell labels: call setup_anndata with perturbation_key."
                raise ValueError(msg)
            adata, _ = self._dataset(None)
            labels = adata.obs[self.design.perturbation_key].astype(str).to_numpy()
            scores = interpret.data_genetic_interactions(
                self._expression(adata),
                labels,
                combinations,
                self.design.control,
                method=method,
                n_bootstrap=n_samples,
                level=level,
                delimiter=delimiter,
                seed=seed,
            )
        elif source == "model":
            requests = (combinations, *zip(*pairs, strict=True))
            dosage = [self._dosage_rows(rows) for rows in requests]
            with _seeded(seed):
                scores = interpret.model_genetic_interactions(
                    self.module,
                    *dosage,
                    combinations=combinations,
                    method=method,
                    n_posterior_samples=n_samples,
                    level=level,
                )
        else:
            msg = f"source={source!r} is not supported; choose 'model' or 'data'."
            raise ValueError(msg)
        return interpret.interaction_table(scores, self.design.genes)

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` and ``model.json`` into ``directory``."""
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
    def load(cls, directory: str | Path, adata: ad.AnnData | None = None) -> PerturbationModel:
        """Load a model saved by :meth:`save`; ``adata`` (optional) must have the model's genes."""
        metadata, state_dict = io.read_model(directory, model_class=cls.__name__)
        try:
            config = config_from_dict(cls.config_cls, metadata["config"])
            design = PerturbationDesign.from_dict(metadata["design"])
        except (KeyError, TypeError, ValueError) as error:
            msg = f"{directory}/{io.METADATA_FILE} does not describe a valid model: {error}"
            raise io.ModelFileError(msg) from None
        model = cls.__new__(cls)
        PerturbationModel.__init__(model, None, config, design=design)
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


class SAMSVAE(PerturbationModel):
    r"""Sparse Additive Mechanism Shift VAE (Bereket & Karaletsos, NeurIPS 2023).

    .. math::
        z_i^b \sim N(0, I),\ e_t \sim N(0, s_e^2 I),\ m_{tk} \sim \mathrm{Bern}(a),\
        z_i = z_i^b + \textstyle\sum_t d_{it}\, e_t \odot m_t,\ x_i \sim p_\theta(x \mid z_i, l_i)

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimensions K; ``None`` chooses them from the number of perturbations.
    n_hidden
        Width of every hidden layer; ``None`` chooses it from the number of cells.
    n_layers
        Hidden layers of the encoder, decoder and correlated guide.
    n_particles
        Monte-Carlo particles per training step.
    mask_prior
        Prior inclusion probability a of each mask entry.
    mask_prior_concentration
        ``None``: m_tk ~ Bernoulli(a). A number c: Beta-Bernoulli masks, pi_tk ~ Beta(a c,
        (1 - a) c) and m_tk | pi_tk ~ Bernoulli(pi_tk), with a Beta guide for pi.
    embedding_prior_scale
        Prior standard deviation s_e of the embeddings.
    guide
        ``"mean_field"``: independent q(e_tk); ``"correlated"``: q(e_t | m_t) from a network.
    likelihood
        ``"nb"`` negative binomial counts, ``"poisson"`` counts, ``"normal"`` real values.
    encoder_input
        ``"x_and_shift"`` feeds the encoder x and the sampled latent shift; ``"x"`` feeds x only.
    gumbel_temperature
        Temperature of the straight-through binary-concrete mask samples.
    guide_n_hidden, guide_n_layers
        Size of the correlated guide's network; ``None`` takes ``n_hidden`` / ``n_layers``.
    target_genes
        Direct effects on targeted genes: each (perturbation t, gene g) pair gets an effect
        beta_tg ~ N(0, ``target_effect_prior_scale``²) added to the decoder's output for g in the
        cells that carry t, beside the latent shift (a knock-down of the targeted gene is often
        the largest single-gene effect, and one a few latent dimensions render poorly).
        ``"auto"``: every perturbation named after a measured gene (``adata.var_names``) targets
        it, and none when no name matches; a mapping ``{perturbation: gene or [genes]}`` names
        the pairs (guide groups, other gene identifiers); ``None`` turns them off.
        :meth:`get_target_gene_effects` reads them.
    target_effect_prior_scale
        Prior standard deviation of the direct effects (natural-log scale of expression).

    Notes
    -----
    ``n_latent`` and ``n_hidden`` left as ``None`` are chosen from the data
    (:mod:`samsvae.defaults`): 4 sqrt(T) latents between 10 and 100 for T perturbations, and
    128 hidden units below 50k cells, 256 below 200k, else 400. The paper's configurations are
    presets: ``SAMSVAE(adata, **samsvae.presets["replogle"])``.

    Examples
    --------
    >>> import samsvae
    >>> adata = samsvae.datasets.simulate(n_perturbations=4, n_combinations=2, n_genes=20,
    ...                                   n_cells_per_perturbation=20, n_control_cells=40,
    ...                                   n_cells_per_combination=20)
    >>> samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="control")
    >>> model = samsvae.SAMSVAE(adata, n_latent=4, n_hidden=16)
    >>> model.train(max_epochs=1, progress_bar=False)
    >>> model.get_mask_probabilities().shape
    (4, 4)
    """

    module_cls = SAMSVAEModule
    config_cls = SAMSVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        mask_prior: float = 0.01,
        mask_prior_concentration: float | None = None,
        embedding_prior_scale: float = 1.0,
        guide: Literal["mean_field", "correlated"] = "mean_field",
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        encoder_input: Literal["x_and_shift", "x"] = "x_and_shift",
        gumbel_temperature: float = 1.0,
        guide_n_hidden: int | None = None,
        guide_n_layers: int | None = None,
        target_genes: Literal["auto"] | Mapping[str, str | Sequence[str]] | None = "auto",
        target_effect_prior_scale: float = 1.0,
    ) -> None:
        config = SAMSVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            mask_prior=mask_prior,
            mask_prior_concentration=mask_prior_concentration,
            embedding_prior_scale=embedding_prior_scale,
            guide=guide,
            likelihood=likelihood,
            encoder_input=encoder_input,
            gumbel_temperature=gumbel_temperature,
            guide_n_hidden=guide_n_hidden,
            guide_n_layers=guide_n_layers,
            target_genes=target_genes,
            target_effect_prior_scale=target_effect_prior_scale,
        )
        super().__init__(adata, config)


class CPAVAE(PerturbationModel):
    r"""CPA-VAE: SAMS-VAE with every mask fixed to 1 (the paper's "no sparsity" ablation).

    .. math::
        z_i^b \sim N(0, I),\ e_t \sim N(0, s_e^2 I),\
        z_i = z_i^b + \textstyle\sum_t d_{it}\, e_t,\ x_i \sim p_\theta(x \mid z_i, l_i)

    Same data setup, training, evaluation and save/load as :class:`SAMSVAE`; the guide of the
    embeddings is mean-field. Parameters have the meaning they have in :class:`SAMSVAE`.
    """

    module_cls = CPAVAEModule
    config_cls = CPAVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        embedding_prior_scale: float = 1.0,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        encoder_input: Literal["x_and_shift", "x"] = "x_and_shift",
    ) -> None:
        config = CPAVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            embedding_prior_scale=embedding_prior_scale,
            likelihood=likelihood,
            encoder_input=encoder_input,
        )
        super().__init__(adata, config)


class ConditionalVAE(PerturbationModel):
    r"""Conditional VAE: the dosage row is an input of the encoder and the decoder.

    .. math::
        z_i \sim N(0, I),\ x_i \sim p_\theta(x \mid [z_i, d_i], l_i),\ q(z_i \mid x_i, d_i)

    No global variables and no masks (``get_mask_probabilities`` raises). Same data setup,
    training, evaluation and save/load as :class:`SAMSVAE`; parameters mean what they do there.
    """

    has_masks = False
    module_cls = ConditionalVAEModule
    config_cls = ConditionalVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
    ) -> None:
        config = ConditionalVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            likelihood=likelihood,
        )
        super().__init__(adata, config)


class SVAEPlus(PerturbationModel):
    r"""SVAE+ (Lopez et al. 2022): sparse masks on learned per-perturbation shifts, the
    baseline of the SAMS-VAE paper.

    .. math::
        \pi_{tk} \sim \mathrm{Beta}(1, c),\ m_{tk} \sim \mathrm{Bern}(\pi_{tk}),\
        z_i \sim N(m_{t(i)} \odot \mu_{t(i)}, I),\ x_i \sim p_\theta(x \mid z_i, l_i)

    Guide: q(m_tk) = Bernoulli(sigmoid(phi_tk)), point estimates (MAP) of pi and mu, and
    q(z_i | x_i) from an encoder that sees x only. One perturbation per cell: every label,
    combinations included, is a perturbation of its own (the "unique" dosage encoding is used
    whatever ``setup_anndata`` says), so combinations never seen in training cannot be predicted.
    Parameters other than ``mask_prior_beta`` have the meaning they have in :class:`SAMSVAE`.

    Parameters
    ----------
    mask_prior_beta
        c in the prior pi_tk ~ Beta(1, c), whose mean is 1 / (1 + c); the SAMS-VAE paper sweeps
        2, 5 and 10.
    """

    one_label_per_cell = True
    module_cls = SVAEPlusModule
    config_cls = SVAEPlusConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        mask_prior_beta: float = 5.0,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        gumbel_temperature: float = 1.0,
    ) -> None:
        config = SVAEPlusConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            mask_prior_beta=mask_prior_beta,
            likelihood=likelihood,
            gumbel_temperature=gumbel_temperature,
        )
        super().__init__(adata, config)
        if self.design.dosage_key is not None:
            self._dosage(adata)  # refuses rows with several perturbations now, not at train
