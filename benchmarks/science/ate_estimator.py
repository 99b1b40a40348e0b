"""The ATE estimator that integrates the counts out against the paper's sampled one.

For a trained model and a set of interventions, both estimators run with the same number of
particles (the paper's 2,500) at the data's depth (``library_size="data"``). The table reports,
per model and split:

- agreement: the mean difference of the two estimates (bias) and, over every (intervention,
  gene), the difference in units of its standard error (z = difference / sqrt(se_expected^2 +
  se_sampled^2)): its root mean square (1 when the two agree within Monte-Carlo error) and the
  share with |z| > 3;
- precision: the median standard error of each, and the ratio of the sampled estimator's
  variance to the expected one's at equal time (the number of times more particles the sampled
  estimator needs, each counted at its own cost);
- the reported metrics of each estimate against the observed effects (ATE r, top-20 r).

Models: the quickstart's (``samsvae quickstart --out DIR``, then ``--quickstart DIR``) and
SAMS-VAE at its defaults trained on real screens from ``../shared/data`` with the scoreboard's
split (``real_screens.py``); ``--cache DIR`` keeps those models between runs.

    python benchmarks/science/ate_estimator.py --quickstart /tmp/qs --datasets mcfaline papalexi
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import samsvae
from samsvae.evaluate import ate_metrics, data_average_treatment_effects
from samsvae.workflows import QuickstartSettings, simulate_task

sys.path.insert(0, str(Path(__file__).parent))
import real_screens
from real_data import current_commit, format_value, save_results

ESTIMATORS = ("expected", "sampled")
#: seeds over which each estimator's metrics are given as a range
SEEDS = 5
#: particles per estimator when measuring the approximation's bias (20 seen perturbations)
BIAS_SAMPLES = 20_000


def estimate(model: Any, targets: list[str], estimator: str, n_samples: int, **kwargs: Any):
    start = time.perf_counter()
    result = model.average_treatment_effects(
        targets,
        estimator=estimator,
        n_samples=n_samples,
        library_size="data",
        progress_bar=False,
        **kwargs,
    )
    return result, time.perf_counter() - start


def compare(
    model: Any, targets: list[str], observed: np.ndarray, n_samples: int, **kwargs: Any
) -> dict[str, Any]:
    """Both estimators with ``n_samples`` particles: agreement, precision, metrics.

    Agreement and precision come from seed 0; the metrics from seeds 0 to SEEDS - 1, whose
    range is the metric's Monte-Carlo spread. Effects whose sampled standard error is 0 (no
    particle drew a count of that gene) have no z and are counted apart.
    """
    runs = {
        name: [
            estimate(model, targets, name, n_samples, seed=seed, **kwargs) for seed in range(SEEDS)
        ]
        for name in ESTIMATORS
    }
    (expected, t_expected), (sampled, t_sampled) = runs["expected"][0], runs["sampled"][0]
    se_e, se_s = expected.layers["standard_error"], sampled.layers["standard_error"]
    difference = expected.X - sampled.X
    scored = se_s > 0
    z = difference[scored] / np.sqrt(se_e[scored] ** 2 + se_s[scored] ** 2)
    variance_ratio = float(np.median(se_s**2) / np.median(se_e**2))
    row: dict[str, Any] = {
        "n_interventions": len(targets),
        "n_samples": n_samples,
        "bias": float(difference.mean()),
        "mean_abs_difference": float(np.abs(difference).mean()),
        "rms_z": float(np.sqrt((z**2).mean())),
        "share_abs_z_over_3": float((np.abs(z) > 3).mean()),
        "share_without_z": float(1 - scored.mean()),
        "median_se_expected": float(np.median(se_e)),
        "median_se_sampled": float(np.median(se_s)),
        "seconds_expected": t_expected,
        "seconds_sampled": t_sampled,
        "variance_ratio_equal_particles": variance_ratio,
        "variance_ratio_equal_time": variance_ratio * t_sampled / t_expected,
    }
    for name, results in runs.items():
        metrics = [ate_metrics(result.X, observed) for result, _ in results]
        for key, short in (("ate_pearson_r", "r"), ("ate_pearson_r_top20", "r_top20")):
            values = [m[key] for m in metrics]
            row[f"{short}_{name}"] = values[0]
            row[f"{short}_{name}_range"] = f"{min(values):.3f}-{max(values):.3f}"
    return row


def approximation_bias(model: Any, targets: list[str], n_samples: int) -> dict[str, Any]:
    """The shift that replacing each cell's total count by its library size causes: both
    estimators with common random numbers and ``n_samples`` particles, at the data's depth and
    at 1e4. Mean difference, its standard error, and its slope against the effect's size."""
    row: dict[str, Any] = {"n_samples": n_samples, "n_interventions": len(targets)}
    for depth in ("data", 1e4):
        both = [
            model.average_treatment_effects(
                targets,
                estimator=name,
                n_samples=n_samples,
                share_basal=True,
                library_size=depth,
                progress_bar=False,
            )
            for name in ESTIMATORS
        ]
        difference = both[0].X - both[1].X
        combined = np.sqrt(sum(b.layers["standard_error"] ** 2 for b in both))
        slope = np.polyfit(both[1].X.ravel(), difference.ravel(), 1)[0]
        row[f"depth_{depth}"] = {
            "bias": float(difference.mean()),
            "bias_standard_error": float(combined.mean() / np.sqrt(difference.size)),
            "slope": float(slope),
        }
    return row


def quickstart_rows(run_dir: Path, n_samples: int) -> tuple[list[dict[str, Any]], dict]:
    recorded = json.loads((run_dir / "metrics.json").read_text())["settings"]
    settings = QuickstartSettings(**recorded)
    task = simulate_task(settings)
    model = samsvae.SAMSVAE.load(run_dir / "model", adata=task.train)
    labels = task.adata.obs["perturbation"].astype(str).to_numpy()
    seen = sorted(set(labels[~np.isin(labels, task.held_out)]) - {"control"})
    rows = []
    for split, targets in (("held-out combinations", task.held_out), ("seen", seen)):
        observed = data_average_treatment_effects(task.adata.X, labels, targets, "control")
        row = compare(model, targets, observed, n_samples)
        rows.append({"model": "quickstart (simulation)", "split": split, **row})
    return rows, approximation_bias(model, seen[:20], BIAS_SAMPLES)


def dataset_rows(name: str, n_samples: int, cache: Path | None) -> list[dict[str, Any]]:
    adata = real_screens.load(name)
    if adata is None:
        return []
    args = argparse.Namespace(seed=0, heldout_lines=["first"], quick=False)
    experiment = next(iter(real_screens.DATASETS[name][1](adata, args)))
    path = cache / name if cache is not None else None
    if path is not None and (path / "model.json").is_file():
        model = samsvae.SAMSVAE.load(path, adata=experiment.train)
    else:
        model = samsvae.SAMSVAE(experiment.train)
        model.train(seed=0, progress_bar=False)
        if path is not None:
            model.save(path, overwrite=True)
    task = experiment.tasks[0]  # seen perturbations, held-out cells
    row = compare(model, task.targets, task.observed, n_samples, covariates=task.covariates)
    return [{"model": f"{name} (SAMS-VAE defaults)", "split": task.name, **row}]


COLUMNS = [
    ("model", "model"),
    ("split", "split"),
    ("bias", "bias"),
    ("rms_z", "rms z"),
    ("share_abs_z_over_3", "share abs(z) > 3"),
    ("median_se_expected", "median SE, expected"),
    ("median_se_sampled", "median SE, sampled"),
    ("variance_ratio_equal_time", "variance ratio, equal time"),
    ("r_expected_range", "ATE r, expected (5 seeds)"),
    ("r_sampled_range", "ATE r, sampled (5 seeds)"),
    ("r_top20_expected_range", "top-20 r, expected"),
    ("r_top20_sampled_range", "top-20 r, sampled"),
]


def table(record: dict[str, Any]) -> str:
    lines = [
        f"ATE estimators at the data's depth, {record['n_samples']} particles each: `expected` "
        "(counts integrated out, the default) against `sampled` (the paper's). z = difference "
        "/ combined standard error (over the effects whose sampled standard error is not 0); "
        "variance ratio = sampled / expected variance (median over effects) times their time "
        "ratio: how many times the sampled estimator's time gives the same precision. ATE r "
        "against the observed effects, lowest-highest over seeds 0-4 (the rest from seed 0).",
        "",
        "| " + " | ".join(header for _, header in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in record["rows"]:
        lines.append("| " + " | ".join(format_value(row.get(k)) for k, _ in COLUMNS) + " |")
    bias = record.get("approximation_bias_quickstart")
    if bias:
        parts = [
            f"{depth[6:]}: {b['bias']:.4f} (standard error {b['bias_standard_error']:.4f}, "
            f"slope against the effect {b['slope']:.4f})"
            for depth, b in bias.items()
            if depth.startswith("depth_")
        ]
        lines += [
            "",
            f"Bias of the approximation on the quickstart model ({bias['n_interventions']} seen "
            f"perturbations, {bias['n_samples']} particles per estimator, common random "
            "numbers), mean of expected - sampled at each depth: " + "; ".join(parts) + ".",
        ]
    lines += ["", f"Command: `{record['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quickstart", type=Path, help="a samsvae quickstart run folder")
    parser.add_argument("--datasets", nargs="*", default=["mcfaline"])
    parser.add_argument("--n-samples", type=int, default=2500)
    parser.add_argument("--cache", type=Path, default=None, help="keep trained models here")
    parser.add_argument("--out-name", default="ate_estimator")
    args = parser.parse_args()
    rows, bias = (
        quickstart_rows(args.quickstart, args.n_samples) if args.quickstart else ([], None)
    )
    for name in args.datasets:
        rows += dataset_rows(name, args.n_samples, args.cache)
    record = {
        "command": "python benchmarks/science/ate_estimator.py " + " ".join(sys.argv[1:]),
        "n_samples": args.n_samples,
        "rows": rows,
        "approximation_bias_quickstart": bias,
        "commit": current_commit(),
        "torch": torch.__version__,
    }
    save_results(args.out_name, record, table(record))


if __name__ == "__main__":
    main()
