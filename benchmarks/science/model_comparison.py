"""Train every latent model on one simulated screen with held-out combinations and compare.

Uses the quickstart simulation and split (`samsvae.workflows.simulate_task`) and its training
settings; writes `benchmarks/results/model_comparison.{json,md}`: held-out IWELBO, ATE Pearson r
and R² on the held-out combinations (all genes and top-20) and minus the best non-learned
baseline, coverage of the held-out effects by 90% posterior intervals, ATE r on the
perturbations seen in training, mask F1 / AUROC where a model has masks, the latents' mean
correlation coefficient with the simulation's, and energy distance of generated to observed
cells, beside the non-learned baselines.

Every model is built on all cells, so that with the "unique" encoding its vocabulary holds the
held-out combinations as labels of their own (never trained: the paper's setting), and is trained
on the same cells (`task.train_rows`, split 90/10 with the seed). With the "additive" encoding
this is the quickstart's training exactly.

    python benchmarks/science/model_comparison.py [--max-epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import samsvae

sys.path.insert(0, str(Path(__file__).parent))
from real_data import format_value, markdown_table

from samsvae.workflows import (
    QuickstartSettings,
    evaluate_on_simulation,
    simulate_task,
    train_on_task,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
BASELINES = ("additive", "ridge", "perturbed_mean", "control_mean")


def build_models(additive, unique, s: QuickstartSettings) -> dict:
    shared = {"n_latent": s.model_latent, "n_hidden": s.n_hidden}
    sams = {"mask_prior": s.mask_prior, **shared}
    return {
        "SAMS-VAE (mean-field)": lambda: samsvae.SAMSVAE(additive, guide="mean_field", **sams),
        "SAMS-VAE (correlated)": lambda: samsvae.SAMSVAE(additive, guide="correlated", **sams),
        "SAMS-VAE (mean-field, Beta-Bernoulli c=10)": lambda: samsvae.SAMSVAE(
            additive, guide="mean_field", mask_prior_concentration=10.0, **sams
        ),
        "CPA-VAE": lambda: samsvae.CPAVAE(additive, **shared),
        "conditional VAE": lambda: samsvae.ConditionalVAE(additive, **shared),
        "SAMS-VAE (mean-field), unique": lambda: samsvae.SAMSVAE(
            unique, guide="mean_field", **sams
        ),
        "CPA-VAE, unique": lambda: samsvae.CPAVAE(unique, **shared),
        "conditional VAE, unique": lambda: samsvae.ConditionalVAE(unique, **shared),
        "SVAE+ (unique by construction)": lambda: samsvae.SVAEPlus(unique, **shared),
    }


def markdown(rows: dict[str, dict], command: str, commit: str) -> str:
    columns = [
        ("heldout_iwelbo", "held-out IWELBO"),
        ("ate_pearson_r", "ATE r"),
        ("ate_pearson_r_top20", "ATE r top-20"),
        ("ate_r2", "ATE R²"),
        ("ate_pearson_r_minus_best_baseline", "ATE r − best baseline"),
        ("interval90_coverage", "90% interval coverage"),
        ("seen_ate_pearson_r", "ATE r, seen"),
        ("mask_f1", "mask F1"),
        ("mask_auroc", "mask AUROC"),
        ("latent_mcc", "latent MCC"),
        ("energy_distance", "energy distance"),
        ("train_seconds", "train s"),
    ]
    caption = (
        f"Command: `{command}` (commit {commit[:8]}). Held-out combinations unless marked "
        "'seen' (singles and training combinations)."
    )
    return markdown_table(caption, rows, columns)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-epochs", type=int, default=QuickstartSettings().max_epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only models whose name contains one")
    args = parser.parse_args()
    settings = dataclasses.replace(
        QuickstartSettings(), max_epochs=args.max_epochs, seed=args.seed
    )
    task = simulate_task(settings)
    additive, unique = task.adata.copy(), task.adata.copy()
    samsvae.SAMSVAE.setup_anndata(additive)
    samsvae.SAMSVAE.setup_anndata(unique, dosage_encoding="unique")
    rows: dict[str, dict] = {}
    metrics: dict[str, dict] = {}
    models = build_models(additive, unique, settings)
    for name, build in models.items():
        if args.only and not any(part in name for part in args.only):
            continue
        torch.manual_seed(settings.seed)
        model = build()
        start = time.perf_counter()
        train_on_task(model, settings, progress_bar=False, rows=task.train_rows)
        seconds = time.perf_counter() - start
        result = evaluate_on_simulation(model, task.adata, task.test, task.held_out, settings)
        result.pop("_ate"), result.pop("settings")
        metrics[name] = result | {"train_seconds": seconds}
        rows[name] = {k.removeprefix("heldout_combo_"): v for k, v in metrics[name].items()}
        print(
            name,
            json.dumps(
                {
                    k: format_value(v)
                    for k, v in rows[name].items()
                    if k in ("ate_pearson_r", "mask_f1", "heldout_iwelbo")
                }
            ),
            flush=True,
        )
    first = next(iter(metrics.values()))
    for baseline in BASELINES:
        prefix = f"heldout_combo_{baseline}_baseline_"
        rows[f"{baseline} baseline"] = {
            k.removeprefix(prefix): v for k, v in first.items() if k.startswith(prefix)
        } | {"seen_ate_pearson_r": first.get(f"seen_{baseline}_baseline_ate_pearson_r")}
    # The control mean predicts no effect; its cells are the observed control cells.
    rows["control_mean baseline"]["energy_distance"] = first["control_baseline_energy_distance"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    command = "python benchmarks/science/model_comparison.py" + (
        f" --max-epochs {args.max_epochs}"
        if args.max_epochs != QuickstartSettings().max_epochs
        else ""
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "commit": commit,
        "settings": dataclasses.asdict(settings),
        "metrics": metrics,
        "torch": torch.__version__,
    }
    (RESULTS / "model_comparison.json").write_text(
        json.dumps(record, indent=2, default=lambda v: None)
    )
    table = markdown(rows, command, commit)
    (RESULTS / "model_comparison.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
