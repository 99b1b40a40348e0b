"""Training of the user-facing models: the split, the defaults chosen from the data, the
loaders, the statistics taken from the training cells and the resume fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from samsvae import defaults
from samsvae.config import TrainConfig, config_from_dict
from samsvae.data import (
    CellDataset,
    DeviceBatches,
    PerturbationDesign,
    fits_on_device,
    make_loader,
    streaming,
    train_validation_split,
    validate,
)
from samsvae.inference.training import fit

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from samsvae.models import SAMSVAEModule

Dataset = CellDataset | streaming.DiskCellDataset


class TrainingMixin:
    """``train``: the model's fit to its AnnData."""

    def train(
        self,
        *,
        max_epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        train_size: float = 0.9,
        train_indices: Sequence[int] | np.ndarray | None = None,
        validation_indices: Sequence[int] | np.ndarray | None = None,
        seed: int = 0,
        mask_refinement: str = "none",
        progress_bar: bool = True,
        **options: Any,
    ) -> None:
        """Fit by maximising the ELBO with Adam; keep the best-validation weights.

        Statistics, library sizes and plate sizes come from the training cells; the losses go
        to ``model.history``. A backed AnnData trains out of core. The process's RNG, flags and
        loggers are left as they were.

        Parameters
        ----------
        max_epochs, batch_size, lr
            ``None`` chooses them from the data; ``model.train_settings`` records them.
        train_size
            Share of the cells in the seeded training split; the rest validate.
        train_indices, validation_indices
            Row positions of ``adata`` that fix the split instead; other cells are unused.
        seed
            Seeds the initial weights of a first fit, the split and the minibatch order.
        mask_refinement
            ``"varimax"`` makes SAMS-VAE's masks sparse; ``"none"`` trains as published.
        progress_bar
            Show progress (on a terminal or in Jupyter only).
        **options
            Any other field of :class:`samsvae.config.TrainConfig`: ``max_steps``,
            ``global_lr``, early stopping, devices, checkpoints and ``resume``.
        """
        values = {"max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
        values |= {"train_size": train_size, "mask_refinement": mask_refinement}
        config = config_from_dict(TrainConfig, values | {"progress_bar": progress_bar, **options})
        adata, dataset = self._dataset(None)
        if not self.is_trained:  # a first fit starts from the seed's initial weights
            self.module = self._build_module(seed=seed)
        rows = split_rows(adata.n_obs, config, train_indices, validation_indices)
        config, self.train_settings = resolve_training_config(config, n_train_cells=len(rows[0]))
        log1p = self.config.likelihood != "normal"
        set_training_statistics(self.module, dataset, rows[0], log1p=log1p)
        fingerprint = training_fingerprint(type(self).__name__, self.config, self.design, *rows)
        loaders = make_loaders(dataset, *rows, config)
        held_rows, validation_rows = rows_to_hold(rows[0], loaders[0]), rows[1]
        del rows  # only the held rows while training: bits, one a cell, when out of core
        self._fit(loaders, config, fingerprint, held_rows, validation_rows)

    def _fit(
        self,
        loaders: tuple[Any, Any],
        config: TrainConfig,
        fingerprint: dict[str, Any],
        held_rows: np.ndarray | streaming.RowBits,
        validation_rows: np.ndarray,
    ) -> None:
        """Fit the module and record the fit (the training rows as positions again, from the
        bits held while training out of core); evaluation then runs where training ran."""
        result = fit(
            self.module,
            *loaders,
            config,
            n_particles=self.config.n_particles,
            max_epochs=self.train_settings["max_epochs"],
            fingerprint=fingerprint,
        )
        self.module.to(single_accelerator_device(config) or torch.device("cpu"))
        self.history = pd.DataFrame(result["history"])
        self.global_rank = result["global_rank"]
        self.train_indices, self.validation_indices = row_positions(held_rows), validation_rows
        self.is_trained = True


def split_rows(
    n_cells: int,
    config: TrainConfig,
    train_indices: Sequence[int] | np.ndarray | None,
    validation_indices: Sequence[int] | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation rows: the given ones (checked), or a seeded split."""
    if train_indices is not None:
        return validate.check_split_indices(train_indices, validation_indices, n_cells)
    if validation_indices is not None:
        msg = "validation_indices needs train_indices; pass both or neither."
        raise ValueError(msg)
    return train_validation_split(n_cells, train_size=config.train_size, seed=config.seed)


def resolve_training_config(
    config: TrainConfig, *, n_train_cells: int
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with the batch size and learning rates chosen from the data where unset,
    and the record of the settings used (``model.train_settings``)."""
    chosen = defaults.resolve_training(
        n_train_cells=n_train_cells,
        batch_size=config.batch_size,
        lr=config.lr,
        global_lr=config.global_lr,
        max_epochs=config.max_epochs,
        max_steps=config.max_steps,
    )
    resolved = dataclasses.replace(
        config, **{key: chosen[key] for key in ("batch_size", "lr", "global_lr")}
    )
    return resolved, {**chosen, "max_steps": config.max_steps, "n_train_cells": n_train_cells}


def set_training_statistics(
    module: SAMSVAEModule, dataset: Dataset, rows: np.ndarray, *, log1p: bool
) -> None:
    """Copy the training cells' gene statistics, plate sizes n_t, library sizes and covariate
    shares into the module's buffers."""
    stats = dataset.training_statistics(rows, log1p=log1p)

    def tensor(values: Any) -> torch.Tensor:
        return torch.as_tensor(values, dtype=torch.float32)

    module.gene_mean.copy_(tensor(stats.gene_mean))
    module.gene_scale.copy_(tensor(stats.gene_scale))
    module.n_cells_per_perturbation.copy_(tensor(stats.n_cells_per_perturbation))
    module.reference_library_size.fill_(max(stats.median_library_size, 1.0))
    module.library_size_quantiles.copy_(tensor(stats.library_size_quantiles))
    if dataset.covariates is not None:  # each category's share of the training cells
        module.covariate_frequencies.copy_(tensor(dataset.covariates[rows].mean(0)))


def make_loaders(
    dataset: Dataset, train_rows: np.ndarray, val_rows: np.ndarray, config: TrainConfig
) -> tuple[Any, Any]:
    """Device-resident batches on one GPU when the data fit, else CSR slicing on the host;
    streamed blocks for on-disk data; global batches cut per rank under data parallelism."""
    device = single_accelerator_device(config)
    options = {"batch_size": config.batch_size, "seed": config.seed}
    if isinstance(dataset, streaming.DiskCellDataset) or is_distributed(config):
        sharded = (
            streaming.StreamingBatches
            if isinstance(dataset, streaming.DiskCellDataset)
            else streaming.ShardedBatches
        )

        def loader(rows: np.ndarray, shuffle: bool) -> Any:
            return sharded(dataset, rows, shuffle=shuffle, **options)
    elif device is not None and fits_on_device(dataset, dataset.expression.shape[0], device):

        def loader(rows: np.ndarray, shuffle: bool) -> Any:
            return DeviceBatches(dataset, rows, shuffle=shuffle, device=device, **options)
    else:

        def loader(rows: np.ndarray, shuffle: bool) -> Any:
            return make_loader(dataset, rows, shuffle=shuffle, **options)

    return loader(train_rows, True), (loader(val_rows, False) if len(val_rows) else None)


def training_fingerprint(
    model_class: str,
    config: Any,
    design: PerturbationDesign,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
) -> dict[str, Any]:
    """What a training checkpoint must share with this run to be resumed by it."""
    names = "\n".join(design.genes + design.perturbations + tuple(design.covariate_columns()))
    return {
        "model_class": model_class,
        **dataclasses.asdict(config),
        "genes_and_perturbations": _digest([names.encode()]),
        "train_and_validation_cells": _digest(
            np.ascontiguousarray(rows, dtype=np.int64)
            for rows in (train_rows, np.array([-1]), val_rows)
        ),
    }


def _digest(parts: Iterable[bytes | np.ndarray]) -> str:
    """A short SHA-256 of the concatenated ``parts``, to tell runs apart. Hashed part by part,
    so that row arrays are not joined into a per-cell copy the heap keeps through training."""
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part)
    return sha.hexdigest()[:16]


def rows_to_hold(rows: np.ndarray, loader: Any) -> np.ndarray | streaming.RowBits:
    """The training rows to keep while training: an out-of-core loader's bits (one a cell)
    rather than the positions; :func:`row_positions` gives the positions back."""
    return loader.rows if isinstance(loader, streaming.StreamingBatches) else rows


def row_positions(rows: np.ndarray | streaming.RowBits) -> np.ndarray:
    return rows.positions() if isinstance(rows, streaming.RowBits) else rows


def single_accelerator_device(config: TrainConfig) -> torch.device | None:
    """The CUDA device a single-device run trains on, or None (CPU, several devices)."""
    wants_gpu = config.accelerator in ("gpu", "cuda") or (
        config.accelerator == "auto" and torch.cuda.is_available()
    )
    if not wants_gpu or config.devices not in ("auto", 1, "1"):
        return None
    return torch.device("cuda", torch.cuda.current_device())


def is_distributed(config: TrainConfig) -> bool:
    """Whether training may run on several processes (data parallelism)."""
    return (
        config.strategy != "auto" or config.num_nodes > 1 or config.devices not in ("auto", 1, "1")
    )
