"""Real data: Papalexi et al. 2021 (THP-1 CRISPR knock-out) with a random 64/16/20 cell split.

Reads `../shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad` (raw counts, 25 targets +
'non-targeting' controls), holds out a seeded 20% of the cells as the test split, trains SAMS-VAE,
CPA-VAE and the conditional VAE on the rest (their own seeded 80/20 train/validation split, so
64/16/20 overall), and reports held-out IWELBO and ATE agreement (model ATE against the ATE of the
test cells, perturbseq transform) beside the non-learned baselines fitted on the training cells.
Writes `benchmarks/results/papalexi_random_split.{json,md}`.

    python benchmarks/science/papalexi_random_split.py [--max-epochs 60] [--data PATH]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import torch

import samsvae
from samsvae.evaluate import data_average_treatment_effects

sys.path.insert(0, str(Path(__file__).parent))
from real_data import (
    ATE_COLUMNS,
    baseline_rows,
    current_commit,
    markdown_table,
    parse_args,
    random_test_split,
    save_results,
    train_and_score,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad"
CONTROL = "non-targeting"


def main() -> None:
    args = parse_args(__doc__, DEFAULT_DATA, max_epochs=60)
    adata = ad.read_h5ad(args.data)
    train, test = random_test_split(adata, args.seed)
    samsvae.SAMSVAE.setup_anndata(train, perturbation_key="perturbation", control=CONTROL)
    targets = sorted(set(test.obs["perturbation"].astype(str)) - {CONTROL})
    test_labels = test.obs["perturbation"].astype(str).to_numpy()
    observed = data_average_treatment_effects(test.X, test_labels, targets, CONTROL)

    shared = {"n_latent": 20, "n_hidden": 128}
    models = {
        "SAMS-VAE (mean-field)": lambda: samsvae.SAMSVAE(
            train, mask_prior=0.1, guide="mean_field", **shared
        ),
        "CPA-VAE": lambda: samsvae.CPAVAE(train, **shared),
        "conditional VAE": lambda: samsvae.ConditionalVAE(train, **shared),
    }
    rows: dict[str, dict] = {}
    for name, build in models.items():
        model = build()
        # The paper samples counts at library size 1e4; these cells have ~200 UMIs, so the
        # effects are also sampled at the training cells' median library size.
        rows[name], _ = train_and_score(
            model, test, targets, observed, max_epochs=args.max_epochs, seed=args.seed
        )
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    rows |= baseline_rows(train, model.design, "perturbation", targets, observed)[0]
    record = {
        "data": str(args.data),
        "n_train": train.n_obs,
        "n_test": test.n_obs,
        "targets": targets,
        "seed": args.seed,
        "max_epochs": args.max_epochs,
        "rows": rows,
        "torch": torch.__version__,
        "commit": current_commit(),
    }
    save_results("papalexi_random_split", record, markdown(record))


def markdown(record: dict) -> str:
    caption = (
        f"Papalexi 2021 THP-1, random split: {record['n_train']} training / validation "
        f"cells, {record['n_test']} test cells, {len(record['targets'])} targets; "
        f"{record['max_epochs']} epochs; commit {record['commit'][:8]}. Command: "
        "`python benchmarks/science/papalexi_random_split.py`."
    )
    columns = [*ATE_COLUMNS, ("train_seconds", "train s")]
    return markdown_table(caption, record["rows"], columns)


if __name__ == "__main__":
    main()
