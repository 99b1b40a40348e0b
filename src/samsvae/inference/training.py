"""Lightning training of a perturbation model: the plated ELBO, Adam, best-validation weights."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping

from samsvae import io
from samsvae.data.loaders import loader_perturbation_counts
from samsvae.inference.mask_refinement import (
    MIN_EPOCHS,
    PRUNE_BELOW_SDS,
    RefinementEpochs,
    can_restart,
    prune_masks,
    refinement_epochs,
    sparse_restart,
)
from samsvae.inference.objectives import LossTerms, gradient_weight, minibatch_elbo
from samsvae.inference.process_state import training_scope
from samsvae.settings import settings

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


def _check_finite_parameters(module: torch.nn.Module, epoch: int) -> None:
    bad = [name for name, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        msg = (
            f"Training diverged in epoch {epoch}: parameters {bad[:3]} are not finite. "
            "Lower lr, set gradient_clip_val, or check the input counts."
        )
        raise NonFiniteLossError(msg)


class TrainingPlan(L.LightningModule):
    """Optimises ``module`` by the negative plated ELBO with ``n_particles`` particles.

    Adam takes ``global_lr`` for ``module.per_perturbation_parameters()`` and ``lr`` for every
    other parameter; ``weight_decay`` applies to the other parameters (the networks) only.
    After ``restarts`` divergence restarts both learning rates are scaled by
    ``divergence_lr_factor ** restarts``; checkpoints carry the count.

    ``validation_plate_sizes`` (n_perturbations,) holds n_t counted over the validation cells:
    the validation loss shares each global term among the validation cells that carry it, so
    that it estimates the negative ELBO per cell of the validation cells. Without it (no
    validation loader) the training n_t are used.
    """

    def __init__(
        self,
        module: SAMSVAEModule,
        *,
        n_particles: int,
        lr: float,
        global_lr: float | None,
        weight_decay: float,
        restarts: int = 0,
        divergence_lr_factor: float = 0.5,
        validation_plate_sizes: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        # Not persistent: a checkpoint holds the model's state only, and fit recounts n_t.
        self.register_buffer("validation_plate_sizes", validation_plate_sizes, persistent=False)
        self.n_particles = n_particles
        self.lr = lr
        self.global_lr = lr if global_lr is None else global_lr
        self.weight_decay = weight_decay
        self.restarts = restarts
        self.divergence_lr_factor = divergence_lr_factor

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        terms = minibatch_elbo(self.module, batch, self.n_particles)
        _check_finite(terms, self.global_step)
        self._log_loss("train_loss", terms, batch)
        if batch.shard is None:
            return terms.loss
        return terms.loss * gradient_weight(batch, self.trainer.world_size)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        terms = minibatch_elbo(
            self.module,
            batch,
            self.n_particles,
            n_cells_per_perturbation=self.validation_plate_sizes,
        )
        self._log_loss("val_loss", terms, batch)

    def _log_loss(self, name: str, terms: LossTerms, batch: Batch) -> None:
        self.log(
            name,
            terms.loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch.counts.shape[0],
            prog_bar=True,
            sync_dist=batch.shard is not None,  # ranks agree on the best epoch
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Per-perturbation parameters (mask logits, embedding parameters, the correlated guide's
        # perturbation table) get their own learning rate: each sees one update per batch in
        # which its perturbation appears, and Adam moves it by at most about lr per step, so mask
        # logits need many steps to leave their initial value. Networks shared by all
        # perturbations (the correlated guide's included) see every batch and take ``lr``.
        per_perturbation = self.module.per_perturbation_parameters()
        per_perturbation_ids = {id(p) for p in per_perturbation}
        shared = [p for p in self.module.parameters() if id(p) not in per_perturbation_ids]
        # Weight decay regularises the networks only: the per-perturbation variables have their
        # priors in the ELBO, and decay on top would shrink every shift towards zero.
        groups = [{"params": shared, "weight_decay": self.weight_decay}]
        if per_perturbation:  # a conditional VAE has no global variables
            groups.append({"params": per_perturbation, "weight_decay": 0.0})
        for group, lr in zip(groups, self._learning_rates(), strict=False):
            group["lr"] = lr
        return torch.optim.Adam(groups)

    def _learning_rates(self) -> tuple[float, float]:
        """Learning rates of the (shared, per-perturbation) parameter groups after the restarts
        so far."""
        scale = self.divergence_lr_factor**self.restarts
        return self.lr * scale, self.global_lr * scale

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["divergence_restarts"] = self.restarts

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run keeps its restarts; a divergence restart has already counted one more.
        self.restarts = max(self.restarts, checkpoint["divergence_restarts"])

    def on_train_start(self) -> None:
        # A restored optimiser holds the rates it was saved with; set the current ones.
        groups = self.trainer.optimizers[0].param_groups
        for group, lr in zip(groups, self._learning_rates(), strict=False):
            group["lr"] = lr

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)


class BestWeights(Callback):
    """Keeps weights of the epoch with the lowest monitored loss; restores them at the end."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.reset()

    def reset(self) -> None:
        """Forget the best epoch so far: the next monitored value becomes the best."""
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best, self.best_epoch = float(value), trainer.current_epoch
            self.state = _copy_state(pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self.state = state_dict["state"]


class SparseMaskRestart(Callback):
    """The sparse restart of the masks (:func:`~samsvae.inference.mask_refinement.sparse_restart`)
    after epoch ``epochs.restart`` - 1 and their pruning
    (:func:`~samsvae.inference.mask_refinement.prune_masks`) after epoch ``epochs.prune`` - 1,
    with the mask logits held fixed from the restart on.

    Each starts from the best weights so far, not the last: a model that has begun to overfit
    would carry its overfitted networks into the refined model. Each then starts training
    afresh: the restart rotates the latent space, so Adam's moment estimates are dropped, and
    the best weights and early stopping start again from it: the weights kept are those of the
    refined model, never the dense or the unpruned one.
    """

    def __init__(self, epochs: RefinementEpochs, best: BestWeights) -> None:
        self.epochs, self.best = epochs, best

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch not in self.epochs:
            return
        if self.best.state is not None:  # ``best`` has already seen this epoch
            pl_module.load_state_dict(self.best.state)
        if epoch == self.epochs.restart:
            sparse_restart(pl_module.module)
        else:
            prune_masks(pl_module.module)
            _warn_if_every_mask_is_off(pl_module.module)
        for optimizer in trainer.optimizers:
            optimizer.state.clear()
        self.best.reset()
        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping):
                callback.wait_count = 0
                callback.best_score = torch.tensor(math.inf)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.current_epoch >= self.epochs.restart:
            pl_module.module.guide.mask_logits.grad = None  # Adam skips it: held where it is


def _warn_if_every_mask_is_off(module: SAMSVAEModule) -> None:
    if not (module.guide.mask_probabilities() > 0.5).any():
        msg = (
            "The sparse mask restart's pruning switched off every mask entry: no perturbation's "
            f"shift lies {PRUNE_BELOW_SDS:g} posterior standard deviations from zero yet, so the "
            "model predicts no effects. Train longer (max_epochs) or pass mask_refinement='none'."
        )
        warnings.warn(msg, UserWarning, stacklevel=2)


def _copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


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

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict["records"])


class EpochCheckpoint(Checkpoint):
    """Saves the whole training state every ``every_n_epochs`` epochs (see :func:`fit`).

    Lightning calls checkpoint callbacks last, so the saved best weights, history and early
    stopping state include the epoch just ended. The checkpoint also holds torch's RNG states,
    put back before the first resumed epoch. Non-finite parameters raise NonFiniteLossError
    instead of replacing the last good checkpoint.
    """

    def __init__(self, directory: Path, every_n_epochs: int) -> None:
        self.directory, self.every_n_epochs = directory, every_n_epochs
        self.rng_states: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            _check_finite_parameters(pl_module, trainer.current_epoch)
            trainer.save_checkpoint(self.directory, weights_only=False)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "cuda": cuda}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.rng_states = checkpoint["rng_states"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.rng_states is not None:
            torch.set_rng_state(self.rng_states["torch"])
            if self.rng_states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self.rng_states["cuda"])


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoints written by :func:`samsvae.io.save_checkpoint`: no pickle.

    Each checkpoint records ``fingerprint`` (what describes the run: model, data, settings);
    loading refuses a checkpoint whose fingerprint differs, naming each difference.
    """

    def __init__(self, fingerprint: dict[str, Any]) -> None:
        self.fingerprint = json.loads(json.dumps(fingerprint))  # tuples read back as lists

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        io.save_checkpoint(path, {**checkpoint, "fingerprint": self.fingerprint})

    def load_checkpoint(self, path: str | Path, **_: Any) -> dict[str, Any]:
        checkpoint = io.read_checkpoint(path)
        saved = checkpoint.pop("fingerprint")
        changed = [
            f"{key}={saved.get(key)!r} in the checkpoint but {self.fingerprint.get(key)!r} now"
            for key in sorted(set(saved) | set(self.fingerprint))
            if saved.get(key) != self.fingerprint.get(key)
        ]
        if changed:
            msg = (
                f"The checkpoint in {path} belongs to another run: {'; '.join(changed)}. "
                "Resume with the settings it was written with, or use a new checkpoint_dir."
            )
            raise io.ModelFileError(msg)
        return checkpoint

    def remove_checkpoint(self, path: str | Path) -> None:
        msg = "samsvae replaces its checkpoint in place; nothing removes one."
        raise NotImplementedError(msg)


# TrainConfig fields a resumed run must share with the run that wrote the checkpoint; the others
# (epoch and step budgets, device, progress bar, checkpoint and restart options) may change.
RUN_SETTINGS = (
    "seed",
    "batch_size",
    "lr",
    "global_lr",
    "weight_decay",
    "gradient_clip_val",
    "early_stopping",
    "early_stopping_patience",
    "divergence_lr_factor",
    "mask_refinement",
)


def fit(
    module: SAMSVAEModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    config: TrainConfig,
    *,
    n_particles: int,
    max_epochs: int,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``module`` in place; it ends holding the best-validation weights.

    With ``config.checkpoint_dir``, every ``config.checkpoint_every_n_epochs`` epochs the whole
    training state (weights, Adam state, RNG states, epoch and step, best weights, history, early
    stopping) is saved there, and ``config.resume`` continues from it; on CPU a resumed run ends
    with the same parameters, bit for bit, as an uninterrupted one. ``fingerprint`` (JSON-ready:
    model class, configuration, data shape) and :data:`RUN_SETTINGS` must match the checkpoint's.
    The validation loss uses n_t counted over ``val_loader``'s cells (see :class:`TrainingPlan`).

    With ``config.restart_on_divergence`` > 0, a :class:`NonFiniteLossError` reloads the last
    checkpoint (or the initial weights if none was written yet) and goes on with both learning
    rates multiplied by ``config.divergence_lr_factor`` once more; without a ``checkpoint_dir``
    checkpoints go to a temporary directory. After that many restarts the error propagates.

    Returns ``{"history": [per-epoch records], "best_epoch": int, "best_loss": float,
    "divergence_restarts": int, "global_rank": int}``.
    """
    fingerprint = {**(fingerprint or {}), **{k: getattr(config, k) for k in RUN_SETTINGS}}
    restart = _mask_restart(module, config, max_epochs, len(train_loader))
    initial = _copy_state(module) if config.restart_on_divergence else {}
    validation_plate_sizes = None
    if val_loader is not None:
        counts = loader_perturbation_counts(val_loader)
        validation_plate_sizes = torch.as_tensor(counts, dtype=torch.float32)
    with training_scope(config.seed), _checkpoint_directory(config) as directory:
        ckpt_path = _resume_path(directory, config)
        restarts = 0
        while True:
            plan = TrainingPlan(
                module,
                n_particles=n_particles,
                lr=config.lr,
                global_lr=config.global_lr,
                weight_decay=config.weight_decay,
                restarts=restarts,
                divergence_lr_factor=config.divergence_lr_factor,
                validation_plate_sizes=validation_plate_sizes,
            )
            trainer, best, history = _trainer(
                config, max_epochs, directory, fingerprint, val_loader, restart
            )
            try:
                _run(trainer, plan, train_loader, val_loader, ckpt_path, config.cpu_allocator)
                break
            except NonFiniteLossError as error:
                if plan.restarts >= config.restart_on_divergence:
                    raise
                restarts = plan.restarts + 1
                ckpt_path = directory if directory and io.has_checkpoint(directory) else None
                if ckpt_path is None:  # diverged before the first checkpoint: start over
                    module.load_state_dict(initial)
                    torch.manual_seed(config.seed)
                where = "the last checkpoint" if ckpt_path else "the initial weights"
                msg = (
                    f"{error} Restart {restarts} of {config.restart_on_divergence} from {where} "
                    f"with learning rates x{config.divergence_lr_factor**restarts:g}."
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return {
        "history": history.records,
        "best_epoch": best.best_epoch,
        "best_loss": best.best,
        "divergence_restarts": plan.restarts,
        "global_rank": trainer.global_rank,
    }


def _mask_restart(
    module: torch.nn.Module, config: TrainConfig, max_epochs: int, steps_per_epoch: int
) -> RefinementEpochs | None:
    """When to restart and prune the masks, or None (see ``TrainConfig.mask_refinement``)."""
    if config.mask_refinement == "none":
        return None
    if not can_restart(module):
        msg = (
            "mask_refinement='varimax' needs SAMS-VAE with guide='mean_field' and Bernoulli "
            "masks; pass mask_refinement='none' for this model."
        )
        raise ValueError(msg)
    n_epochs = max_epochs
    if config.max_steps is not None:
        n_epochs = min(n_epochs, math.ceil(config.max_steps / max(1, steps_per_epoch)))
    epochs = refinement_epochs(n_epochs)
    if epochs is None:
        msg = (
            f"mask_refinement='varimax' needs at least {MIN_EPOCHS} epochs; {n_epochs} train "
            "as published."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
    return epochs


@contextlib.contextmanager
def _checkpoint_directory(config: TrainConfig) -> Iterator[Path | None]:
    """The checkpoint directory: the user's, a temporary one for restarts alone, or None."""
    if config.checkpoint_dir is not None:
        yield Path(config.checkpoint_dir)
    elif config.restart_on_divergence:
        with tempfile.TemporaryDirectory(prefix="samsvae-checkpoint-") as directory:
            yield Path(directory)
    else:
        yield None


def _resume_path(directory: Path | None, config: TrainConfig) -> Path | None:
    """The checkpoint to resume from; refuse to overwrite one unless resuming."""
    if directory is None or not io.has_checkpoint(directory):
        return None  # resume=True in a directory without a checkpoint starts the run
    if not config.resume:
        msg = (
            f"checkpoint_dir={str(directory)!r} already holds a training checkpoint; pass "
            "resume=True to continue that run, or choose another directory."
        )
        raise FileExistsError(msg)
    return directory


def _trainer(
    config: TrainConfig,
    max_epochs: int,
    directory: Path | None,
    fingerprint: dict[str, Any],
    val_loader: DataLoader | None,
    restart: RefinementEpochs | None = None,
) -> tuple[L.Trainer, BestWeights, History]:
    monitor = "val_loss" if val_loader is not None else "train_loss"
    best, history = BestWeights(monitor), History()
    callbacks: list[Callback] = [best, history]
    if restart is not None:  # after ``best``: it resets the best weights at the restart
        callbacks.append(SparseMaskRestart(restart, best))
    if config.early_stopping:
        callbacks.append(EarlyStopping(monitor=monitor, patience=config.early_stopping_patience))
    if directory is not None:
        callbacks.append(EpochCheckpoint(directory, config.checkpoint_every_n_epochs))
    trainer = L.Trainer(
        max_epochs=max_epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        use_distributed_sampler=False,  # loaders shard each global batch themselves
        gradient_clip_val=config.gradient_clip_val,
        enable_progress_bar=settings.show_progress(config.progress_bar),
        callbacks=callbacks,
        plugins=[SafetensorsCheckpointIO(fingerprint)] if directory is not None else None,
        enable_model_summary=False,
        enable_checkpointing=directory is not None,  # True without EpochCheckpoint adds pickle
        logger=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    return trainer, best, history


def _run(
    trainer: L.Trainer,
    plan: TrainingPlan,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    ckpt_path: Path | None,
    cpu_allocator: str = "default",
) -> None:
    with warnings.catch_warnings():
        # Batches are sliced in-process on purpose; workers would only copy CSR rows.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        # Lightning 2.6 still builds torch's deprecated LeafSpec; harmless, fixed upstream.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        with _cpu_allocations(cpu_allocator):
            trainer.fit(
                plan,
                train_dataloaders=train_loader,
                val_dataloaders=val_loader,
                ckpt_path=ckpt_path,
            )


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


def _cpu_allocations(cpu_allocator: str) -> contextlib.AbstractContextManager[None]:
    """The glibc thresholds to train under (see ``TrainConfig.cpu_allocator``): glibc's own
    (``"default"``), raised for speed (``"reuse"``, :func:`reuse_large_allocations`), or glibc's
    static default (``"compact"``), so that every large temporary is mapped afresh and returned
    when freed: the resident size then stays at what a step holds live instead of growing with
    the heap's fragmentation, and CPU steps are slower. glibc cannot give back its dynamic
    threshold once set, so ``"reuse"`` and ``"compact"`` leave the static 128 KiB behind."""
    if cpu_allocator == "compact":
        _set_malloc_thresholds(_GLIBC_DEFAULT_THRESHOLD)
    if cpu_allocator == "reuse":
        return reuse_large_allocations()
    return contextlib.nullcontext()
