"""End-to-end workflows used by the CLI: the quickstart run on a simulated screen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samsvae.api import SAMSVAE, PerturbationModel
from samsvae.data import split_combinations
from samsvae.datasets import simulate
from samsvae.evaluate import (
    ate_metrics,
    data_average_treatment_effects,
    energy_distance,
    fit_effect_baselines,
    mask_auroc,
    mask_recovery,
)
from samsvae.evaluate.ate import transform
from samsvae.evaluate.report import write_html_report


@dataclass(frozen=True)
class QuickstartSettings:
    """Sizes and budget of the quickstart; the defaults run in a few minutes on 2 CPU cores."""

    n_perturbations: int = 50
    n_combinations: int = 30
    n_genes: int = 100
    n_latent: int = 15
    n_cells_per_perturbation: int = 200
    n_cells_per_combination: int = 200
    n_control_cells: int = 1000
    held_out_fraction: float = 0.25
    model_latent: int = 15
    n_hidden: int = 128
    mask_prior: float = 2 / 15
    guide: str = "mean_field"
    max_epochs: int = 60
    batch_size: int = 512
    lr: float = 1e-3
    global_lr: float | None = 3e-2
    ate_samples: int = 2500
    iwelbo_particles: int = 100
    seed: int = 0


@dataclass(frozen=True)
class SimulationTask:
    """A simulated screen split into training cells and held-out combinations."""

    adata: Any
    train: Any
    test: Any
    held_out: list[str]


def simulate_task(settings: QuickstartSettings) -> SimulationTask:
    """Simulate the screen of ``settings`` and hold out a seeded fraction of the combinations."""
    s = settings
    adata = simulate(
        n_perturbations=s.n_perturbations,
        n_combinations=s.n_combinations,
        n_genes=s.n_genes,
        n_latent=s.n_latent,
        n_cells_per_perturbation=s.n_cells_per_perturbation,
        n_cells_per_combination=s.n_cells_per_combination,
        n_control_cells=s.n_control_cells,
        seed=s.seed,
    )
    combos = list(adata.uns["simulation"]["combinations"])
    _, held_out = split_combinations(combos, held_out_fraction=s.held_out_fraction, seed=s.seed)
    is_test = adata.obs["perturbation"].isin(held_out).to_numpy()
    train, test = adata[~is_test].copy(), adata[is_test].copy()
    return SimulationTask(adata, train, test, held_out)


def train_on_task(
    model: PerturbationModel, settings: QuickstartSettings, *, progress_bar: bool
) -> None:
    """Train with the optimisation settings of ``settings``."""
    s = settings
    model.train(
        max_epochs=s.max_epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        global_lr=s.global_lr,
        seed=s.seed,
        progress_bar=progress_bar,
    )


def run_quickstart(
    out: str | Path, settings: QuickstartSettings, *, progress_bar: bool = True
) -> dict[str, Any]:
    """Simulate, hold out combinations, train SAMS-VAE, evaluate, write a run folder.

    Writes ``metrics.json``, ``model/``, ``mask_heatmap.png``, ``ate_scatter.png``,
    ``training_curves.png`` and ``report.html`` into ``out`` and returns the metrics.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings
    task = simulate_task(s)
    SAMSVAE.setup_anndata(task.train, perturbation_key="perturbation", control="control")
    model = SAMSVAE(
        task.train,
        n_latent=s.model_latent,
        n_hidden=s.n_hidden,
        mask_prior=s.mask_prior,
        guide=s.guide,  # type: ignore[arg-type]
    )
    train_on_task(model, s, progress_bar=progress_bar)
    model.save(out / "model", overwrite=True)
    return _evaluate_and_write(out, model, task, settings)


def evaluate_run(run_dir: str | Path) -> dict[str, Any]:
    """Re-evaluate a quickstart run folder: rebuild its task from the recorded settings, load the
    model, and rewrite ``metrics.json``, the figures and ``report.html``."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        msg = f"{run_dir} is not a run folder: metrics.json is missing (run samsvae quickstart)."
        raise FileNotFoundError(msg)
    recorded = json.loads(metrics_path.read_text()).get("settings", {})
    settings = QuickstartSettings(**recorded)
    task = simulate_task(settings)
    model = SAMSVAE.load(run_dir / "model", adata=task.train)
    return _evaluate_and_write(run_dir, model, task, settings)


def _evaluate_and_write(
    out: Path, model: PerturbationModel, task: SimulationTask, settings: QuickstartSettings
) -> dict[str, Any]:
    metrics = evaluate_on_simulation(model, task.adata, task.test, task.held_out, settings)
    ate = metrics.pop("_ate")
    (out / "metrics.json").write_text(json.dumps(_json_ready(metrics), indent=2))
    _write_figures(out, model, ate)
    write_html_report(
        out / "report.html",
        title="samsvae run report",
        metrics=_json_ready(metrics),
        figures={
            "held-out combination effects": out / "ate_scatter.png",
            "mask inclusion probabilities": out / "mask_heatmap.png",
            "training curves": out / "training_curves.png",
        },
    )
    return metrics


def evaluate_on_simulation(
    model: PerturbationModel,
    adata: Any,
    test: Any,
    held_out: list[str],
    settings: QuickstartSettings,
) -> dict[str, Any]:
    """Mask recovery, held-out IWELBO, held-out-combination ATE metrics (model and baselines).

    Baselines are fitted on the model's training cells; a metric that is undefined (Pearson r of
    the constant control-mean prediction) is NaN in the dict and null in ``metrics.json``.
    """
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    expression = adata.X
    observed = data_average_treatment_effects(expression, labels, held_out, "control")
    train = model.adata
    baselines = fit_effect_baselines(
        train.X, model.design.encode(train.obs["perturbation"].astype(str).to_numpy())
    ).predict(model.design.encode(held_out).toarray())
    predicted = model.average_treatment_effects(
        held_out, n_samples=settings.ate_samples, seed=settings.seed
    ).X
    model_ate = ate_metrics(predicted, observed)
    return {
        **_mask_metrics(model, adata),
        "heldout_iwelbo": model.iwelbo(test, n_particles=settings.iwelbo_particles),
        **{f"heldout_combo_{k}": v for k, v in model_ate.items()},
        **{
            f"{name}_baseline_{k}": v
            for name, effects in baselines.items()
            for k, v in ate_metrics(effects, observed).items()
        },
        **_energy_distances(model, adata, held_out, settings.seed),
        "n_heldout_combinations": len(held_out),
        "n_train_cells": int(model.adata.n_obs),
        "best_epoch": int(model.history["val_loss"].idxmin())
        if model.history is not None and "val_loss" in model.history
        else None,
        "settings": settings.__dict__,
        "_ate": (predicted, observed),
    }


def _mask_metrics(model: PerturbationModel, adata: Any) -> dict[str, Any]:
    """Mask recovery against the simulation's truth, for models that have masks."""
    if not model.has_masks:
        return {}
    probabilities = model.get_mask_probabilities().to_numpy()
    true_masks = simulated_masks_in_model_order(adata, model.design.perturbations)
    return {
        **mask_recovery(probabilities > 0.5, true_masks),
        "mask_auroc": mask_auroc(probabilities, true_masks),
    }


def _energy_distances(
    model: PerturbationModel, adata: Any, held_out: list[str], seed: int
) -> dict:
    """Mean energy distance to the observed cells of each held-out combination, in g(x) space:
    of cells generated by the model, and of control cells (the no-effect baseline)."""
    labels = adata.obs["perturbation"].astype(str).to_numpy()

    def transformed(matrix: Any) -> np.ndarray:
        dense = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        return transform(torch.from_numpy(dense.astype(np.float64)), "perturbseq").numpy()

    control = transformed(adata.X[labels == "control"])
    model_distances, control_distances = [], []
    for combination in held_out:
        observed = transformed(adata.X[labels == combination])
        generated = model.predict([combination], n_samples=len(observed), seed=seed)
        model_distances.append(energy_distance(transformed(generated.X), observed, seed=seed))
        control_distances.append(energy_distance(control, observed, seed=seed))
    return {
        "heldout_combo_energy_distance": float(np.mean(model_distances)),
        "control_baseline_energy_distance": float(np.mean(control_distances)),
    }


def _json_ready(value: Any) -> Any:
    """NaN -> None so that metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def simulated_masks_in_model_order(adata: Any, perturbations: tuple[str, ...]) -> np.ndarray:
    """True simulation masks, rows reordered to the model's (sorted) perturbation vocabulary."""
    simulation = adata.uns["simulation"]
    row = {str(name): i for i, name in enumerate(simulation["perturbations"])}
    return np.asarray(simulation["masks"])[[row[p] for p in perturbations]]


def _write_figures(out: Path, model: SAMSVAE, ate: tuple[np.ndarray, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from samsvae import pl

    for name, draw in (
        ("mask_heatmap", lambda ax: pl.mask_heatmap(model.get_mask_probabilities(), ax=ax)),
        ("ate_scatter", lambda ax: pl.ate_scatter(*ate, ax=ax, title="held-out combinations")),
        ("training_curves", lambda ax: pl.training_curves(model.history, ax=ax)),
    ):
        fig, ax = plt.subplots(figsize=(6, 5))
        draw(ax)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
