"""Where SAMS-VAE's effects on the realistic simulation fall short of its true effects, by kind
of perturbation.

The realistic simulation (``samsvae.datasets.simulate_realistic(seed=0)``) has three kinds of
perturbation: ``null`` (no effect), ``target`` (only its target gene changes) and ``program``
(its target gene and a latent shift). On the scoreboard's first split (seed 0; seen singles,
true effects from 3,000 fresh cells per label), for each setting given, this reports per kind:
the ATE r against the true effects (``program`` also off its target gene), the sd of the
effects off the target gene (model, truth, per-label mean of the training cells: the truth's
is its own sampling noise for ``null`` and ``target``), the least-squares slope of the model's
effects on the true ones, the mean number of mask entries with q(m) > 0.5 and the mean norm of
E[e ⊙ m] per perturbation; and the pooled ATE r over all kinds (the scoreboard's row), beside
the per-label mean's and the model's with the null and target-only perturbations' effects off
their target gene set to 0.

    python benchmarks/science/simulation_by_kind.py '{}' '{"model": {"mask_prior": 0.001}}'

A variant's ``"globals_only_epochs": N`` then trains the per-perturbation variables alone for N
more epochs, the networks frozen.

Writes ``benchmarks/results/simulation_by_kind.{json,md}``. ``--cells-per-label N`` draws the
same screen (same truth) with N cells per perturbation and combination and 8 N controls instead
of 100 and 800, and writes ``simulation_by_kind_{N}_cells``: whether more cells of the same
screen close the gap to the true effects.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import real_screens
from real_data import current_commit, format_value, realistic_screen, save_results

import samsvae

KINDS = ("null", "target", "program")
TASK = "seen perturbations, held-out cells, true effects"


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def clean_nulls(task, kind_of: dict, genes: list[str], effects: np.ndarray) -> np.ndarray:
    """The model's effects with those of the null and target-only perturbations set to 0 off
    their target gene: what the pooled r would be if they carried no spurious shift."""
    cleaned = effects.copy()
    for i, t in enumerate(task.targets):
        if kind_of.get(t) != "program":
            on_target = cleaned[i, genes.index(t)]
            cleaned[i] = 0.0
            cleaned[i, genes.index(t)] = on_target
    return cleaned


def by_kind(model, task, kind_of: dict, genes: list[str], effects: np.ndarray) -> dict:
    observed, per_label = task.observed, task.baselines["per-label mean (training cells)"]
    posterior = model.get_global_posterior(n_samples=200)
    out = {
        "pooled_r": correlation(effects, observed),
        "per_label_r": correlation(per_label, observed),
        "pooled_r_clean_nulls": correlation(clean_nulls(task, kind_of, genes, effects), observed),
    }
    for kind in KINDS:
        rows = [i for i, t in enumerate(task.targets) if kind_of.get(t) == kind]
        names = [task.targets[i] for i in rows]
        off_target = np.ones((len(rows), len(genes)), dtype=bool)
        off_target[np.arange(len(rows)), [genes.index(t) for t in names]] = False
        model_k, true_k = effects[rows], observed[rows]
        masks = (
            posterior.loc[names, "mask_probability"]
            .groupby(level=0)
            .apply(lambda p: float((p > 0.5).sum()))
        )
        shift = posterior.loc[names, "shift_mean"].pow(2).groupby(level=0).sum().pow(0.5)
        out[kind] = {
            "n": len(rows),
            "r": correlation(model_k, true_k) if kind != "null" else None,
            "r_off_target": correlation(model_k[off_target], true_k[off_target])
            if kind == "program"
            else None,
            "sd_off_target": float(model_k[off_target].std()),
            "true_sd_off_target": float(true_k[off_target].std()),
            "per_label_sd_off_target": float(per_label[rows][off_target].std()),
            "slope": float((model_k * true_k).sum() / (true_k * true_k).sum()),
            "masks_on": float(masks.mean()),
            "shift_norm": float(shift.mean()),
        }
    return out


def train_globals_only(model: samsvae.SAMSVAE, epochs: int) -> None:
    """Continue training the per-perturbation variables (masks, shifts, target effects) alone,
    with the networks frozen at their best-validation state."""
    for name, parameter in model.module.named_parameters():
        parameter.requires_grad_(name.startswith(("guide.", "target_effects.")))
    model.train(max_epochs=epochs, seed=0, progress_bar=False)


def table(record: dict) -> str:
    caption = (
        "Realistic simulation, seen singles against their true effects, by kind of perturbation "
        "(`benchmarks/science/simulation_by_kind.py`): ATE r; sd of the effects off the target "
        "gene (model / truth / per-label mean); slope of the model's effects on the true ones; "
        "mask entries with q(m) > 0.5 and norm of E[e ⊙ m], per perturbation (means); pooled r "
        "of the per-label mean of the training cells in brackets, then the model's with the "
        "null and target-only perturbations' effects off their target gene set to 0. "
        f"{record['cells_per_label']} cells per perturbation. Command: "
        f"`{record['command']}`."
    )
    header = "| setting | pooled r | kind | n | r | r off target | sd off target | slope | "
    header += "masks on | shift norm |"
    lines = [caption, "", header, "|---" * 10 + "|"]

    for run in record["runs"]:
        for kind in KINDS:
            k = run[kind]
            sds = " / ".join(
                f"{k[key]:.3f}"
                for key in ("sd_off_target", "true_sd_off_target", "per_label_sd_off_target")
            )
            pooled = f"{format_value(run['pooled_r'])} ({format_value(run['per_label_r'])}; "
            pooled += f"{format_value(run.get('pooled_r_clean_nulls'))})"
            cells = [f"`{json.dumps(run['variant'])}`", pooled, kind, str(k["n"])]
            cells += [
                format_value(k["r"]),
                format_value(k["r_off_target"]),
                sds,
                format_value(k["slope"]),
            ]
            cells += [f"{k['masks_on']:.2f}", f"{k['shift_norm']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "variants", nargs="+", type=json.loads, help="JSON: model, train, globals_only_epochs"
    )
    parser.add_argument("--cells-per-label", type=int, default=100)
    parser.add_argument("--out-name", default=None, help="results file name")
    options = parser.parse_args()
    variants, n = options.variants, options.cells_per_label
    args = real_screens.scoring_arguments(0)
    adata = realistic_screen(n)
    truth = adata.uns["simulation"]
    kind_of = dict(zip(truth["target_genes"], truth["kinds"], strict=True))
    experiment = next(real_screens.simulation(adata, args))
    task = next(t for t in experiment.tasks if t.name == TASK)
    name = options.out_name or (
        "simulation_by_kind" if n == 100 else f"simulation_by_kind_{n}_cells"
    )
    record = {
        "command": "python benchmarks/science/simulation_by_kind.py "
        + " ".join(f"'{json.dumps(v)}'" for v in variants)
        + ("" if n == 100 else f" --cells-per-label {n}")
        + ("" if options.out_name is None else f" --out-name {options.out_name}"),
        "cells_per_label": n,
        "commit": current_commit(),
        "runs": [],
    }
    for variant in variants:
        model = samsvae.SAMSVAE(experiment.train, **variant.get("model", {}))
        model.train(seed=0, progress_bar=False, **variant.get("train", {}))
        if "globals_only_epochs" in variant:
            train_globals_only(model, variant["globals_only_epochs"])
        effects = real_screens.model_effects(model, task, args).X
        genes = list(adata.var_names)
        record["runs"].append({"variant": variant} | by_kind(model, task, kind_of, genes, effects))
        save_results(name, record, table(record))


if __name__ == "__main__":
    main()
