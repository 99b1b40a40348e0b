"""Frozen configuration records: the one home of every default."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from samsvae._checks import (
    check_choice,
    check_fraction,
    check_positive,
    check_positive_int,
    check_seed,
)

Guide = Literal["mean_field", "correlated"]
Likelihood = Literal["nb", "normal", "poisson"]
EncoderInput = Literal["x_and_shift", "x"]

GUIDES = ("mean_field", "correlated")
#: How many quantiles (0%, 1%, ..., 100%) of the control cells' library sizes a model keeps.
LIBRARY_QUANTILES = 101
LIKELIHOODS = ("nb", "normal", "poisson")
ENCODER_INPUTS = ("x_and_shift", "x")


@dataclass(frozen=True)
class SAMSVAEConfig:
    """Hyperparameters of SAMS-VAE (see :class:`samsvae.SAMSVAE` for their meaning)."""

    n_latent: int | None = None
    n_hidden: int | None = None
    n_layers: int = 1
    n_particles: int = 5
    mask_prior: float = 0.01
    mask_prior_concentration: float | None = None
    embedding_prior_scale: float = 1.0
    guide: Guide = "mean_field"
    likelihood: Likelihood = "nb"
    encoder_input: EncoderInput = "x_and_shift"
    gumbel_temperature: float = 1.0
    guide_n_hidden: int | None = None
    guide_n_layers: int | None = None
    target_genes: Any = "auto"
    target_effect_prior_scale: float = 1.0

    def __post_init__(self) -> None:
        _check_shared_fields(self)
        _check_mask_prior(self)
        check_choice("guide", self.guide, GUIDES)
        check_positive("target_effect_prior_scale", self.target_effect_prior_scale)
        if isinstance(self.target_genes, list):  # resolved pairs read back from JSON
            pairs = tuple((int(t), int(g)) for t, g in self.target_genes)
            object.__setattr__(self, "target_genes", pairs)
        for name in ("guide_n_hidden", "guide_n_layers"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))

    @property
    def guide_network_size(self) -> tuple[int, int]:
        """(n_hidden, n_layers) of the correlated guide's network; the model's where None."""
        n_hidden = self.n_hidden if self.guide_n_hidden is None else self.guide_n_hidden
        n_layers = self.n_layers if self.guide_n_layers is None else self.guide_n_layers
        return n_hidden, n_layers

    @property
    def mask_beta_prior(self) -> tuple[float, float] | None:
        """(alpha, beta) of the Beta prior on pi_tk, or None for Bernoulli(mask_prior) masks."""
        return _beta_prior(self.mask_prior, self.mask_prior_concentration)


@dataclass(frozen=True)
class CPAVAEConfig:
    """Hyperparameters of CPA-VAE (see :class:`samsvae.CPAVAE`): SAMS-VAE with every mask 1."""

    n_latent: int | None = None
    n_hidden: int | None = None
    n_layers: int = 1
    n_particles: int = 5
    embedding_prior_scale: float = 1.0
    likelihood: Likelihood = "nb"
    encoder_input: EncoderInput = "x_and_shift"

    def __post_init__(self) -> None:
        _check_shared_fields(self)


@dataclass(frozen=True)
class ConditionalVAEConfig:
    """Hyperparameters of the conditional VAE (see :class:`samsvae.ConditionalVAE`)."""

    n_latent: int | None = None
    n_hidden: int | None = None
    n_layers: int = 1
    n_particles: int = 5
    likelihood: Likelihood = "nb"

    def __post_init__(self) -> None:
        _check_sizes(self)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)


@dataclass(frozen=True)
class SVAEPlusConfig:
    """Hyperparameters of SVAE+ (see :class:`samsvae.SVAEPlus`): sparse masks on learned
    per-perturbation shifts, pi_tk ~ Beta(1, ``mask_prior_beta``) and m_tk ~ Bernoulli(pi_tk)."""

    n_latent: int | None = None
    n_hidden: int | None = None
    n_layers: int = 1
    n_particles: int = 5
    mask_prior_beta: float = 5.0
    likelihood: Likelihood = "nb"
    gumbel_temperature: float = 1.0

    def __post_init__(self) -> None:
        _check_sizes(self)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_positive("mask_prior_beta", self.mask_prior_beta)
        check_positive("gumbel_temperature", self.gumbel_temperature)


def _beta_prior(mean: float, concentration: float | None) -> tuple[float, float] | None:
    if concentration is None:
        return None
    return mean * concentration, (1 - mean) * concentration


def _check_sizes(config: Any) -> None:
    """The network and sampling sizes every model configuration has are integers >= 1."""
    for name in ("n_latent", "n_hidden", "n_layers", "n_particles"):
        value = getattr(config, name)
        if value is not None or name in ("n_layers", "n_particles"):  # None: from the data
            check_positive_int(name, value)


def _check_mask_prior(config: SAMSVAEConfig) -> None:
    check_fraction("mask_prior", config.mask_prior)
    if config.mask_prior_concentration is not None:
        check_positive("mask_prior_concentration", config.mask_prior_concentration)
    check_positive("gumbel_temperature", config.gumbel_temperature)


def _check_shared_fields(config: SAMSVAEConfig | CPAVAEConfig) -> None:
    """Checks of the fields every latent perturbation model has."""
    _check_sizes(config)
    check_positive("embedding_prior_scale", config.embedding_prior_scale)
    check_choice("likelihood", config.likelihood, LIKELIHOODS)
    check_choice("encoder_input", config.encoder_input, ENCODER_INPUTS)


#: glibc heap settings while training on CPU: glibc's own, raised thresholds that reuse freed
#: large buffers (faster), or the static 128 KiB default that returns them (lower, steady peak).
CPU_ALLOCATORS = ("default", "reuse", "compact")
#: Training as published ("none"), or with the sparse restart of SAMS-VAE's masks ("varimax").
MASK_REFINEMENTS = ("none", "varimax")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of :meth:`samsvae.SAMSVAE.train`; every field is a keyword of it.

    Parameters
    ----------
    max_epochs, max_steps
        Training budget. ``max_epochs=None`` makes about 20,000 steps (20 to 400 epochs), or
        runs until ``max_steps`` when only that is given.
    batch_size, lr, global_lr
        ``None`` chooses them from the number of training cells (:mod:`samsvae.defaults`).
        ``global_lr`` is the learning rate of the per-perturbation parameters (mask logits,
        embeddings), 30 times ``lr`` by default.
    weight_decay
        Adam's weight decay of the networks; the per-perturbation variables take none (their
        priors are in the ELBO).
    train_size, seed
        Share of the cells in the seeded training split (the rest validate); the seed also
        sets the initial weights of a first fit and the minibatch order.
    early_stopping, early_stopping_patience
        Stop when the validation loss has not improved for that many epochs.
    gradient_clip_val
        Clip the gradient norm to this value (``None``: no clipping).
    accelerator, devices, strategy, num_nodes
        Lightning's device settings. ``strategy="ddp"`` trains data-parallel: ``batch_size``
        stays the global batch, each rank takes a disjoint part of it, and the result matches
        one process up to rounding (see ``docs/distributed.md`` for torchrun and SLURM).
    progress_bar
        Show progress; bars appear only on a terminal or in Jupyter.
    cpu_allocator
        Opt-in glibc heap settings on Linux while training on CPU. ``"reuse"`` raises the mmap
        and trim thresholds so that freed large buffers serve the next step (faster at genome
        scale, a resident size that grows with fragmentation); ``"compact"`` sets the static
        128 KiB thresholds so that large temporaries are returned when freed (a lower, steady
        peak; slower steps). glibc cannot restore its dynamic threshold once either is set,
        so the static 128 KiB stays after training. Results are the same bit for bit.
    mask_refinement
        ``"none"`` trains as published. ``"varimax"`` (SAMS-VAE with the mean-field guide and
        Bernoulli masks) makes the masks sparse: after two thirds of the epochs it takes the
        best weights so far, rotates the latent space to a frame where the expected shifts
        E[e * m] are sparse (their Lp rotation, p = 1.5, or their varimax rotation where the
        Lp frame is denser), which changes no cell's likelihood, restarts the masks there
        (q(m = 1) 0.99 on each perturbation's large rotated shifts, 0.01 elsewhere) and holds
        them there while the networks and embeddings adapt for the last third; halfway
        through it, again from the best weights since the restart, the entries that have
        shrunk under 0.4 of their perturbation's largest, or under 5 posterior standard
        deviations, are switched off. Budgets under 9 epochs train as published, with a
        warning. It can cost prediction on real-like data (see the
        results pages).
    checkpoint_dir, checkpoint_every_n_epochs, resume
        Save the training state there (safetensors + JSON, replaced atomically) every so many
        epochs; ``resume=True`` continues the run it holds (or starts one), ending on CPU with
        the parameters of an uninterrupted run. A checkpoint of another model, data split or
        seed is refused.
    restart_on_divergence, divergence_lr_factor
        Restarts allowed from the last checkpoint when the loss becomes NaN or infinite, each
        multiplying the learning rates by the factor; with 0, training stops with
        :class:`~samsvae.inference.training.NonFiniteLossError`.
    """

    max_epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    global_lr: float | None = None
    weight_decay: float = 1e-6
    train_size: float = 0.9
    seed: int = 0
    early_stopping: bool = False
    early_stopping_patience: int = 20
    gradient_clip_val: float | None = None
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    progress_bar: bool = True
    cpu_allocator: str = "default"
    mask_refinement: str = "none"
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every_n_epochs: int = 1
    resume: bool = False
    restart_on_divergence: int = 0
    divergence_lr_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.checkpoint_dir is not None:  # a path-like is kept as text (JSON, fingerprints)
            object.__setattr__(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        check_positive_int("checkpoint_every_n_epochs", self.checkpoint_every_n_epochs)
        if self.resume and self.checkpoint_dir is None:
            msg = "resume=True needs checkpoint_dir, the directory of the run to continue."
            raise ValueError(msg)
        check_positive_int("restart_on_divergence", self.restart_on_divergence, minimum=0)
        check_fraction("divergence_lr_factor", self.divergence_lr_factor)
        check_seed(self.seed, optional=False)
        for name in ("max_epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None:
                check_positive_int(name, value)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        check_positive_int("num_nodes", self.num_nodes)
        check_choice("cpu_allocator", self.cpu_allocator, CPU_ALLOCATORS)
        check_choice("mask_refinement", self.mask_refinement, MASK_REFINEMENTS)
        check_positive_int("early_stopping_patience", self.early_stopping_patience)
        if self.lr is not None:
            check_positive("lr", self.lr)
        if self.global_lr is not None:
            check_positive("global_lr", self.global_lr)
        if self.weight_decay != 0:
            check_positive("weight_decay", self.weight_decay)
        check_fraction("train_size", self.train_size, one_allowed=True)
        if self.gradient_clip_val is not None:
            check_positive("gradient_clip_val", self.gradient_clip_val)
        for name in _REAL_FIELDS:  # an integer as large as 2**70 is a valid float, not an int64
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))


#: TrainConfig's real-valued fields, kept as floats whatever number type they were given as.
_REAL_FIELDS = (
    "lr",
    "global_lr",
    "weight_decay",
    "train_size",
    "gradient_clip_val",
    "divergence_lr_factor",
)


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass from a JSON dict, rejecting unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        msg = f"Unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}."
        raise ValueError(msg)
    return cls(**values)
