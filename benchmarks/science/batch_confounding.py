"""Does a batch covariate remove a batch effect confounded with the perturbations? (simulation)

Simulates a screen (12 single perturbations, 50 genes, K = 6) in two batches: batch 1 adds a
per-gene offset ~ N(0, 2^2) to the log expression; controls sit 95% in batch 0 and each
perturbation's cells 95% in a preferred batch (``batch_confounding=0.9``), so about half the
perturbations are confounded with the batch. The reference effects are the data ATE of the same
screen simulated with batches assigned at random (``batch_confounding=0``). SAMS-VAE is trained
on the confounded screen with and without ``covariate_keys=["batch"]``; reported: the Pearson r
of each model's ATE (and of the confounded data's own ATE) with the reference, per seed.
``tests/integration/test_covariates.py`` runs :func:`run` for seed 0 and asserts on it. Writes
``benchmarks/results/batch_confounding.{json,md}``.

    python benchmarks/science/batch_confounding.py --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import samsvae
from samsvae.evaluate.ate import data_average_treatment_effects

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks/results"
SETTINGS = {
    "n_perturbations": 12,
    "n_combinations": 0,
    "n_genes": 50,
    "n_latent": 6,
    "n_cells_per_perturbation": 150,
    "n_control_cells": 600,
    "mask_probability": 0.3,
    "n_batches": 2,
    "batch_effect": 2.0,
}


def run(seed: int) -> dict[str, float]:
    confounded = samsvae.datasets.simulate(batch_confounding=0.9, seed=seed, **SETTINGS)
    balanced = samsvae.datasets.simulate(batch_confounding=0.0, seed=seed, **SETTINGS)
    names = [f"P{t}" for t in range(SETTINGS["n_perturbations"])]

    def data_ate(adata):
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        return data_average_treatment_effects(adata.X, labels, names, "control")

    reference = data_ate(balanced)
    row = {"confounded data ATE": _r(data_ate(confounded), reference)}
    for label, keys in (("SAMS-VAE, no covariate", None), ("SAMS-VAE + batch", ["batch"])):
        adata = confounded.copy()
        samsvae.SAMSVAE.setup_anndata(adata, covariate_keys=keys)
        model = samsvae.SAMSVAE(adata, n_latent=6, n_hidden=64, mask_prior=0.3, guide="mean_field")
        model.train(max_epochs=100, lr=1e-3, global_lr=3e-2, progress_bar=False)
        row[label] = _r(model.average_treatment_effects(names, n_samples=1000).X, reference)
    return row


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {seed: run(seed) for seed in args.seeds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch_confounding.json").write_text(json.dumps(rows, indent=1) + "\n")
    labels = list(next(iter(rows.values())))
    lines = [
        "ATE Pearson r against the unconfounded reference "
        "(`python benchmarks/science/batch_confounding.py "
        f"--seeds {' '.join(map(str, args.seeds))}"
        + (f" --threads {args.threads}`)." if args.threads else "`)."),
        "",
        "| seed | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
        *(
            f"| {seed} | " + " | ".join(f"{row[k]:.3f}" for k in labels) + " |"
            for seed, row in rows.items()
        ),
    ]
    (RESULTS / "batch_confounding.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
