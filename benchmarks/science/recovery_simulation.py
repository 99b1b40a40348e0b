"""Mask recovery and held-out-combination ATE of SAMS-VAE on the default quickstart simulation.

Runs the quickstart workflow (``samsvae.workflows``): the default simulation of
``samsvae.datasets.simulate`` (50 singles, 30 two-gene combinations, K = 15, G = 100, NB counts),
the last 25% of the shuffled combinations held out, SAMS-VAE trained on the rest, then
``evaluate_on_simulation`` (mask precision/recall/F1 after Hungarian matching, held-out IWELBO,
ATE Pearson r on held-out combinations for the model and for the additive baseline).

Beyond the quickstart settings it can try training schedules that are not (yet) options of the
package (or were not when it was written). They are applied from this script only, without
editing ``src/``:

- ``--global-lr``: Adam learning rate of the guide q(M) q(E) (the package's ``global_lr`` where it
  exists; default the quickstart's, ``none`` = the base ``--lr`` as in the original quickstart);
- ``--mask-lr``: a separate Adam learning rate for the mask logits of q(M) (default --global-lr);
- ``--mask-logit-init``: initial q(m = 1) of every mask entry (the package starts at 0.5);
- ``--temperature-final`` / ``--anneal-epochs``: geometric annealing of the Gumbel temperature;
- ``--kl-warmup-epochs``: linear warm-up 0 -> 1 of the weight of the global (E, M) terms;
- ``--l1-shift`` / ``--l1-epochs``: an L1 penalty lambda * |e_t * m_t|_1 per perturbation that
  decays linearly from lambda to 0 over the first ``--l1-epochs`` epochs. L1, unlike the Gaussian
  prior on E, is not invariant to rotations of the latent space, so it steers the early fit
  toward axis-aligned (sparse) shifts; afterwards training is the plain ELBO;
- ``--harden-epoch`` / ``--harden-logit``: train everything at ``--lr`` until that epoch, then
  set every mask logit to +-harden_logit by the sign of its current logit (q(m) ~ 0.98 / 0.02)
  and continue with ``--global-lr`` / ``--mask-lr`` for the guide (two-phase training);
- ``--mask-kl-boost``: weight of the mask terms log p(m) - log q(m) at the start, decayed
  linearly to 1 over ``--anneal-epochs`` (extra sparsity pressure early).

Validation loss (and therefore best-epoch selection) is always the unweighted ELBO. With none of
these options set the run is exactly ``run_quickstart``'s model and training.

Mask metrics are computed with the model's mask rows matched to the simulation's rows by
perturbation name (``true_masks_in_model_order``); ``evaluate_on_simulation`` compares them in
different orders, and its numbers are kept under ``*_rows_unaligned`` for reference.

Examples
--------
    python benchmarks/science/recovery_simulation.py                       # quickstart defaults
    python benchmarks/science/recovery_simulation.py --threads 1 --global-lr 0.03 \
        --n-hidden 256 --max-epochs 150 --compare-default             # best found (ATE)
    python benchmarks/science/recovery_simulation.py --collect /tmp/sweep  # table of many runs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import samsvae
from samsvae.api import SAMSVAE
from samsvae.datasets import simulate
from samsvae.distributions import bernoulli_log_prob
from samsvae.evaluate import mask_recovery

try:
    from samsvae.evaluate import mask_auroc
except ImportError:  # older package without it
    mask_auroc = None
from samsvae.inference import training
from samsvae.inference.objectives import global_shares
from samsvae.workflows import (
    QuickstartSettings,
    evaluate_on_simulation,
    split_held_out_combinations,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Training options beyond the package's own (see the module docstring)."""

    global_lr: float | None = None
    mask_lr: float | None = None
    mask_logit_init: float | None = None
    temperature_final: float | None = None
    anneal_epochs: int = 0
    kl_warmup_epochs: int = 0
    mask_kl_boost: float = 1.0
    l1_shift: float = 0.0
    l1_epochs: int = 0
    harden_epoch: int | None = None
    harden_logit: float = 4.0


# --- training plan with schedules ----------------------------------------------------------------
def _make_plan_class(schedule: Schedule, temperature0: float, max_epochs: int,
                     trace: list[dict[str, float]] | None = None,
                     true_masks: np.ndarray | None = None, trace_every: int = 0) -> type:
    base = training.TrainingPlan

    class ScheduledPlan(base):  # type: ignore[misc, valid-type]
        """TrainingPlan + per-epoch temperature / KL-weight schedules + a guide learning rate."""

        global_weight = 1.0
        mask_weight = 1.0
        l1_weight = 0.0

        def on_train_epoch_start(self) -> None:
            epoch = self.current_epoch
            if schedule.harden_epoch is not None:
                self._harden(epoch)
            anneal = max(schedule.anneal_epochs, 1)
            progress = min(1.0, epoch / anneal)
            if schedule.temperature_final is not None:
                t0, t1 = temperature0, schedule.temperature_final
                self.module.guide.temperature = float(t0 * (t1 / t0) ** progress)
            if schedule.kl_warmup_epochs > 0:
                self.global_weight = min(1.0, (epoch + 1) / schedule.kl_warmup_epochs)
            if schedule.l1_shift > 0:
                span = max(schedule.l1_epochs, 1)
                self.l1_weight = schedule.l1_shift * max(0.0, 1.0 - epoch / span)
            if schedule.mask_kl_boost != 1.0:
                boost = schedule.mask_kl_boost
                self.mask_weight = boost + (1.0 - boost) * progress

        def _harden(self, epoch: int) -> None:
            """Before ``harden_epoch``: guide at the base lr. At it: q(m) -> +-harden_logit
            (by q > 0.5) and the guide switches to --global-lr / --mask-lr."""
            optimizer = self.optimizers().optimizer  # type: ignore[union-attr]
            groups = optimizer.param_groups
            if epoch < schedule.harden_epoch:
                for group in groups[1:]:
                    group["lr"] = self.lr
                return
            if epoch == schedule.harden_epoch:
                logits = self.module.guide.mask_logits
                with torch.no_grad():
                    logits.copy_(torch.where(logits > 0, schedule.harden_logit,
                                             -schedule.harden_logit))
                state = optimizer.state.get(logits)
                if state:  # restart Adam's moments of the reset logits
                    state["exp_avg"].zero_()
                    state["exp_avg_sq"].zero_()
                global_lr = (getattr(self, "global_lr", self.lr) if schedule.global_lr is None
                             else schedule.global_lr)
                groups[1]["lr"] = global_lr
                groups[2]["lr"] = global_lr if schedule.mask_lr is None else schedule.mask_lr

        def on_train_epoch_end(self) -> None:
            epoch = self.current_epoch
            if trace is None or trace_every <= 0 or true_masks is None:
                return
            if (epoch + 1) % trace_every and epoch + 1 != max_epochs:
                return
            with torch.no_grad():
                probabilities = self.module.mask_probabilities().cpu().numpy()
            val = self.trainer.callback_metrics.get("val_loss")
            trace.append({"epoch": epoch, "val_loss": float(val) if val is not None else None,
                          **mask_recovery(probabilities > 0.5, true_masks),
                          "temperature": float(self.module.guide.temperature),
                          "global_weight": self.global_weight, "mask_weight": self.mask_weight,
                          "l1_weight": self.l1_weight})

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_weight == 1.0 and self.mask_weight == 1.0 and self.l1_weight == 0.0:
                return super().training_step(batch, batch_idx)
            loss = weighted_negative_elbo(self.module, batch, self.n_particles,
                                          self.global_weight, self.mask_weight, self.l1_weight)
            self.log("train_loss", loss, on_step=False, on_epoch=True,
                     batch_size=batch.counts.shape[0], prog_bar=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            package_global_lr = getattr(self, "global_lr", self.lr)
            global_lr = (package_global_lr if schedule.global_lr is None
                         else schedule.global_lr)
            if (schedule.mask_lr is None and schedule.harden_epoch is None
                    and global_lr == package_global_lr):
                return super().configure_optimizers()
            mask_lr = global_lr if schedule.mask_lr is None else schedule.mask_lr
            masks = [self.module.guide.mask_logits]
            guide = [p for p in self.module.guide.parameters() if p is not masks[0]]
            ids = {id(p) for p in [*guide, *masks]}
            rest = [p for p in self.module.parameters() if id(p) not in ids]
            return torch.optim.Adam(
                [{"params": rest, "lr": self.lr},
                 {"params": guide, "lr": global_lr},
                 {"params": masks, "lr": mask_lr}],
                weight_decay=self.weight_decay)

    return ScheduledPlan


def weighted_negative_elbo(module: Any, batch: Any, n_particles: int, global_weight: float,
                           mask_weight: float, l1_weight: float = 0.0) -> torch.Tensor:
    """-(local + global_weight * (embedding terms + mask_weight * mask terms)) per cell,
    plus ``l1_weight * |e_t * m_t|_1`` per perturbation (with the same c_t / n_t shares).

    With weights 1, 1, 0 this equals ``samsvae.inference.objectives.minibatch_elbo``'s loss.
    """
    sample = module.sample_globals(batch.perturbation_index, n_particles)
    local = module.local_terms(batch.counts, batch.dosage, batch.library_size, sample)
    logits = module.guide.mask_logits[batch.perturbation_index]
    log_q_masks = bernoulli_log_prob(sample.masks, logits).sum(-1)
    prior_logit = torch.logit(torch.tensor(module.config.mask_prior, dtype=sample.masks.dtype))
    log_p_masks = bernoulli_log_prob(sample.masks, prior_logit).sum(-1)
    log_p_all = module.global_log_prior(sample)
    mask_term = log_p_masks - log_q_masks
    embedding_term = (log_p_all - log_p_masks) - (sample.log_q - log_q_masks)
    global_term = global_weight * (embedding_term + mask_weight * mask_term)  # (P, T_b)
    if l1_weight > 0:
        global_term = global_term - l1_weight * sample.shifts.abs().sum(-1)
    cells_with = (batch.dosage != 0).sum(0).to(global_term.dtype)
    shares = global_shares(cells_with, module.n_cells_per_perturbation[batch.perturbation_index])
    total = local.log_weight.sum(-1) + (global_term * shares).sum(-1)
    return -total.mean() / batch.counts.shape[0]


@contextlib.contextmanager
def scheduled_training(schedule: Schedule, temperature0: float, max_epochs: int,
                       **trace: Any) -> Iterator[None]:
    """Swap the package's TrainingPlan for the scheduled one for the duration of a fit."""
    original = training.TrainingPlan
    training.TrainingPlan = _make_plan_class(schedule, temperature0, max_epochs, **trace)
    try:
        yield
    finally:
        training.TrainingPlan = original


# --- mask recovery with rows aligned by perturbation name --------------------------------------
def true_masks_in_model_order(model: SAMSVAE, adata: Any) -> np.ndarray:
    """The simulation's true masks with rows reordered to the model's perturbation order.

    The model orders perturbations by sorted name ("P0", "P1", "P10", ...); the simulation stores
    them in numeric order ("P0", "P1", "P2", ...). Comparing the raw arrays mixes up rows.
    """
    simulation = adata.uns["simulation"]
    row = {str(name): i for i, name in enumerate(simulation["perturbations"])}
    order = [row[name] for name in model.design.perturbations]
    return np.asarray(simulation["masks"])[order]


# --- one run -------------------------------------------------------------------------------------
def run(settings: QuickstartSettings, schedule: Schedule, *, gumbel_temperature: float,
        embedding_prior_scale: float, n_particles: int, progress_bar: bool,
        encoder_input: str = "x_and_shift", train_seed: int | None = None,
        trace_every: int = 0, before_train: Any = None) -> dict[str, Any]:
    """The quickstart run (same data, split, model and evaluation), with optional schedules.

    ``trace_every`` > 0 records mask recovery every that many epochs in ``metrics["trace"]``;
    ``before_train(model, adata)`` is called on the fresh model (diagnostics).
    """
    s = settings
    start = time.perf_counter()
    adata = simulate(n_perturbations=s.n_perturbations, n_combinations=s.n_combinations,
                     n_genes=s.n_genes, n_latent=s.n_latent,
                     n_cells_per_perturbation=s.n_cells_per_perturbation,
                     n_cells_per_combination=s.n_cells_per_combination,
                     n_control_cells=s.n_control_cells, seed=s.seed)
    combos = list(adata.uns["simulation"]["combinations"])
    _, held_out = split_held_out_combinations(combos, s.held_out_fraction, s.seed)
    is_test = adata.obs["perturbation"].isin(held_out).to_numpy()
    train, test = adata[~is_test].copy(), adata[is_test].copy()

    SAMSVAE.setup_anndata(train, perturbation_key="perturbation", control="control")
    model = SAMSVAE(train, n_latent=s.model_latent, n_hidden=s.n_hidden, mask_prior=s.mask_prior,
                    guide=s.guide, gumbel_temperature=gumbel_temperature,  # type: ignore[arg-type]
                    embedding_prior_scale=embedding_prior_scale, n_particles=n_particles,
                    encoder_input=encoder_input)  # type: ignore[arg-type]
    if schedule.mask_logit_init is not None:
        with torch.no_grad():
            model.module.guide.mask_logits.fill_(math.log(schedule.mask_logit_init
                                                          / (1 - schedule.mask_logit_init)))
    if before_train is not None:
        before_train(model, adata)
    # The package's own guide learning rate (TrainConfig.global_lr) where it exists.
    global_lr = (schedule.global_lr if schedule.global_lr is not None
                 else getattr(s, "global_lr", None))
    train_kwargs = ({"global_lr": global_lr}
                    if "global_lr" in inspect.signature(model.train).parameters else {})
    trace: list[dict[str, float]] = []
    train_start = time.perf_counter()
    with scheduled_training(schedule, gumbel_temperature, s.max_epochs, trace=trace,
                            true_masks=true_masks_in_model_order(model, adata),
                            trace_every=trace_every):
        model.train(max_epochs=s.max_epochs, batch_size=getattr(s, "batch_size", 512), lr=s.lr,
                    seed=s.seed if train_seed is None else train_seed, progress_bar=progress_bar,
                    **train_kwargs)
    train_seconds = time.perf_counter() - train_start
    metrics = evaluate_on_simulation(model, adata, test, held_out, settings)
    metrics.pop("_ate")
    metrics.pop("settings")
    # evaluate_on_simulation compares mask rows in model order with rows in simulation order;
    # keep its numbers for reference and report the row-aligned ones as the mask metrics.
    for key in ("mask_precision", "mask_recall", "mask_f1", "mask_auroc"):
        if key in metrics:
            metrics[f"{key}_rows_unaligned"] = metrics.pop(key)
    probabilities = model.get_mask_probabilities().to_numpy()
    aligned_true = true_masks_in_model_order(model, adata)
    metrics.update(mask_recovery(probabilities > 0.5, aligned_true))
    if mask_auroc is not None:
        metrics["mask_auroc"] = mask_auroc(probabilities, aligned_true)
    history = model.history
    metrics["final_val_loss"] = float(history["val_loss"].iloc[-1])
    metrics["best_val_loss"] = float(history["val_loss"].min())
    probabilities = model.get_mask_probabilities().to_numpy()
    metrics["mask_probability_mean"] = float(probabilities.mean())
    metrics["mask_entries_undecided"] = int(((probabilities > 0.2) & (probabilities < 0.8)).sum())
    metrics["train_seconds"] = train_seconds
    metrics["wall_seconds"] = time.perf_counter() - start
    if trace:
        metrics["trace"] = trace
    return metrics


# --- provenance and reports ----------------------------------------------------------------------
def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None,
            "src_dirty": bool(git("status", "--porcelain", "--", "src"))}


def versions() -> dict[str, str]:
    import lightning

    return {"samsvae": samsvae.__version__ if hasattr(samsvae, "__version__")
            else _dist_version("samsvae"),
            "torch": torch.__version__, "lightning": lightning.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": str(torch.get_num_threads())}


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


ROWS = (
    ("heldout_combo_ate_pearson_r", "additive_baseline_ate_pearson_r",
     "ATE Pearson r, held-out combos"),
    ("heldout_combo_ate_pearson_r_top20", "additive_baseline_ate_pearson_r_top20",
     "ATE Pearson r, top-20 DE genes"),
    ("heldout_combo_ate_r2", "additive_baseline_ate_r2", "ATE R², held-out combos"),
    ("heldout_combo_ate_r2_top20", "additive_baseline_ate_r2_top20", "ATE R², top-20 DE genes"),
    ("mask_precision", None, "mask precision"),
    ("mask_recall", None, "mask recall"),
    ("mask_f1", None, "mask F1"),
    ("mask_active_estimated", "mask_active_true", "active mask entries (estimated; truth)"),
    ("mask_auroc", None, "mask AUROC of q(m) (threshold-free)"),
    ("mask_f1_rows_unaligned", None,
     "mask F1 as evaluate_on_simulation computes it (rows not aligned)"),
    ("heldout_iwelbo", None, "held-out IWELBO per cell (100 particles)"),
    ("best_val_loss", None, "best validation loss (negative ELBO per cell)"),
    ("best_epoch", None, "best-validation epoch"),
    ("train_seconds", None, "training wall time (s)"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def markdown(record: dict[str, Any]) -> str:
    m = record["metrics"]
    reference = record.get("reference_quickstart_default")
    ref = reference["metrics"] if reference else None
    header = "| metric | SAMS-VAE (this configuration) |"
    rule = "|---|---|"
    if ref is not None:
        header += " SAMS-VAE (quickstart defaults) |"
        rule += "---|"
    header += " additive baseline / truth |"
    rule += "---|"
    lines = [
        "# SAMS-VAE on the default quickstart simulation",
        "",
        "Simulation: `samsvae.datasets.simulate` defaults (50 singles, 30 combinations, K = 15, "
        "G = 100, NB counts), 25% of the combinations held out (seeded), as in `run_quickstart`.",
        "",
        f"Configuration `{record['label']}`; command: `{record['command']}`",
        "",
        header,
        rule,
    ]
    for key, other, name in ROWS:
        row = f"| {name} | {_fmt(m.get(key))} |"
        if ref is not None:
            row += f" {_fmt(ref.get(key))} |"
        row += f" {_fmt(m.get(other)) if other else ''} |"
        lines.append(row)
    lines += [
        "",
        "Targets (issue): ATE r >= 0.9 on held-out combinations; mask F1 >= 0.9 (goal).",
        "",
        "Mask metrics: q(m) > 0.5, Hungarian matching of latent dimensions, rows matched to the "
        "simulation by perturbation name. `evaluate_on_simulation` compares the model's rows "
        "(sorted names P0, P1, P10, ...) with the simulation's (P0, P1, P2, ...) without "
        "reordering; its number is shown for reference only.",
        "",
        f"Settings: `{json.dumps(record['settings'])}`",
        "",
        f"Seed {record['seed']}; git {record['git']['commit']} (src dirty: "
        f"{record['git']['src_dirty']}); versions `{json.dumps(record['versions'])}`.",
        "",
    ]
    return "\n".join(lines)


SWEEP_COLUMNS = (
    ("mask_precision", "P"), ("mask_recall", "R"), ("mask_f1", "F1"),
    ("mask_active_estimated", "active"), ("heldout_combo_ate_pearson_r", "ATE r"),
    ("additive_baseline_ate_pearson_r", "additive r"), ("heldout_iwelbo", "IWELBO"),
    ("best_epoch", "best ep"), ("wall_seconds", "wall s"),
)


def sweep_markdown(records: list[dict[str, Any]]) -> str:
    header = "| configuration | " + " | ".join(name for _, name in SWEEP_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(SWEEP_COLUMNS) + 1)]
    for record in records:
        m = record["metrics"]
        lines.append(f"| {record['label']} | "
                     + " | ".join(_fmt(m.get(key)) for key, _ in SWEEP_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


# --- command line --------------------------------------------------------------------------------
def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = QuickstartSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-epochs", type=int, default=d.max_epochs)
    p.add_argument("--guide", choices=("mean_field", "correlated"), default=d.guide)
    p.add_argument("--mask-prior", type=float, default=d.mask_prior)
    p.add_argument("--seed", type=int, default=d.seed,
                   help="Seed of the simulation, the held-out split, training and evaluation.")
    p.add_argument("--train-seed", type=int, default=None,
                   help="Seed of training only (initialisation, batches); default --seed.")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--n-hidden", type=int, default=d.n_hidden)
    p.add_argument("--n-particles", type=int, default=5)
    p.add_argument("--gumbel-temperature", type=float, default=1.0)
    p.add_argument("--embedding-prior-scale", type=float, default=1.0)
    p.add_argument("--encoder-input", choices=("x_and_shift", "x"), default="x_and_shift")
    p.add_argument("--global-lr", type=_optional_float, default=getattr(d, "global_lr", None),
                   help="Adam lr of the guide's q(M) q(E) parameters (default: the quickstart's; "
                        "'none': the same as --lr).")
    p.add_argument("--mask-lr", type=float, default=None,
                   help="Adam lr of the mask logits of q(M) (default: --global-lr, else --lr).")
    p.add_argument("--mask-logit-init", type=float, default=None,
                   help="Initial q(m=1) of every mask entry (package default 0.5).")
    p.add_argument("--temperature-final", type=float, default=None)
    p.add_argument("--anneal-epochs", type=int, default=0)
    p.add_argument("--kl-warmup-epochs", type=int, default=0)
    p.add_argument("--mask-kl-boost", type=float, default=1.0)
    p.add_argument("--harden-epoch", type=int, default=None)
    p.add_argument("--harden-logit", type=float, default=4.0)
    p.add_argument("--l1-shift", type=float, default=0.0,
                   help="Initial weight of the L1 penalty on e_t * m_t (nats per unit).")
    p.add_argument("--l1-epochs", type=int, default=0,
                   help="Epochs over which the L1 weight decays linearly to 0.")
    p.add_argument("--trace-every", type=int, default=0,
                   help="Record mask recovery every N epochs (in metrics['trace']).")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--label", default=None, help="Name of the configuration in reports.")
    p.add_argument("--output", type=Path, default=RESULTS / "recovery_simulation.json",
                   help="JSON path; the markdown table goes next to it with suffix .md.")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--compare-default", action="store_true",
                   help="Also run the quickstart defaults (same seed) and report them alongside.")
    p.add_argument("--collect", type=Path, default=None,
                   help="Only tabulate the JSON files in this folder (sorted by name) to stdout.")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.collect is not None:
        records = [json.loads(path.read_text()) for path in sorted(args.collect.glob("*.json"))]
        sys.stdout.write(sweep_markdown(records))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = dataclasses.replace(
        QuickstartSettings(), max_epochs=args.max_epochs, guide=args.guide,
        mask_prior=args.mask_prior, seed=args.seed, lr=args.lr, n_hidden=args.n_hidden,
        **({"global_lr": args.global_lr} if hasattr(QuickstartSettings(), "global_lr") else {}))
    schedule = Schedule(global_lr=args.global_lr, mask_lr=args.mask_lr,
                        mask_logit_init=args.mask_logit_init,
                        temperature_final=args.temperature_final,
                        anneal_epochs=args.anneal_epochs, kl_warmup_epochs=args.kl_warmup_epochs,
                        mask_kl_boost=args.mask_kl_boost, l1_shift=args.l1_shift,
                        l1_epochs=args.l1_epochs, harden_epoch=args.harden_epoch,
                        harden_logit=args.harden_logit)
    metrics = run(settings, schedule, gumbel_temperature=args.gumbel_temperature,
                  embedding_prior_scale=args.embedding_prior_scale,
                  n_particles=args.n_particles, progress_bar=args.progress,
                  trace_every=args.trace_every, encoder_input=args.encoder_input,
                  train_seed=args.train_seed)
    label = args.label or (f"{args.guide} e{args.max_epochs} prior{args.mask_prior:.3g} "
                           f"lr{args.lr:g} global_lr{args.global_lr}")
    record = {
        "label": label,
        "command": "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "metrics": metrics,
        "settings": {**dataclasses.asdict(settings), **dataclasses.asdict(schedule),
                     "gumbel_temperature": args.gumbel_temperature,
                     "embedding_prior_scale": args.embedding_prior_scale,
                     "n_particles": args.n_particles, "encoder_input": args.encoder_input,
                     "train_seed": args.seed if args.train_seed is None else args.train_seed},
        "seed": args.seed,
        "git": git_commit(),
        "versions": versions(),
    }
    if args.compare_default:
        default = QuickstartSettings()
        reference = run(dataclasses.replace(default, seed=args.seed), Schedule(),
                        gumbel_temperature=1.0, embedding_prior_scale=1.0, n_particles=5,
                        progress_bar=args.progress)
        record["reference_quickstart_default"] = {
            "settings": {**dataclasses.asdict(dataclasses.replace(default, seed=args.seed)),
                         **dataclasses.asdict(Schedule())},
            "metrics": reference}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(record))
    keys = ("mask_precision", "mask_recall", "mask_f1", "mask_active_estimated",
            "heldout_combo_ate_pearson_r", "additive_baseline_ate_pearson_r", "heldout_iwelbo",
            "best_epoch", "wall_seconds")
    print(label, json.dumps({k: metrics[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
