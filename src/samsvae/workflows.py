"""End-to-end workflows used by the CLI: the quickstart run on a simulated screen."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samsvae.api import CPAVAE, SAMSVAE, ConditionalVAE, PerturbationModel, SVAEPlus
from samsvae.data import split_combinations
from samsvae.data.design import PerturbationDesign, vocabulary_from_labels
from samsvae.data.splits import train_validation_split
from samsvae.datasets import simulate
from samsvae.evaluate import (
    ate_metrics,
    data_average_treatment_effects,
    energy_distance,
    fit_effect_baselines,
    interval_coverage,
    mask_auroc,
    mask_recovery,
    mean_correlation_coefficient,
    relative_to_best_baseline,
)
from samsvae.evaluate.ate import transform_cells
from samsvae.evaluate.metrics import top_genes_mask
from samsvae.evaluate.report import ReportSection, write_html_report
from samsvae.inference.mask_refinement import refinement_epochs

MODEL_CLASSES = {cls.__name__: cls for cls in (SAMSVAE, CPAVAE, ConditionalVAE, SVAEPlus)}


@dataclass(frozen=True)
class QuickstartSettings:
    """Sizes and budget of the quickstart; the defaults run in a few minutes on 2 CPU cores.

    The training settings are not the ones ``SAMSVAE(adata)`` and ``model.train()`` would choose
    for this screen (those make about 20,000 steps): a larger batch and 90 epochs keep the run
    short, and the sparse mask restart (``mask_refinement="varimax"``) is what the quickstart
    demonstrates.
    """

    n_perturbations: int = 50
    n_combinations: int = 30
    n_genes: int = 100
    n_latent: int = 15
    n_cells_per_perturbation: int = 200
    n_cells_per_combination: int = 200
    n_control_cells: int = 1000
    mask_probability: float = 2 / 15
    effect_mean: float = 5.0
    library_size: float = 2000.0
    held_out_fraction: float = 0.25
    model_latent: int = 15
    n_hidden: int = 128
    mask_prior: float = 2 / 15
    guide: str = "mean_field"
    max_epochs: int = 90  # 60 to fit, 30 to refine the masks (train(mask_refinement=))
    batch_size: int = 512
    lr: float = 1e-3
    global_lr: float | None = 3e-2
    # Sparse masks: what the quickstart shows. Not the training default, since it can cost
    # prediction on real-like screens (docs/results.md).
    mask_refinement: str = "varimax"
    ate_samples: int = 2500
    ate_estimator: str = "expected"
    iwelbo_particles: int = 100
    seed: int = 0


@dataclass(frozen=True)
class SimulationTask:
    """A simulated screen split into training cells and held-out combinations.

    ``train_rows`` are the positions in ``adata`` of the cells outside the held-out
    combinations; ``train`` and ``test`` are copies of those cells and of the rest.
    """

    adata: Any
    train: Any
    test: Any
    held_out: list[str]
    train_rows: np.ndarray


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
        mask_probability=s.mask_probability,
        effect_mean=s.effect_mean,
        library_size=s.library_size,
        seed=s.seed,
    )
    combos = list(adata.uns["simulation"]["combinations"])
    _, held_out = split_combinations(combos, held_out_fraction=s.held_out_fraction, seed=s.seed)
    is_test = adata.obs["perturbation"].isin(held_out).to_numpy()
    train, test = adata[~is_test].copy(), adata[is_test].copy()
    return SimulationTask(adata, train, test, held_out, np.flatnonzero(~is_test))


def train_on_task(
    model: PerturbationModel,
    settings: QuickstartSettings,
    *,
    progress_bar: bool,
    rows: np.ndarray | None = None,
    seed: int | None = None,
) -> None:
    """Train with the optimisation settings of ``settings``.

    ``seed``: the training seed (default: the settings' seed, which also seeds the simulation).
    ``rows``: positions in ``model.adata`` of the cells to learn from (default: all), split
    90/10 into training and validation with the settings' seed, exactly as ``train_size=0.9``
    splits a model built on those cells alone. A model built on every cell of the screen (so
    that its vocabulary holds the held-out labels, as the "unique" encoding needs) is trained
    on ``task.train_rows`` this way.
    """
    s = settings
    split = {}
    if rows is not None:
        train, validation = train_validation_split(len(rows), train_size=0.9, seed=s.seed)
        split = {"train_indices": rows[train], "validation_indices": rows[validation]}
    model.train(
        max_epochs=s.max_epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        global_lr=s.global_lr,
        seed=s.seed if seed is None else seed,
        progress_bar=progress_bar,
        # A tiny budget (a smoke run) has no room for the restart: train it as published.
        mask_refinement=s.mask_refinement if refinement_epochs(s.max_epochs) else "none",
        **split,
    )


def run_quickstart(
    out: str | Path, settings: QuickstartSettings, *, progress_bar: bool = True
) -> dict[str, Any]:
    """Simulate, hold out combinations, train SAMS-VAE, evaluate, write a run folder.

    Writes ``metrics.json``, ``model/``, ``mask_heatmap.png``, ``ate_scatter.png``,
    ``ate_scatter_top20.png``, ``training_curves.png``, the interpretation figures and
    ``report.html`` into ``out`` and returns the metrics.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings
    task = simulate_task(s)
    model = quickstart_model(task, s)
    train_on_task(model, s, progress_bar=progress_bar)
    model.save(out / "model", overwrite=True)
    return _evaluate_and_write(out, model, task, settings)


def quickstart_model(task: SimulationTask, settings: QuickstartSettings) -> SAMSVAE:
    """SAMS-VAE on the task's training cells, built as ``settings`` say (untrained)."""
    SAMSVAE.setup_anndata(task.train, perturbation_key="perturbation", control="control")
    return SAMSVAE(
        task.train,
        n_latent=settings.model_latent,
        n_hidden=settings.n_hidden,
        mask_prior=settings.mask_prior,
        guide=settings.guide,  # type: ignore[arg-type]
    )


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
    model_class = json.loads((run_dir / "model" / "model.json").read_text()).get("model_class")
    cls = MODEL_CLASSES.get(str(model_class), SAMSVAE)  # an unknown name: SAMSVAE.load refuses
    model = cls.load(run_dir / "model", adata=task.train)
    return _evaluate_and_write(run_dir, model, task, settings)


def _evaluate_and_write(
    out: Path, model: PerturbationModel, task: SimulationTask, settings: QuickstartSettings
) -> dict[str, Any]:
    metrics = evaluate_on_simulation(model, task.adata, task.test, task.held_out, settings)
    ate = metrics.pop("_ate")
    (out / "metrics.json").write_text(json.dumps(_json_ready(metrics), indent=2))
    _write_figures(out, model, ate)
    sections = (
        [] if not model.has_masks else [_interpretation(out, model, task.held_out, settings)]
    )
    write_html_report(
        out / "report.html",
        title="samsvae run report",
        summary=run_summary(model, metrics, settings),
        metrics=_json_ready(metrics),
        figures={
            "held-out combination effects": out / "ate_scatter.png",
            "held-out combination effects, the 20 genes of largest observed effect per "
            "combination": out / "ate_scatter_top20.png",
            "mask inclusion probabilities": out / "mask_heatmap.png",
            "training curves": out / "training_curves.png",
        },
        sections=sections,
    )
    return metrics


def run_summary(
    model: PerturbationModel, metrics: dict[str, Any], settings: QuickstartSettings
) -> str:
    """The report's opening paragraph: what was trained on what, and how good it is against the
    best non-learned baseline, in plain words."""
    s = settings
    r = metrics["heldout_combo_ate_pearson_r"]
    best = metrics["heldout_combo_ate_pearson_r_best_baseline"]  # the baseline's name
    best_r = r - metrics["heldout_combo_ate_pearson_r_minus_best_baseline"]
    text = (
        f"{type(model).__name__} with {model.config.n_latent} latent dimensions was trained for "
        f"{s.max_epochs} epochs on {metrics['n_train_cells']:,} cells of a simulated screen: "
        f"{s.n_perturbations} single perturbations and {s.n_combinations} two-gene combinations, "
        f"of which {metrics['n_heldout_combinations']} were held out. On those held-out "
        f"combinations its treatment effects correlate with the observed ones at r = {r:.3f}, "
        f"against {best_r:.3f} for the best non-learned baseline ({best})."
    )
    if "mask_f1" in metrics:
        text += (
            f" Its masks switch on {metrics['mask_active_estimated']} latent mechanisms across "
            f"the perturbations where the simulation has {metrics['mask_active_true']} "
            f"(F1 = {metrics['mask_f1']:.3f} after matching dimensions)."
        )
    return text


def evaluate_on_simulation(
    model: PerturbationModel,
    adata: Any,
    test: Any,
    held_out: list[str],
    settings: QuickstartSettings,
) -> dict[str, Any]:
    """Mask and latent recovery, held-out IWELBO, ATE metrics per split, interval coverage.

    Splits: ``heldout_combo_*`` for the held-out combinations, ``seen_*`` for every other
    perturbed label (singles and training combinations; their data effects come from training
    cells). Baselines are fitted on the training cells with the additive encoding whatever the
    model's, and each model ATE metric is also given minus the best baseline's. A metric that
    is undefined (Pearson r of the constant control-mean prediction) is NaN here and null in
    ``metrics.json``.
    """
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    is_train = ~np.isin(labels, held_out)
    seen = sorted({label for label in labels[is_train] if label != "control"})
    baselines = _fit_baselines(adata[is_train])
    splits: dict[str, Any] = {}
    for split, interventions in (("heldout_combo", held_out), ("seen", seen)):
        observed = data_average_treatment_effects(adata.X, labels, interventions, "control")
        predicted = model.average_treatment_effects(
            interventions,
            n_samples=settings.ate_samples,
            estimator=settings.ate_estimator,  # type: ignore[arg-type]
            seed=settings.seed,
        ).X
        model_ate = ate_metrics(predicted, observed)
        baseline_ate = {
            name: ate_metrics(effects, observed)
            for name, effects in baselines(interventions).items()
        }
        splits |= {f"{split}_{k}": v for k, v in model_ate.items()}
        splits |= {
            f"{split}_{k}": v
            for k, v in relative_to_best_baseline(model_ate, baseline_ate).items()
        }
        splits |= {
            f"{split}_{name}_baseline_{k}": v
            for name, metrics in baseline_ate.items()
            for k, v in metrics.items()
        }
        if split == "heldout_combo":
            splits["_ate"] = (predicted, observed)
            splits |= _interval_coverage(model, interventions, observed, settings.seed)
    return {
        **mask_metrics(model, adata),
        "latent_mcc": mean_correlation_coefficient(
            model.get_latent_representation(adata, seed=settings.seed), adata.obsm["z_basal"]
        ),
        "heldout_iwelbo": model.iwelbo(test, n_particles=settings.iwelbo_particles),
        **splits,
        **_energy_distances(model, adata, held_out, settings.seed),
        "n_heldout_combinations": len(held_out),
        "n_train_cells": int(is_train.sum()),
        "best_epoch": int(model.history["val_loss"].idxmin())
        if model.history is not None and "val_loss" in model.history
        else None,
        "settings": settings.__dict__,
    }


def _fit_baselines(train: Any) -> Any:
    """Baselines fitted on ``train`` cells with the additive encoding; returns a predictor of
    the ATE of a list of labels under every baseline."""
    labels = train.obs["perturbation"].astype(str).to_numpy()
    design = PerturbationDesign(
        perturbations=vocabulary_from_labels(labels, "control", "+", "additive"),
        genes=tuple(map(str, train.var_names)),
        control="control",
    )
    fitted = fit_effect_baselines(train.X, design.encode(labels))
    return lambda interventions: fitted.predict(design.encode(interventions).toarray())


def _interval_coverage(
    model: PerturbationModel, interventions: list[str], observed: np.ndarray, seed: int
) -> dict[str, float]:
    """Coverage of the observed effects by the model's 90% posterior intervals, all genes and
    the top-20 genes by |observed effect| per intervention."""
    intervals = model.treatment_effect_intervals(interventions, level=0.9, seed=seed)
    lower, upper = intervals.layers["lower"], intervals.layers["upper"]
    top = top_genes_mask(observed, 20)
    everything = interval_coverage(lower, upper, observed)
    top_genes = interval_coverage(lower[top], upper[top], observed[top])
    return {
        "heldout_combo_interval90_coverage": everything["coverage"],
        "heldout_combo_interval90_mean_width": everything["mean_width"],
        "heldout_combo_interval90_coverage_top20": top_genes["coverage"],
    }


def mask_metrics(model: PerturbationModel, adata: Any) -> dict[str, Any]:
    """Mask recovery against the simulation's truth, for models that have masks.

    Only single perturbations have a true mask; a "unique" model's combination rows are left out.
    """
    if not model.has_masks:
        return {}
    singles = set(map(str, adata.uns["simulation"]["perturbations"]))
    probabilities = model.get_mask_probabilities()
    probabilities = probabilities.loc[[p for p in probabilities.index if p in singles]]
    true_masks = simulated_masks_in_model_order(adata, tuple(probabilities.index))
    probabilities = probabilities.to_numpy()
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
        return transform_cells(matrix, "perturbseq")

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


def _save_figure(
    path: Path, draw: Any, figsize: tuple[float, float] = (6, 5), ncols: int = 1
) -> Path:
    """Draw on a new figure with ``ncols`` Axes (``draw`` gets one Axes, or the array of them),
    save it as PNG at ``path`` and close it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=ncols == 1)
    draw(axes if ncols == 1 else axes[0])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_figures(
    out: Path, model: PerturbationModel, ate: tuple[np.ndarray, np.ndarray]
) -> None:
    from samsvae import pl

    for name, draw in (
        ("mask_heatmap", lambda ax: pl.mask_heatmap(model.get_mask_probabilities(), ax=ax)),
        ("ate_scatter", lambda ax: pl.ate_scatter(*ate, ax=ax, title="held-out combinations")),
        (
            "ate_scatter_top20",
            lambda ax: pl.ate_scatter(
                *_top_genes(*ate), ax=ax, title="held-out combinations, top-20 genes each"
            ),
        ),
        ("training_curves", lambda ax: pl.training_curves(model.history, ax=ax)),
    ):
        _save_figure(out / f"{name}.png", draw)


def _top_genes(predicted: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The entries of the 20 genes with the largest |observed effect| of every intervention."""
    top = top_genes_mask(observed, 20)
    return predicted[top], observed[top]


def _interpretation(
    out: Path, model: PerturbationModel, held_out: list[str], settings: QuickstartSettings
) -> ReportSection:
    """Similarity, clusters, clustered masks, latent programs' top genes and the genetic
    interactions of the held-out combinations, as a report section (figures written to ``out``)."""
    from samsvae import pl

    seed = settings.seed
    similarity = model.get_perturbation_similarity(seed=seed)
    n_clusters = min(len(similarity), max(2, len(similarity) // 6))
    clusters = model.get_perturbation_clusters(n_clusters=n_clusters, seed=seed)
    order = list(clusters.index)
    masks = model.get_mask_probabilities()
    # The latent dimensions used by the most perturbations, and their top genes.
    programs = list(masks.sum(axis=0).sort_values(ascending=False).index[:4])
    effects = model.get_latent_gene_effects(n_top=8)

    def bars(axes: Any) -> None:
        for ax, latent in zip(axes, programs, strict=False):
            pl.latent_program_bars(effects, latent, n_top=8, ax=ax)

    figures = {
        "perturbation similarity (cosine of mean latent shifts), in cluster order": _save_figure(
            out / "similarity_heatmap.png",
            lambda ax: pl.similarity_heatmap(similarity, order=order, ax=ax),
            (6, 5.5),
        ),
        "mask inclusion probabilities, perturbations in cluster order": _save_figure(
            out / "mask_heatmap_clustered.png",
            lambda ax: pl.mask_heatmap(masks, order=order, ax=ax),
        ),
        "top genes of the latent programs used by the most perturbations": _save_figure(
            out / "latent_programs.png", bars, (3.6 * len(programs), 3.4), ncols=len(programs)
        ),
    }
    members = (
        clusters.reset_index(names="perturbations")
        .groupby("cluster", sort=False)["perturbations"]
        .agg(", ".join)
    )
    tables = {"perturbation clusters": members.reset_index()}
    if held_out:
        scores = model.genetic_interactions(held_out, n_samples=30, seed=seed)
        tables["genetic interactions of the held-out combinations"] = _interaction_summary(scores)
    text = (
        f"Perturbations clustered ({n_clusters} clusters, average linkage on 1 - cosine "
        "similarity of their mean latent shifts); latent programs ranked by the summed mask "
        "probability over perturbations."
    )
    return ReportSection("Interpretation", text, figures, tables)


def _interaction_summary(scores: Any) -> Any:
    """One row per combination: mean |GI| over genes, the share of genes whose 90% interval
    excludes 0, and the gene with the largest |GI| with its score."""
    scores = scores.assign(
        magnitude=scores["score"].abs(),
        excludes_zero=(scores["lower"] > 0) | (scores["upper"] < 0),
    )
    grouped = scores.groupby("combination", sort=False)
    top = scores.loc[grouped["magnitude"].idxmax()].set_index("combination")
    return (
        grouped.agg(mean_abs_score=("magnitude", "mean"), share_nonzero=("excludes_zero", "mean"))
        .join(top[["gene", "score"]].rename(columns={"gene": "top_gene", "score": "top_score"}))
        .reset_index()
    )
