"""Settings chosen from the data when the user leaves them out, and the paper's presets.

The paper's settings (100 latents, 400 hidden units, lr 3e-4, batch 512, 150k steps) are made for
genome-scale screens of ~100k cells; on a screen of a few thousand shallow cells they leave the
model unfitted. The rules below scale the network, the batch and the budget with the screen, as
scvi-tools scales its epochs with the number of cells. Each rule is one short function so that it
can be read, tested and stated in the docs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: Optimisation steps a fit aims for when ``max_epochs`` and ``max_steps`` are not given.
TARGET_STEPS = 20_000
#: Epoch bounds of that budget: small screens stop at the upper bound, large ones at the lower.
MIN_EPOCHS, MAX_EPOCHS = 20, 400
#: The per-perturbation parameters (mask logits, embeddings) learn this many times faster than the
#: networks: each is updated only by the cells that carry its perturbation, a few per batch.
GLOBAL_LR_FACTOR = 30.0

#: The paper's configurations (Bereket & Karaletsos 2023), as keyword arguments of the model;
#: their training settings are in :data:`train_presets`.
presets: dict[str, dict[str, Any]] = {
    "replogle": {"n_latent": 100, "n_hidden": 400, "guide": "correlated", "mask_prior": 0.01},
    "norman": {"n_latent": 200, "n_hidden": 400, "guide": "mean_field", "mask_prior": 0.01},
}
#: The paper's training settings for :data:`presets`, as keyword arguments of ``train``.
train_presets: dict[str, dict[str, Any]] = {
    "replogle": {"batch_size": 512, "lr": 3e-4, "max_steps": 150_000},
    "norman": {"batch_size": 512, "lr": 3e-4, "max_steps": 30_000, "gradient_clip_val": 100.0},
}


def n_latent_for(n_perturbations: int) -> int:
    """Latent dimensions: 4 sqrt(T) rounded up, between 10 and 100 (T = 722 gives 100)."""
    return int(min(100, max(10, 4 * math.ceil(math.sqrt(max(n_perturbations, 1))))))


def n_hidden_for(n_cells: int) -> int:
    """Hidden units: 128 below 50k cells, 256 below 200k, else 400 (the paper's width)."""
    if n_cells < 50_000:
        return 128
    return 256 if n_cells < 200_000 else 400


def batch_size_for(n_train_cells: int) -> int:
    """Cells per batch: 128 below 20k training cells, 256 below 100k, else 512."""
    if n_train_cells < 20_000:
        return 128
    return 256 if n_train_cells < 100_000 else 512


def lr_for(n_train_cells: int) -> float:
    """Adam learning rate of the networks: 1e-3 (the paper's small-data rate)."""
    del n_train_cells  # one rate fits every screen measured so far
    return 1e-3


def max_epochs_for(n_train_cells: int, batch_size: int) -> int:
    """Epochs that make about :data:`TARGET_STEPS` steps, between :data:`MIN_EPOCHS` and
    :data:`MAX_EPOCHS`."""
    steps_per_epoch = max(1, math.ceil(n_train_cells / batch_size))
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch))))


def resolve_model_sizes(config: Any, *, n_cells: int, n_perturbations: int) -> Any:
    """``config`` with ``n_latent`` and ``n_hidden`` chosen from the data where they are None."""
    chosen = {}
    if config.n_latent is None:
        chosen["n_latent"] = n_latent_for(n_perturbations)
    if config.n_hidden is None:
        chosen["n_hidden"] = n_hidden_for(n_cells)
    return dataclasses.replace(config, **chosen) if chosen else config


def resolve_training(
    *,
    n_train_cells: int,
    batch_size: int | None,
    lr: float | None,
    global_lr: float | None,
    max_epochs: int | None,
    max_steps: int | None,
) -> dict[str, Any]:
    """Batch size, learning rates and epochs, each chosen from the data where it is None.

    ``max_epochs`` stays unbounded (-1) when only ``max_steps`` is given.
    """
    batch_size = batch_size_for(n_train_cells) if batch_size is None else batch_size
    lr = lr_for(n_train_cells) if lr is None else lr
    global_lr = GLOBAL_LR_FACTOR * lr if global_lr is None else global_lr
    if max_epochs is None:
        max_epochs = -1 if max_steps is not None else max_epochs_for(n_train_cells, batch_size)
    return {"batch_size": batch_size, "lr": lr, "global_lr": global_lr, "max_epochs": max_epochs}
