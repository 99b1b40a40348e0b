"""Real-screen scoreboard: every model at its defaults beside the non-learned baselines,
on the real screens and the realistic simulation, in one table.

Each model is built and trained with nothing but the data and a seed (``SAMSVAE(adata)``,
``model.train(seed=seed, progress_bar=False)``): sizes, learning rates, batch size and budget are
the ones the defaults choose (recorded per row). Test cells are held out from training; the models
split the rest 90/10 into training and validation. Datasets and tasks:

- papalexi (Papalexi 2021 THP-1, control 'non-targeting'): seen perturbations, held-out cells,
  a seeded 20% of each label's cells.
- gasperini (Gasperini 2019 K562 high MOI, '+'-joined guide groups, control 'none_of_listed',
  covariate 'batch'): (a) the single guide groups on 20% held-out cells, with the positive controls
  (10 TSS groups: how many rank their target gene first of the 366 by effect; the test cells' own
  count is the reference row); (b) held-out combinations: half (seeded) of the combination labels
  with at least 5 cells whose parts are single labels, all of their cells held out.
- mcfaline (McFaline-Figueroa 2023 GBM CRISPRi, control 'control', covariate 'cell_line'):
  (a) seen perturbations on 20% held-out cells, pooled over the lines and within each line
  (:func:`within_categories`); (b) held-out cell line L: train on the other two
  lines plus L's control cells, predict L's perturbed cells with ``covariates={"cell_line": L}``
  against the transfer baseline (the perturbation's mean data ATE in the other lines).
- simulation (``samsvae.datasets.simulate_realistic(seed=0)``): seen singles on 20% held-out
  cells and held-out combinations (half of its combination labels, seeded).

One training serves both tasks of a split: its test cells are the held-out 20% of every label
plus all cells of the held-out combinations. Scores: Pearson r (and R²) of the model's ATE
(perturbseq transform, at the data's depth) with the test cells' data ATE, over all genes and over
the 20 genes of largest observed |effect| per intervention; mean held-out IWELBO (100
particles) on the task's test cells; training seconds. Baselines are fitted on the training cells
(the per-label mean is their data ATE; the additive one sums the singles' training effects).
SVAEPlus cannot predict unseen combinations; its row for those says so. Rows of datasets not run
are kept from an earlier result file of the same name (``--fresh`` starts anew).
Writes ``benchmarks/results/{out-name}.{json,md}`` after each dataset.

    python benchmarks/science/real_screens.py [--datasets papalexi gasperini mcfaline simulation]
        [--models SAMSVAE CPAVAE ConditionalVAE SVAEPlus] [--seed 0]
        [--heldout-lines first] [--mask-refinement none] [--quick] [--out-name real_screens]
        [--fresh]

Gasperini's labels are guide groups and its genes Ensembl IDs, so the screen's own map of its
positive-control groups to their target genes (``uns["positive_control_pairs"]``) is written to
``uns["target_genes"]``, where SAMS-VAE's default ``target_genes="auto"`` reads it
(``--without-target-map`` leaves it out).

``--mask-refinement varimax`` trains SAMS-VAE (the other models as always) with the sparse mask
restart instead of as published and writes ``real_screens_mask_restart`` (unless
``--out-name`` is given).

``--quick`` (a smoke test: 2 epochs, 100 ATE particles, 10 IWELBO particles) writes
``real_screens_quick`` unless ``--out-name`` is given.

``--seeds 0 1 2`` repeats each dataset with those seeds (the seed draws the split as well as the
training) and writes ``real_screens_seeds`` (unless ``--out-name`` is given): per row the mean
and standard deviation over the seeds, and for each model in how many splits it scored at least
as high as the per-label mean. On a small screen the test cells' effects are so noisy that one
split can rank the models differently from the next.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

import samsvae
from samsvae.evaluate import ate_metrics, data_average_treatment_effects, fit_effect_baselines

sys.path.insert(0, str(Path(__file__).parent))
from gasperini_random_split import rank_summary, target_ranks
from real_data import RESULTS, current_commit, format_value, realistic_screen, save_results

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DATA = Path(__file__).resolve().parents[3] / "shared/data"


MODELS = {
    "SAMSVAE": samsvae.SAMSVAE,
    "CPAVAE": samsvae.CPAVAE,
    "ConditionalVAE": samsvae.ConditionalVAE,
    "SVAEPlus": samsvae.SVAEPlus,
}
#: library size of the model ATEs: "data" draws each particle's library size from the training
#: control cells'; ``None`` would fall back to their median (``module.reference_library_size``).
ATE_DEPTH: str | None = "data"
TEST_FRACTION = 0.2
MIN_COMBINATION_CELLS = 5


@dataclass
class Task:
    """One scored question: the effects of ``targets``, compared with ``observed``."""

    name: str
    test: ad.AnnData  # the cells whose held-out IWELBO is reported
    targets: list[str]
    observed: np.ndarray
    baselines: dict[str, np.ndarray]
    covariates: dict[str, str] | None = None
    extra: Callable[[np.ndarray], dict[str, float]] | None = None
    #: (covariate key, {category: weight per target}): effects are taken within each category
    #: and averaged with these weights (see :func:`within_categories`)
    strata: tuple[str, dict[str, np.ndarray]] | None = None


@dataclass
class Experiment:
    """One training set (already set up for the models) and the tasks scored after training."""

    name: str
    train: ad.AnnData
    tasks: list[Task] = field(default_factory=list)


# --- splits ---------------------------------------------------------------------------------


def stratified_test_mask(labels: np.ndarray, seed: int) -> np.ndarray:
    """A seeded :data:`TEST_FRACTION` of each label's cells (rounded), as a boolean mask."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        test[rng.choice(rows, round(TEST_FRACTION * len(rows)), replace=False)] = True
    return test


def held_out_combinations(labels: np.ndarray, control: str, seed: int) -> list[str]:
    """Half (seeded) of the combination labels with at least :data:`MIN_COMBINATION_CELLS`
    cells whose every part is a single label with that many cells."""
    counts = pd.Series(labels).value_counts()
    singles = {
        s
        for s, n in counts.items()
        if "+" not in s and s != control and n >= MIN_COMBINATION_CELLS
    }
    eligible = sorted(
        c
        for c, n in counts.items()
        if "+" in c and n >= MIN_COMBINATION_CELLS and set(c.split("+")) <= singles
    )
    chosen = np.random.default_rng(seed).choice(eligible, len(eligible) // 2, replace=False)
    return sorted(map(str, chosen))


def setup(adata: ad.AnnData, key: str, control: str, covariate: str | None) -> None:
    samsvae.SAMSVAE.setup_anndata(
        adata,
        perturbation_key=key,
        control=control,
        covariate_keys=None if covariate is None else [covariate],
    )


# --- baselines ------------------------------------------------------------------------------


def fitted_baselines(train: ad.AnnData) -> Callable[[list[str]], dict[str, np.ndarray]]:
    """The non-learned baselines fitted on ``train`` (set up, additive encoding), as a function
    of the interventions to predict."""
    design = samsvae.CPAVAE(train).design  # the additive vocabulary of the training labels
    labels = train.obs[design.perturbation_key].astype(str).to_numpy()
    fitted = fit_effect_baselines(train.X, design.encode(labels))
    return lambda targets: fitted.predict(design.encode(targets).toarray())


def named_baselines(effects: dict[str, np.ndarray], additive: str) -> dict[str, np.ndarray]:
    """Baseline effects under table names; ``additive`` names the additive one (on singles it is
    the per-label mean of the training cells)."""
    names = {
        "control_mean": "control mean (no effect)",
        "perturbed_mean": "perturbed mean",
        "additive": additive,
        "ridge": "ridge",
    }
    return {names[k]: v for k, v in effects.items()}


# --- tasks ----------------------------------------------------------------------------------


def random_split(
    adata: ad.AnnData,
    key: str,
    control: str,
    seed: int,
    *,
    covariate: str | None = None,
    combinations: bool = False,
) -> tuple[Experiment, list[str]]:
    """Seen singles on held-out cells and, with ``combinations``, held-out combinations."""
    labels = adata.obs[key].astype(str).to_numpy()
    held_out = held_out_combinations(labels, control, seed) if combinations else []
    is_test = stratified_test_mask(labels, seed) | np.isin(labels, held_out)
    train, test = adata[~is_test].copy(), adata[is_test].copy()
    setup(train, key, control, covariate)
    test_labels = labels[is_test]
    singles = sorted({s for s in test_labels if "+" not in s} - {control})
    baselines = fitted_baselines(train)
    seen_test = test[~np.isin(test_labels, held_out)].copy()
    experiment = Experiment("random split", train)
    experiment.tasks.append(
        Task(
            "seen perturbations, held-out cells",
            seen_test,
            singles,
            data_average_treatment_effects(test.X, test_labels, singles, control),
            named_baselines(baselines(singles), "per-label mean (training cells)"),
        )
    )
    if held_out:
        experiment.tasks.append(
            Task(
                "held-out combinations",
                test[np.isin(test_labels, held_out)].copy(),
                held_out,
                data_average_treatment_effects(test.X, test_labels, held_out, control),
                named_baselines(baselines(held_out), "additive (sum of training singles)"),
            )
        )
    return experiment, singles


def within_categories(
    train: ad.AnnData, test: ad.AnnData, key: str, control: str, covariate: str, targets: list[str]
) -> Task:
    """Seen perturbations scored within each category of ``covariate`` (McFaline's cell lines).

    A pooled data ATE (all of a label's cells against all control cells) also carries the
    differences between categories whenever a label's cells are spread over them unlike the
    controls'. Here the data ATE is taken in each category of the test cells and averaged with
    the label's own shares of test cells per category; the models' effects (at each category's
    covariates) and the baselines (fitted on each category's training cells) are averaged the
    same way.
    """
    labels, groups = (test.obs[k].astype(str).to_numpy() for k in (key, covariate))
    train_groups = train.obs[covariate].astype(str).to_numpy()
    categories = sorted(set(groups))
    weights = {
        c: np.array([np.mean(groups[labels == t] == c) for t in targets]) for c in categories
    }

    def averaged(per_category: Callable[[str], np.ndarray]) -> np.ndarray:
        return sum(weights[c][:, None] * per_category(c) for c in categories)

    def observed_in(c: str) -> np.ndarray:
        of = groups == c
        return data_average_treatment_effects(test.X[of], labels[of], targets, control)

    fitted = {c: fitted_baselines(train[train_groups == c].copy())(targets) for c in categories}
    baselines = {name: averaged(lambda c, n=name: fitted[c][n]) for name in fitted[categories[0]]}
    return Task(
        f"seen perturbations, held-out cells, within {covariate}",
        test,
        targets,
        averaged(observed_in),
        named_baselines(baselines, "per-label mean (training cells)"),
        strata=(covariate, weights),
    )


def heldout_line(adata: ad.AnnData, line: str, key: str, control: str) -> Experiment:
    """Train on the other lines and ``line``'s controls; predict ``line``'s perturbed cells."""
    labels = adata.obs[key].astype(str).to_numpy()
    lines = adata.obs["cell_line"].astype(str).to_numpy()
    is_test = (lines == line) & (labels != control)
    train = adata[~is_test].copy()
    setup(train, key, control, "cell_line")
    targets = sorted(set(labels[is_test]))

    def line_effects(name: str) -> np.ndarray:
        of = lines == name
        return data_average_treatment_effects(adata.X[of], labels[of], targets, control)

    transfer = np.mean([line_effects(o) for o in sorted(set(lines) - {line})], axis=0)
    task = Task(
        f"held-out cell line {line}",
        adata[is_test].copy(),
        targets,
        line_effects(line),
        {"transfer (mean effect in the other lines)": transfer},
        covariates={"cell_line": line},
    )
    return Experiment(f"held-out line {line}", train, [task])


# --- datasets -------------------------------------------------------------------------------


def papalexi(adata: ad.AnnData, args: argparse.Namespace) -> Iterator[Experiment]:
    yield random_split(adata, "perturbation", "non-targeting", args.seed)[0]


def gasperini(adata: ad.AnnData, args: argparse.Namespace) -> Iterator[Experiment]:
    experiment, singles = random_split(
        adata, "perturbations", "none_of_listed", args.seed, covariate="batch", combinations=True
    )
    pairs = {k: list(v) for k, v in adata.uns["positive_control_pairs"].items()}
    genes = list(adata.var_names)
    experiment.tasks[0].extra = lambda effects: rank_summary(
        target_ranks(effects, singles, genes, pairs)
    )
    yield experiment


def mcfaline(adata: ad.AnnData, args: argparse.Namespace) -> Iterator[Experiment]:
    lines = sorted(adata.obs["cell_line"].astype(str).unique())
    chosen = {"first": lines[:1], "all": lines}.get(args.heldout_lines[0], args.heldout_lines)
    if set(chosen) - set(lines):
        msg = f"--heldout-lines {chosen}: McFaline's lines are {lines}, 'first' or 'all'"
        raise SystemExit(msg)
    experiment, singles = random_split(
        adata, "perturbation", "control", args.seed, covariate="cell_line"
    )
    seen_test = experiment.tasks[0].test  # every seen label's held-out cells, controls too
    experiment.tasks.append(
        within_categories(
            experiment.train, seen_test, "perturbation", "control", "cell_line", singles
        )
    )
    yield experiment
    for line in chosen:
        yield heldout_line(adata, line, "perturbation", "control")


#: Cells per label of the large sample of the simulated screen whose effects are its true ones.
TRUTH_CELLS = 3000


def simulation(adata: ad.AnnData, args: argparse.Namespace) -> Iterator[Experiment]:
    """The realistic simulation's tasks, scored twice: against the test cells, as the real
    screens are, and against its true effects (the data ATE of :data:`TRUTH_CELLS` fresh cells
    per label of the same screen: the simulator's truth does not depend on the sample size)."""
    experiment = random_split(adata, "perturbation", "control", args.seed, combinations=True)[0]
    n = 200 if args.quick else TRUTH_CELLS
    large = samsvae.datasets.simulate_realistic(
        seed=0,
        sample=1,  # cells of their own, none shared with the screen the models learn from
        n_cells_per_perturbation=n,
        n_cells_per_combination=n,
        n_control_cells=4 * n,
    )
    labels = large.obs["perturbation"].astype(str).to_numpy()
    for task in list(experiment.tasks):
        truth = data_average_treatment_effects(large.X, labels, task.targets, "control")
        experiment.tasks.append(
            dataclasses.replace(task, name=f"{task.name}, true effects", observed=truth)
        )
    yield experiment


DATASETS = {
    "papalexi": (DATA / "papalexi2021/papalexi2021_thp1_lowmoi.h5ad", papalexi),
    "gasperini": (DATA / "gasperini2019/gasperini2019_k562_highmoi_subset.h5ad", gasperini),
    "mcfaline": (DATA / "mcfaline2023/mcfaline2023_gbm_crispri.h5ad", mcfaline),
    "simulation": (None, simulation),
}


def scoring_arguments(seed: int) -> argparse.Namespace:
    """The options a dataset's splits and the scoring read, as a default run has them: for
    scripts that score one setting on the scoreboard's splits."""
    return argparse.Namespace(heldout_lines=["first"], seed=seed, quick=False, ate_samples="auto")


def load(name: str, *, target_map: bool = True) -> ad.AnnData | None:
    path = DATASETS[name][0]
    if path is None:
        return realistic_screen()
    if not path.exists():
        print(f"[{name}] skipped: {path} is absent", flush=True)
        return None
    adata = ad.read_h5ad(path)
    if target_map and "positive_control_pairs" in adata.uns:  # Gasperini: group -> target gene
        pairs = adata.uns["positive_control_pairs"]
        groups, genes = (list(map(str, pairs[key])) for key in ("grna_group", "response_id"))
        adata.uns["target_genes"] = dict(zip(groups, genes, strict=True))
    return adata


# --- scoring --------------------------------------------------------------------------------


def model_effects(model: Any, task: Task, args: argparse.Namespace) -> ad.AnnData:
    """The model's ATE of the task's targets at the data's depth (see :data:`ATE_DEPTH`);
    within each category and averaged for a task with ``strata``."""
    depth = ATE_DEPTH if ATE_DEPTH is not None else float(model.module.reference_library_size)

    def effects(covariates: dict[str, str] | None) -> ad.AnnData:
        return model.average_treatment_effects(
            task.targets,
            library_size=depth,
            covariates=covariates,
            n_samples=args.ate_samples,
            seed=args.seed,
            progress_bar=False,
        )

    if task.strata is None:
        return effects(task.covariates)
    key, weights = task.strata
    parts = {c: effects({key: c}) for c in weights}
    result = next(iter(parts.values())).copy()
    result.X = sum(weights[c][:, None] * part.X for c, part in parts.items())
    result.uns["n_samples"] = sum(part.uns["n_samples"] for part in parts.values())
    return result


def scores(effects: np.ndarray, task: Task) -> dict[str, Any]:
    extra = task.extra(effects) if task.extra is not None else {}
    return {**ate_metrics(effects, task.observed), **extra, "n_targets": len(task.targets)}


def train_model(
    name: str, train: ad.AnnData, args: argparse.Namespace, cache_key: str
) -> tuple[Any, dict]:
    """A model at its defaults, trained; with the seconds it took and the settings chosen.

    With ``--cache DIR`` a model trained before under the same key (dataset, split, model,
    seed) is loaded from ``DIR/key`` instead, with the record of its training.
    """
    folder = args.cache / cache_key if args.cache is not None else None
    if folder is not None and (folder / "model.json").is_file():
        model = MODELS[name].load(folder, adata=train)
        record = folder / "training.json"
        settings = json.loads(record.read_text()) if record.is_file() else {}
        return model, settings | {"note": "model from --cache"}
    model = MODELS[name](train)
    options = {"max_epochs": 2} if args.quick else {}
    if name == "SAMSVAE" and args.mask_refinement != "none":
        options["mask_refinement"] = args.mask_refinement
    start = time.perf_counter()
    model.train(seed=args.seed, progress_bar=False, **options)
    settings = {
        "train_seconds": round(time.perf_counter() - start, 1),
        "n_latent": model.config.n_latent,
        "n_hidden": model.config.n_hidden,
        "epochs_run": len(model.history),
        **model.train_settings,
    }
    if folder is not None:
        model.save(folder, overwrite=True)
        (folder / "training.json").write_text(json.dumps(settings, indent=2, default=str))
    return model, settings


def model_row(model: Any, task: Task, args: argparse.Namespace) -> dict[str, Any]:
    unknown = model.design.unknown_singles(task.targets)
    if unknown:
        return {"note": f"cannot predict unseen labels ({len(unknown)} of them)"}
    iwelbo = model.iwelbo(
        task.test, n_particles=args.iwelbo_particles, seed=args.seed, progress_bar=False
    )
    effects = model_effects(model, task, args)
    return scores(effects.X, task) | {
        "heldout_iwelbo": iwelbo,
        "ate_estimator": f"{effects.uns['estimator']}, {effects.uns['n_samples']} particles",
    }


def experiment_rows(dataset: str, experiment: Experiment, args: argparse.Namespace) -> Iterator:
    """Rows of the data reference (when a task scores it), the models and the baselines."""

    def row(task: Task, method: str, kind: str, values: dict) -> dict:
        out = {"dataset": dataset, "task": task.name, "method": method, "kind": kind, **values}
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))
        return out

    for task in experiment.tasks:
        if task.extra is not None:
            yield row(task, "data (test cells)", "reference", task.extra(task.observed))
    for name in args.models:
        key = f"{dataset}/{experiment.name.replace(' ', '_')}/{name}-seed{args.seed}"
        model, settings = train_model(name, experiment.train, args, key)
        for task in experiment.tasks:
            yield row(task, name, "model", model_row(model, task, args) | settings)
    for task in experiment.tasks:
        for name, effects in task.baselines.items():
            yield row(task, f"{name} baseline", "baseline", scores(effects, task))


def run_dataset(name: str, args: argparse.Namespace) -> tuple[list[dict], dict] | None:
    adata = load(name, target_map=not args.without_target_map)
    if adata is None:
        return None
    start, rows, experiments = time.perf_counter(), [], []
    for experiment in DATASETS[name][1](adata, args):
        print(f"[{name}] {experiment.name}: {experiment.train.n_obs} training cells", flush=True)
        order = [task.name for task in experiment.tasks]
        rows += sorted(
            experiment_rows(name, experiment, args), key=lambda r: order.index(r["task"])
        )
        experiments.append(describe(experiment))
    meta = {
        "data": str(DATASETS[name][0] or "simulate_realistic(seed=0)"),
        "n_cells": adata.n_obs,
        "experiments": experiments,
        "seconds": round(time.perf_counter() - start, 1),
        "seed": args.seed,
        "quick": args.quick,
        "commit": current_commit(),
    }
    return rows, meta


def describe(experiment: Experiment) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "n_train": experiment.train.n_obs,
        "tasks": [
            {"name": t.name, "n_test_cells": t.test.n_obs, "targets": t.targets}
            for t in experiment.tasks
        ],
    }


# --- output ---------------------------------------------------------------------------------

COLUMNS = [
    ("dataset", "dataset"),
    ("task", "task"),
    ("method", "model / baseline"),
    ("n_targets", "targets"),
    ("ate_pearson_r", "ATE r"),
    ("ate_pearson_r_top20", "ATE r top-20"),
    ("ate_r2", "ATE R²"),
    ("heldout_iwelbo", "held-out IWELBO"),
    ("positive_controls_ranked_first", "PC targets ranked 1st (of 10)"),
    ("train_seconds", "train s"),
    ("n_latent", "n_latent"),
    ("n_hidden", "n_hidden"),
    ("batch_size", "batch"),
    ("lr", "lr"),
    ("max_epochs", "epochs"),
    ("ate_estimator", "effects"),
    ("note", "note"),
]


#: columns not shown with format_value's three decimals
FORMATS = {"train_seconds": "{:.1f}", "lr": "{:g}", "positive_controls_ranked_first": "{:.0f}"}


def cell(value: object, key: str) -> str:
    if key in FORMATS and isinstance(value, float) and not np.isnan(value):
        return FORMATS[key].format(value)
    return format_value(value)


def table(record: dict[str, Any]) -> str:
    runs = "; ".join(
        f"{name}: seed {m['seed']}, commit {m['commit'][:8]}, {m['seconds']:.0f} s"
        + (" (QUICK: 2 epochs)" if m["quick"] else "")
        for name, m in sorted(record["datasets"].items(), key=lambda d: list(DATASETS).index(d[0]))
    )
    depth = (
        "the data's depth (`library_size=\"data\"`: each particle's library size is drawn "
        "from the training control cells')"
        if ATE_DEPTH == "data"
        else "the training cells' median library size"
    )
    restart = record.get("mask_refinement", "none")
    refinement = f' but SAMS-VAE with `mask_refinement="{restart}"`' if restart != "none" else ""
    caption = (
        "Real-screen scoreboard: every model at its defaults (`Model(adata)`, "
        f"`model.train(seed=seed)`){refinement}, beside the non-learned baselines fitted on "
        "the training cells. "
        f"Model ATEs at {depth}, perturbseq transform, by the estimator in the 'effects' "
        "column (expected: counts integrated out, particles until every standard error is "
        "at most 0.02, the default; sampled: the paper's estimator), "
        "against the test cells' data ATE; top-20 = the 20 genes of largest observed |effect| "
        f"per intervention; IWELBO with {record['iwelbo_particles']} particles on the task's "
        f"test cells. Runs: {runs}. Last command: `{record['command']}`."
    )
    header = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [caption, "", header, "|---" * len(COLUMNS) + "|"]
    for row in record["rows"]:
        lines.append("| " + " | ".join(cell(row.get(k), k) for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def earlier(out_name: str, fresh: bool) -> dict[str, Any]:
    path = RESULTS / f"{out_name}.json"
    if fresh or not path.exists():
        return {"rows": [], "datasets": {}}
    record = json.loads(path.read_text())
    for row in record["rows"]:  # rows from before the effects recorded their estimator
        if row["kind"] == "model" and "ate_estimator" not in row and "ate_pearson_r" in row:
            row["ate_estimator"] = f"sampled, {record['ate_samples']} particles"
    return record


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--without-target-map",
        action="store_true",
        help="leave Gasperini's map of guide groups to target genes out of uns['target_genes']",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="mean over these")
    parser.add_argument(
        "--heldout-lines",
        nargs="+",
        default=["first"],
        help="McFaline lines to hold out: 'first' (sorted), 'all' or line names",
    )
    parser.add_argument(
        "--mask-refinement",
        choices=["none", "varimax"],
        default="none",
        help="SAMS-VAE's train(mask_refinement=): 'varimax' is the sparse mask restart",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 epochs, few samples")
    parser.add_argument("--out-name", default=None)
    parser.add_argument("--fresh", action="store_true", help="drop rows of earlier runs")
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep trained models here and reuse them"
    )
    args = parser.parse_args()
    default_name = "real_screens_seeds" if args.seeds else "real_screens"
    if args.mask_refinement != "none":
        default_name = "real_screens_mask_restart"
    args.out_name = args.out_name or ("real_screens_quick" if args.quick else default_name)
    # the effects' default estimator and budget (n_samples="auto"), as a user gets them
    args.ate_samples, args.iwelbo_particles = (100, 10) if args.quick else ("auto", 100)
    return args


# --- over several seeds ---------------------------------------------------------------------

PER_LABEL = "per-label mean (training cells) baseline"
SPREAD_METRICS = ("ate_pearson_r", "ate_pearson_r_top20", "heldout_iwelbo")


def over_seeds(rows: list[dict]) -> list[dict]:
    """One row per (dataset, task, method): mean and sd of :data:`SPREAD_METRICS` over the
    seeds, and for a model the number of seeds where its ATE r is at least the per-label mean's."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["task"], row["method"]), []).append(row)
    reference = {
        (r["dataset"], r["task"], r["seed"]): r.get("ate_pearson_r")
        for r in rows
        if r["method"] == PER_LABEL
    }
    summary = []
    for (dataset, task, method), group in groups.items():
        out = {"dataset": dataset, "task": task, "method": method, "seeds": len(group)}
        for key in SPREAD_METRICS:
            values = [r[key] for r in group if isinstance(r.get(key), float)]
            values = [v for v in values if not np.isnan(v)]
            if values:
                out[key] = float(np.mean(values))
                out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        baseline = [(r, reference.get((dataset, task, r["seed"]))) for r in group]
        if group[0]["kind"] == "model" and all(b is not None for _, b in baseline):
            wins = [r.get("ate_pearson_r", -np.inf) >= b for r, b in baseline]
            out["at_least_per_label"] = f"{sum(wins)} of {len(wins)}"
        summary.append(out)
    return summary


def seeds_table(record: dict[str, Any]) -> str:
    """The markdown table of :func:`over_seeds`."""

    def spread(row: dict, key: str) -> str:
        if key not in row:
            return ""
        sd = row.get(f"{key}_sd")
        return format_value(row[key]) + ("" if sd is None else f" ± {sd:.3f}")

    caption = (
        "Real-screen scoreboard over seeds: every model at its defaults, each seed drawing its "
        "own split (20% of each label's cells held out) and training; mean ± sd over the seeds "
        "of the ATE r (all genes, top-20) against the test cells and of the held-out IWELBO, as "
        "in `real_screens.md`; 'splits ≥ per-label mean': in how many seeds the model's ATE r "
        f"is at least the per-label mean's. Seeds {record['seeds']}. Command: "
        f"`{record['command']}`."
    )
    header = "| dataset | task | model / baseline | ATE r | ATE r top-20 | held-out IWELBO "
    header += "| splits ≥ per-label mean |"
    lines = [caption, "", header, "|---" * 7 + "|"]
    for row in record["summary"]:
        cells = [row["dataset"], row["task"], row["method"]]
        cells += [spread(row, key) for key in SPREAD_METRICS]
        cells.append(row.get("at_least_per_label", ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main_over_seeds(args: argparse.Namespace) -> None:
    record = {
        "command": "python benchmarks/science/real_screens.py " + " ".join(sys.argv[1:]),
        "seeds": args.seeds,
        "commit": current_commit(),
        "rows": [],
    }
    for name in args.datasets:
        for seed in args.seeds:
            args.seed = seed
            result = run_dataset(name, args)
            if result is None:
                break
            record["rows"] += [row | {"seed": seed} for row in result[0]]
            record["summary"] = over_seeds(record["rows"])
            save_results(args.out_name, record, seeds_table(record))


def main() -> None:
    args = parse_args()
    if args.seeds:
        main_over_seeds(args)
        return
    record = earlier(args.out_name, args.fresh)
    record |= {
        "command": "python benchmarks/science/real_screens.py " + " ".join(sys.argv[1:]),
        "ate_library_size": ATE_DEPTH or "median of the training cells",
        "ate_samples": args.ate_samples,
        "iwelbo_particles": args.iwelbo_particles,
        "mask_refinement": args.mask_refinement,
        "torch": torch.__version__,
    }
    for name in args.datasets:
        result = run_dataset(name, args)
        if result is None:
            continue
        rows, meta = result
        kept = [r for r in record["rows"] if r["dataset"] != name]
        record["rows"] = sorted(kept + rows, key=lambda r: list(DATASETS).index(r["dataset"]))
        record["datasets"][name] = meta
        save_results(args.out_name, record, table(record))


if __name__ == "__main__":
    main()
