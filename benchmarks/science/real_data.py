"""Shared steps of the real-data benchmarks: a seeded random test split, training and scoring a
model against the test cells' observed effects, the non-learned baselines, and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samsvae.evaluate import ate_metrics, fit_effect_baselines

if TYPE_CHECKING:
    import anndata as ad


def random_test_split(adata: ad.AnnData, seed: int) -> tuple[ad.AnnData, ad.AnnData]:
    """A seeded 80/20 cell split (train+validation, test); the models split the 80 into 80/20,
    so 64/16/20 overall."""
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    n_test = round(0.2 * adata.n_obs)
    return adata[np.sort(order[n_test:])].copy(), adata[np.sort(order[:n_test])].copy()


def train_and_score(
    model: Any,
    test: ad.AnnData,
    targets: list[str],
    observed: np.ndarray,
    *,
    max_epochs: int,
    seed: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Train ``model``; held-out IWELBO and ATE agreement at l = 1e4 (the paper's setting) and at
    the training cells' median library size (that of the observed effects). Returns the metrics
    and the effects at data depth (targets x genes)."""
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, lr=1e-3, global_lr=3e-2, seed=seed, progress_bar=False)
    seconds = time.perf_counter() - start
    predicted = model.average_treatment_effects(targets, seed=seed).X
    depth = float(model.module.reference_library_size)
    at_depth = model.average_treatment_effects(targets, seed=seed, library_size=depth).X
    row = {
        "heldout_iwelbo": model.iwelbo(test, n_particles=100),
        **ate_metrics(predicted, observed),
        **{f"{k}_at_data_depth": v for k, v in ate_metrics(at_depth, observed).items()},
        "train_seconds": seconds,
    }
    return row, at_depth


def baseline_rows(
    train: ad.AnnData, design: Any, label_key: str, targets: list[str], observed: np.ndarray
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics and effects of the non-learned baselines fitted on the training cells (already at
    data depth, so both metric columns agree)."""
    labels = train.obs[label_key].astype(str).to_numpy()
    effects = fit_effect_baselines(train.X, design.encode(labels)).predict(
        design.encode(targets).toarray()
    )
    rows = {}
    for name, values in effects.items():
        metrics = ate_metrics(values, observed)
        rows[f"{name} baseline"] = metrics | {f"{k}_at_data_depth": v for k, v in metrics.items()}
    return rows, effects


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks/results"


def parse_args(description: str, data: Path, max_epochs: int) -> argparse.Namespace:
    """--data, --max-epochs and --seed, with the benchmark's defaults."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--max-epochs", type=int, default=max_epochs)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def realistic_screen(cells_per_label: int = 100, seed: int = 0) -> ad.AnnData:
    """``samsvae.datasets.simulate_realistic(seed)`` with ``cells_per_label`` cells per
    perturbation and combination and 8 times as many controls (its own 100 and 800 by default):
    the same screen, the same truth, only more or fewer cells."""
    import samsvae

    return samsvae.datasets.simulate_realistic(
        seed=seed,
        n_cells_per_perturbation=cells_per_label,
        n_cells_per_combination=cells_per_label,
        n_control_cells=8 * cells_per_label,
    )


def save_results(name: str, record: dict[str, Any], table: str) -> None:
    """Write ``benchmarks/results/{name}.json`` and ``.md`` and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=lambda v: None))
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


def current_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def format_value(value: object) -> str:
    """Floats to three decimals, missing values and NaN to an empty cell, the rest as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(
    caption: str, rows: dict[str, dict[str, Any]], columns: list[tuple[str, str]]
) -> str:
    """``caption``, then one row per entry of ``rows`` with the ``columns`` (key, header)."""
    lines = [
        caption,
        "",
        "| model | " + " | ".join(label for _, label in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, row in rows.items():
        cells = " | ".join(format_value(row.get(k)) for k, _ in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


ATE_COLUMNS = [
    ("heldout_iwelbo", "held-out IWELBO"),
    ("ate_pearson_r", "ATE r (l = 1e4)"),
    ("ate_pearson_r_top20", "ATE r top-20 (l = 1e4)"),
    ("ate_pearson_r_at_data_depth", "ATE r (l = data median)"),
    ("ate_pearson_r_top20_at_data_depth", "ATE r top-20 (l = data median)"),
    ("ate_r2_at_data_depth", "ATE R² (l = data median)"),
]
