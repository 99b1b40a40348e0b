"""Lightning training of a perturbation model: the plated ELBO, Adam, best-validation weights."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from samsvae.inference.objectives import LossTerms, minibatch_elbo

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch.utils.data import DataLoader

    from samsvae.config import TrainConfig
    from samsvae.data.batch import Batch
    from samsvae.models import SAMSVAEModule


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _check_finite(terms: LossTerms, step: int) -> None:
    if torch.isfinite(terms.loss):
        return
    bad = [
        name
        for name in ("log_likelihood", "local", "global_")
        if not torch.isfinite(getattr(terms, name))
    ]
    msg = (
        f"Training diverged at step {step}: the loss is {terms.loss.item()} "
        f"(non-finite terms: {bad or ['loss']}). Lower lr, set gradient_clip_val, "
        "or check the input counts."
    )
    raise NonFiniteLossError(msg)


class TrainingPlan(L.LightningModule):
    """Optimises ``module`` by the negative plated ELBO with ``n_particles`` particles."""

    def __init__(
        self,
        module: SAMSVAEModule,
        *,
        n_particles: int,
        lr: float,
        global_lr: float | None,
        weight_decay: float,
    ) -> None:
        super().__init__()
        self.module = module
        self.n_particles = n_particles
        self.lr = lr
        self.global_lr = lr if global_lr is None else global_lr
        self.weight_decay = weight_decay

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        terms = minibatch_elbo(self.module, batch, self.n_particles)
        _check_finite(terms, self.global_step)
        self._log_loss("train_loss", terms, batch)
        return terms.loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._log_loss("val_loss", minibatch_elbo(self.module, batch, self.n_particles), batch)

    def _log_loss(self, name: str, terms: LossTerms, batch: Batch) -> None:
        self.log(
            name,
            terms.loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch.counts.shape[0],
            prog_bar=True,
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The guide of the global variables gets its own learning rate: its parameters see one
        # update per batch in which their perturbation appears, and Adam moves each by at most
        # about lr per step, so mask logits need many steps to leave their initial value.
        global_ids = {id(p) for p in self.module.guide.parameters()}
        local = [p for p in self.module.parameters() if id(p) not in global_ids]
        groups = [{"params": local, "lr": self.lr}]
        if global_ids:  # a conditional VAE has no global variables
            groups.append({"params": list(self.module.guide.parameters()), "lr": self.global_lr})
        return torch.optim.Adam(groups, weight_decay=self.weight_decay)

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)


class BestWeights(Callback):
    """Keeps weights of the epoch with the lowest monitored loss; restores them at the end."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best, self.best_epoch = float(value), trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class History(Callback):
    """Per-epoch training and validation loss."""

    def __init__(self) -> None:
        self.records: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key in ("train_loss", "val_loss"):
            if key in trainer.callback_metrics:
                record[key] = float(trainer.callback_metrics[key])
        self.records.append(record)


def fit(
    module: SAMSVAEModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    config: TrainConfig,
    *,
    n_particles: int,
    max_epochs: int,
) -> dict[str, Any]:
    """Train ``module`` in place; it ends holding the best-validation weights.

    Returns ``{"history": [per-epoch records], "best_epoch": int, "best_loss": float}``.
    """
    torch.manual_seed(config.seed)
    plan = TrainingPlan(
        module,
        n_particles=n_particles,
        lr=config.lr,
        global_lr=config.global_lr,
        weight_decay=config.weight_decay,
    )
    monitor = "val_loss" if val_loader is not None else "train_loss"
    best, history = BestWeights(monitor), History()
    callbacks: list[Callback] = [best, history]
    if config.early_stopping:
        callbacks.append(EarlyStopping(monitor=monitor, patience=config.early_stopping_patience))
    trainer = L.Trainer(
        max_epochs=max_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        accelerator=config.accelerator,
        devices=config.devices,
        gradient_clip_val=config.gradient_clip_val,
        enable_progress_bar=config.progress_bar,
        callbacks=callbacks,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    with warnings.catch_warnings():
        # Batches are sliced in-process on purpose; workers would only copy CSR rows.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        # Lightning 2.6 still builds torch's deprecated LeafSpec; harmless, fixed upstream.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        with _tf32_matmuls(), reuse_large_allocations():
            trainer.fit(plan, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return {"history": history.records, "best_epoch": best.best_epoch, "best_loss": best.best}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameter numbers
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
_TRAINING_THRESHOLD = 1 << 30


def _set_malloc_thresholds(value: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, Windows, musl): nothing to tune
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, value) and libc.mallopt(_M_TRIM_THRESHOLD, value))


@contextlib.contextmanager
def reuse_large_allocations() -> Iterator[None]:
    """Keep freed large CPU buffers in the heap while training (glibc only).

    glibc serves each (particles x cells x genes) temporary with a fresh mmap and unmaps it when
    freed, so every step page-faults its working set back in; at Replogle size that was about a
    third of a CPU training step. Raising the mmap and trim thresholds lets the next step reuse the
    same memory. Afterwards both thresholds go back to glibc's static default of 128 KiB.
    """
    tuned = _set_malloc_thresholds(_TRAINING_THRESHOLD)
    try:
        yield
    finally:
        if tuned:
            _set_malloc_thresholds(_GLIBC_DEFAULT_THRESHOLD)


@contextlib.contextmanager
def _tf32_matmuls() -> Iterator[None]:
    """TF32 tensor-core matmuls on GPUs during training; likelihoods stay fp32 elementwise."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banner (accelerator/TPU info) at INFO level."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
